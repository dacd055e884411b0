package tree

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"
)

// ErrUnsafePath is returned for an archive entry that would land outside the root.
var ErrUnsafePath = errors.New("unsafe path")

// Stage extracts a tar archive, an OCI image layout or a docker save archive into dir (created, or empty)
// and lists the fixups the filesystem needs afterwards. Nothing is written outside dir: parents are opened
// without following symlinks. On error dir holds a partial extraction for the caller to remove.
// progress, when not nil, is called with bytes read so far and the total, or 0 when the total is unknown.
func Stage(ctx context.Context, src, dir string, progress func(done, total int64)) (*Staged, error) {
	kind, err := Detect(src)
	if err != nil {
		return nil, err
	}
	return StageKind(ctx, src, kind, dir, progress)
}

// ErrNoRoom is returned by StageWithin when the staged tree would take more room than it was given.
var ErrNoRoom = errors.New("no room to stage")

// StageKind is Stage of a source whose kind the caller already has from Detect, which then reads no
// part of src twice.
func StageKind(ctx context.Context, src string, kind Kind, dir string, progress func(done, total int64)) (*Staged, error) {
	return StageWithin(ctx, src, kind, dir, 0, progress)
}

// StageWithin is StageKind into a directory with room for room bytes (0: unbounded), as a tmpfs
// counts them: each entry's inode and name, and each regular file's body in whole pages. It fails with
// an error wrapping ErrNoRoom before writing the entry that would take more.
func StageWithin(ctx context.Context, src string, kind Kind, dir string, room int64, progress func(done, total int64)) (*Staged, error) {
	var p *progressReader
	if progress != nil {
		p = &progressReader{fn: progress}
	}
	// A plain tar is read straight from its file: its headers through a skipReader, and its file bodies,
	// offered to the stager as a fileBody, copied from the file by the kernel. So are the layers of an
	// image, tar archives in file regions (layer.go), lowest first, whose bytes are hashed meanwhile.
	// An image whose layers are not all in such regions is flattened into one stream.
	var layers []*imageLayer
	var flat io.ReadCloser
	switch kind {
	case KindTar:
		layers = []*imageLayer{{path: src}}
		if p != nil {
			if fi, err := os.Stat(src); err == nil {
				p.total = fi.Size()
			}
		}
	case KindOCI, KindDockerArchive:
		img, err := loadImage(src, kind)
		if err != nil {
			return nil, err
		}
		if layers, err = imageLayers(src, kind, img); err != nil {
			return nil, err
		}
		if layers == nil {
			flat = flatten(img)
			defer flat.Close()
		}
	default:
		return nil, fmt.Errorf("stage %s: a %s source is used as it is, not staged", src, kind)
	}
	if p != nil {
		for _, l := range layers {
			p.total += l.size // 0 for a tar archive, whose size is the total
		}
	}
	s, err := newStager(dir)
	if err != nil {
		return nil, err
	}
	defer s.close()
	g := &staging{ctx: ctx, src: src, kind: kind, s: s, room: room, p: p}
	if flat != nil {
		if p != nil {
			p.r = flat
		}
		err = g.stream(flat, nil, nil)
	}
	for i, l := range layers {
		s.layer = i
		if err = g.layer(l); err != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if p != nil {
		p.report()
	}
	st, err := s.finish()
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", src, err)
	}
	return st, nil
}

// staging is what StageWithin stages from, and how far it got.
type staging struct {
	ctx  context.Context
	src  string
	kind Kind
	s    *stager
	room int64
	p    *progressReader
	used int64 // bytes staged, as stagedBytes counts them, removed ones included (see stager.freed)
	done int64 // bytes of the layers before the current one, for the progress
}

// layer stages the tar archive of l (the whole file of a plain or compressed tar, an OCI blob, a region
// of a docker save archive), and checks its digest when it has one.
func (g *staging) layer(l *imageLayer) error {
	rc, plain, err := openTarRegion(l.path, l.off, l.size, g.p)
	if err != nil {
		return err
	}
	defer rc.Close()
	var verified func() error
	if l.digest.Hex != "" {
		var stop func()
		verified, stop = l.verify()
		defer stop()
	}
	if err := g.stream(rc, plain, l); err != nil {
		return err
	}
	if verified != nil {
		if err := verified(); err != nil {
			return fmt.Errorf("stage %s: %w", g.src, err)
		}
	}
	if g.p != nil {
		// A tar archive given as a file ends where its stream ended; a layer, at its size.
		if l.size > 0 {
			g.p.done = g.done + l.size
		}
		g.done = g.p.done
	}
	return nil
}

// stream stages the tar stream rc: read by the skipReader plain when it is a plain tar in a file, the
// region of l (nil for a flattened image).
func (g *staging) stream(rc io.ReadCloser, plain *skipReader, l *imageLayer) error {
	p, s, src := g.p, g.s, g.src
	var base int64
	if l != nil {
		base = l.off
	}
	var r io.Reader = rc
	if p != nil && l == nil {
		r = p
	}
	// The tar headers are small reads: buffer them, and the file bodies that come with them. A
	// decompressed stream (a streamReader, on Linux) buffers them itself, and writes the bodies for the
	// stager from its buffers: a streamBody. A file that a program decompresses tells the progress by
	// its offset, looked up every progressStep of the stream.
	var tr *tar.Reader
	var stream bodyStream
	var shared *archiveFile
	if a, ok := rc.(*archiveFile); ok {
		stream, _ = a.Reader.(bodyStream)
		if a.shared && p != nil {
			shared = a
		}
	} else {
		stream, _ = rc.(bodyStream)
	}
	switch {
	case plain != nil:
		r = plain
		tr = tar.NewReader(plain)
	case stream != nil:
		tr = tar.NewReader(stream)
	default:
		tr = tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	}
	var streamed, looked int64
	var body fileBody
	var sbody streamBody
	for {
		if err := g.ctx.Err(); err != nil {
			return fmt.Errorf("stage %s: %w", src, err)
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("stage %s: read archive: %w", src, err)
		}
		if g.kind != KindTar && Whiteout(h.Name) {
			// In the lowest layer, a whiteout hides nothing; above, it removes what it hides.
			if s.layer > 0 {
				if err := s.whiteout(h); err != nil {
					return fmt.Errorf("stage %s: %w", src, err)
				}
			}
			continue
		}
		// What a later entry or layer replaced or whited out no longer takes room.
		if g.used += stagedBytes(h); g.room > 0 && g.used-s.freed > g.room {
			return fmt.Errorf("stage %s: %d MiB staged and more to come: %w", src, g.used>>20, ErrNoRoom)
		}
		var br io.Reader = tr
		if plain != nil && (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA) && !sparse(h) {
			body = fileBody{Reader: tr, File: plain.f.(*os.File), Off: plain.pos, Size: h.Size}
			br = &body
		}
		if stream != nil && (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA) && !sparse(h) {
			sbody = streamBody{Reader: tr, stream: stream, Size: h.Size}
			br = &sbody
		}
		if err := s.add(h, br); err != nil {
			return fmt.Errorf("stage %s: %w", src, err)
		}
		if plain != nil && p != nil {
			if p.done = g.done + plain.pos - base; p.done-p.last >= progressStep {
				p.report()
			}
		}
		if streamed += h.Size; shared != nil && streamed-looked >= progressStep {
			looked = streamed
			if p.done = g.done + shared.offset(); p.done-p.last >= progressStep {
				p.report()
			}
		}
	}
	// Drain what follows the end-of-archive marker so compressed streams are checked to their end.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("stage %s: read archive: %w", src, err)
	}
	if p != nil {
		if plain != nil {
			p.done = g.done + plain.pos - base
		}
		if shared != nil {
			p.done = g.done + shared.offset()
		}
	}
	return nil
}

// fileBody is the body of a regular file of a plain tar: the reader of the entry, and where its Size
// bytes lie in File, for a stager that copies them from there instead of reading them (the tar reader
// then skips them).
type fileBody struct {
	io.Reader
	File      *os.File
	Off, Size int64
}

// bodyStream is a decompressed tar stream that writes a regular file's body to its file itself, past
// the tar reader reading the stream, which then skips it with Seek.
type bodyStream interface {
	io.ReadSeeker
	// writeBody writes the next size bytes of the stream to the open file fd.
	writeBody(fd int, size int64) error
}

// streamBody is the body of a regular file in a bodyStream: the reader of the entry, and the stream
// for a stager that has it write the Size bytes instead of reading them.
type streamBody struct {
	io.Reader
	stream bodyStream
	Size   int64
}

// sparse tells a GNU sparse file, whose body in the archive is not its content.
func sparse(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// plainTar closes the file a skipReader reads.
type plainTar struct {
	*skipReader
	f *os.File
}

func (p plainTar) Close() error { return p.f.Close() }

// openTarRegion opens the tar archive src, or the one in its size bytes from off when size is not 0 (a
// layer in a docker save archive, never compressed): an uncompressed one to be read from its file by the
// skipReader returned, a compressed one by openTar, which tells progress, when not nil, what it reads.
func openTarRegion(src string, off, size int64, progress *progressReader) (io.ReadCloser, *skipReader, error) {
	f, head, err := openHead(src)
	if err != nil {
		return nil, nil, err
	}
	if compressedHead(head) {
		rc, err := openTarFile(src, f, head, progress)
		return rc, nil, err
	}
	plain := &skipReader{f: f, buf: make([]byte, 32<<10), pos: off}
	if size > 0 {
		plain.end = off + size
	}
	return plainTar{plain, f}, plain, nil
}

// stagedBytes is what the entry h takes in a tmpfs, about: its inode and name, and its body in pages.
func stagedBytes(h *tar.Header) int64 {
	return stagedSize(h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA, h.Size)
}

// stagedSize is what an entry takes in a tmpfs, about: its inode and name, and a regular file's size
// bytes in pages.
func stagedSize(regular bool, size int64) int64 {
	const inode, page = 1 << 10, 4 << 10
	n := int64(inode)
	if regular {
		n += (size + page - 1) / page * page
	}
	return n
}

type progressReader struct {
	r                 io.Reader
	done, total, last int64
	fn                func(done, total int64)
}

const progressStep = 1 << 20

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.done-p.last >= progressStep {
		p.report()
	}
	return n, err
}

func (p *progressReader) report() {
	p.last = p.done
	p.fn(p.done, p.total)
}

// CleanName turns an archive entry's name into a clean path relative to the root ("" for the root itself),
// refusing one that climbs out with ".." (ErrUnsafePath) or holds a character debugfs cannot address.
func CleanName(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("entry %q: %w", name, ErrUnsafePath)
		}
	}
	if strings.ContainsAny(n, "\n\r\x00") {
		return "", fmt.Errorf("entry %q: file name holds a line break or NUL, which debugfs cannot address", name)
	}
	n = path.Clean(n)
	if n == "." {
		return "", nil
	}
	return n, nil
}

// split cuts a clean relative path into its directory ("" for the root) and its last element.
func split(name string) (string, string) {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return "", name
}

// rootFixups set the root directory, whose metadata mkfs.ext4 -d does not copy.
func rootFixups(uid, gid, perm uint32, mtime time.Time) []Fixup {
	return []Fixup{
		{Op: OpOwner, Path: "/", UID: uid, GID: gid},
		{Op: OpMode, Path: "/", Mode: 0o040000 | perm}, // S_IFDIR: a directory
		{Op: OpMtime, Path: "/", Time: mtime},
	}
}
