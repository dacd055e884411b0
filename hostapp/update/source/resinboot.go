package source

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/bootenv"
	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/rootfs/fat"
	"github.com/hostos/hostos/rootfs/hostappfs"
	"github.com/hostos/hostos/rootfs/tree"
)

// resinBootDir is where a balenaOS hostapp image carries the files of its boot partition (meta-balena's
// do_resin_boot_dirgen_and_deploy in classes/image-balena.bbclass copies its boot partition work
// directory to the rootfs as /resin-boot); balena's 1-bootfiles hook copies them into the boot
// partition when the OS is installed by an update.
const resinBootDir = "/resin-boot"

// balenaBootBlacklist is what the 1-bootfiles hook never copies over the device's own file:
// BALENA_BOOTFILES_BLACKLIST of meta-balena's
// meta-balena-common/recipes-support/hostapp-update-hooks/hostapp-update-hooks.bb at commit
// f3ee62082eb6ff27aeb4638456209cb13518a82e, with its GRUB_INSTALL_DIR (/EFI/BOOT on EFI machines, /grub
// otherwise) written out both ways, since an image does not say which it is for. The recipe writes
// "/${GRUB_INSTALL_DIR}/grub_extraenv", "//EFI/BOOT/grub_extraenv" once expanded, which the hook's exact
// string comparison with "/EFI/BOOT/grub_extraenv" never matches, so balena's hook does overwrite it;
// hostos follows the intent its deploy function spells out (the device's copy stays). The hook also
// copies extra_uEnv.txt and grub_extraenv when the boot partition has none, and replaces an old
// splash/resin-logo.png with balena-logo.png; hostos leaves all of them to the device.
var balenaBootBlacklist = []string{
	"config.json", "config.txt", "splash/balena-logo.png", "extra_uEnv.txt",
	"EFI/BOOT/grub_extraenv", "grub/grub_extraenv", "configfs.json", "hw_intfc.conf", "bootenv",
}

// isContainerImage tells the sources whose boot files come from the image's /resin-boot.
func isContainerImage(kind tree.Kind) bool {
	return kind == tree.KindOCI || kind == tree.KindDockerArchive
}

// resinBoot returns the Payload.Boot of the root filesystem image file img (size bytes, a slot in either
// layout, see rootfs/hostappfs) that the source made: the regular files under the OS's /resin-boot, as
// find -type f lists them for the 1-bootfiles hook (symlinks and other entries are not boot files),
// named relative to /resin-boot, which is relative to the boot partition. Skipped are the names balena's
// hook skips (balenaBootBlacklist), and every name the update engine refuses to write
// (build.CheckBootDst with the environment files of every bootloader: the device's config.json,
// balenaos.fingerprint, which the hook skips too, splash/, system-connections/, system-proxy/, the
// bootloader environment, which only the updater writes), since an image does not say which bootloader
// it is for. Nil when the OS has no /resin-boot directory. The image was made from content the source
// verified while staging, so Boot returns nil once it has yielded every file.
func resinBoot(ctx context.Context, img string, size int64) (func(fn func(name string, size int64, r io.Reader) error) error, error) {
	has, err := withSlotOS(img, size, func(o *hostappfs.OS) (bool, error) {
		fi, err := o.Lstat(resinBootDir)
		if err != nil {
			return false, nil
		}
		return fi.IsDir(), nil
	})
	if err != nil || !has {
		return nil, err
	}
	var env []string
	for _, name := range []string{config.BootloaderGRUB, config.BootloaderUBoot, config.BootloaderBalenaBL} {
		if b, err := bootenv.ForBootloader(name, bootenv.Parts{A: 2, B: 3}); err == nil {
			env = append(env, b.Files()...)
		}
	}
	return func(fn func(name string, size int64, r io.Reader) error) error {
		_, err := withSlotOS(img, size, func(o *hostappfs.OS) (bool, error) {
			return true, walkResinBoot(ctx, o, "", 0, env, fn)
		})
		if err != nil {
			return fmt.Errorf("boot files from the image's %s: %w", resinBootDir, err)
		}
		return nil
	}, nil
}

// withSlotOS opens the OS the slot image file img holds and calls fn with it.
func withSlotOS(img string, size int64, fn func(*hostappfs.OS) (bool, error)) (bool, error) {
	f, err := os.Open(img)
	if err != nil {
		return false, err
	}
	defer f.Close()
	o, err := hostappfs.OpenSlot(f, 0, size)
	if err != nil {
		return false, err
	}
	return fn(o)
}

// walkResinBoot yields the boot files under /resin-boot/rel, depth directories deep, in name order.
func walkResinBoot(ctx context.Context, o *hostappfs.OS, rel string, depth int, env []string, fn func(string, int64, io.Reader) error) error {
	names, err := o.ReadDir(path.Join(resinBootDir, rel))
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := path.Join(rel, n)
		fi, err := o.Lstat(path.Join(resinBootDir, name))
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			// The boot partition's readers stop at fat.MaxDepth; CheckBootDst refuses anything deeper.
			if depth < fat.MaxDepth {
				if err := walkResinBoot(ctx, o, name, depth+1, env, fn); err != nil {
					return err
				}
			}
		case fi.Mode().Type() == 0 && !skipBootFile(name, env):
			// Streamed: a boot file (a kernel, an initramfs) may be larger than what ReadFile reads whole.
			r, err := o.Open(path.Join(resinBootDir, name))
			if err != nil {
				return err
			}
			err = fn(name, fi.Size(), r)
			r.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// skipBootFile tells the files of /resin-boot that are not installed: balena's blacklist, and what the
// update engine refuses to write (see resinBoot), compared as the FAT compares names.
func skipBootFile(name string, env []string) bool {
	if build.CheckBootDst(name, env) != nil {
		return true
	}
	for _, b := range balenaBootBlacklist {
		if sameBootPath(name, b) {
			return true
		}
	}
	return false
}

// sameBootPath tells whether two slash-separated boot partition paths name the same file on a FAT.
func sameBootPath(a, b string) bool {
	pa, pb := strings.Split(a, "/"), strings.Split(b, "/")
	if len(pa) != len(pb) {
		return false
	}
	for i := range pa {
		if !fat.SameName(pa[i], pb[i]) {
			return false
		}
	}
	return true
}
