package hostappfs

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/hostos/hostos/rootfs/enginestore"
	"github.com/hostos/hostos/rootfs/tree"
)

// Staged is a hostapp slot written by Stage.
type Staged struct {
	// Tree is the slot's staged tree with its fixups: pass it to ext4.Estimate and ext4.Make.
	Tree *tree.Staged
	// Container is the id of the hostapp's container, which current names.
	Container string
	// Image is the image as the store holds it.
	Image enginestore.Written
}

// StageOption changes what Stage writes.
type StageOption func(*stageSettings)

type stageSettings struct {
	counter int
	store   []enginestore.Option
}

// WithCounter sets the slot's update counter, which hostapp-update makes the running slot's plus one;
// default 1, a first install's.
func WithCounter(n int) StageOption { return func(s *stageSettings) { s.counter = n } }

// WithStoreOptions passes options (progress, log, time) to the engine store writer; its data root is
// always DataRoot.
func WithStoreOptions(o ...enginestore.Option) StageOption {
	return func(s *stageSettings) { s.store = append(s.store, o...) }
}

// Stage writes img into root, an empty staged tree for a root slot, in balenaOS's hostapp layout: the
// image in an engine store at DataRoot, a container of it with the image's /boot copied into the
// container's /boot volume, and the links mobynit and balena's scripts follow (current, boot, sbin/init).
func Stage(ctx context.Context, root *tree.Staged, img enginestore.Image, opts ...StageOption) (*Staged, error) {
	s := &stageSettings{counter: 1}
	for _, o := range opts {
		o(s)
	}
	if s.counter < 1 {
		return nil, fmt.Errorf("hostapp slot counter %d: not a count", s.counter)
	}
	if root == nil || root.Dir == "" {
		return nil, errors.New("hostapp slot: no staged tree")
	}
	if names, err := os.ReadDir(root.Dir); err != nil || len(names) > 0 {
		if err == nil {
			err = errors.New("not empty")
		}
		return nil, fmt.Errorf("hostapp slot: staging directory: %w", err)
	}
	cfg, err := img.Image.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("hostapp image config: %w", err)
	}
	stamp := cfg.Created.Time
	if stamp.IsZero() {
		stamp = time.Unix(0, 0)
	}
	res, err := enginestore.Add(ctx, root, []enginestore.Image{img}, append(append([]enginestore.Option{enginestore.WithTime(stamp)}, s.store...), enginestore.WithDataRoot(DataRoot))...)
	if err != nil {
		return nil, err
	}
	w := res.Images[0]
	if len(w.Layers) == 0 {
		return nil, errors.New("hostapp image: no layers")
	}
	top := w.Layers[len(w.Layers)-1]
	sw := &slotWriter{dir: root.Dir, stamp: stamp, root: os.Geteuid() == 0}
	ids := newIDs(w.ID)

	if err := sw.layout(ids, top, s.counter); err != nil {
		return nil, err
	}
	if err := sw.container(ids, w, cfg); err != nil {
		return nil, err
	}
	if err := sw.bootVolume(ctx, img.Image, DataRoot+"/volumes/"+ids.volume+"/_data"); err != nil {
		return nil, err
	}
	if err := sw.finish(); err != nil {
		return nil, err
	}
	fixups := append(res.Staged.Fixups, sw.fixups...)
	t, err := tree.Scan(root.Dir)
	if err != nil {
		return nil, err
	}
	t.Fixups = append(t.Fixups, fixups...)
	for _, f := range t.Fixups {
		if f.Op == tree.OpMknod {
			t.Entries++
		}
	}
	return &Staged{Tree: t, Container: ids.container, Image: w}, nil
}

// ids are the names the engine draws at random, derived here from the image id.
type ids struct {
	container, mount, link, volume string
}

func newIDs(image v1.Hash) ids {
	h := func(what string) string {
		sum := sha256.Sum256([]byte("hostos hostapp " + what + " " + image.String()))
		return hex.EncodeToString(sum[:])
	}
	return ids{
		container: h("container"),
		mount:     h("mount"),
		link:      enginestore.ShortName("hostos hostapp link " + image.String()),
		volume:    h("volume"),
	}
}

// slotWriter writes the slot's own files into the staging directory.
type slotWriter struct {
	dir    string
	stamp  time.Time
	root   bool // running as root: what is created belongs to root already
	fixups []tree.Fixup
	// made lists the paths written, for their times; the boot volume's entries carry their own.
	made []string
	// times are the tar times of the boot volume's entries.
	times map[string]time.Time
}

func (sw *slotWriter) host(rel string) string { return filepath.Join(sw.dir, filepath.FromSlash(rel)) }

func (sw *slotWriter) owner(rel string, uid, gid int) {
	if sw.root && uid == 0 && gid == 0 {
		return
	}
	sw.fixups = append(sw.fixups, tree.Fixup{Op: tree.OpOwner, Path: "/" + rel, UID: uint32(uid), GID: uint32(gid)})
}

func (sw *slotWriter) mkdir(rel string, mode os.FileMode) error {
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := os.Lstat(sw.host(p))
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("hostapp slot: %s: not a directory", p)
			}
			continue
		}
		m := os.FileMode(0o755)
		if i == len(parts)-1 {
			m = mode
		}
		if err := os.Mkdir(sw.host(p), m); err != nil {
			return fmt.Errorf("hostapp slot: %w", err)
		}
		if err := os.Chmod(sw.host(p), m); err != nil {
			return fmt.Errorf("hostapp slot: %w", err)
		}
		sw.owner(p, 0, 0)
		sw.made = append(sw.made, p)
	}
	return nil
}

func (sw *slotWriter) file(rel string, data []byte, mode os.FileMode) error {
	if err := sw.mkdir(path.Dir(rel), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(sw.host(rel), data, mode); err != nil {
		return fmt.Errorf("hostapp slot: %w", err)
	}
	if err := os.Chmod(sw.host(rel), mode); err != nil {
		return fmt.Errorf("hostapp slot: %w", err)
	}
	sw.owner(rel, 0, 0)
	sw.made = append(sw.made, rel)
	return nil
}

func (sw *slotWriter) symlink(rel, target string) error {
	if err := sw.mkdir(path.Dir(rel), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(target, sw.host(rel)); err != nil {
		return fmt.Errorf("hostapp slot: %w", err)
	}
	sw.owner(rel, 0, 0)
	sw.made = append(sw.made, rel)
	return nil
}

// layout writes what hostapp-update makes around the store: the mount points, the links and the counter,
// and the container's overlay2 directory and layerdb mount.
func (sw *slotWriter) layout(id ids, top enginestore.Layer, counter int) error {
	for _, d := range []string{"dev", "etc", "hostapps", "mnt/state", "proc", "run", "sbin", "sys", "tmp"} {
		if err := sw.mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := sw.file("etc/machine-id", nil, 0o644); err != nil {
		return err
	}
	links := [][2]string{
		{"sbin/init", "../current/boot/init"},
		{"boot", "current/boot"},
		{"hostapps/" + id.container + "/boot", "../../" + DataRoot + "/volumes/" + id.volume + "/_data"},
		{Current, "hostapps/" + id.container},
	}
	for _, l := range links {
		if err := sw.symlink(l[0], l[1]); err != nil {
			return err
		}
	}
	if err := sw.file("counter", []byte(strconv.Itoa(counter)+"\n"), 0o644); err != nil {
		return err
	}

	// The container's read-write layer: an empty diff over the image's layers.
	ov := DataRoot + "/overlay2/"
	topLink, err := os.ReadFile(sw.host(ov + top.CacheID + "/link"))
	if err != nil {
		return fmt.Errorf("hostapp slot: image top layer: %w", err)
	}
	lower := "l/" + strings.TrimSpace(string(topLink))
	if b, err := os.ReadFile(sw.host(ov + top.CacheID + "/lower")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		lower += ":" + strings.TrimSpace(string(b))
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hostapp slot: image top layer: %w", err)
	}
	if err := sw.mkdir(ov+id.mount, 0o710); err != nil {
		return err
	}
	if err := sw.mkdir(ov+id.mount+"/diff", 0o755); err != nil {
		return err
	}
	if err := sw.mkdir(ov+id.mount+"/work", 0o700); err != nil {
		return err
	}
	if err := sw.file(ov+id.mount+"/link", []byte(id.link), 0o644); err != nil {
		return err
	}
	if err := sw.file(ov+id.mount+"/lower", []byte(lower), 0o644); err != nil {
		return err
	}
	if err := sw.symlink(ov+"l/"+id.link, "../"+id.mount+"/diff"); err != nil {
		return err
	}
	mounts := DataRoot + "/image/overlay2/layerdb/mounts/" + id.container
	if err := sw.mkdir(mounts, 0o755); err != nil {
		return err
	}
	if err := sw.file(mounts+"/mount-id", []byte(id.mount), 0o644); err != nil {
		return err
	}
	return sw.file(mounts+"/parent", []byte(top.ChainID.String()), 0o644)
}

// container writes the container's config as "balena create --runtime=bare --volume=/boot <image>
// /bin/sh" leaves it.
func (sw *slotWriter) container(id ids, w enginestore.Written, cfg *v1.ConfigFile) error {
	created := sw.stamp.UTC().Format(time.RFC3339Nano)
	zero := "0001-01-01T00:00:00Z"
	c := cfg.Config
	labels := c.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	dir := DataRoot + "/containers/" + id.container
	conf := map[string]any{
		"StreamConfig": map[string]any{},
		"State": map[string]any{
			"Running": false, "Paused": false, "Restarting": false, "OOMKilled": false,
			"RemovalInProgress": false, "Dead": false, "Pid": 0, "ExitCode": 0, "Error": "",
			"StartedAt": zero, "FinishedAt": zero, "Health": nil,
		},
		"ID":      id.container,
		"Created": created,
		"Managed": false,
		"Path":    "/bin/sh",
		"Args":    []string{},
		"Config": map[string]any{
			"Hostname": id.container[:12], "Domainname": "", "User": c.User,
			"AttachStdin": false, "AttachStdout": true, "AttachStderr": true,
			"Tty": false, "OpenStdin": false, "StdinOnce": false,
			"Env": c.Env, "Cmd": []string{"/bin/sh"}, "Image": w.ID.String(),
			"Volumes":    map[string]any{"/boot": map[string]any{}},
			"WorkingDir": c.WorkingDir, "Entrypoint": c.Entrypoint, "OnBuild": nil,
			"Labels": labels,
		},
		"Image":                  w.ID.String(),
		"NetworkSettings":        map[string]any{"Bridge": "", "SandboxID": "", "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Networks": map[string]any{}, "Service": nil, "Ports": nil, "SandboxKey": "", "SecondaryIPAddresses": nil, "SecondaryIPv6Addresses": nil, "IsAnonymousEndpoint": false, "HasSwarmEndpoint": false},
		"LogPath":                "",
		"Name":                   "/hostapp-" + id.container[:12],
		"Driver":                 "overlay2",
		"OS":                     "linux",
		"MountLabel":             "",
		"ProcessLabel":           "",
		"RestartCount":           0,
		"HasBeenStartedBefore":   false,
		"HasBeenManuallyStopped": false,
		"MountPoints": map[string]any{
			"/boot": map[string]any{
				"Source": "", "Destination": "/boot", "RW": true, "Name": id.volume, "Driver": "local",
				"Type": "volume", "Relabel": "", "Propagation": "", "Spec": map[string]any{},
				"SkipMountpointCreation": false,
			},
		},
		"SecretReferences": nil, "ConfigReferences": nil, "AppArmorProfile": "",
		"HostnamePath": "", "HostsPath": "", "ShmPath": "", "ResolvConfPath": "",
		"SeccompProfile": "", "NoNewPrivileges": false,
		"LocalLogCacheMeta": map[string]any{"HaveNotifyEnabled": false},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return fmt.Errorf("hostapp container config: %w", err)
	}
	if err := sw.mkdir(dir, 0o710); err != nil {
		return err
	}
	if err := sw.file(dir+"/config.v2.json", b, 0o600); err != nil {
		return err
	}
	host := map[string]any{
		"Binds": nil, "ContainerIDFile": "", "LogConfig": map[string]any{"Type": "journald", "Config": map[string]any{}},
		"NetworkMode": "default", "PortBindings": map[string]any{},
		"RestartPolicy": map[string]any{"Name": "no", "MaximumRetryCount": 0},
		"AutoRemove":    false, "VolumeDriver": "", "VolumesFrom": nil,
		"Runtime": "bare", "Privileged": false, "ReadonlyRootfs": false,
	}
	if b, err = json.Marshal(host); err != nil {
		return fmt.Errorf("hostapp container host config: %w", err)
	}
	if err := sw.file(dir+"/hostconfig.json", b, 0o644); err != nil {
		return err
	}
	return sw.mkdir(dir+"/checkpoints", 0o700)
}

// maxBootBytes bounds the image's /boot copied into the volume.
const maxBootBytes = 1 << 30

// bootVolume copies the image's /boot, as the merged image shows it, into the volume directory vol, as
// the engine populates a new volume from the image.
func (sw *slotWriter) bootVolume(ctx context.Context, img v1.Image, vol string) error {
	if err := sw.mkdir(path.Dir(path.Dir(vol)), 0o701); err != nil {
		return err
	}
	if err := sw.mkdir(path.Dir(vol), 0o755); err != nil {
		return err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	sw.times = map[string]time.Time{}
	var total int64
	found := false
	type deferredLink struct{ rel, target string }
	var hardlinks []deferredLink
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("hostapp image: %w", err)
		}
		name, err := tree.CleanName(h.Name)
		if err != nil {
			return fmt.Errorf("hostapp image: %w", err)
		}
		sub, ok := strings.CutPrefix(name, "boot")
		if !ok || (sub != "" && sub[0] != '/') {
			continue
		}
		rel := vol + sub
		if sub == "" {
			if h.Typeflag != tar.TypeDir {
				return fmt.Errorf("hostapp image: /boot is not a directory")
			}
			found = true
			if err := os.Mkdir(sw.host(rel), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("hostapp slot: %w", err)
			}
		} else if err := sw.mkdir(path.Dir(rel), 0o755); err != nil {
			return err
		}
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			if sub != "" {
				if err := os.Mkdir(sw.host(rel), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("hostapp slot: %w", err)
				}
			}
			if err := os.Chmod(sw.host(rel), mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return fmt.Errorf("hostapp slot: %w", err)
			}
		case tar.TypeReg:
			if total += h.Size; total > maxBootBytes {
				return fmt.Errorf("hostapp image: /boot holds more than %d MiB", maxBootBytes>>20)
			}
			f, err := os.OpenFile(sw.host(rel), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("hostapp slot: %w", err)
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Chmod(sw.host(rel), mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
			}
			if err != nil {
				return fmt.Errorf("hostapp slot: /boot%s: %w", sub, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, sw.host(rel)); err != nil {
				return fmt.Errorf("hostapp slot: %w", err)
			}
		case tar.TypeLink:
			target, err := tree.CleanName(h.Linkname)
			tsub, ok := strings.CutPrefix(target, "boot/")
			if err != nil || !ok {
				return fmt.Errorf("hostapp image: /boot%s: a hard link to %q, outside /boot", sub, h.Linkname)
			}
			hardlinks = append(hardlinks, deferredLink{rel, vol + "/" + tsub})
			continue
		default:
			return fmt.Errorf("hostapp image: /boot%s: a %s, which a boot volume does not hold", sub, typeName(h.Typeflag))
		}
		sw.owner(rel, h.Uid, h.Gid)
		sw.times[rel] = h.ModTime
	}
	if !found || !sw.hasInit(vol) {
		return errors.New("hostapp image: no /boot/init (balenaOS's initramfs and rollback scripts mount the hostapp with it): not a balenaOS hostapp")
	}
	for _, l := range hardlinks {
		if err := os.Link(sw.host(l.target), sw.host(l.rel)); err != nil {
			return fmt.Errorf("hostapp slot: %w", err)
		}
	}
	return nil
}

// hasInit tells whether the boot volume holds init, a file or a link.
func (sw *slotWriter) hasInit(vol string) bool {
	_, err := os.Lstat(sw.host(vol + "/init"))
	return err == nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

// finish sets the times: the slot's own files the image's creation time, the boot volume's entries
// theirs; deepest first, so that writing a child does not move its directory's time afterwards.
func (sw *slotWriter) finish() error {
	all := map[string]time.Time{}
	for _, p := range sw.made {
		all[p] = sw.stamp
	}
	for p, t := range sw.times {
		all[p] = t
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return strings.Count(paths[i], "/") > strings.Count(paths[j], "/") })
	for _, p := range paths {
		fi, err := os.Lstat(sw.host(p))
		if err != nil {
			return fmt.Errorf("hostapp slot: %w", err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			sw.fixups = append(sw.fixups, tree.Fixup{Op: tree.OpMtime, Path: "/" + p, Time: all[p]})
			continue
		}
		if err := os.Chtimes(sw.host(p), all[p], all[p]); err != nil {
			return fmt.Errorf("hostapp slot: %w", err)
		}
	}
	return nil
}
