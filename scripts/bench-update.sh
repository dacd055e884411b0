#!/usr/bin/env bash
# bench-update.sh [WORKDIR]: installs a ~300 MiB root filesystem bundle into the inactive slot of a disk
# image with `hostos update --image`, and writes the same filesystem, uncompressed, into the same slot with
# `dd conv=fsync` (the physical limit: no decompression, no hashing, no verification). The two run in
# interleaved pairs (scripts/bench/pairs), each on a fresh copy made untimed, and the median of the pair
# ratios is printed with min and max; then the 1 GiB payload against the 300 MiB one, for peak RSS.
# Targets (printed, not asserted): hostos <= 1.15x dd; peak RSS <= 64 MiB at both sizes. Needs no root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-${TMPDIR:-/tmp}/hostos-bench-update}
wd=$(mkdir -p "$W" && cd "$W" && pwd) || { echo "$(basename "$0"): cannot use $W as the work directory" >&2; exit 2; }
W=$wd
hostos=${HOSTOS:-$repo/out/hostos}
runs=${RUNS:-5}
for t in "$hostos" python3 dd tar zstd head; do
	command -v "$t" >/dev/null || { echo "bench-update: $t not found (make hostos)" >&2; exit 2; }
done

# A disk image whose root slots hold 1100 MiB, and root trees of incompressible data for the two payloads.
cat >"$W/spec.toml" <<EOF
device_type = "genericx86-64-ext"
[sizes]
root = 1100
EOF
"$hostos" build -q --spec "$W/spec.toml" -o "$W/disk.img" >/dev/null
for size in 300 1024; do
	tree=$W/tree-$size
	if [ ! -f "$tree/usr/lib/os-release" ]; then
		rm -rf "$tree"
		mkdir -p "$tree/usr/lib" "$tree/etc" "$tree/usr/share"
		printf 'NAME="balenaOS"\nVERSION_ID="2.0.%s"\n' "$size" >"$tree/usr/lib/os-release"
		ln -s ../usr/lib/os-release "$tree/etc/os-release"
		head -c $(((size - size / 6) << 20)) /dev/urandom >"$tree/usr/share/blob"
	fi
	"$hostos" bundle create -q --rootfs "$tree" --device-type genericx86-64-ext --version "2.0.$size" \
		--root-size "$size" -o "$W/b$size.hostos" >/dev/null
	tar -xOf "$W/b$size.hostos" rootfs.ext4.zst | zstd -q -d -o "$W/fs$size.img" -f
done

(cd "$repo" && go build -o "$W/pairs" ./scripts/bench/pairs) || { echo "bench-update: go build pairs failed" >&2; exit 2; }
slot_b=$("$hostos" inspect --json "$W/disk.img" | python3 -c '
import json, sys
print(next(p for p in json.load(sys.stdin)["partitions"] if p["number"] == 3)["start"])')
fresh="cp --sparse=always $W/disk.img $W/run.img && sync"
update() { echo "$hostos update -q --image $W/run.img $W/b$1.hostos"; }
"$W/pairs" -n "$runs" -name "hostos update/dd (300 MiB)" -target 1.15 -prep-a "$fresh" -a "$(update 300)" -prep-b "$fresh" \
	-b "dd if=$W/fs300.img of=$W/run.img bs=4M seek=$slot_b oflag=seek_bytes conv=notrunc,fsync status=none"
"$W/pairs" -n "$runs" -name "hostos update 1 GiB/300 MiB" -prep-a "$fresh" -a "$(update 1024)" -prep-b "$fresh" -b "$(update 300)"
echo "(peak RSS: the a_rss_mib and b_rss_mib of the RESULT lines; target <= 64 MiB)"
