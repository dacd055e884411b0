#!/usr/bin/env bash
# bench-update.sh [WORKDIR]: installs a ~300 MiB root filesystem bundle into the inactive slot of a disk
# image with `hostos update --image`, and writes the same filesystem, uncompressed, into the same slot with
# `dd conv=fsync` (the physical limit: no decompression, no hashing, no verification). Prints the median of
# 5 runs of each, the ratio, and hostos's peak RSS for the 300 MiB and a 1 GiB payload.
# Targets (printed, not asserted): hostos <= 1.15x dd; peak RSS <= 64 MiB at both sizes. Needs no root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-${TMPDIR:-/tmp}/hostos-bench-update}
mkdir -p "$W"
W=$(cd "$W" && pwd)
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

python3 - "$W" "$runs" "$hostos" <<'PY'
import json, os, statistics, subprocess, sys, time

W, runs, hostos = sys.argv[1], int(sys.argv[2]), sys.argv[3]
disk, run_img = f"{W}/disk.img", f"{W}/run.img"
parts = json.loads(subprocess.check_output([hostos, "inspect", "--json", disk]))["partitions"]
slot_b = next(p for p in parts if p["number"] == 3)["start"]

def fresh():
    subprocess.run(["cp", "--sparse=always", disk, run_img], check=True)
    os.sync()

def timed(cmd):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    took = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench-update: {cmd[0]} failed: {p.stderr.read().decode()}")
    return took, ru.ru_maxrss

def measure(cmd):
    times, rss = [], 0
    for _ in range(runs):
        fresh()
        t, r = timed(cmd)
        times.append(t)
        rss = max(rss, r)
    return statistics.median(times), rss

def dd(size):
    return ["dd", f"if={W}/fs{size}.img", f"of={run_img}", "bs=4M", f"seek={slot_b}", "oflag=seek_bytes",
            "conv=notrunc,fsync", "status=none"]

def update(size):
    return [hostos, "update", "-q", "--image", run_img, f"{W}/b{size}.hostos"]

dd_t, _ = measure(dd(300))
h_t, h_rss = measure(update(300))
g_t, g_rss = measure(update(1024))
print(f"install into the inactive slot, median of {runs}:")
print(f"  dd of the 300 MiB filesystem (uncompressed, fsync)   {dd_t:7.3f} s")
print(f"  hostos update, 300 MiB bundle                        {h_t:7.3f} s   peak RSS {h_rss/1024:5.1f} MiB")
print(f"  hostos update, 1 GiB bundle                          {g_t:7.3f} s   peak RSS {g_rss/1024:5.1f} MiB")
print(f"  hostos / dd (300 MiB): {h_t/dd_t:.2f}x   (target <= 1.15x)")
print(f"  peak RSS: {max(h_rss, g_rss)/1024:.1f} MiB   (target <= 64 MiB)")
PY
