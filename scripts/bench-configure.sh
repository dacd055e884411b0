#!/usr/bin/env bash
# bench-configure.sh [WORKDIR]: configures the same 4 GiB sparse balenaOS image (config.json + hostname +
# 2 SSH keys + Wi-Fi) with `hostos configure` and with balena-device-init's configure() (through the
# oracle, as balena's CLI does), a 32 GiB image with hostos, and times `hostos --version` against a Go
# hello-world. Each run gets a fresh sparse copy, untimed; every comparison runs in interleaved pairs
# (scripts/bench/pairs) and prints the median of the pair ratios with min and max, and peak RSS.
# Targets (printed, not asserted): hostos >= 80x faster than balena-device-init (ratio <= 0.0125);
# 32 GiB within 1.2x of 4 GiB; --version within 1.5x of hello-world; peak RSS <= 32 MiB. Needs no root.
# It also times the floor (scripts/bench/floor: a program that only links the libraries hostos imports)
# against hello-world, `hostos --version` and balena-device-init: the targets the libraries leave
# reachable. Measured on this 2-core machine: see the figures printed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-${TMPDIR:-/tmp}/hostos-bench-configure}
wd=$(mkdir -p "$W" && cd "$W" && pwd) || { echo "$(basename "$0"): cannot use $W as the work directory" >&2; exit 2; }
W=$wd
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

(cd "$repo" && go build -o "$W/pairs" ./scripts/bench/pairs) || { echo "bench-configure: go build pairs failed" >&2; exit 2; }
printf 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n' >"$W/hello.go"
(cd "$W" && GOFLAGS= CGO_ENABLED=0 go build -trimpath -o hello hello.go) # built as make hostos builds hostos
(cd "$repo" && GOFLAGS= CGO_ENABLED=0 go build -trimpath -o "$W/floor" ./scripts/bench/floor) # likewise

hostos_cmd() {
	echo "$hostos configure -q $1 --config $W/config.json --hostname bench-unit --ssh-key $W/k1.pub --ssh-key $W/k2.pub" \
		"--wifi-ssid 'Bench Net' --wifi-key bench-pass-123"
}
# The copy's own dirty pages are not the tool's work: sync before the clock starts.
fresh() { echo "cp --sparse=always $W/$1 $W/run.img && sync"; }
pairs() { "$W/pairs" -n "$runs" "$@"; }

pairs -name "hostos/balena-device-init (4 GiB)" -target 0.0125 -prep-a "$(fresh 4g.img)" -a "$(hostos_cmd "$W/run.img")" \
	-prep-b "$(fresh 4g.img)" -b "node $oracle configure $W/run.img $W/config.json 'Bench Net' bench-pass-123"
pairs -name "hostos 32 GiB/4 GiB" -target 1.2 -prep-a "$(fresh 32g.img)" -a "$(hostos_cmd "$W/run.img")" \
	-prep-b "$(fresh 4g.img)" -b "$(hostos_cmd "$W/run.img")"
pairs -n $((runs * 3)) -name "hostos --version/hello-world" -target 1.5 -a "$hostos --version" -b "$W/hello"
# The floor: a program that only links the libraries hostos imports. Against hello-world it is the least
# `hostos --version` can reach; against balena-device-init, the best ratio a configure that did no work
# at all could reach.
pairs -n $((runs * 3)) -name "floor/hello-world" -target 1.5 -a "$W/floor" -b "$W/hello"
pairs -n $((runs * 3)) -name "hostos --version/floor" -a "$hostos --version" -b "$W/floor"
pairs -name "floor/balena-device-init (4 GiB)" -target 0.0125 -a "$W/floor" \
	-prep-b "$(fresh 4g.img)" -b "node $oracle configure $W/run.img $W/config.json 'Bench Net' bench-pass-123"
echo "(peak RSS: the a_rss_mib and b_rss_mib of the RESULT lines; target <= 32 MiB for hostos)"
