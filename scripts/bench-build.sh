#!/usr/bin/env bash
# bench-build.sh [WORKDIR]: builds the same balenaOS msdos image (genericx86-64-ext
# layout, ~300 MB root tree) three ways -- `hostos build`, Debian's genimage, and
# the sfdisk/mkfs/dd shell pipeline -- and compares wall time and allocated size.
# Each method runs once untimed (warm page cache), then the best of 3 is reported.
# Targets (printed, not asserted): hostos <= 0.75x genimage wall time and hostos
# allocated bytes <= 1.02x genimage's. Exits non-zero only if a build fails.
# Needs no root.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cfgdir=$repo/scripts/bench
W=${1:-${TMPDIR:-/tmp}/hostos-bench}
mkdir -p "$W"
W=$(cd "$W" && pwd)
runs=3
failed=()

# Layout in MiB (must match scripts/bench/genimage.cfg and layout.sfdisk).
MiB=1048576
boot_off=4 root_size=512 rootA_off=44 rootB_off=556 state_off=1072 data_off=1096 total=1288

need() {
	for t in "$@"; do
		command -v "$t" >/dev/null || { echo "bench: $t not installed" >&2; exit 2; }
	done
}
need go genimage sfdisk mkfs.ext4 mkfs.vfat mcopy mmd mtype dd e2fsck debugfs blkid python3 awk

now() { echo "${EPOCHREALTIME/,/.}"; }
alloc() { stat -c '%b %B' "$1" | awk '{ printf "%d", $1 * $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# best NAME: runs prep_NAME (untimed) and run_NAME (timed) 1+runs times, the first
# untimed; prints the best wall time in seconds. Logs go to $W/NAME.log.
best() {
	local name=$1 t0 t1 d b=""
	for i in $(seq 0 "$runs"); do
		"prep_$name" >>"$W/$name.log" 2>&1 || return 1
		t0=$(now)
		"run_$name" >>"$W/$name.log" 2>&1 || return 1
		t1=$(now)
		[ "$i" -eq 0 ] && continue
		d=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
		b=$(awk -v d="$d" -v b="$b" 'BEGIN { if (b == "" || d < b) print d; else print b }')
	done
	echo "$b"
}

# check IMG: the partition table and filesystems match the balenaOS layout.
check() {
	local img=$1
	sfdisk --json "$img" | python3 -c '
import json, sys
fat = ("6", "b", "c", "e")  # boot may carry any FAT type byte; balena (parted fat16) uses e
want = [(8192, 81920, "fat", True), (90112, 1048576, "83", False), (1138688, 1048576, "83", False),
        (2195456, 40960, "83", False), (2244608, 393216, "83", False)]
t = json.load(sys.stdin)["partitiontable"]
got = [(p["start"], p["size"], "fat" if p["type"].lower() in fat else p["type"].lower(), bool(p.get("bootable")))
       for p in t["partitions"] if p["type"].lower() not in ("5", "f", "85")]
ext = [p for p in t["partitions"] if p["type"].lower() in ("5", "f", "85")]
ok = (t["label"] == "dos" and got == want and len(ext) == 1 and
      ext[0]["start"] < 2195456 and ext[0]["start"] + ext[0]["size"] >= 2244608 + 393216)
sys.exit(0 if ok else "partition table %s, want %s" % (got, want))
' || return 1
	local spec
	for spec in "$boot_off:resin-boot:vfat" "$rootA_off:resin-rootA:ext4" "$rootB_off:resin-rootB:ext4" \
		"$state_off:resin-state:ext4" "$data_off:resin-data:ext4"; do
		IFS=: read -r off label type <<<"$spec"
		local got
		got=$(blkid -p -o export -O $((off * MiB)) "$img" | grep -E '^(LABEL|TYPE)=' | sort | tr '\n' ' ')
		[ "$got" = "LABEL=$label TYPE=$type " ] || { echo "partition at $off MiB: $got, want $label $type"; return 1; }
	done
	e2fsck -fn "$img?offset=$((rootA_off * MiB))" >/dev/null 2>&1 || { echo "rootA fails e2fsck"; return 1; }
	debugfs -R 'stat /etc/os-release' "$img?offset=$((rootA_off * MiB))" 2>/dev/null | grep -q '^Inode:' ||
		{ echo "rootA lacks /etc/os-release"; return 1; }
	MTOOLS_SKIP_CHECK=1 mtype -i "$img@@$((boot_off * MiB))" ::/EFI/BOOT/grub.cfg | cmp -s - "$deploy/grub.cfg" ||
		{ echo "boot lacks /EFI/BOOT/grub.cfg"; return 1; }
	MTOOLS_SKIP_CHECK=1 mtype -i "$img@@$((boot_off * MiB))" ::/bzImage | cmp -s - "$deploy/bzImage" ||
		{ echo "boot lacks /bzImage"; return 1; }
}

echo "== building tools (workdir $W)"
(cd "$repo" && go build -o "$W/genrootfs" ./scripts/genrootfs) || { echo "bench: go build genrootfs failed"; exit 1; }
hostos_ok=1
if ! (cd "$repo" && go build -o "$W/hostos" ./cmd/hostos) >"$W/hostos-gobuild.log" 2>&1; then
	hostos_ok=0
	echo "hostos: go build ./cmd/hostos FAILED (see $W/hostos-gobuild.log):"
	tail -n 5 "$W/hostos-gobuild.log" | sed 's/^/  /'
	failed+=(hostos-compile)
fi

if [ ! -f "$W/rootfs.done" ]; then
	rm -rf "$W/rootfs" "$W/deploy"
	"$W/genrootfs" -o "$W/rootfs" -deploy "$W/deploy" -seed 1 || { echo "bench: genrootfs failed"; exit 1; }
	touch "$W/rootfs.done"
fi
tree=$W/rootfs deploy=$W/deploy

# (a) hostos
mkdir -p "$W/hostos-out"
cat >"$W/hostos-out/spec.toml" <<EOF
device_type = "genericx86-64-ext"
partition_table = "msdos"
alignment_mib = 4
[sizes]        # MiB
boot = 40
root = 512
state = 20
data = 192
[rootfs]
source = "$tree"      # relative paths are relative to the spec file
[boot]
deploy_dir = "$deploy"  # base of relative src in files
files = ["bzImage:/bzImage", "grub.cfg:/EFI/BOOT/grub.cfg"]
EOF
prep_hostos() { rm -f "$W/hostos-out/balena.img"; }
run_hostos() { "$W/hostos" build --spec "$W/hostos-out/spec.toml" -o "$W/hostos-out/balena.img"; }

# (b) genimage, as it is normally run: it copies the root tree into tmppath itself.
prep_genimage() { rm -rf "$W/genimage-tmp" "$W/genimage-out"; mkdir -p "$W/genimage-out"; }
run_genimage() {
	genimage --config "$cfgdir/genimage.cfg" --rootpath "$tree" --tmppath "$W/genimage-tmp" \
		--inputpath "$deploy" --outputpath "$W/genimage-out"
}

# (c) the shell pipeline: partition files built separately, then dd'd into place.
prep_pipeline() { rm -rf "$W/pipeline"; mkdir -p "$W/pipeline"; }
run_pipeline() {
	local p=$W/pipeline img=$W/pipeline/balena.img
	truncate -s $((total * MiB)) "$img" &&
		sfdisk -q "$img" <"$cfgdir/layout.sfdisk" &&
		mkfs.vfat -F 16 -S 512 -n resin-boot -C "$p/boot.vfat" $((40 * 1024)) &&
		mmd -i "$p/boot.vfat" ::/EFI ::/EFI/BOOT &&
		mcopy -i "$p/boot.vfat" "$deploy/bzImage" ::/bzImage &&
		mcopy -i "$p/boot.vfat" "$deploy/grub.cfg" ::/EFI/BOOT/grub.cfg &&
		mkfs.ext4 -q -F -i 8192 -L resin-rootA -d "$tree" "$p/rootA.ext4" "${root_size}M" &&
		mkfs.ext4 -q -F -i 8192 -L resin-rootB "$p/rootB.ext4" "${root_size}M" &&
		mkfs.ext4 -q -F -b 4096 -L resin-state "$p/state.ext4" 20M &&
		mkfs.ext4 -q -F -b 4096 -i 8192 -L resin-data "$p/data.ext4" 192M || return 1
	local part
	for part in boot.vfat:$boot_off rootA.ext4:$rootA_off rootB.ext4:$rootB_off state.ext4:$state_off data.ext4:$data_off; do
		dd if="$p/${part%%:*}" of="$img" bs=1M seek="${part##*:}" conv=notrunc,sparse status=none || return 1
	done
}

# The floor: mkfs.ext4 -d of rootA straight at its offset in the image, nothing else.
prep_floor() { rm -f "$W/floor.img"; truncate -s $((total * MiB)) "$W/floor.img"; }
run_floor() {
	mkfs.ext4 -q -F -i 8192 -L resin-rootA -E offset=$((rootA_off * MiB)) -d "$tree" "$W/floor.img" "${root_size}M"
}

declare -A wall size out
out[hostos]=$W/hostos-out/balena.img
out[genimage]=$W/genimage-out/balena.img
out[pipeline]=$W/pipeline/balena.img
out[floor]=$W/floor.img

for m in genimage pipeline floor hostos; do
	if [ "$m" = hostos ] && [ "$hostos_ok" = 0 ]; then
		continue
	fi
	echo "== $m: 1 warm-up + best of $runs"
	: >"$W/$m.log"
	if ! t=$(best "$m"); then
		echo "$m: build FAILED (see $W/$m.log):"
		tail -n 5 "$W/$m.log" | sed 's/^/  /'
		failed+=("$m")
		continue
	fi
	wall[$m]=$t
	size[$m]=$(alloc "${out[$m]}")
	if [ "$m" != floor ]; then
		if msg=$(check "${out[$m]}" 2>&1); then
			echo "$m: layout OK"
		else
			echo "$m: layout WRONG: $msg"
			failed+=("$m-layout")
		fi
	fi
done

echo
printf '%-10s %10s %14s %16s %14s\n' method wall_s vs_genimage allocated_bytes vs_genimage
g_wall=${wall[genimage]:-0} g_size=${size[genimage]:-0}
for m in hostos genimage pipeline floor; do
	if [ -z "${wall[$m]:-}" ]; then
		printf '%-10s %10s\n' "$m" FAILED
		continue
	fi
	printf '%-10s %10s %13sx %16s %13sx\n' "$m" "${wall[$m]}" "$(ratio "${wall[$m]}" "$g_wall")" \
		"${size[$m]}" "$(ratio "${size[$m]}" "$g_size")"
done
echo "(floor: mkfs.ext4 -d of rootA alone at its offset)"
echo

if [ -n "${wall[hostos]:-}" ] && [ -n "${wall[genimage]:-}" ]; then
	tr=$(ratio "${wall[hostos]}" "$g_wall") sr=$(ratio "${size[hostos]}" "$g_size")
	verdict=$(awk -v t="$tr" -v s="$sr" 'BEGIN { print (t <= 0.75 && s <= 1.02) ? "PASS" : "FAIL" }')
	echo "$verdict: hostos wall ${tr}x genimage (target <= 0.75x), allocated ${sr}x genimage (target <= 1.02x)"
else
	echo "FAIL: no comparison: hostos or genimage did not build (${failed[*]})"
fi

if [ "${#failed[@]}" -gt 0 ]; then
	echo "failed builds: ${failed[*]}"
	exit 1
fi
