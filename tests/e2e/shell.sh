#!/usr/bin/env bash
# Boots the end-to-end demo image (version 1.0.0 on root A, as tests/e2e builds it) in QEMU with an
# interactive u-root shell (gosh) on the serial console, for arm64 (Debian's U-Boot) or amd64 (OVMF, GRUB):
#
#   make e2e-shell ARCH=arm64      # or ARCH=amd64; Ctrl-A X quits QEMU, `exit` in the shell powers off
#
# The image comes from the test (`TestE2E/ARCH/boot`, kept with HOSTOS_E2E_KEEP); gosh and a few core
# commands are built from the u-root module go.mod names, in a scratch module so that the project's go.mod
# stays as it is; they go into root A (/bin/sh, /bin/ls, ...) with debugfs, and a flag file on the boot
# partition tells the guest to start the shell.
set -euo pipefail
arch=${1:-arm64}
case $arch in arm64 | amd64) ;; *) echo "usage: $0 arm64|amd64" >&2; exit 2 ;; esac
cd "$(dirname "$0")/../.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
HOSTOS_E2E_KEEP=1 go test -tags e2e -count=1 -run "TestE2E/$arch/boot\$" -v ./tests/e2e | tee "$log" >&2
w=$(sed -n 's/.*work directory kept: //p' "$log" | head -1)
[ -d "$w" ] || { echo "e2e-shell: the test kept no work directory" >&2; exit 1; }

uroot=$(go list -m -f '{{.Version}}' github.com/u-root/u-root)
mod="$w/gosh-module"
mkdir -p "$mod"
printf 'module e2eshell\n\ngo 1.22\n\nrequire github.com/u-root/u-root %s\n' "$uroot" >"$mod/go.mod"
cmds=(gosh ls cat dmesg mount blkid df lsmod ps)
mkdir -p "$w/uroot-bin"
(cd "$mod" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOFLAGS=-mod=mod go build -trimpath -ldflags="-s -w" -o "$w/uroot-bin/" \
  "${cmds[@]/#/github.com/u-root/u-root/cmds/core/}")

img="$w/shell.img"
cp --sparse=always "$w/base.img" "$img"
offset() { sfdisk --json "$img" | python3 -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; print([p for p in t["partitions"] if p["node"].endswith(sys.argv[1])][0]["start"]*t.get("sectorsize",512))' "$1"; }
{ echo "write $w/uroot-bin/gosh /bin/sh"; for c in "${cmds[@]:1}"; do echo "write $w/uroot-bin/$c /bin/$c"; done; } >"$w/debugfs.cmds"
out=$(debugfs -w -f "$w/debugfs.cmds" "$img?offset=$(offset 2)" 2>&1)
if grep -qi 'could not\|error' <<<"$out"; then echo "e2e-shell: writing the shell into root A: $out" >&2; exit 1; fi
touch "$w/e2e-shell"
mcopy -o -i "$img@@$(offset 1)" "$w/e2e-shell" ::/e2e-shell

echo "e2e-shell: booting $img (work directory $w); Ctrl-A X quits" >&2
disk=(-drive "file=$img,format=raw,if=none,id=sys" -device virtio-blk-pci,drive=sys,serial=system)
if [ "$arch" = arm64 ]; then
  exec qemu-system-aarch64 -machine virt -cpu cortex-a57 -smp 1 -m 1024 -nodefaults -nographic -serial mon:stdio \
    -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin "${disk[@]}"
fi
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$w/shell-vars.fd"
exec qemu-system-x86_64 -machine q35,accel=tcg -smp 1 -m 1024 -nodefaults -nographic -serial mon:stdio \
  -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
  -drive "if=pflash,format=raw,unit=1,file=$w/shell-vars.fd" "${disk[@]}"
