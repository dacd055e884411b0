#!/usr/bin/env bash
# Installs the Debian packages the QEMU end-to-end test (tests/e2e, make e2e) drives: the emulator, the UEFI
# firmware, GRUB's EFI modules and tools, and cpio. Installs only what is missing; needs root (or sudo).
set -euo pipefail
pkgs=(qemu-system-x86 ovmf grub-efi-amd64-bin grub-common cpio dpkg e2fsprogs dosfstools mtools fdisk)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
