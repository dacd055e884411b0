package enginestore

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/hostos/hostos/rootfs/tree"
)

// Need is what Add of the same images into the same staged tree will write, counted before writing.
type Need struct {
	// Layers are the layers Add will write, once each, with the engine's sizes.
	Layers []Layer
	// LayerBytes is the sum of their sizes.
	LayerBytes int64
	// Expected counts the files, directories and blocks the store adds to the tree: give it to
	// tree.Staged.Expect and then to ext4.Estimate.
	Expected tree.Expected
}

// Measure reads the layers that Add would write (each once, checking both digests, without unpacking
// anything) and counts what Add of images into the staged directory dir will add to it. It writes nothing.
func Measure(ctx context.Context, dir string, images []Image, opts ...Option) (*Need, error) {
	s, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	plans, err := planAll(images)
	if err != nil {
		return nil, err
	}
	m := &measure{
		st:      &store{base: filepath.Join(dir, filepath.FromSlash(s.dataRoot)), fsBase: "/" + s.dataRoot},
		newDirs: map[string]int64{},
		oldDirs: map[string]int64{},
		made:    map[string]bool{},
		lowers:  map[string]string{},
		sizes:   map[string]int64{},
		v2:      map[string][]v2Metadata{},
	}
	if err := m.run(ctx, plans, s); err != nil {
		return nil, err
	}
	for _, n := range m.newDirs {
		m.need.Expected.Sizes = append(m.need.Expected.Sizes, n)
	}
	for _, n := range m.oldDirs {
		m.need.Expected.Sizes = append(m.need.Expected.Sizes, n)
	}
	return &m.need, nil
}

type measure struct {
	st   *store
	need Need
	// newDirs holds the directory bytes of directories Add creates, oldDirs what it adds to existing ones.
	newDirs, oldDirs map[string]int64
	made             map[string]bool
	// lowers holds the lower file of each layer counted.
	lowers map[string]string
	// sizes holds the size of each store file counted, v2 the v2metadata lists as Add will write them.
	sizes map[string]int64
	v2    map[string][]v2Metadata
}

// there tells whether a store path exists now or will once Add got to this point.
func (m *measure) there(rel string) (bool, error) {
	if m.made[rel] {
		return true, nil
	}
	ok, err := exists(m.st.host(rel))
	if err != nil {
		return false, fmt.Errorf("engine store %s: %w", m.st.fsPath(rel), err)
	}
	return ok, nil
}

// add counts a new store path of the given kind (a tar type flag) and size.
func (m *measure) add(rel string, typ byte, size int64) error {
	ok, err := m.there(rel)
	if err != nil || ok {
		return err
	}
	m.made[rel] = true
	parent := path.Dir(rel)
	switch {
	case rel == "":
		// The data root's own entry, in a directory of the tree outside the store.
		parent = ".."
	case parent == ".":
		parent = ""
	}
	if _, ok := m.newDirs[parent]; ok {
		m.newDirs[parent] += tree.DirentBytes(path.Base(rel))
	} else {
		m.oldDirs[parent] += tree.DirentBytes(path.Base(rel))
	}
	e := &m.need.Expected
	e.Entries++
	switch typ {
	case tar.TypeDir:
		e.Dirs++
		m.newDirs[rel] += 24
	case tar.TypeReg:
		e.Files++
		e.Bytes += size
		e.Sizes = append(e.Sizes, size)
	case tar.TypeSymlink:
		if size > tree.FastSymlinkMax {
			e.Sizes = append(e.Sizes, size)
		}
	}
	return nil
}

func (m *measure) run(ctx context.Context, plans []*plan, s *settings) error {
	for _, d := range storeDirs {
		if err := m.add(d.path, tar.TypeDir, 0); err != nil {
			return err
		}
	}
	repos := repositories{Repositories: map[string]map[string]string{}}
	if b, err := os.ReadFile(m.st.host(reposFile)); err == nil {
		if err := json.Unmarshal(b, &repos); err != nil {
			return fmt.Errorf("engine store %s: %w", m.st.fsPath(reposFile), err)
		}
		if repos.Repositories == nil {
			repos.Repositories = map[string]map[string]string{}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("engine store %s: %w", m.st.fsPath(reposFile), err)
	}
	counted := map[v1.Hash]Layer{}
	for _, p := range plans {
		var parent *Layer
		for i, c := range p.chains {
			l, ok, err := m.st.present(c)
			if err != nil {
				return err
			}
			if !ok {
				if l, ok = counted[c]; !ok {
					if l, err = m.layer(ctx, p, i, parent); err != nil {
						return err
					}
					counted[c] = l
					m.need.Layers = append(m.need.Layers, l)
					m.need.LayerBytes += l.Size
				}
			}
			parent = &l
		}
		if err := m.add(contentDir+"/"+p.id.Hex, tar.TypeReg, int64(len(p.config))); err != nil {
			return err
		}
		for _, r := range p.refs {
			if repos.Repositories[r[0]] == nil {
				repos.Repositories[r[0]] = map[string]string{}
			}
			repos.Repositories[r[0]][r[1]] = p.id.String()
		}
		for _, d := range []string{"/distribution", "/distribution/diffid-by-digest", "/distribution/diffid-by-digest/sha256",
			"/distribution/v2metadata-by-diffid", "/distribution/v2metadata-by-diffid/sha256"} {
			if err := m.add(imageRoot+d, tar.TypeDir, 0); err != nil {
				return err
			}
		}
		repo := p.image.sourceRepository()
		for i, d := range p.digests {
			if err := m.add(diffIDByBlob+"/"+d.Hex, tar.TypeReg, int64(len(p.diffIDs[i].String()))); err != nil {
				return err
			}
			if repo == "" {
				continue
			}
			rel := v2MetaByDiff + "/" + p.diffIDs[i].Hex
			list, ok := m.v2[rel]
			if !ok {
				if b, err := os.ReadFile(m.st.host(rel)); err == nil {
					if err := json.Unmarshal(b, &list); err != nil {
						return fmt.Errorf("engine store %s: %w", m.st.fsPath(rel), err)
					}
				} else if !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("engine store %s: %w", m.st.fsPath(rel), err)
				}
			}
			entry := v2Metadata{Digest: d.String(), SourceRepository: repo}
			found := false
			for _, e := range list {
				found = found || e == entry
			}
			if !found {
				list = append(list, entry)
			}
			m.v2[rel] = list
			b, _ := json.Marshal(list)
			if err := m.file(rel, int64(len(b))); err != nil {
				return err
			}
		}
	}
	b, err := json.Marshal(repos)
	if err != nil {
		return fmt.Errorf("engine store %s: %w", m.st.fsPath(reposFile), err)
	}
	return m.file(reposFile, int64(len(b)))
}

// file counts a store file that Add writes or rewrites with size bytes.
func (m *measure) file(rel string, size int64) error {
	old, ok := m.sizes[rel]
	if !ok {
		fi, err := os.Lstat(m.st.host(rel))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			m.sizes[rel] = size
			return m.add(rel, tar.TypeReg, size)
		case err != nil:
			return fmt.Errorf("engine store %s: %w", m.st.fsPath(rel), err)
		}
		old = fi.Size()
	}
	m.sizes[rel] = size
	if d := size - old; d > 0 {
		// The file grows: its new blocks (counted whole, which may count one block too many).
		m.need.Expected.Bytes += d
		m.need.Expected.Sizes = append(m.need.Expected.Sizes, d)
	} else {
		m.need.Expected.Bytes += d
	}
	return nil
}

// layer counts one layer Add would write: its overlay2 directory and contents, and its layerdb entry.
func (m *measure) layer(ctx context.Context, p *plan, i int, parent *Layer) (Layer, error) {
	chain := p.chains[i]
	l := Layer{ChainID: chain, DiffID: p.diffIDs[i], Digest: p.digests[i], CacheID: CacheID(chain), Written: true}
	name := fmt.Sprintf("layer %d (%s) of %s", i+1, p.digests[i], p.name)
	dir := overlayDir + "/" + l.CacheID
	link := LinkID(chain)
	if err := m.add(dir, tar.TypeDir, 0); err != nil {
		return Layer{}, err
	}
	if err := m.add(dir+"/link", tar.TypeReg, int64(len(link))); err != nil {
		return Layer{}, err
	}
	if err := m.add(linkDir+"/"+link, tar.TypeSymlink, int64(len("../"+l.CacheID+"/diff"))); err != nil {
		return Layer{}, err
	}
	ldir := layerDir + "/" + chain.Hex
	files := map[string]int64{"cache-id": int64(len(l.CacheID)), "diff": int64(len(l.DiffID.String()))}
	if parent != nil {
		files["parent"] = int64(len(parent.ChainID.String()))
		plink, plower, counted := LinkID(parent.ChainID), m.lowers[parent.CacheID], m.made[overlayDir+"/"+parent.CacheID]
		if !counted {
			var err error
			if plink, plower, err = m.st.overlayInfo(parent.CacheID); err != nil {
				return Layer{}, err
			}
		}
		lower := "l/" + plink
		if plower != "" {
			lower += ":" + plower
		}
		m.lowers[l.CacheID] = lower
		for _, f := range []struct {
			rel  string
			typ  byte
			size int64
		}{
			{dir + "/lower", tar.TypeReg, int64(len(lower))},
			{dir + "/work", tar.TypeDir, 0},
			{overlayDir + "/" + parent.CacheID + "/committed", tar.TypeReg, 0},
		} {
			if err := m.add(f.rel, f.typ, f.size); err != nil {
				return Layer{}, err
			}
		}
	}
	if err := m.add(ldir, tar.TypeDir, 0); err != nil {
		return Layer{}, err
	}
	size, tarSplit, err := m.read(ctx, p, i, dir+"/diff")
	if err != nil {
		return Layer{}, fmt.Errorf("%s: %w", name, err)
	}
	l.Size = size
	files["size"] = int64(len(strconv.FormatInt(size, 10)))
	files[tarSplitFile] = tarSplit
	for _, f := range []string{"cache-id", "diff", "parent", "size", tarSplitFile} {
		if n, ok := files[f]; ok {
			if err := m.add(ldir+"/"+f, tar.TypeReg, n); err != nil {
				return Layer{}, err
			}
		}
	}
	return l, nil
}

// read streams layer i of p as Add does, counting the layer directory's paths under diff and the
// size of its tar-split record.
func (m *measure) read(ctx context.Context, p *plan, i int, diff string) (size, tarSplit int64, err error) {
	rc, err := p.layers[i].Compressed()
	if err != nil {
		return 0, 0, fmt.Errorf("open: %w", err)
	}
	defer rc.Close()
	blobHash := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(&progressReader{r: rc, p: &progress{fn: func(int64, int64) {}}, ctx: ctx}, blobHash), 1<<16)
	blobErr := func(err error) error {
		if _, cerr := io.Copy(io.Discard, br); cerr == nil {
			if got := sum(blobHash); got != p.digests[i] {
				return fmt.Errorf("blob content hashes to %s, not %s: %w", got, p.digests[i], ErrDigestMismatch)
			}
		}
		return err
	}
	tarStream, closeFn, err := decompress(br)
	if err != nil {
		return 0, 0, blobErr(err)
	}
	defer closeFn()
	tarHash := sha256.New()
	var counted countWriter
	gz := gzip.NewWriter(&counted)
	packer := &enginePacker{Packer: storage.NewJSONPacker(gz)}
	its, done, err := asm.NewInputTarStreamWithDone(io.TeeReader(tarStream, tarHash), packer, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("tar-split: %w", err)
	}
	nodes := map[string]*entry{"": {typ: tar.TypeDir}}
	err = countAll(its, nodes)
	if err == nil {
		_, err = io.Copy(io.Discard, its)
	}
	its.Close()
	if derr := <-done; err == nil && derr != nil {
		err = fmt.Errorf("tar-split: %w", derr)
	}
	if err != nil {
		return 0, 0, blobErr(err)
	}
	if err := packer.finish(); err != nil {
		return 0, 0, fmt.Errorf("tar-split: %w", err)
	}
	if err := gz.Close(); err != nil {
		return 0, 0, fmt.Errorf("tar-split: %w", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return 0, 0, fmt.Errorf("read: %w", err)
	}
	if got := sum(blobHash); got != p.digests[i] {
		return 0, 0, fmt.Errorf("blob content hashes to %s, not %s: %w", got, p.digests[i], ErrDigestMismatch)
	}
	if got := sum(tarHash); got != p.diffIDs[i] {
		return 0, 0, fmt.Errorf("uncompressed content hashes to %s, not the config's diffID %s: %w", got, p.diffIDs[i], ErrDigestMismatch)
	}
	for _, n := range sortedKeys(nodes) {
		e := nodes[n]
		rel := diff
		if n != "" {
			rel += "/" + n
		}
		typ := e.typ
		if typ == tar.TypeLink || typ == tar.TypeChar || typ == tar.TypeBlock || typ == tar.TypeFifo {
			typ = 0 // an entry without data
		}
		if err := m.add(rel, typ, e.size); err != nil {
			return 0, 0, err
		}
		if e.typ != tar.TypeLink {
			size += e.size
		}
	}
	return size, counted.n, nil
}

// countAll applies the layer tar to a map of paths, with the unpacker's overlay conversion.
func countAll(r io.Reader, nodes map[string]*entry) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		switch h.Typeflag {
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		default:
			return fmt.Errorf("entry %q: unsupported type %q", h.Name, h.Typeflag)
		}
		name, err := tree.CleanName(h.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		// Missing parents are made as directories.
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if _, ok := nodes[d]; !ok {
				nodes[d] = &entry{typ: tar.TypeDir}
			}
		}
		base := path.Base(name)
		if base == opaqueMarker {
			continue
		}
		e := metaOf(h)
		if orig, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
			name = path.Join(path.Dir(name), orig)
			e = &entry{typ: tar.TypeChar}
		}
		if old, ok := nodes[name]; ok && old.typ == tar.TypeDir && e.typ == tar.TypeDir {
			continue
		}
		delete(nodes, name)
		for p := range nodes {
			if strings.HasPrefix(p, name+"/") {
				delete(nodes, p)
			}
		}
		nodes[name] = e
	}
}

func sortedKeys(m map[string]*entry) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }
