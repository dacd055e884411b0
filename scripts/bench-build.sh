#!/usr/bin/env bash
# bench-build.sh [WORKDIR]: builds the same balenaOS msdos image (genericx86-64-ext
# layout, ~300 MB root tree) with `hostos build`, Debian's genimage and the
# sfdisk/mkfs/dd shell pipeline, and `hostos build` from the same tree as a
# .tar.zst, .tar.gz and plain .tar, an OCI layout of one layer and one of two, and a docker save archive. Every comparison runs its two commands in
# interleaved pairs (scripts/bench/pairs) and prints the median of the pair
# ratios with min and max. Targets (printed, not asserted): hostos <= 0.75x
# genimage wall time, allocated bytes <= 1.02x genimage's, and an archive build
# <= 1.3x the directory build. Exits non-zero only if a build fails. Needs no root.
# RUNS=N pairs per comparison (5); SIZE=MB of the generated root tree (300, ~33 entries a MB);
# ONLY=archive runs only the archive/directory comparisons, ONLY=tar.gz (tar, tar.zst, oci, layers.oci, docker.tar) only that one. Measured on a quiet 2-core machine
# (ONLY=archive, ISA-L's igzip installed): .tar 1.18x, .tar.zst 1.21x, .tar.gz 1.25x (RUNS=5, one day); on a
# day its CPU ran at about half that speed (igzip 0.43 s against 0.23 s for the archive), RUNS=9: .tar 1.17x,
# .tar.zst 1.27x, .tar.gz 1.30x, OCI layout (the .tar.gz as its one layer) 1.32x, docker save 1.26x. An image
# of one layer builds as its layer's tar does, plus the check of its digest (about 1.06x of it).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cfgdir=$repo/scripts/bench
W=${1:-${TMPDIR:-/tmp}/hostos-bench}
wd=$(mkdir -p "$W" && cd "$W" && pwd) || { echo "$(basename "$0"): cannot use $W as the work directory" >&2; exit 2; }
W=$wd
runs=${RUNS:-5}
size=${SIZE:-300}
only=${ONLY:-}
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

alloc() { stat -c '%b %B' "$1" | awk '{ printf "%d", $1 * $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# compare NAME A B [TARGET]: prep_X and run_X of the two methods in interleaved pairs; logs in $W/NAME.log.
compare() {
	local name=$1 a=$2 b=$3 target=${4:-0}
	"$W/pairs" -shell bash -n "$runs" -name "$name" -target "$target" \
		-prep-a "prep_$a" -a "run_$a" -prep-b "prep_$b" -b "run_$b" 2>&1 | tee -a "$W/pairs.log" | grep -v '^RESULT' ||
		failed+=("$name")
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
(cd "$repo" && go build -o "$W/genrootfs" ./scripts/genrootfs && go build -o "$W/pairs" ./scripts/bench/pairs) ||
	{ echo "bench: go build genrootfs or pairs failed"; exit 1; }
hostos_ok=1
if ! (cd "$repo" && go build -o "$W/hostos" ./cmd/hostos) >"$W/hostos-gobuild.log" 2>&1; then
	hostos_ok=0
	echo "hostos: go build ./cmd/hostos FAILED (see $W/hostos-gobuild.log):"
	tail -n 5 "$W/hostos-gobuild.log" | sed 's/^/  /'
	failed+=(hostos-compile)
fi

if [ "$(cat "$W/rootfs.done" 2>/dev/null)" != "$size" ]; then
	rm -rf "$W/rootfs" "$W/deploy" "$W/rootfs.tar.done" "$W/rootfs.images.done"
	"$W/genrootfs" -o "$W/rootfs" -deploy "$W/deploy" -seed 1 -size-mb "$size" \
		-entries $((size * 100 / 3 > 100 ? size * 100 / 3 : 100)) || { echo "bench: genrootfs failed"; exit 1; }
	echo "$size" >"$W/rootfs.done"
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

# (d) hostos from the same tree as archives: tar (GNU tar, numeric owners, xattrs), then compressed.
if [ ! -f "$W/rootfs.tar.done" ]; then
	tar -C "$tree" --numeric-owner --xattrs -cf "$W/rootfs.tar" . &&
		zstd -q -T0 -f "$W/rootfs.tar" -o "$W/rootfs.tar.zst" && gzip -1 -kf "$W/rootfs.tar" &&
		touch "$W/rootfs.tar.done" || { echo "bench: making the archives failed"; exit 1; }
fi
# images: an OCI layout of one gzip layer (rootfs.tar.gz), one of two gzip layers (the tree without usr,
# then usr) and a docker save archive of one plain layer (rootfs.tar), all of the same tree, made here as
# an engine or a registry would hand the root filesystem over.
sha() { sha256sum "$1" | cut -d' ' -f1; }
# oci DIR GZ RAW [GZ RAW]...: an OCI layout in DIR of the gzip layers GZ (lowest first), RAW their tars.
oci() {
	local o=$1 layers='' diffs='' layer cfg man
	shift
	rm -rf "$o" && mkdir -p "$o/blobs/sha256" || return 1
	while [ $# -ge 2 ]; do
		layer=$(sha "$1") && cp "$1" "$o/blobs/sha256/$layer" || return 1
		layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer\",\"size\":$(stat -c %s "$1")}"
		diffs+="${diffs:+,}\"sha256:$(sha "$2")\""
		shift 2
	done
	printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$diffs" >"$o/config"
	cfg=$(sha "$o/config") && mv "$o/config" "$o/blobs/sha256/$cfg" || return 1
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[%s]}' \
		"$cfg" "$(stat -c %s "$o/blobs/sha256/$cfg")" "$layers" >"$o/manifest"
	man=$(sha "$o/manifest") && printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d}]}' \
		"$man" "$(stat -c %s "$o/manifest")" >"$o/index.json" && mv "$o/manifest" "$o/blobs/sha256/$man" || return 1
	printf '{"imageLayoutVersion":"1.0.0"}' >"$o/oci-layout" && oci_cfg=$cfg
}
images() {
	local d=$W/docker-save diff cfg l=$W/layers
	oci "$W/rootfs.oci" "$W/rootfs.tar.gz" "$W/rootfs.tar" && cfg=$oci_cfg || return 1
	rm -rf "$l" && mkdir -p "$l" &&
		tar -C "$tree" --numeric-owner --xattrs --exclude=./usr -cf "$l/1.tar" . &&
		tar -C "$tree" --numeric-owner --xattrs -cf "$l/2.tar" ./usr &&
		gzip -1 -kf "$l/1.tar" "$l/2.tar" &&
		oci "$W/rootfs.layers.oci" "$l/1.tar.gz" "$l/1.tar" "$l/2.tar.gz" "$l/2.tar" && rm -rf "$l" || return 1
	diff=$(sha "$W/rootfs.tar") || return 1
	mkdir -p "$d/$diff" && cp "$W/rootfs.tar" "$d/$diff/layer.tar" && cp "$W/rootfs.oci/blobs/sha256/$cfg" "$d/$cfg.json" || return 1
	printf '[{"Config":"%s.json","RepoTags":["bench:1"],"Layers":["%s/layer.tar"]}]' "$cfg" "$diff" >"$d/manifest.json"
	tar -C "$d" -cf "$W/rootfs.docker.tar" . && rm -rf "$d"
}
if [ ! -f "$W/rootfs.images2.done" ]; then
	images && touch "$W/rootfs.images2.done" || { echo "bench: making the OCI layouts and docker save archive failed"; exit 1; }
fi
for a in tar tar.zst tar.gz oci layers.oci docker.tar; do
	m=hostos_${a//./_}
	sed "s|^source = .*|source = \"$W/rootfs.$a\"|" "$W/hostos-out/spec.toml" >"$W/hostos-out/spec-$m.toml"
	eval "prep_$m() { rm -f \"\$W/hostos-out/$m.img\"; }"
	eval "run_$m() { \"\$W/hostos\" build --spec \"\$W/hostos-out/spec-$m.toml\" -o \"\$W/hostos-out/$m.img\"; }"
done

export W tree deploy cfgdir MiB boot_off root_size rootA_off rootB_off state_off data_off total
export -f $(compgen -A function | grep -E '^(prep|run)_')

: >"$W/pairs.log"
echo "== interleaved pairs, $runs each (A/B < 1: A is faster)"
if [ "$hostos_ok" = 1 ] && [ -z "$only" ]; then
	compare "hostos/genimage" hostos genimage 0.75
	compare "hostos/pipeline" hostos pipeline
	compare "hostos/floor(mkfs.ext4 -d of rootA alone)" hostos floor
fi
if [ "$hostos_ok" = 1 ]; then
	for a in tar.zst tar.gz tar oci layers.oci docker.tar; do
		case $only in "" | archive | "$a") compare "hostos .$a/directory" "hostos_${a//./_}" hostos 1.3 ;; esac
	done
fi

declare -A size out
out[hostos]=$W/hostos-out/balena.img
out[genimage]=$W/genimage-out/balena.img
out[pipeline]=$W/pipeline/balena.img
for a in tar tar.zst tar.gz oci layers.oci docker.tar; do
	out[hostos_${a//./_}]=$W/hostos-out/hostos_${a//./_}.img
done
echo
for m in "${!out[@]}"; do
	[ -f "${out[$m]}" ] || continue
	size[$m]=$(alloc "${out[$m]}")
	if msg=$(check "${out[$m]}" 2>&1); then
		echo "$m: layout OK, ${size[$m]} bytes allocated"
	else
		echo "$m: layout WRONG: $msg"
		failed+=("$m-layout")
	fi
done
if [ -n "${size[hostos]:-}" ] && [ -n "${size[genimage]:-}" ]; then
	sr=$(ratio "${size[hostos]}" "${size[genimage]}")
	verdict=$(awk -v s="$sr" 'BEGIN { print (s <= 1.02) ? "PASS" : "FAIL" }')
	echo "$verdict: hostos allocated ${sr}x genimage (target <= 1.02x)"
fi

if [ "${#failed[@]}" -gt 0 ]; then
	echo "failed: ${failed[*]}"
	exit 1
fi
