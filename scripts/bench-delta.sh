#!/usr/bin/env bash
# bench-delta.sh [WORKDIR]: a delta update of a one-file change against a full update of the same version
# into the same disk image. A ~300 MiB root filesystem (SIZE_MIB) of incompressible files is version 1;
# version 2 rewrites 64 KiB of one 8 MiB file. The image runs version 1 in slot B (committed); each run
# installs version 2 into slot A with `hostos update --image`, from the delta bundle (--delta-from the
# version 1 bundle) or from the full bundle, each on a fresh copy made untimed, interleaved pair by pair
# (scripts/bench/pairs, A B then B A): the median of the pair ratios delta/full is printed with min and max.
# With both bundles served over HTTP from a loopback server throttled to each rate of LINK_MBIT (Mbit/s,
# default "100 1000": a device's link, and a gigabit one), then from local files already in memory (no
# transfer at all: both updates then write and verify the same SIZE_MIB, and the delta also reads and
# checks the running slot, so it cannot be faster there).
# Target (printed, not asserted): delta <= 0.5x the full update's time. Needs no root; python3 serves.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-${TMPDIR:-/tmp}/hostos-bench-delta}
wd=$(mkdir -p "$W" && cd "$W" && pwd) || { echo "$(basename "$0"): cannot use $W as the work directory" >&2; exit 2; }
W=$wd
hostos=${HOSTOS:-$repo/out/hostos}
runs=${RUNS:-5}
size=${SIZE_MIB:-300}
links=${LINK_MBIT:-100 1000}
for t in "$hostos" head dd cp python3; do
	command -v "$t" >/dev/null || { echo "bench-delta: $t not found (make hostos)" >&2; exit 2; }
done
export SOURCE_DATE_EPOCH=1700000000
dt=genericx86-64-ext

# The image: slots of SIZE_MIB+8 MiB, slot A holding the embedded demo root filesystem.
printf 'device_type = "%s"\n[sizes]\nroot = %d\n' "$dt" $((size + 8)) >"$W/spec.toml"
"$hostos" build -q --spec "$W/spec.toml" -o "$W/disk.img" >/dev/null

# Version 1: one large incompressible file, one 8 MiB file, os-release.
tree=$W/tree
rm -rf "$tree"
mkdir -p "$tree/usr/lib" "$tree/usr/bin" "$tree/etc" "$tree/usr/share"
printf 'NAME="balenaOS"\nVERSION_ID="1"\n' >"$tree/usr/lib/os-release"
ln -s ../usr/lib/os-release "$tree/etc/os-release"
head -c $(((size - size / 6) << 20)) /dev/urandom >"$tree/usr/share/blob"
head -c $((8 << 20)) /dev/urandom >"$tree/usr/bin/app"
bundle() { "$hostos" bundle create -q --rootfs "$tree" --device-type "$dt" --version "$1" --root-size "$size" -o "$2" "${@:3}" >/dev/null; }
bundle 1.0.0 "$W/v1.hostos"
# Version 2: 64 KiB of usr/bin/app rewritten.
head -c $((64 << 10)) /dev/urandom | dd of="$tree/usr/bin/app" bs=64K seek=37 conv=notrunc status=none
bundle 2.0.0 "$W/v2.hostos"
bundle 2.0.0 "$W/v2.delta" --delta-from "$W/v1.hostos"
echo "full bundle $(stat -c %s "$W/v2.hostos") bytes, delta bundle $(stat -c %s "$W/v2.delta") bytes"

# The device runs version 1 in slot B.
"$hostos" update -q --image "$W/disk.img" --booted A "$W/v1.hostos" >/dev/null
"$hostos" commit --image "$W/disk.img" --booted B >/dev/null

(cd "$repo" && go build -o "$W/pairs" ./scripts/bench/pairs) || { echo "bench-delta: go build pairs failed" >&2; exit 2; }
fresh="cp --sparse=always $W/disk.img $W/run.img && sync"
update() { echo "$hostos update -q --image $W/run.img --booted B $1"; }

# A loopback HTTP server sending each response at most at the rate its path names.
rm -f "$W/port"
python3 - "$W" >"$W/server.log" 2>&1 <<'PY' &
import http.server, os, re, sys, time
root = sys.argv[1]
class Handler(http.server.SimpleHTTPRequestHandler):
    # /<mbit>mbit/<file>: the file, sent at most at that rate.
    def translate_path(self, path):
        m = re.match(r"/(\d+)mbit(/.*)", path)
        self.rate = int(m.group(1)) * 125000 if m else 0
        return super().translate_path(m.group(2) if m else path)
    def copyfile(self, src, dst):
        rate, start, sent = self.rate or float("inf"), time.monotonic(), 0
        while True:
            b = src.read(64 << 10)
            if not b:
                return
            dst.write(b)
            sent += len(b)
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    def log_message(self, *args):
        pass
os.chdir(root)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open("port.tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename("port.tmp", "port")
srv.serve_forever()
PY
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 50); do [ -f "$W/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$W/port")"

for l in $links; do
	"$W/pairs" -n "$runs" -name "delta update/full update over ${l} Mbit/s (${size} MiB, one file changed)" -target 0.5 \
		-prep-a "$fresh" -a "$(update "$url/${l}mbit/v2.delta")" -prep-b "$fresh" -b "$(update "$url/${l}mbit/v2.hostos")"
done
"$W/pairs" -n "$runs" -name "delta update/full update from local files (${size} MiB, one file changed)" -target 0.5 \
	-prep-a "$fresh" -a "$(update "$W/v2.delta")" -prep-b "$fresh" -b "$(update "$W/v2.hostos")"
