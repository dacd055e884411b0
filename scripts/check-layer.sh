#!/usr/bin/env bash
# check-layer.sh [POKY_DIR]: parse layers/meta-hostos with the bitbake of a poky checkout (scarthgap or newer),
# offline and without building anything. It follows the layer README's quick start in a build directory of its
# own (oe-init-build-env, bitbake-layers add-layer, the local.conf lines), then
#   1. parses only this layer's recipes (every oe-core recipe masked, all classes still loaded) and runs
#      `bitbake -e` on hostos, hostos-native, hostos-update and hostos-image-minimal: a syntax error, a bad
#      inherit, inline Python that fails or a variable left unexpanded in what the layer defines fails the check;
#   2. parses everything and resolves hostos-image-minimal's whole dependency graph (`bitbake -g`), which
#      masking cannot: every DEPENDS, RDEPENDS and task dependency the layer names must have a provider;
#   3. runs the image types' IMAGE_CMDs, taken from `bitbake -e`, on a small fake IMAGE_ROOTFS and
#      DEPLOY_DIR_IMAGE through a real hostos ($HOSTOS_BIN, or built from this checkout when Go is at hand),
#      then inspects the image; hostos-bundle only once hostos has `bundle create`.
# Without POKY_DIR it does nothing and succeeds. The build directory is kept for its parse cache:
# ${HOSTOS_CHECK_LAYER_DIR:-${TMPDIR:-/tmp}/hostos-check-layer-UID-HASH}; delete it at will.
set -euo pipefail

poky=${1:-}
if [ -z "$poky" ]; then
	echo "POKY_DIR not given: layer check skipped"
	exit 0
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
layer=$repo/layers/meta-hostos
recipes="hostos hostos-native hostos-update hostos-image-minimal"
image=hostos-image-minimal
hostos_bin=${HOSTOS_BIN:+$(readlink -f "$HOSTOS_BIN")}

fail() {
	echo "check-layer: $*" >&2
	exit 1
}
step() { printf '== %s (%ds)\n' "$*" "$SECONDS"; }

# Prerequisites: a poky checkout, the host tools OE insists on, a UTF-8 locale. Nothing is installed here.
[ -d "$poky" ] || fail "POKY_DIR $poky: no such directory"
[ -z "$hostos_bin" ] || [ -x "$hostos_bin" ] || fail "HOSTOS_BIN $HOSTOS_BIN: not an executable"
poky=$(cd "$poky" && pwd)
[ -f "$poky/oe-init-build-env" ] && [ -x "$poky/bitbake/bin/bitbake" ] ||
	fail "POKY_DIR $poky: not a poky checkout (no oe-init-build-env or bitbake/bin/bitbake)"
# The unconditional HOSTTOOLS of this poky, and the utilities its sanity check requires.
tools=$(sed -n '/^HOSTTOOLS += " *\\$/,/"$/p' "$poky/meta/conf/bitbake.conf" | sed 's/HOSTTOOLS += //; s/[\\"]//g')
tools+=" $(sed -n '/^SANITY_REQUIRED_UTILITIES ?= "/,/"$/p' "$poky/meta/classes-global/sanity.bbclass" |
	sed 's/SANITY_REQUIRED_UTILITIES ?= //; s/[\\"]//g')"
missing=()
for t in $tools; do
	command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
mapfile -t missing < <(printf '%s\n' ${missing[@]+"${missing[@]}"} | sort -u | sed '/^$/d')
pkgs=()
for t in ${missing[@]+"${missing[@]}"}; do
	case $t in
	ar | as | ld | nm | objcopy | objdump | ranlib | readelf | strings | strip) pkgs+=(binutils) ;;
	getconf | iconv | ldd) pkgs+=(libc-bin) ;;
	awk) pkgs+=(gawk) ;;
	rpcgen) pkgs+=(rpcsvc-proto) ;;
	lz4c) pkgs+=(lz4) ;;
	pzstd | unzstd) pkgs+=(zstd) ;;
	python3) pkgs+=(python3) ;;
	*) pkgs+=("$t") ;;
	esac
done
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 8))'; then
	missing+=("python3 3.8 or newer")
	pkgs+=(python3)
fi
if ! locale -a 2>/dev/null | grep -Eqix 'en_US\.utf-?8'; then
	missing+=("the en_US.UTF-8 locale")
	pkgs+=(locales)
fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "check-layer: bitbake needs what this host lacks: ${missing[*]}" >&2
	echo "  On Debian or Ubuntu: apt-get install $(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')" >&2
	case " ${missing[*]} " in *" the en_US.UTF-8 locale "*)
		echo "  then: sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' /etc/locale.gen && locale-gen" >&2 ;;
	esac
	exit 1
fi
export LC_ALL=en_US.UTF-8 LANG=en_US.UTF-8

build=${HOSTOS_CHECK_LAYER_DIR:-${TMPDIR:-/tmp}/hostos-check-layer-$(id -u)-$(printf %s "$poky" | cksum | cut -d' ' -f1)}
mkdir -p "$build"
build=$(cd "$build" && pwd)
echo "check-layer: poky $poky ($(git -C "$poky" describe --all --always 2>/dev/null || echo unknown)), build directory $build"

# The quick start, as the README gives it, in a fresh conf/ (tmp/ and cache/ stay: they hold the parse cache).
rm -rf "$build/conf"
set +u
# shellcheck disable=SC1091
. "$poky/oe-init-build-env" "$build" >/dev/null || fail "oe-init-build-env failed"
set -u
cd "$build"
# OE refuses to run as root unless told the user knows what they are doing.
[ "$(id -u)" != 0 ] || touch conf/sanity.conf
# Keep one bitbake server for all the commands below instead of a start-up and a parse each.
export BB_SERVER_TIMEOUT=60
trap 'cd "$build" && bitbake -m >/dev/null 2>&1 || true' EXIT
step "bitbake-layers add-layer $layer"
bitbake-layers add-layer "$layer" >add-layer.log 2>&1 || { cat add-layer.log >&2; fail "bitbake-layers add-layer failed"; }
# The quick start's local.conf lines: its `cat >> conf/local.conf <<'EOF'` here-document.
sed -n "/^cat >> conf\/local.conf <<'EOF'\$/,/^EOF\$/p" "$layer/README.md" | sed '1d;$d' >quickstart.conf
[ -s quickstart.conf ] || fail "no local.conf here-document in the quick start of $layer/README.md"
{
	echo "# From the meta-hostos README's quick start"
	cat quickstart.conf
	echo "# check-layer.sh: offline, parse only"
	echo 'BB_NO_NETWORK = "1"'
	echo 'INHERIT:remove = "uninative"'
} >>conf/local.conf

# 1. This layer's recipes only.
esc=$(printf %s "$poky" | sed 's/[][\.*^$(){}+?|]/\\&/g')
echo "BBMASK += \"^$esc/\"" >"$build/conf/mask-oe-core.conf"
step "parse meta-hostos alone (every recipe of $poky masked)"
bitbake -R conf/mask-oe-core.conf -p >parse-masked.log 2>&1 || { cat parse-masked.log >&2; fail "parse failed"; }
# The masked layers matching no recipe is the point; anything else is not.
grep -E '^(ERROR|WARNING):' parse-masked.log | grep -v 'No bb files in default matched BBFILE_PATTERN_[a-z]' >&2 &&
	fail "the parse printed errors or warnings (parse-masked.log)"
hostos_bb=$(ls "$layer"/recipes-devtools/hostos/hostos_*.bb)
update_bb=$(ls "$layer"/recipes-core/hostos-update/hostos-update_*.bb)
for r in $recipes; do
	case $r in
	hostos) bb=$hostos_bb ;;
	hostos-native) bb=virtual:native:$hostos_bb ;;
	hostos-update) bb=$update_bb ;;
	$image) bb=$layer/recipes-core/images/$image.bb ;;
	esac
	step "bitbake -e $r"
	# -b: this recipe's environment without resolving its providers, which the mask hides (step 2 resolves).
	bitbake -R conf/mask-oe-core.conf -e -b "$bb" >"env-$r.txt" 2>"env-$r.err" ||
		{ cat "env-$r.err" >&2; fail "bitbake -e $r failed"; }
	if grep -E '^(ERROR|WARNING):' "env-$r.err" | grep -v 'No bb files in default matched BBFILE_PATTERN_[a-z]'; then
		fail "bitbake -e $r printed errors or warnings (env-$r.err)"
	fi
	# Unexpanded inline Python or variable references in anything the layer defines or drives.
	bad=$(awk '
		/^#/ { next }
		/^[A-Za-z_][A-Za-z0-9_:${}-]*="/ { name = $0; sub(/=.*/, "", name) }
		/^(export )?[A-Za-z_][A-Za-z0-9_:-]*\(\) \{$/ { name = $0; sub(/^export /, "", name); sub(/\(\).*/, "", name) }
		/\$\{@|\$\{HOSTOS_/ && name ~ /HOSTOS|hostos|^IMAGE_CMD|^EXTERNALSRC$|^SRC_URI$|^S$|^GO|^do_(configure|compile|install)$|^IMAGE_FSTYPES$|^IMAGE_CLASSES$/ {
			print FILENAME ": " name ": " $0
		}' "env-$r.txt")
	[ -z "$bad" ] || fail "unexpanded in bitbake -e $r:"$'\n'"$bad"
done
grep -q '^HOSTOS_SPEC="' "env-$image.txt" || fail "HOSTOS_SPEC missing from bitbake -e $image"
grep -q '^do_image_hostos_img() {' "env-$image.txt" || fail "no do_image_hostos_img task in bitbake -e $image"
grep -q '^do_image_hostos_bundle() {' "env-$image.txt" || fail "no do_image_hostos_bundle task in bitbake -e $image"

# 2. The whole graph: every provider the layer names must exist.
step "parse everything and resolve $image's dependencies (bitbake -g)"
bitbake -g "$image" hostos-native >graph.log 2>&1 || { tail -40 graph.log >&2; fail "bitbake -g $image failed"; }
grep -E '^(ERROR|WARNING):' graph.log >&2 && fail "bitbake -g printed errors or warnings (graph.log)"
for pn in hostos-native hostos-update hostos e2fsprogs-native dosfstools-native mtools-native bmaptool-native zstd-native; do
	grep -qx "$pn" pn-buildlist || fail "$pn is not in $image's build list"
done

# 3. The image type's IMAGE_CMD on fake inputs, through the real hostos: $HOSTOS_BIN, or built from the checkout.
hostos=$hostos_bin
if [ -z "$hostos" ]; then
	if ! command -v go >/dev/null 2>&1; then
		[ -z "${CI:-}" ] || fail "go not found: the end-to-end IMAGE_CMD check cannot run"
		echo "check-layer: go not found: end-to-end IMAGE_CMD check skipped"
		step "done"
		exit 0
	fi
	step "go build ./cmd/hostos"
	hostos=$build/bin/hostos
	(cd "$repo" && go build -o "$hostos" ./cmd/hostos) || fail "go build ./cmd/hostos failed"
fi
step "IMAGE_CMD:hostos-img from bitbake -e $image, on a fake root filesystem"
var() { sed -n "s/^$1=\"\(.*\)\"\$/\1/p" "env-$image.txt"; }
rootfs=$(var IMAGE_ROOTFS) deploy=$(var DEPLOY_DIR_IMAGE) imgdeploy=$(var IMGDEPLOYDIR)
workdir=$(var HOSTOS_IMG_WORKDIR) kernel=$(var KERNEL_IMAGETYPE)
for d in "$rootfs" "$deploy" "$imgdeploy" "$workdir"; do
	case $d in "$build"/tmp/?*) ;; *) fail "$d: outside $build/tmp" ;; esac
done
rm -rf "$rootfs" "$deploy" "$imgdeploy" "$workdir"
mkdir -p "$rootfs"/{etc,usr/bin,usr/lib,var} "$deploy" "$imgdeploy" "$workdir"
printf 'ID=poky\nVERSION_ID="check"\n' >"$rootfs/usr/lib/os-release"
ln -s ../usr/lib/os-release "$rootfs/etc/os-release"
echo "fake kernel" >"$deploy/$kernel"
# A task as bitbake -e prints it, up to where image.bbclass appends `cd IMGDEPLOYDIR` and the conversions:
# that is the type's IMAGE_CMD, fully expanded.
image_cmd() {
	sed -n "/^$1() {\$/,/^}\$/p" "env-$image.txt" | sed '1d;$d' | awk -v stop="	cd $imgdeploy" '$0 == stop { exit } { print }'
}
run_image_cmd() {
	(export PATH="$build/bin:$PATH" SOURCE_DATE_EPOCH=1700000000 && set -e && . "./$1.sh") >"$1.log" 2>&1 ||
		{ cat "$1.log" >&2; fail "$1 failed ($1.sh, $1.log)"; }
}
mkdir -p bin
[ "$hostos" = "$build/bin/hostos" ] || ln -sf "$hostos" bin/hostos
image_cmd do_image_hostos_img >do_image_hostos_img.sh
grep -q 'hostos build' do_image_hostos_img.sh || fail "no hostos build in do_image_hostos_img (do_image_hostos_img.sh)"
run_image_cmd do_image_hostos_img
img=$(ls "$imgdeploy"/*.hostos-img)
"$hostos" inspect --json "$img" >inspect.json || fail "hostos inspect $img failed"
grep -q "\"deviceType\": *\"$(var HOSTOS_DEVICE_TYPE)\"" inspect.json || fail "unexpected image: $(cat inspect.json)"
echo "check-layer: $img built from the spec the class wrote ($workdir/spec.toml)"

if "$hostos" bundle create --help >/dev/null 2>&1; then
	step "IMAGE_CMD:hostos-bundle from bitbake -e $image, on the same fake root filesystem"
	mkdir -p "$(var HOSTOS_BUNDLE_WORKDIR)"
	image_cmd do_image_hostos_bundle >do_image_hostos_bundle.sh
	grep -q 'hostos bundle create' do_image_hostos_bundle.sh || fail "no hostos bundle create in do_image_hostos_bundle"
	run_image_cmd do_image_hostos_bundle
	echo "check-layer: $(ls "$imgdeploy"/*.hostos-bundle) built"
else
	echo "check-layer: this hostos has no bundle command: IMAGE_CMD:hostos-bundle not run"
fi
step "done"
