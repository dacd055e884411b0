package tree

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Open opens the archive src of the kind Detect told (a plain or compressed tar, an OCI image layout of
// one image or of a linux/amd64 one, a docker save archive) as the one tar stream Stage reads:
// decompressed, an image's layers flattened with their whiteouts applied, or the layer of an image of one
// layer as it is, whose whiteout entries (Whiteout tells them) Stage leaves out. It lets a caller look
// at what Stage would write, such as the entries and bytes of a root filesystem, before anything is
// written.
func Open(src string, kind Kind) (io.ReadCloser, error) {
	switch kind {
	case KindTar:
		return openTar(src, nil)
	case KindOCI, KindDockerArchive:
		return openImage(src, kind)
	}
	return nil, fmt.Errorf("root filesystem source %s: a %s source is no archive", src, kind)
}

// openHead opens the archive src and reads its first bytes, enough to tell its compression by them.
func openHead(src string) (*os.File, []byte, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, nil, fmt.Errorf("tar archive %s: %w", src, err)
	}
	head := make([]byte, len(magicXz))
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, nil, fmt.Errorf("tar archive %s: %w", src, err)
	}
	return f, head[:n], nil
}

// openTar opens a plain or compressed tar archive; progress, when not nil, is told the bytes of the file
// read so far (its total is the caller's to set, before: a decoder may read ahead at once). A compressed
// stream is decompressed ahead of its reader, on another core: by a program (igzip, xz) reading the
// file itself where one is installed, else in this process.
func openTar(src string, progress *progressReader) (io.ReadCloser, error) {
	f, head, err := openHead(src)
	if err != nil {
		return nil, err
	}
	return openTarFile(src, f, head, progress)
}

// openTarFile is openTar of the archive src open as f, whose first bytes are head.
func openTarFile(src string, f *os.File, head []byte, progress *progressReader) (io.ReadCloser, error) {
	if progress != nil {
		progress.r = f
	}
	var format string
	var args []string
	switch {
	case bytes.HasPrefix(head, magicGzip) && haveIgzip():
		format, args = "gzip", []string{"igzip", "--decompress", "--stdout"}
	case bytes.HasPrefix(head, magicXz):
		format, args = "xz", []string{"xz", "--decompress", "--stdout", "--threads=0"}
	}
	if format != "" {
		// The program reads the file itself, sharing its offset, which tells the progress.
		t, err := newToolReader(f, args[0], args[1:]...)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("tar archive %s: %s: %w", src, format, err)
		}
		return &archiveFile{Reader: newStreamReader(t.out), f: f, closeFn: t.Close, shared: true}, nil
	}
	var in io.Reader = f
	if progress != nil {
		in = progress
	}
	br := bufio.NewReaderSize(in, 1<<20)
	var r io.Reader
	var closeFn func() error
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("tar archive %s: gzip: %w", src, err)
		}
		ra := newReadAhead(zr)
		r, closeFn = newChunkStream(ra), func() error { ra.Close(); return zr.Close() }
	case bytes.HasPrefix(head, magicZstd):
		// One decoder, in the goroutine of a readAhead: the decoder's own goroutines, with the default
		// concurrency, took 0.3 s more of the two cores for 300 MB, and staged no sooner.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("tar archive %s: zstd: %w", src, err)
		}
		ra := newReadAhead(zr)
		r, closeFn = newChunkStream(ra), func() error { ra.Close(); zr.Close(); return nil }
	default:
		r, closeFn = br, func() error { return nil }
	}
	return &archiveFile{Reader: r, f: f, closeFn: closeFn}, nil
}

// archiveFile reads the decompressed stream of an archive file.
type archiveFile struct {
	io.Reader
	f       *os.File
	closeFn func() error
	// shared tells a file read by a program, whose offset is the program's.
	shared bool
}

// offset is how far into the file the program reading it has read.
func (c *archiveFile) offset() int64 {
	off, err := c.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0
	}
	return off
}

func (c *archiveFile) Close() error {
	err := c.closeFn()
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// haveIgzip tells whether ISA-L's igzip is installed: it inflates about three times as fast as the Go
// decoder (0.23 s against 0.70 s for 300 MB here), and gzip decompression is most of a .tar.gz build.
// A variable, so that tests can take the Go decoder where igzip is installed.
var haveIgzip = sync.OnceValue(func() bool {
	_, err := exec.LookPath("igzip")
	return err == nil
})

// toolReader decompresses with a program (xz, igzip) reading r, on another core: their decoders are
// several times faster than the Go ones. out reads its output.
type toolReader struct {
	out    io.ReadCloser
	name   string
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

func newToolReader(r io.Reader, name string, args ...string) (*toolReader, error) {
	t := &toolReader{name: name, cmd: exec.Command(name, args...)}
	t.cmd.Stdin = r
	t.cmd.Stderr = &t.stderr
	out, err := startTool(t.cmd, t.wait)
	if err != nil {
		return nil, err
	}
	t.out = out
	return t, nil
}

// wait turns a failing run of the program into an error, once its output has ended.
func (t *toolReader) wait() error {
	if err := t.cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w: %s", t.name, err, strings.TrimSpace(t.stderr.String()))
	}
	return nil
}

func (t *toolReader) Close() error {
	if t.cmd.ProcessState == nil {
		t.cmd.Process.Kill()
		t.cmd.Wait()
	}
	return t.out.Close()
}

// openImage flattens an OCI image layout or docker save archive into one tar stream, whiteouts applied;
// the stream of an image of one layer is its layer, read as a tar archive is (layer.go), with the
// whiteout entries that hide nothing in it.
func openImage(src string, kind Kind) (io.ReadCloser, error) {
	img, err := loadImage(src, kind)
	if err != nil {
		return nil, err
	}
	layers, err := imageLayers(src, kind, img)
	if err != nil {
		return nil, err
	}
	if len(layers) != 1 {
		return flatten(img), nil
	}
	switch l := layers[0]; {
	case l.path != src:
		return openTar(l.path, nil) // the blob file of an OCI layout
	default:
		f, err := os.Open(src) // a plain member of a docker save archive
		if err != nil {
			return nil, fmt.Errorf("docker archive %s: %w", src, err)
		}
		return &archiveFile{Reader: bufio.NewReaderSize(io.NewSectionReader(f, l.off, l.size), 1<<20), f: f, closeFn: func() error { return nil }}, nil
	}
}

// loadImage opens the image of an OCI layout or a docker save archive.
func loadImage(src string, kind Kind) (v1.Image, error) {
	if kind == KindOCI {
		return layoutImage(src)
	}
	img, err := tarball.ImageFromPath(src, nil)
	if err != nil {
		return nil, fmt.Errorf("docker archive %s: %w", src, err)
	}
	return img, nil
}

// flatten is the tar stream of img's layers, whiteouts applied.
func flatten(img v1.Image) io.ReadCloser {
	// The flattening writes into a pipe that holds nothing: read ahead of the stager, in chunks it
	// writes bodies from, so that flattening and staging run on both cores at once.
	rc := mutate.Extract(img)
	ra := newReadAhead(rc)
	return &imageStream{streamReader: newChunkStream(ra), close: func() error { err := rc.Close(); ra.Close(); return err }}
}

// imageStream is the flattened tar stream of an image, read ahead.
type imageStream struct {
	*streamReader
	close func() error
}

func (s *imageStream) Close() error { return s.close() }

// layoutImage picks the image of an OCI layout: the only one, or the linux/amd64 one.
func layoutImage(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	images, err := Images(idx)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	var pick []IndexImage
	if len(images) == 1 {
		pick = images
	} else {
		for _, f := range images {
			if p := f.Desc.Platform; p != nil && p.OS == "linux" && p.Architecture == "amd64" {
				pick = append(pick, f)
			}
		}
	}
	switch len(pick) {
	case 0:
		return nil, fmt.Errorf("OCI layout %s: %d images and none for linux/amd64", dir, len(images))
	case 1:
	default:
		return nil, fmt.Errorf("OCI layout %s: %d images for linux/amd64", dir, len(pick))
	}
	img, err := pick[0].Index.Image(pick[0].Desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: image %s: %w", dir, pick[0].Desc.Digest, err)
	}
	return img, nil
}

// IndexImage is an image manifest found in an OCI image index, with the index that holds it.
type IndexImage struct {
	Index v1.ImageIndex
	Desc  v1.Descriptor
}

// Images lists the image manifests of idx and of the indexes nested in it, four deep at most.
func Images(idx v1.ImageIndex) ([]IndexImage, error) {
	var images []IndexImage
	var walk func(v1.ImageIndex, int) error
	walk = func(ix v1.ImageIndex, depth int) error {
		m, err := ix.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range m.Manifests {
			switch {
			case d.MediaType.IsImage():
				images = append(images, IndexImage{ix, d})
			case d.MediaType.IsIndex() && depth < 4:
				child, err := ix.ImageIndex(d.Digest)
				if err != nil {
					return err
				}
				if err := walk(child, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return images, walk(idx, 0)
}
