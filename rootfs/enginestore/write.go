package enginestore

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/hostos/hostos/rootfs/tree"
)

// Paths inside the data root, as the engine lays them out for the overlay2 driver.
const (
	imageRoot     = "image/overlay2"
	contentDir    = imageRoot + "/imagedb/content/sha256"
	metadataDir   = imageRoot + "/imagedb/metadata/sha256"
	layerDB       = imageRoot + "/layerdb"
	layerDir      = layerDB + "/sha256"
	layerTmp      = layerDB + "/tmp"
	reposFile     = imageRoot + "/repositories.json"
	diffIDByBlob  = imageRoot + "/distribution/diffid-by-digest/sha256"
	v2MetaByDiff  = imageRoot + "/distribution/v2metadata-by-diffid/sha256"
	overlayDir    = "overlay2"
	linkDir       = overlayDir + "/l"
	tarSplitFile  = "tar-split.json.gz"
	maxLowerDepth = 128
)

// storeDirs are created when absent, parents first, with the engine's modes.
var storeDirs = []struct {
	path string
	mode os.FileMode
}{
	{"", 0o711},
	{"image", 0o700},
	{imageRoot, 0o700},
	{imageRoot + "/imagedb", 0o700},
	{imageRoot + "/imagedb/content", 0o700},
	{contentDir, 0o700},
	{imageRoot + "/imagedb/metadata", 0o700},
	{metadataDir, 0o700},
	{layerDB, 0o700},
	{layerDir, 0o755},
	{layerTmp, 0o700},
	{overlayDir, 0o710},
	{linkDir, 0o700},
}

// store is the engine data root inside a staging directory.
type store struct {
	base   string // host path of the data root
	fsBase string // its absolute path inside the filesystem
	fixups []tree.Fixup
	// created lists the store paths this process made, for their timestamps.
	created []string
}

func openStore(stagingDir, dataRoot string) (*store, error) {
	st := &store{
		base:   filepath.Join(stagingDir, filepath.FromSlash(dataRoot)),
		fsBase: "/" + dataRoot,
	}
	// Parents of the data root must be real directories, not links out of the staging directory.
	rel := ""
	for _, c := range strings.Split(dataRoot, "/") {
		rel = path.Join(rel, c)
		fi, err := os.Lstat(filepath.Join(stagingDir, filepath.FromSlash(rel)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, fmt.Errorf("engine data root %s: %w", rel, err)
		case !fi.IsDir():
			return nil, fmt.Errorf("engine data root %s: not a directory", rel)
		}
	}
	if err := os.MkdirAll(filepath.Dir(st.base), 0o755); err != nil {
		return nil, fmt.Errorf("engine data root: %w", err)
	}
	for _, d := range storeDirs {
		if err := st.mkdir(d.path, d.mode); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (st *store) host(rel string) string { return filepath.Join(st.base, filepath.FromSlash(rel)) }

func (st *store) fsPath(rel string) string {
	if rel == "" {
		return st.fsBase
	}
	return st.fsBase + "/" + rel
}

// own records that the store path rel, created by this process, belongs to root.
func (st *store) own(rel string) error {
	root, err := tree.OwnedByRoot(st.host(rel))
	if err != nil {
		return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
	}
	if !root {
		st.fixups = append(st.fixups, tree.Fixup{Op: tree.OpOwner, Path: st.fsPath(rel)})
	}
	return nil
}

// mkdir creates the store directory rel with mode when it does not exist; an existing one is kept as it is.
func (st *store) mkdir(rel string, mode os.FileMode) error {
	p := st.host(rel)
	fi, err := os.Lstat(p)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("engine store %s: not a directory", st.fsPath(rel))
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
	}
	if err := os.Mkdir(p, mode); err != nil {
		return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
	}
	if err := os.Chmod(p, mode); err != nil {
		return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
	}
	st.created = append(st.created, rel)
	return st.own(rel)
}

// writeFile writes a small store file, replacing one that exists.
func (st *store) writeFile(rel string, data []byte, mode os.FileMode) error {
	p := st.host(rel)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
	}
	if err := os.Chmod(p, mode); err != nil {
		return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
	}
	st.created = append(st.created, rel)
	return st.own(rel)
}

func (st *store) readFile(rel string) ([]byte, error) {
	b, err := os.ReadFile(st.host(rel))
	if err != nil {
		return nil, fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
	}
	return b, nil
}

func exists(p string) (bool, error) {
	_, err := os.Lstat(p)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// present reads the store's record of a layer; ok is false when the layer is not in the store.
func (st *store) present(chain v1.Hash) (l Layer, ok bool, err error) {
	dir := layerDir + "/" + chain.Hex
	there, err := exists(st.host(dir))
	if err != nil || !there {
		return Layer{}, false, err
	}
	read := func(name string) (string, error) {
		b, err := st.readFile(dir + "/" + name)
		if err != nil {
			return "", fmt.Errorf("layer %s in the store is incomplete: %w", chain, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	l = Layer{ChainID: chain}
	if l.CacheID, err = read("cache-id"); err != nil {
		return Layer{}, false, err
	}
	if l.CacheID == "" || strings.ContainsAny(l.CacheID, "/\\") || l.CacheID == "." || l.CacheID == ".." {
		return Layer{}, false, fmt.Errorf("layer %s in the store: bad cache-id %q", chain, l.CacheID)
	}
	diff, err := read("diff")
	if err != nil {
		return Layer{}, false, err
	}
	if l.DiffID, err = v1.NewHash(diff); err != nil {
		return Layer{}, false, fmt.Errorf("layer %s in the store: diff: %w", chain, err)
	}
	size, err := read("size")
	if err != nil {
		return Layer{}, false, err
	}
	if l.Size, err = strconv.ParseInt(size, 10, 64); err != nil {
		return Layer{}, false, fmt.Errorf("layer %s in the store: size %q: %w", chain, size, err)
	}
	return l, true, nil
}

// overlayInfo reads the link and lower of a layer's overlay2 directory.
func (st *store) overlayInfo(cacheID string) (link, lower string, err error) {
	b, err := st.readFile(overlayDir + "/" + cacheID + "/link")
	if err != nil {
		return "", "", err
	}
	link = strings.TrimSpace(string(b))
	b, err = os.ReadFile(st.host(overlayDir + "/" + cacheID + "/lower"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("engine store %s: %w", st.fsPath(overlayDir+"/"+cacheID+"/lower"), err)
	}
	return link, strings.TrimSpace(string(b)), nil
}

// repositories is the engine's repositories.json.
type repositories struct {
	Repositories map[string]map[string]string
}

func (st *store) add(ctx context.Context, root *tree.Staged, plans []*plan, s *settings) (*Result, error) {
	repos := repositories{Repositories: map[string]map[string]string{}}
	if b, err := os.ReadFile(st.host(reposFile)); err == nil {
		if err := json.Unmarshal(b, &repos); err != nil {
			return nil, fmt.Errorf("engine store %s: %w", st.fsPath(reposFile), err)
		}
		if repos.Repositories == nil {
			repos.Repositories = map[string]map[string]string{}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("engine store %s: %w", st.fsPath(reposFile), err)
	}

	// The layers to write, once each, for the progress total.
	var total int64
	todo := map[v1.Hash]bool{}
	for _, p := range plans {
		for i, c := range p.chains {
			if todo[c] {
				continue
			}
			_, ok, err := st.present(c)
			if err != nil {
				return nil, err
			}
			if !ok {
				todo[c] = true
				if n, err := p.layers[i].Size(); err == nil {
					total += n
				}
			}
		}
	}
	prog := &progress{total: total, fn: s.progress}

	res := &Result{}
	written := map[v1.Hash]Layer{}
	for _, p := range plans {
		w := Written{ID: p.id}
		var parent *Layer
		for i, c := range p.chains {
			l, ok, err := st.present(c)
			if err != nil {
				return nil, err
			}
			if ok {
				if l.DiffID != p.diffIDs[i] {
					return nil, fmt.Errorf("layer %s in the store has diffID %s, not %s", c, l.DiffID, p.diffIDs[i])
				}
				if _, now := written[c]; now {
					l = written[c]
					l.Written = false
				} else {
					s.log(fmt.Sprintf("layer %s of %s is already in the store", c, p.name))
				}
				l.Digest = p.digests[i]
			} else {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("engine store: %w", err)
				}
				l, err = st.writeLayer(ctx, p, i, parent, prog)
				if err != nil {
					return nil, err
				}
				written[c] = l
				res.LayerBytes += l.Size
			}
			w.Layers = append(w.Layers, l)
			w.Size += l.Size
			parent = &w.Layers[len(w.Layers)-1]
		}
		content := contentDir + "/" + p.id.Hex
		there, err := exists(st.host(content))
		if err != nil {
			return nil, fmt.Errorf("engine store %s: %w", st.fsPath(content), err)
		}
		if !there {
			if err := st.writeFile(content, p.config, 0o600); err != nil {
				return nil, err
			}
			w.New = true
		}
		for _, r := range p.refs {
			m := repos.Repositories[r[0]]
			if m == nil {
				m = map[string]string{}
				repos.Repositories[r[0]] = m
			}
			if old, ok := m[r[1]]; ok && old != p.id.String() {
				s.log(fmt.Sprintf("%s moves from %s to %s", r[1], old, p.id))
			}
			m[r[1]] = p.id.String()
			w.References = append(w.References, r[1])
		}
		if err := st.distribution(p); err != nil {
			return nil, err
		}
		res.Images = append(res.Images, w)
	}
	b, err := json.Marshal(repos)
	if err != nil {
		return nil, fmt.Errorf("engine store %s: %w", st.fsPath(reposFile), err)
	}
	if err := st.writeFile(reposFile, b, 0o600); err != nil {
		return nil, err
	}
	prog.report()
	if err := st.stamp(s.time(plans)); err != nil {
		return nil, err
	}
	staged, err := recount(root, st.fixups)
	if err != nil {
		return nil, err
	}
	res.Staged = staged
	return res, nil
}

// v2Metadata is one entry of distribution/v2metadata-by-diffid.
type v2Metadata struct {
	Digest           string
	SourceRepository string
	HMAC             string
}

// distribution records which blob each layer came from, and from which repository.
func (st *store) distribution(p *plan) error {
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{imageRoot + "/distribution", 0o755},
		{imageRoot + "/distribution/diffid-by-digest", 0o755},
		{diffIDByBlob, 0o755},
		{imageRoot + "/distribution/v2metadata-by-diffid", 0o755},
		{v2MetaByDiff, 0o755},
	}
	for _, d := range dirs {
		if err := st.mkdir(d.path, d.mode); err != nil {
			return err
		}
	}
	repo := p.image.sourceRepository()
	for i, d := range p.digests {
		diffID := p.diffIDs[i]
		if err := st.writeFile(diffIDByBlob+"/"+d.Hex, []byte(diffID.String()), 0o644); err != nil {
			return err
		}
		if repo == "" {
			continue
		}
		rel := v2MetaByDiff + "/" + diffID.Hex
		var list []v2Metadata
		if b, err := os.ReadFile(st.host(rel)); err == nil {
			if err := json.Unmarshal(b, &list); err != nil {
				return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
		}
		entry := v2Metadata{Digest: d.String(), SourceRepository: repo}
		found := false
		for _, m := range list {
			if m.Digest == entry.Digest && m.SourceRepository == entry.SourceRepository {
				found = true
			}
		}
		if found {
			continue
		}
		list = append(list, entry)
		b, err := json.Marshal(list)
		if err != nil {
			return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
		}
		if err := st.writeFile(rel, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeLayer reads layer i of p once: it checks both digests while recording tar-split and unpacking,
// and only then adds the layer's overlay2 directory and layerdb entry to the store.
func (st *store) writeLayer(ctx context.Context, p *plan, i int, parent *Layer, prog *progress) (l Layer, err error) {
	chain, diffID := p.chains[i], p.diffIDs[i]
	l = Layer{ChainID: chain, DiffID: diffID, Digest: p.digests[i], CacheID: CacheID(chain), Written: true}
	link := LinkID(chain)
	name := fmt.Sprintf("layer %d (%s) of %s", i+1, p.digests[i], p.name)

	layerRel := overlayDir + "/" + l.CacheID
	for _, rel := range []string{layerRel, linkDir + "/" + link} {
		there, err := exists(st.host(rel))
		if err != nil {
			return Layer{}, fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
		}
		if there {
			return Layer{}, fmt.Errorf("engine store %s exists but no layer %s refers to it", st.fsPath(rel), chain)
		}
	}
	var parentLink, parentLower string
	depth := 1
	if parent != nil {
		if parentLink, parentLower, err = st.overlayInfo(parent.CacheID); err != nil {
			return Layer{}, err
		}
		if parentLower != "" {
			depth += strings.Count(parentLower, ":") + 1
		}
		if depth >= maxLowerDepth {
			return Layer{}, fmt.Errorf("%s: more than %d layers", name, maxLowerDepth)
		}
	}

	// The layerdb entry is assembled in tmp and renamed into place, as the engine does.
	tmpRel := layerTmp + "/write-set-" + chain.Hex
	if err := os.RemoveAll(st.host(tmpRel)); err != nil {
		return Layer{}, fmt.Errorf("engine store %s: %w", st.fsPath(tmpRel), err)
	}
	if err := os.Mkdir(st.host(tmpRel), 0o700); err != nil {
		return Layer{}, fmt.Errorf("engine store %s: %w", st.fsPath(tmpRel), err)
	}
	if err := os.Mkdir(st.host(layerRel), 0o710); err != nil {
		return Layer{}, fmt.Errorf("engine store %s: %w", st.fsPath(layerRel), err)
	}
	fixups := len(st.fixups)
	defer func() {
		if err != nil {
			os.RemoveAll(st.host(tmpRel))
			os.RemoveAll(st.host(layerRel))
			st.fixups = st.fixups[:fixups]
		}
	}()
	if err := os.Chmod(st.host(layerRel), 0o710); err != nil {
		return Layer{}, fmt.Errorf("engine store %s: %w", st.fsPath(layerRel), err)
	}
	if err := st.own(layerRel); err != nil {
		return Layer{}, err
	}
	st.created = append(st.created, layerRel, layerRel+"/diff")

	u, err := newUnpacker(st.host(layerRel+"/diff"), st.fsPath(layerRel+"/diff"))
	if err != nil {
		return Layer{}, fmt.Errorf("%s: %w", name, err)
	}
	defer u.close()
	ts, err := os.OpenFile(st.host(tmpRel+"/"+tarSplitFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return Layer{}, fmt.Errorf("engine store %s: %w", st.fsPath(tmpRel), err)
	}
	defer ts.Close()
	if err := stream(ctx, p.layers[i], ts, u, prog, p.digests[i], diffID); err != nil {
		return Layer{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := ts.Close(); err != nil {
		return Layer{}, fmt.Errorf("%s: tar-split: %w", name, err)
	}
	layerFixups, size, err := u.finish()
	if err != nil {
		return Layer{}, fmt.Errorf("%s: %w", name, err)
	}
	l.Size = size

	// Both digests matched: the layer enters the store.
	st.fixups = append(st.fixups, layerFixups...)
	if err := st.writeFile(layerRel+"/link", []byte(link), 0o644); err != nil {
		return Layer{}, err
	}
	if parent != nil {
		lower := "l/" + parentLink
		if parentLower != "" {
			lower += ":" + parentLower
		}
		if err := st.writeFile(layerRel+"/lower", []byte(lower), 0o644); err != nil {
			return Layer{}, err
		}
		if err := st.mkdir(layerRel+"/work", 0o700); err != nil {
			return Layer{}, err
		}
		committed := overlayDir + "/" + parent.CacheID + "/committed"
		there, err := exists(st.host(committed))
		if err != nil {
			return Layer{}, fmt.Errorf("engine store %s: %w", st.fsPath(committed), err)
		}
		if !there {
			if err := st.writeFile(committed, nil, 0o600); err != nil {
				return Layer{}, err
			}
		}
	}
	linkRel := linkDir + "/" + link
	if err := os.Symlink("../"+l.CacheID+"/diff", st.host(linkRel)); err != nil {
		return Layer{}, fmt.Errorf("engine store %s: %w", st.fsPath(linkRel), err)
	}
	if err := st.own(linkRel); err != nil {
		return Layer{}, err
	}
	st.created = append(st.created, linkRel)
	meta := map[string]string{
		"diff":     diffID.String(),
		"size":     strconv.FormatInt(size, 10),
		"cache-id": l.CacheID,
	}
	if parent != nil {
		meta["parent"] = parent.ChainID.String()
	}
	for _, k := range []string{"cache-id", "diff", "parent", "size"} {
		if v, ok := meta[k]; ok {
			if err := st.writeFile(tmpRel+"/"+k, []byte(v), 0o644); err != nil {
				return Layer{}, err
			}
		}
	}
	if err := st.own(tmpRel + "/" + tarSplitFile); err != nil {
		return Layer{}, err
	}
	final := layerDir + "/" + chain.Hex
	if err := os.Rename(st.host(tmpRel), st.host(final)); err != nil {
		return Layer{}, fmt.Errorf("engine store %s: %w", st.fsPath(final), err)
	}
	// The fixups recorded under the temporary name follow the rename.
	for j := fixups; j < len(st.fixups); j++ {
		if rest, ok := strings.CutPrefix(st.fixups[j].Path, st.fsPath(tmpRel)); ok {
			st.fixups[j].Path = st.fsPath(final) + rest
		}
	}
	if err := st.own(final); err != nil {
		return Layer{}, err
	}
	st.created = append(st.created, final, final+"/"+tarSplitFile)
	for k := range meta {
		st.created = append(st.created, final+"/"+k)
	}
	return l, nil
}

// stream reads the compressed layer once: hashes it, decompresses it, hashes the tar, records its
// tar-split packing into ts (gzip) and unpacks it with u. It fails when a digest does not match.
func stream(ctx context.Context, layer v1.Layer, ts io.Writer, u *unpacker, prog *progress, digest, diffID v1.Hash) error {
	rc, err := layer.Compressed()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer rc.Close()
	blobHash := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(&progressReader{r: rc, p: prog, ctx: ctx}, blobHash), 1<<16)
	// A corrupted blob usually breaks decompression first; the digest is then the better reason.
	blobErr := func(err error) error {
		if _, cerr := io.Copy(io.Discard, br); cerr == nil {
			if got := sum(blobHash); got != digest {
				return fmt.Errorf("blob content hashes to %s, not %s: %w", got, digest, ErrDigestMismatch)
			}
		}
		return err
	}
	tarStream, closeFn, err := decompress(br)
	if err != nil {
		return blobErr(err)
	}
	defer closeFn()
	tarHash := sha256.New()
	gz := gzip.NewWriter(ts)
	packer := &enginePacker{Packer: storage.NewJSONPacker(gz)}
	its, done, err := asm.NewInputTarStreamWithDone(io.TeeReader(tarStream, tarHash), packer, nil)
	if err != nil {
		return fmt.Errorf("tar-split: %w", err)
	}
	err = unpackAll(its, u)
	if err == nil {
		_, err = io.Copy(io.Discard, its)
	}
	its.Close()
	if derr := <-done; err == nil && derr != nil {
		err = fmt.Errorf("tar-split: %w", derr)
	}
	if err != nil {
		return blobErr(err)
	}
	if err := packer.finish(); err != nil {
		return fmt.Errorf("tar-split: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("tar-split: %w", err)
	}
	// What follows the compressed stream belongs to the blob too.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if got := sum(blobHash); got != digest {
		return fmt.Errorf("blob content hashes to %s, not %s: %w", got, digest, ErrDigestMismatch)
	}
	if got := sum(tarHash); got != diffID {
		return fmt.Errorf("uncompressed content hashes to %s, not the config's diffID %s: %w", got, diffID, ErrDigestMismatch)
	}
	return nil
}

func unpackAll(r io.Reader, u *unpacker) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := u.add(h, tr); err != nil {
			return err
		}
	}
}

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

var (
	magicGzip = []byte{0x1f, 0x8b}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress recognises gzip and zstd by their magic numbers; anything else is read as a plain tar.
func decompress(br *bufio.Reader) (io.Reader, func(), error) {
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := kgzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

type progress struct {
	done, total, last int64
	fn                func(done, total int64)
}

func (p *progress) report() {
	p.last = p.done
	p.fn(p.done, p.total)
}

type progressReader struct {
	r   io.Reader
	p   *progress
	ctx context.Context
}

func (r *progressReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(b)
	r.p.done += int64(n)
	if r.p.done-r.p.last >= 1<<20 {
		r.p.report()
	}
	return n, err
}

// recount counts the staged tree again with the store in it, keeping its fixups and appending the store's.
func recount(root *tree.Staged, fixups []tree.Fixup) (*tree.Staged, error) {
	s, err := tree.Scan(root.Dir)
	if err != nil {
		return nil, err
	}
	if len(root.Fixups) > 0 {
		s.Fixups = append([]tree.Fixup(nil), root.Fixups...)
	}
	s.Fixups = append(s.Fixups, fixups...)
	// Nodes that exist only as fixups take an inode each.
	for _, f := range s.Fixups {
		if f.Op == tree.OpMknod {
			s.Entries++
		}
	}
	return s, nil
}

// stamp sets the modification time of every store path this process made, and of their directories,
// so that the same images give the same store. The layer contents keep their own times.
func (st *store) stamp(t time.Time) error {
	paths := map[string]bool{}
	for _, rel := range st.created {
		for p := rel; ; p = path.Dir(p) {
			if p == "." {
				p = ""
			}
			paths[p] = true
			if p == "" {
				break
			}
		}
	}
	for rel := range paths {
		if strings.HasPrefix(rel, layerTmp+"/") || strings.HasSuffix(rel, "/diff") && strings.HasPrefix(rel, overlayDir+"/") {
			continue
		}
		err := setTimesNoFollow(st.host(rel), t)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("engine store %s: %w", st.fsPath(rel), err)
		}
	}
	return nil
}

// enginePacker records tar-split entries as the engine's own tar-split (v0.11, vendored by moby and
// balena-engine 20.10) does: that version ends every record with one segment holding what follows the
// end-of-archive blocks, empty when nothing does, where v0.12 leaves the empty segment out. Both
// reassemble the same bytes; with it the record is the one the engine itself writes.
type enginePacker struct {
	storage.Packer
	// segments counts the segment entries since the last file entry.
	segments int
}

func (p *enginePacker) AddEntry(e storage.Entry) (int, error) {
	if e.Type == storage.FileType {
		p.segments = 0
	} else {
		p.segments++
	}
	return p.Packer.AddEntry(e)
}

// finish adds the empty trailing segment when the stream had nothing after its end-of-archive blocks.
func (p *enginePacker) finish() error {
	if p.segments != 1 {
		return nil
	}
	_, err := p.Packer.AddEntry(storage.Entry{Type: storage.SegmentType, Payload: []byte{}})
	return err
}
