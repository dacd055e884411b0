package bundle

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden bundle in testdata")

// TestGolden pins the bytes of a small signed bundle with uncompressed payloads, so that any change to
// the tar layout, the metadata encoding or the signature shows up as a diff (zstd output is left out:
// it may change with the compression library).
func TestGolden(t *testing.T) {
	pub, priv := testKey(t, 1)
	f := newFixture(t, true)
	f.image = testImage(2048, 5)
	f.rootfs = f.image
	f.m.Rootfs = Payload{Name: "rootfs.ext4", Filesystem: FilesystemExt4, Compression: CompressionNone,
		Size: 2048, SHA256: digest(f.image), ImageSize: 2048, ImageSHA256: digest(f.image)}
	got := f.write(t, priv)
	golden := filepath.Join("testdata", "golden.hostos")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("bundle differs from %s (go test ./hostapp/bundle -run TestGolden -args -update to accept)", golden)
	}
	res, err := readAll(want, WithKeys(pub))
	if err != nil {
		t.Fatal(err)
	}
	if res.image != digest(f.image) || len(res.files) != len(testBootFiles()) {
		t.Errorf("golden bundle reads back as %+v", res)
	}
}
