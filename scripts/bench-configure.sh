#!/usr/bin/env bash
# bench-configure.sh [WORKDIR]: configures the same 4 GiB sparse balenaOS image (config.json + hostname +
# 2 SSH keys + Wi-Fi) with `hostos configure` and with balena-device-init's configure() (through the
# oracle, as balena's CLI does), and a 32 GiB image with hostos. Each run gets a fresh sparse copy; the
# median of 5 runs is printed with peak RSS. Targets (printed, not asserted): hostos >= 50x faster than
# balena-device-init; 32 GiB within 1.2x of 4 GiB; peak RSS <= 32 MiB. Needs no root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-${TMPDIR:-/tmp}/hostos-bench-configure}
mkdir -p "$W"
W=$(cd "$W" && pwd)
hostos=${HOSTOS:-$repo/out/hostos}
oracle=${HOSTOS_ORACLE:-$repo/.cache/balena-oracle/balena-oracle.js}
runs=9

for t in "$hostos" /usr/bin/time node python3 ssh-keygen; do
	command -v "$t" >/dev/null || { echo "bench-configure: $t not found (make hostos; make oracle)" >&2; exit 2; }
done
[ -f "$oracle" ] || { echo "bench-configure: oracle not installed at $oracle (make oracle)" >&2; exit 2; }

# Inputs: a 4 GiB image built by hostos, the same image grown to 32 GiB (a freshly flashed larger card),
# two SSH keys, and the config both tools apply.
cat >"$W/spec.toml" <<EOF
device_type = "raspberrypi4-64"
image_size_mib = 4096
EOF
"$hostos" build -q --spec "$W/spec.toml" -o "$W/4g.img" >/dev/null
cp --sparse=always "$W/4g.img" "$W/32g.img"
truncate -s 32G "$W/32g.img"
rm -f "$W/k1" "$W/k2"
ssh-keygen -q -t ed25519 -N '' -C bench-1 -f "$W/k1"
ssh-keygen -q -t rsa -b 2048 -N '' -C bench-2 -f "$W/k2"
k1=$(cat "$W/k1.pub") k2=$(cat "$W/k2.pub")
cat >"$W/config.json" <<EOF
{"deviceType":"raspberrypi4-64","applicationId":1234,"apiKey":"BENCHPROVISIONINGKEY","persistentLogging":true,
 "hostname":"bench-unit","os":{"sshKeys":["$k1","$k2"]}}
EOF

# Each tool runs $runs times on a fresh sparse copy; wall time (perf_counter around the process) and peak
# RSS (wait4's ru_maxrss, the process and its children) are measured by python, which starts the process.
python3 - "$W" "$runs" "$hostos" "$oracle" <<'PY'
import os, shutil, statistics, subprocess, sys, time

W, runs, hostos, oracle = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
run_img = os.path.join(W, "run.img")

def hostos_cmd(img):
    return [hostos, "configure", "-q", img, "--config", f"{W}/config.json", "--hostname", "bench-unit",
            "--ssh-key", f"{W}/k1.pub", "--ssh-key", f"{W}/k2.pub",
            "--wifi-ssid", "Bench Net", "--wifi-key", "bench-pass-123"]

def balena_cmd(img):
    return ["node", oracle, "configure", img, f"{W}/config.json", "Bench Net", "bench-pass-123"]

def measure(name, src, mk):
    times, rss = [], 0
    for _ in range(runs):
        subprocess.run(["cp", "--sparse=always", src, run_img], check=True)
        os.sync()  # the copy's own dirty pages are not the tool's work: flush them before the clock starts
        t = time.perf_counter()
        p = subprocess.Popen(mk(run_img), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(p.pid, 0)
        times.append(time.perf_counter() - t)
        err = p.stderr.read().decode()
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            sys.exit(f"bench-configure: {name} failed: {err}")
        rss = max(rss, ru.ru_maxrss)
    return statistics.median(times), rss

b_t, b_rss = measure("balena-device-init (4 GiB)", f"{W}/4g.img", balena_cmd)
h4_t, h4_rss = measure("hostos (4 GiB)", f"{W}/4g.img", hostos_cmd)
h32_t, h32_rss = measure("hostos (32 GiB)", f"{W}/32g.img", hostos_cmd)
print(f"configure, median of {runs} (config.json + hostname + 2 SSH keys + Wi-Fi):")
print(f"  balena-device-init 4 GiB  {b_t*1000:9.1f} ms   peak RSS {b_rss/1024:6.1f} MiB")
print(f"  hostos             4 GiB  {h4_t*1000:9.1f} ms   peak RSS {h4_rss/1024:6.1f} MiB")
print(f"  hostos            32 GiB  {h32_t*1000:9.1f} ms   peak RSS {h32_rss/1024:6.1f} MiB")
print(f"  speed-up over balena-device-init: {b_t/h4_t:.0f}x   (target >= 50x)")
print(f"  32 GiB / 4 GiB: {h32_t/h4_t:.2f}x                    (target <= 1.2x)")
print(f"  hostos peak RSS: {max(h4_rss, h32_rss)/1024:.1f} MiB            (target <= 32 MiB)")
PY
