package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostos/hostos/hostapp/container"
	"github.com/hostos/hostos/rootfs/enginestore"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/hostappfs"
	"github.com/hostos/hostos/rootfs/tree"
)

// hostappDir is where a hostapp slot is staged inside the payload's work directory.
const hostappDir = "hostapp"

// stageHostapp stages the container image src (an OCI layout or a docker save archive) as a slot in
// balenaOS's hostapp layout (rootfs/hostappfs): the image in the slot's engine store, its container and
// the current link, as hostapp-update writes a slot. Any other source is refused: a hostapp slot holds
// an image, not a tree.
func stageHostapp(ctx context.Context, src string, kind tree.Kind, work string, o Options) (*ext4.Root, error) {
	if kind != tree.KindOCI && kind != tree.KindDockerArchive {
		return nil, fmt.Errorf("the device's slots hold balenaOS's hostapp layout (the OS as a container image): "+
			"the update must be a container image (OCI or docker save archive, or a hostos bundle), not a %s", kind)
	}
	c, err := containerOptions(o)
	if err != nil {
		return nil, err
	}
	img, err := container.Open(ctx, src, c)
	if err != nil {
		return nil, platformError(err, o)
	}
	dir := filepath.Join(work, hostappDir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("hostapp slot: %w", err)
	}
	st, err := hostappfs.Stage(ctx, &tree.Staged{Dir: dir}, enginestore.Image{Image: img},
		hostappfs.WithCounter(max(o.HostappCounter, 1)),
		hostappfs.WithStoreOptions(enginestore.WithProgress(func(done, total int64) {
			o.Progress("stage hostapp image", done, total)
		})))
	if err != nil {
		return nil, err
	}
	return &ext4.Root{Tree: st.Tree}, nil
}
