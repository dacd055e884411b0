//go:build unix

package source

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A path that is neither a file nor a directory, such as a pipe, is read once as a stream.
func TestOpenPipe(t *testing.T) {
	needTools(t)
	b := makeBundle(t, rpi4, nil)
	rootTar := tarBytes(t, rootEntries())
	for name, content := range map[string][]byte{"bundle": b, "tar": rootTar} {
		t.Run(name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			go func() {
				f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
				if err != nil {
					return
				}
				f.Write(content)
				f.Close()
			}()
			tmp := t.TempDir()
			p := mustOpen(t, fifo, Options{RootSize: slotSize, TempDir: tmp})
			img, _ := readPayload(t, p)
			if readFile(t, img, "/bin/hello") != hello {
				t.Error("content")
			}
			if name == "bundle" && p.Version != "3.1.4" {
				t.Errorf("payload %+v", p)
			}
		})
	}
}
