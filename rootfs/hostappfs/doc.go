// Package hostappfs reads and writes balenaOS's hostapp layout of a root slot, where the OS is a
// container of an image in a balena-engine store inside the slot and a "current" link names it.
//
// A root slot holds its OS in one of two layouts:
//
//   - flat: the OS's files at the slot's root (/etc/os-release, /usr, /boot), as hostos builds them;
//   - hostapp: balenaOS's, described below.
//
// Open tells them apart (a slot whose root has a "current" symlink and a "balena" directory is a hostapp
// slot) and reads the OS's files and directories from either (for a hostapp slot, as mobynit would
// mount it); Stage writes the hostapp layout into a staged tree.
//
// # The hostapp layout
//
// Read from meta-balena at commit f3ee62082eb6ff27aeb4638456209cb13518a82e
// (meta-balena-common/recipes-containers/hostapp-update/files/hostapp-update, which writes a slot;
// recipes-containers/mkfs-hostapp-native/files/create.ext4, which builds the first one with the same
// script and mkfs.ext4 -d; recipes-core/balena-rollback/files/rollback-health and rollback-check-version,
// which read one) and from mobynit at commit 3d9efeb581f6b83d013076d64bac39492ec7e5ee (cmd/mobynit/main.go
// and hostapp.go, the initramfs's /init and the /boot/init of every hostapp, which mounts one):
//
//	balena/                       the engine's data root (balenad --data-root=<slot>/balena), overlay2
//	  image/overlay2/...          imagedb, layerdb: the hostapp image, as any engine store
//	  image/overlay2/layerdb/mounts/<container id>/mount-id   the container's overlay2 directory name
//	  overlay2/<mount id>/diff    the container's own layer (empty: it never runs)
//	  overlay2/<mount id>/lower   "l/<link>:l/<link>:...", the image's layers, top first
//	  overlay2/l/<link>           -> ../<cache id>/diff
//	  containers/<container id>/config.v2.json   {"ID", "Driver": "overlay2", "State", "Config": {"Labels"}}
//	  volumes/<volume>/_data      the container's anonymous /boot volume: the image's /boot, copied
//	hostapps/<container id>/boot  -> ../../balena/volumes/<volume>/_data
//	current                       -> hostapps/<container id>
//	boot                          -> current/boot
//	sbin/init                     -> ../current/boot/init
//	counter                       the update count: the running slot's counter + 1
//	dev etc/machine-id mnt/state proc run sys tmp   mount points and an empty machine-id
//
// hostapp-update makes it with the engine of the running OS pointed at the other slot's data root: it
// removes every container and image there, loads (balena load) or pulls the new image, runs
// "balena create --runtime=bare --volume=/boot <image> /bin/sh" (the engine copies the image's /boot
// into the new volume), links hostapps/.new/boot to the volume's _data and renames it to
// hostapps/<container id>, then makes current.new -> hostapps/<container id> and renames it over
// current, syncing after each step: the rename of current is the switch.
//
// mobynit reads the link: the base name of the target of current is the container id; it takes the
// container from balena/containers whose config.v2.json has that ID (a prefix matches too) and is neither
// dead nor being removed, requires the overlay2 driver, reads mount-id from layerdb, and mounts overlay
// read-only with lowerdir = overlay2/<mount id>/diff then each "l/<link>" of overlay2/<mount id>/lower
// resolved, skipping init layers (a resolved path containing "-init/"). That mount is the OS's /.
// balena's failing-health path runs /mnt/sysroot/active/current/boot/init -sysroot
// /mnt/sysroot/inactive (mobynit again, from the running slot's /boot volume) to mount the other
// slot's OS the same way. rollback-check-version and the 1-bootfiles hook find the other OS's
// os-release with find(1) anywhere under the slot, which in this layout is a layer's
// diff/etc/os-release or diff/usr/lib/os-release.
//
// Reading follows mobynit, with overlayfs's rules for a single path: the layers are searched top
// first; a character device 0:0 is a whiteout that hides the name in the layers below; a directory
// with the xattr trusted.overlay.opaque (or user.overlay.opaque) = "y" hides what the layers below
// hold under it; a non-directory hides lower directories of the same name; symlinks resolve in the
// merged view, inside the container's root.
//
// Stage writes what hostapp-update and the engine write, with two differences: the container, volume
// and overlay2 names are derived from the image id instead of drawn at random (the same image gives
// the same slot), and the container has no init layer (the engine makes one at create for a container
// to run; a hostapp never runs and mobynit skips it).
package hostappfs
