package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/update"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/enginestore"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/hostappfs"
	"github.com/hostos/hostos/rootfs/tree"
	"github.com/hostos/hostos/tests/enginetest"
)

// balenaHostapp is a two-layer hostapp image of version: os-release where Yocto puts it, /boot/init, and
// in the second layer a whiteout (of /etc/old) and the version bump.
func balenaHostapp(t *testing.T, version string) v1.Image {
	t.Helper()
	type entry struct {
		name, link, data string
		typ              byte
	}
	layer := func(es ...entry) v1.Layer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range es {
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o755, Size: int64(len(e.data)), ModTime: time.Unix(1700000000, 0)}
			must(t, tw.WriteHeader(h))
			_, err := tw.Write([]byte(e.data))
			must(t, err)
		}
		must(t, tw.Close())
		b := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		must(t, err)
		return l
	}
	img, err := mutate.AppendLayers(empty.Image,
		layer(entry{name: "etc/", typ: tar.TypeDir}, entry{name: "etc/os-release", typ: tar.TypeSymlink, link: "../usr/lib/os-release"},
			entry{name: "etc/old", typ: tar.TypeReg, data: "old"}, entry{name: "usr/", typ: tar.TypeDir}, entry{name: "usr/lib/", typ: tar.TypeDir},
			entry{name: "usr/lib/os-release", typ: tar.TypeReg, data: "NAME=\"balenaOS\"\nVERSION_ID=0.0.1\n"},
			entry{name: "boot/", typ: tar.TypeDir}, entry{name: "boot/init", typ: tar.TypeReg, data: "#!/bin/sh\n"}),
		layer(entry{name: "etc/", typ: tar.TypeDir}, entry{name: "etc/.wh.old", typ: tar.TypeReg}, entry{name: "usr/", typ: tar.TypeDir},
			entry{name: "usr/lib/", typ: tar.TypeDir}, entry{name: "usr/lib/os-release", typ: tar.TypeReg, data: "NAME=\"balenaOS\"\nVERSION_ID=" + version + "\n"}))
	must(t, err)
	cfg, err := img.ConfigFile()
	must(t, err)
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: time.Unix(1700000000, 0)}
	cfg.OS, cfg.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cfg)
	must(t, err)
	return img
}

// TestHostappLayout: on an image whose slots hold balenaOS's hostapp layout, status and inspect read the
// version from the container current names; an update from a docker save archive writes the other
// slot the same way; the kernel's overlayfs, mounting it as mobynit does, shows the new OS; and a real
// engine on the slot's data root lists the container and its /boot volume where hostapp-update looks
// for them, and removes them as hostapp-update does before the next update.
func TestHostappLayout(t *testing.T) {
	t.Parallel()
	fx := newUpdateFixture(t, "genericx86-64-ext")
	img := fx.img

	// Slot A becomes a hostapp slot of 1.0.0, as balenaOS's image build (mkfs.hostapp) makes it.
	d, err := disk.Open(img, false)
	must(t, err)
	tg, err := update.OpenImage(d, "")
	must(t, err)
	slotA, slotB, labelA := tg.Slots[bootenv.SlotA], tg.Slots[bootenv.SlotB], tg.Labels[bootenv.SlotA]
	d.Close()
	stage := filepath.Join(t.TempDir(), "slot")
	must(t, os.Mkdir(stage, 0o755))
	st, err := hostappfs.Stage(context.Background(), &tree.Staged{Dir: stage}, enginestore.Image{Image: balenaHostapp(t, "1.0.0")})
	must(t, err)
	must(t, ext4.Make(context.Background(), img, slotA.Start, slotA.Size, ext4.Options{Label: labelA, InodeRatio: 8192}, st.Tree))

	if s := status(t, img, bootenv.SlotA); s.Versions[bootenv.SlotA] != "1.0.0" {
		t.Fatalf("status: versions %v, want A 1.0.0", s.Versions)
	}
	if r := inspectJSON(t, img); r.OSVersion != "1.0.0" || !strings.Contains(r.OSReleaseFrom, "hostapp") {
		t.Fatalf("inspect: %q from %q, want 1.0.0 from the hostapp container", r.OSVersion, r.OSReleaseFrom)
	}

	archive := filepath.Join(t.TempDir(), "hostapp-2.0.0.tar")
	tag, err := name.NewTag("balena-os/hostapp:2.0.0")
	must(t, err)
	must(t, tarball.WriteToFile(archive, tag, balenaHostapp(t, "2.0.0")))
	mustHostos(t, nil, nil, "update", "-q", "--image", img, archive)
	s := status(t, img, bootenv.SlotA)
	if s.Versions[bootenv.SlotB] != "2.0.0" || s.Env.Root != bootenv.SlotB || !s.Pending {
		t.Fatalf("after the update: %+v, want B 2.0.0 on trial", s)
	}
	e2fsckCopy(t, img, slotB.Start, slotB.Size)

	dockerd, client := enginetest.Need(t)
	mnt := enginetest.Mount(t, img, slotB.Start)
	if b, err := os.ReadFile(filepath.Join(mnt, "counter")); err != nil || string(b) != "2\n" {
		t.Errorf("slot B counter %q, %v; want 2 (slot A's 1, plus one)", b, err)
	}
	current, err := os.Readlink(filepath.Join(mnt, "current"))
	must(t, err)
	id := filepath.Base(current)

	// The kernel mounts the OS as mobynit does: overlay2/<mount-id>/diff over the resolved lower links,
	// init layers left out.
	mountID, err := os.ReadFile(filepath.Join(mnt, "balena/image/overlay2/layerdb/mounts", id, "mount-id"))
	must(t, err)
	ov := filepath.Join(mnt, "balena/overlay2")
	lowers := []string{filepath.Join(ov, string(mountID), "diff")}
	lower, err := os.ReadFile(filepath.Join(ov, string(mountID), "lower"))
	must(t, err)
	for _, l := range strings.Split(strings.TrimSpace(string(lower)), ":") {
		p, err := filepath.EvalSymlinks(filepath.Join(ov, l))
		must(t, err)
		if !strings.Contains(p, "-init/") {
			lowers = append(lowers, p)
		}
	}
	merged := t.TempDir()
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", "ro,lowerdir="+strings.Join(lowers, ":"), merged).CombinedOutput(); err != nil {
		t.Fatalf("mount the hostapp as mobynit does: %v: %s", err, out)
	}
	osr, err := os.ReadFile(filepath.Join(merged, "etc/os-release"))
	_, oldErr := os.Lstat(filepath.Join(merged, "etc/old"))
	bootInit, initErr := os.ReadFile(filepath.Join(mnt, "current/boot/init"))
	unmountDir(t, merged)
	if err != nil || !strings.Contains(string(osr), "VERSION_ID=2.0.0") || !os.IsNotExist(oldErr) {
		t.Errorf("overlay mount of slot B: os-release %q, %v; /etc/old: %v (want hidden by its whiteout)", osr, err, oldErr)
	}
	if initErr != nil || string(bootInit) != "#!/bin/sh\n" {
		t.Errorf("slot B current/boot/init (what rollback-health runs): %q, %v", bootInit, initErr)
	}

	e := enginetest.Start(t, dockerd, client, filepath.Join(mnt, "balena"))
	if ids := strings.Fields(e.Must("ps", "--all", "--quiet", "--no-trunc")); len(ids) != 1 || ids[0] != id {
		t.Errorf("engine lists containers %v, want the one current names, %s", ids, id)
	}
	boot := strings.TrimSpace(e.Must("inspect", "-f", `{{range .Mounts}}{{if eq .Destination "/boot"}}{{.Source}}{{end}}{{end}}`, id))
	if want, err := filepath.EvalSymlinks(filepath.Join(mnt, "current/boot")); err != nil || boot != want {
		t.Errorf("engine's /boot volume of the container at %q, current/boot at %q (%v)", boot, want, err)
	}
	if tags := strings.TrimSpace(e.Must("images", "--format", "{{.ID}}")); tags == "" {
		t.Error("engine lists no image")
	}
	// What the next hostapp-update does first.
	e.Must("rm", "--force", "--volumes", id)
	for _, im := range strings.Fields(e.Must("images", "--all", "--quiet")) {
		e.Must("rmi", "--force", im)
	}
	if left := strings.TrimSpace(e.Must("volume", "ls", "--quiet")); left != "" {
		t.Errorf("volumes left after rm --volumes: %s", left)
	}

	// Then it writes the slot with the engine: load, create, link. hostos reads what the engine wrote
	// (its container has an init layer, which mobynit and hostos leave out).
	archive3 := filepath.Join(t.TempDir(), "hostapp-3.0.0.tar")
	tag3, err := name.NewTag("balena-os/hostapp:3.0.0")
	must(t, err)
	must(t, tarball.WriteToFile(archive3, tag3, balenaHostapp(t, "3.0.0")))
	e.Must("load", "--quiet", "-i", archive3)
	id3 := strings.TrimSpace(e.Must("create", "-v", "/boot", "balena-os/hostapp:3.0.0", "/bin/sh"))
	vol := strings.TrimSpace(e.Must("inspect", "-f", `{{range .Mounts}}{{if eq .Destination "/boot"}}{{.Source}}{{end}}{{end}}`, id3))
	e.Stop()
	must(t, os.RemoveAll(filepath.Join(mnt, "hostapps")))
	must(t, os.MkdirAll(filepath.Join(mnt, "hostapps", id3), 0o755))
	rel, err := filepath.Rel(filepath.Join(mnt, "hostapps", id3), vol)
	must(t, err)
	must(t, os.Symlink(rel, filepath.Join(mnt, "hostapps", id3, "boot")))
	must(t, os.Symlink("hostapps/"+id3, filepath.Join(mnt, "current.new")))
	must(t, os.Rename(filepath.Join(mnt, "current.new"), filepath.Join(mnt, "current")))
	enginetest.UnmountUnder(t, mnt)
	if s := status(t, img, bootenv.SlotA); s.Versions[bootenv.SlotB] != "3.0.0" {
		t.Errorf("status of the slot the engine wrote: versions %v, want B 3.0.0", s.Versions)
	}
}

// unmountDir unmounts a mount the test made.
func unmountDir(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Errorf("umount %s: %v: %s", dir, err, out)
	}
}
