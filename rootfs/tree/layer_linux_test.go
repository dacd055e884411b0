package tree

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeOCI writes an OCI layout of one image whose one layer is blob, of mediaType, holding the tar raw.
func writeOCI(t *testing.T, dir string, raw, blob []byte, mediaType string) {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) string {
		h := sha(b)
		if err := os.WriteFile(filepath.Join(blobs, h), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return h
	}
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}`, sha(raw)))
	cfgHex := put(cfg)
	layerHex := put(blob)
	man := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},`+
		`"layers":[{"mediaType":%q,"digest":"sha256:%s","size":%d}]}`, cfgHex, len(cfg), mediaType, layerHex, len(blob)))
	manHex := put(man)
	index := fmt.Sprintf(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d}]}`, manHex, len(man))
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeDockerSave writes a docker save archive of one image whose one layer is the tar layer, with the
// diff id diffID, and members after the layer, as docker writes them.
func writeDockerSave(t *testing.T, path string, layer []byte, diffID string) {
	t.Helper()
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}`, diffID))
	cfgName := sha(cfg) + ".json"
	layerName := strings.Repeat("ab", 32) + "/layer.tar"
	man := []byte(fmt.Sprintf(`[{"Config":%q,"RepoTags":["hostos/test:1"],"Layers":[%q]}]`, cfgName, layerName))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, m := range []struct {
		name string
		body []byte
	}{{strings.Repeat("ab", 32) + "/VERSION", []byte("1.0")}, {layerName, layer}, {cfgName, cfg}, {"manifest.json", man}, {"repositories", []byte("{}")}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: m.name, Mode: 0o644, Size: int64(len(m.body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// The one layer of an OCI layout (plain, gzip, zstd) or of a docker save archive is staged as the same
// tar archive is staged on its own, whiteouts left out, with the progress of the layer's bytes; a layer
// whose bytes do not have its digest, or a blob of another size than its manifest says, fails.
func TestStageOneLayerImages(t *testing.T) {
	d := t.TempDir()
	entries := streamEntries()
	plain := filepath.Join(d, "r.tar")
	writeTar(t, plain, entries)
	st, err := Stage(context.Background(), plain, filepath.Join(d, "plain"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want, wantFixups := stagedState(t, st)

	// The layer: the same entries and whiteouts, which hide nothing in a lowest layer.
	withWhiteouts := append([]entry{reg("etc/.wh.gone", ""), reg("usr/.wh..wh..opq", "")}, entries...)
	layerPath := filepath.Join(d, "layer.tar")
	writeTar(t, layerPath, withWhiteouts)
	raw, err := os.ReadFile(layerPath)
	if err != nil {
		t.Fatal(err)
	}
	// A layer written without the end-of-archive marker, which ends with the docker member holding it.
	unterminated := raw[:bytes.LastIndex(raw, []byte("last"))+512]

	gz, zs := gzipZstd(t, raw)
	tampered := bytes.Clone(raw)
	i := bytes.Index(tampered, []byte("mine mine"))
	tampered[i] = 'M' // a body byte: the tar stays well formed, the digest does not

	type source struct {
		name string
		make func(dir string) string
		size int64  // the progress total, 0 for none checked
		fail string // the error staging must fail with
	}
	oci := func(blob []byte, mt string) func(string) string {
		return func(dir string) string {
			p := filepath.Join(dir, "oci")
			writeOCI(t, p, raw, blob, mt)
			return p
		}
	}
	docker := func(layer []byte, diffID string) func(string) string {
		return func(dir string) string {
			p := filepath.Join(dir, "docker.tar")
			writeDockerSave(t, p, layer, diffID)
			return p
		}
	}
	sources := []source{
		{"oci-plain", oci(raw, "application/vnd.oci.image.layer.v1.tar"), int64(len(raw)), ""},
		{"oci-gzip", oci(gz, "application/vnd.oci.image.layer.v1.tar+gzip"), int64(len(gz)), ""},
		{"oci-zstd", oci(zs, "application/vnd.oci.image.layer.v1.tar+zstd"), int64(len(zs)), ""},
		{"docker-save", docker(raw, sha(raw)), int64(len(raw)), ""},
		{"docker-save-unterminated", docker(unterminated, sha(unterminated)), int64(len(unterminated)), ""},
		{"docker-save-tampered", docker(tampered, sha(raw)), 0, "hash to sha256:" + sha(tampered)},
		{"oci-tampered", func(dir string) string {
			p := oci(raw, "application/vnd.oci.image.layer.v1.tar")(dir)
			if err := os.WriteFile(filepath.Join(p, "blobs", "sha256", sha(raw)), tampered, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, 0, "hash to sha256:" + sha(tampered)},
		{"oci-fifo", func(dir string) string {
			p := oci(raw, "application/vnd.oci.image.layer.v1.tar")(dir)
			blob := filepath.Join(p, "blobs", "sha256", sha(raw))
			os.Remove(blob)
			if err := syscall.Mkfifo(blob, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, 0, "is no regular file"},
		{"oci-short", func(dir string) string {
			p := oci(raw, "application/vnd.oci.image.layer.v1.tar")(dir)
			if err := os.Truncate(filepath.Join(p, "blobs", "sha256", sha(raw)), int64(len(raw)-512)); err != nil {
				t.Fatal(err)
			}
			return p
		}, 0, fmt.Sprintf("holds %d bytes, its manifest says %d", len(raw)-512, len(raw))},
	}
	for _, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			dd := t.TempDir()
			src := s.make(dd)
			var done, total int64
			st, err := Stage(context.Background(), src, filepath.Join(dd, "stage"), func(d, t int64) { done, total = d, t })
			if s.fail != "" {
				if err == nil || !strings.Contains(err.Error(), s.fail) {
					t.Fatalf("error %v, want one containing %q", err, s.fail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sameStaged(t, st, want, wantFixups)

			// Open reads the same layer, whiteout entries and all.
			kind, err := Detect(src)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := Open(src, kind)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			tr := tar.NewReader(rc)
			var names []string
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, h.Name)
			}
			if len(names) != len(withWhiteouts) {
				t.Fatalf("Open: %d entries, want the layer's %d", len(names), len(withWhiteouts))
			}
			for i, e := range withWhiteouts {
				if names[i] != e.hdr.Name {
					t.Errorf("Open: entry %d is %q, want %q", i, names[i], e.hdr.Name)
				}
			}
			if done != s.size || total != s.size {
				t.Errorf("progress %d of %d, want %d of %d", done, total, s.size, s.size)
			}
		})
	}
}
