#!/usr/bin/env bash
# Installs the Debian packages hostos's build, tests and benchmarks run: the filesystem tools it drives and
# the real tools that judge its images. `install-deps.sh e2e` adds what the QEMU end-to-end test boots with.
# Installs only what is missing; needs root (or sudo) for that.
set -euo pipefail
pkgs=(e2fsprogs dosfstools mtools fdisk util-linux genimage bmap-tools grub-common libubootenv-tool zstd xz-utils gzip isal tar
  python3 python3-gi gir1.2-glib-2.0 openssh-client openssl
  docker.io docker-registry casync time)  # the real engine (20.10, overlay2) judging preloaded stores; a real registry;
  # casync judging the delta chunker; GNU time for the benches' peak RSS
if [ "${1:-}" = e2e ]; then
  # x86-64: OVMF and GRUB; arm64: Debian's U-Boot for QEMU virt, qemu-system-aarch64 and mkimage (boot.scr).
  pkgs+=(qemu-system-x86 ovmf grub-efi-amd64-bin cpio dpkg qemu-system-arm u-boot-qemu u-boot-tools)
  # The arm64 kernel package is fetched at test time with apt-get download, which needs the architecture.
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    s=""; [ "$(id -u)" -eq 0 ] || s="sudo"
    $s dpkg --add-architecture arm64 && $s apt-get update -qq
  fi
fi
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
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
