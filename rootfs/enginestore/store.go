// Package enginestore writes container images into the image store of a moby or balena-engine 20.10+
// daemon (the overlay2 graphdriver data root: imagedb, layerdb, overlay2 layer directories,
// repositories.json, distribution metadata) inside a staged tree, without a daemon and without root.
package enginestore

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hostos/hostos/rootfs/tree"
)

// DefaultDataRoot is where balenaOS keeps the engine's data root on the data partition.
const DefaultDataRoot = "docker"

// ErrDigestMismatch is returned when a layer's content does not match its compressed digest or the
// diffID its image config lists.
var ErrDigestMismatch = errors.New("digest mismatch")

// Image is one image to put into the store.
type Image struct {
	// Image gives the config bytes and the layers.
	Image v1.Image
	// Tags are references as the engine shows them ("busybox", "myapp:1.0", "registry/ns/app:tag");
	// a reference without a tag gets ":latest". They are stored in the engine's familiar form.
	Tags []string
	// ManifestDigest, when set, is recorded as <repository>@<digest> for each repository of Tags and
	// for SourceRepo, which is how the balena supervisor finds an image pulled by digest.
	ManifestDigest v1.Hash
	// SourceRepo, when set, is the registry repository the layers come from
	// ("registry2.balena-cloud.com/v2/abc"), recorded in the distribution metadata so that a later
	// pull from it skips the layers already present.
	SourceRepo string
}

// Layer describes one layer of an image in the store.
type Layer struct {
	ChainID, DiffID v1.Hash
	// Digest is the compressed blob digest the layer was read from.
	Digest v1.Hash
	// CacheID names the layer's directory under overlay2/.
	CacheID string
	// Size is the engine's size of the layer: regular file bytes plus symlink target lengths, each
	// inode once.
	Size int64
	// Written is false for a layer that was already in the store.
	Written bool
}

// Written describes one image after Add.
type Written struct {
	// ID is the image id, the digest of the config bytes.
	ID v1.Hash
	// References are the repositories.json keys that point at the image.
	References []string
	// Layers lists the image's layers, base first.
	Layers []Layer
	// Size is the sum of the layer sizes, as the engine reports it.
	Size int64
	// New is false when the image config was already in the store.
	New bool
}

// Result is what Add wrote.
type Result struct {
	// Images are in the order given.
	Images []Written
	// Staged is the tree given to Add, recounted with the store in it and with the store's fixups
	// appended: pass it to ext4.Estimate and ext4.Make.
	Staged *tree.Staged
	// LayerBytes is the sum of the sizes of the layers written now (not of those already present).
	LayerBytes int64
}

// Option changes how Add works.
type Option func(*settings)

type settings struct {
	dataRoot string
	stamp    time.Time
	progress func(done, total int64)
	log      func(msg string)
}

// WithDataRoot sets the data root's path relative to the staged tree's root; default DefaultDataRoot.
func WithDataRoot(p string) Option { return func(s *settings) { s.dataRoot = p } }

// WithTime sets the modification time of the store's own files and directories (the layer contents
// keep theirs); default: the newest creation time among the images' configs.
func WithTime(t time.Time) Option { return func(s *settings) { s.stamp = t } }

// time is the modification time of the store's own files.
func (s *settings) time(plans []*plan) time.Time {
	if !s.stamp.IsZero() {
		return s.stamp
	}
	t := time.Unix(0, 0)
	for _, p := range plans {
		if p.created.After(t) {
			t = p.created
		}
	}
	return t
}

// WithProgress has Add report the compressed layer bytes read so far and their total.
func WithProgress(fn func(done, total int64)) Option { return func(s *settings) { s.progress = fn } }

// WithLog has Add describe what it skips or replaces (a layer already present, a tag moved).
func WithLog(fn func(msg string)) Option { return func(s *settings) { s.log = fn } }

func newSettings(opts []Option) (*settings, error) {
	s := &settings{dataRoot: DefaultDataRoot, progress: func(int64, int64) {}, log: func(string) {}}
	for _, o := range opts {
		o(s)
	}
	if s.progress == nil {
		s.progress = func(int64, int64) {}
	}
	if s.log == nil {
		s.log = func(string) {}
	}
	clean := path.Clean(strings.TrimPrefix(s.dataRoot, "/"))
	if s.dataRoot == "" || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsAny(clean, "\n\r") {
		return nil, fmt.Errorf("engine data root %q: not a path inside the tree", s.dataRoot)
	}
	s.dataRoot = clean
	return s, nil
}

// ChainID is the chain id of the layer stack whose diffIDs are given, base first.
func ChainID(diffIDs []v1.Hash) v1.Hash {
	if len(diffIDs) == 0 {
		return v1.Hash{}
	}
	c := diffIDs[0]
	for _, d := range diffIDs[1:] {
		sum := sha256.Sum256([]byte(c.String() + " " + d.String()))
		c = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	}
	return c
}

// CacheID is the overlay2 directory name this package gives the layer with the given chain id.
//
// The store is written as the engine writes it but for this: the engine names a layer's overlay2
// directory (cache-id, 64 hex digits) and its short link (LinkID, 26 characters of [A-Z0-9]) at random,
// where this package derives both from the chain id, so that the same images give the same bytes. The
// engine reads these names back from layerdb and the link files and never recomputes them.
func CacheID(chainID v1.Hash) string {
	sum := sha256.Sum256([]byte("hostos enginestore cache-id " + chainID.String()))
	return hex.EncodeToString(sum[:])
}

// linkIDLength is the length of the engine's short layer names under overlay2/l.
const linkIDLength = 26

// LinkID is the short name under overlay2/l this package gives the layer with the given chain id.
func LinkID(chainID v1.Hash) string { return ShortName("hostos enginestore link " + chainID.String()) }

// ShortName derives from seed a name of the form the engine draws at random for overlay2/l (26
// characters of [A-Z2-7]), for whoever writes overlay2 directories of its own beside the store's.
func ShortName(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return base32.StdEncoding.EncodeToString(sum[:])[:linkIDLength]
}

// references turns the image's tags and manifest digest into repositories.json entries:
// repository (familiar name) → reference (familiar string).
func (im Image) references() ([][2]string, error) {
	var out [][2]string
	var repos []string
	seen := map[string]bool{}
	addRepo := func(r string) {
		if !seen[r] {
			seen[r] = true
			repos = append(repos, r)
		}
	}
	for _, t := range im.Tags {
		r, err := ParseRef(t)
		if err != nil {
			return nil, fmt.Errorf("image tag %q: %w", t, err)
		}
		if r.Digest != "" {
			return nil, fmt.Errorf("image tag %q: a digest reference; give the digest as the manifest digest", t)
		}
		r = r.OrLatest()
		out = append(out, [2]string{r.Repo, r.String()})
		addRepo(r.Repo)
	}
	if im.SourceRepo != "" {
		r, err := ParseRef(im.SourceRepo)
		if err != nil {
			return nil, fmt.Errorf("image source repository %q: %w", im.SourceRepo, err)
		}
		if r.Tag != "" {
			return nil, fmt.Errorf("image source repository %q: a repository, without tag", im.SourceRepo)
		}
		if r.Digest != "" {
			return nil, fmt.Errorf("image source repository %q: a repository, without digest", im.SourceRepo)
		}
		addRepo(r.Repo)
	}
	if im.ManifestDigest != (v1.Hash{}) {
		if im.ManifestDigest.Algorithm != "sha256" || len(im.ManifestDigest.Hex) != 64 {
			return nil, fmt.Errorf("image manifest digest %s: not a sha256 digest", im.ManifestDigest)
		}
		if len(repos) == 0 {
			return nil, fmt.Errorf("image manifest digest %s: no tag or source repository to record it under", im.ManifestDigest)
		}
		for _, r := range repos {
			out = append(out, [2]string{r, r + "@" + im.ManifestDigest.String()})
		}
	}
	return out, nil
}

// sourceRepository is the full name recorded in v2metadata ("docker.io/library/busybox").
func (im Image) sourceRepository() string {
	if im.SourceRepo == "" {
		return ""
	}
	r, err := ParseRef(im.SourceRepo)
	if err != nil {
		return ""
	}
	return r.Name
}

// Add writes images into the engine store under the data root of the staged tree root (created when
// absent), merged with what the store already holds: images, tags and layers already there stay, a
// layer already present is not written again, layers shared between images are stored once.
// Every image is checked (config digest, diffIDs, references) before anything is written; each layer is
// read once (decompressed, hashed, recorded for tar-split, unpacked) and a layer whose compressed digest
// or diffID does not match is refused with ErrDigestMismatch before any of it enters the store. On any
// error the staged tree may hold earlier complete layers but no new image or reference: discard it.
func Add(ctx context.Context, root *tree.Staged, images []Image, opts ...Option) (*Result, error) {
	s, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	if root == nil || root.Dir == "" {
		return nil, errors.New("engine store: no staged tree")
	}
	plans, err := planAll(images)
	if err != nil {
		return nil, err
	}
	st, err := openStore(root.Dir, s.dataRoot)
	if err != nil {
		return nil, err
	}
	return st.add(ctx, root, plans, s)
}
