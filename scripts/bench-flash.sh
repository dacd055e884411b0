#!/usr/bin/env bash
# bench-flash.sh [WORKDIR]: `hostos flash` of the compressed demo image (zstd, with its .bmap) to a file,
# side by side with `bmaptool copy` of the same files, and with `dd` of the mapped bytes of the raw image
# (one dd per bmap range, then one fsync: no decompression, no verify). Runs interleave A B C D for RUNS
# rounds (default 5) and print, for each pair, the median of the per-round ratios with min and max.
# Targets (printed, not asserted): hostos flash (with verify) <= 0.8x bmaptool copy, and <= 1.1x dd.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-${TMPDIR:-/tmp}/hostos-bench-flash}
wd=$(mkdir -p "$W" && cd "$W" && pwd) || { echo "$(basename "$0"): cannot use $W as the work directory" >&2; exit 2; }
W=$wd
hostos=${HOSTOS:-$repo/out/hostos}
runs=${RUNS:-5}
for t in "$hostos" bmaptool python3 dd zstd sync; do
	command -v "$t" >/dev/null || { echo "bench-flash: $t not found (make hostos; apt-get install bmap-tools)" >&2; exit 2; }
done

# The demo image, compressed, with its block map next to it (bmaptool finds both by name).
"$hostos" build -q -o "$W/demo.img" --compress zst --bmap >/dev/null
mv "$W/demo.img" "$W/demo.img.zst"
zstd -q -d -f "$W/demo.img.zst" -o "$W/raw.img"

python3 - "$W" "$runs" "$hostos" <<'PY'
import os, re, statistics, subprocess, sys, time

W, runs, hostos = sys.argv[1], int(sys.argv[2]), sys.argv[3]
img, bmap, raw, out = f"{W}/demo.img.zst", f"{W}/demo.img.bmap", f"{W}/raw.img", f"{W}/out.img"
doc = open(bmap).read()
bs = int(re.search(r"<BlockSize>\s*(\d+)", doc).group(1))
ranges = []
for m in re.finditer(r"<Range[^>]*>\s*(\d+)(?:-(\d+))?\s*</Range>", doc):
    a = int(m.group(1)); b = int(m.group(2) or a)
    ranges.append((a, b - a + 1))
mapped = sum(n for _, n in ranges) * bs

def fresh():
    if os.path.exists(out):
        os.remove(out)
    os.sync()

def timed(cmds):
    fresh()
    t = time.perf_counter()
    for c in cmds:
        p = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            sys.exit(f"bench-flash: {c[0]} failed: {p.stderr.decode().strip()}")
    return time.perf_counter() - t

dd = [["dd", f"if={raw}", f"of={out}", f"bs={bs}", f"skip={a}", f"seek={a}", f"count={n}", "conv=notrunc,sparse", "status=none"] for a, n in ranges]
dd.append(["sync", out])
cmds = {
    "hostos flash": [[hostos, "flash", "-q", img, out]],
    "bmaptool copy": [["bmaptool", "-q", "copy", img, out]],
    "hostos flash --no-verify": [[hostos, "flash", "-q", "--no-verify", img, out]],
    "dd mapped bytes": dd,
}
times = {k: [] for k in cmds}
for _ in range(runs):
    for k, c in cmds.items():
        times[k].append(timed(c))
print(f"bench-flash: demo image {os.path.getsize(raw) >> 20} MiB, {mapped >> 20} MiB mapped in {len(ranges)} ranges, "
      f"{os.path.getsize(img) >> 20} MiB compressed (zstd); {runs} interleaved rounds")
for k, v in times.items():
    print(f"  {k:26s} median {statistics.median(v):6.3f}s  min {min(v):6.3f}s  max {max(v):6.3f}s")
def ratio(a, b, target):
    r = [x / y for x, y in zip(times[a], times[b])]
    print(f"  {a} / {b}: median {statistics.median(r):.2f}x (min {min(r):.2f}, max {max(r):.2f}); target <= {target}x")
ratio("hostos flash", "bmaptool copy", 0.8)
ratio("hostos flash", "dd mapped bytes", 1.1)
ratio("hostos flash --no-verify", "dd mapped bytes", 1.1)
PY
