SUMMARY = "Build, configure and update balenaOS-style operating-system images"
DESCRIPTION = "hostos assembles balenaOS-layout disk images and update bundles from a root filesystem \
(hostos-native, used by image_types_hostos.bbclass) and runs the A/B update, boot fallback and health \
checks on the device (hostos, installed by hostos-update)."
HOMEPAGE = "https://github.com/hostos/hostos"
# The hostos repository carries no licence file yet.
LICENSE = "CLOSED"

# The source is the hostos checkout this layer lives in (HOSTOS_SRCDIR, set in conf/layer.conf), used in
# place through externalsrc: no copy, no fetch, and an edit anywhere in the checkout rebuilds hostos.
inherit go-mod externalsrc

EXTERNALSRC = "${@os.path.normpath(d.getVar('HOSTOS_SRCDIR'))}"
# externalsrc would otherwise drop oe-workdir and oe-logs symlinks into the checkout.
EXTERNALSRC_SYMLINKS = ""

PV = "0.1.0+git"

GO_IMPORT = "github.com/hostos/hostos"
GO_INSTALL = "${GO_IMPORT}/cmd/hostos"

# The repository vendors no modules, so `go install` downloads them (through GOPROXY, into ${B}/.mod) in
# do_compile. Since kirkstone only do_fetch has network access by default, and this recipe has none to do
# it (externalsrc removes do_fetch; scarthgap's bitbake has no gomod:// fetcher): hence the network flag.
# Without network, GOPROXY can name a module cache filled beforehand (see the README).
do_compile[network] = "1"

# go.mod asks for a newer Go than the release's own (scarthgap ships 1.22). OE's Go has no $GOROOT/go.env,
# so the go command would default to GOTOOLCHAIN=local and stop; with auto it fetches the toolchain that
# go.mod names (golang.org/toolchain through GOPROXY, checked against GOSUMDB) in the same networked
# do_compile. Set GOTOOLCHAIN = "local" when the Go in use is new enough.
export GOTOOLCHAIN ?= "auto"
export GOSUMDB ?= "sum.golang.org"

# One self-contained binary, not linked against go-runtime's shared Go library (poky's default on x86-64,
# arm and aarch64): that library is the release's Go, not the one go.mod asks for.
GO_DYNLINK:class-target = ""

# The go class expects its source at ${S}/src/${GO_IMPORT}; externalsrc's ${S} is the checkout itself.
do_configure() {
	install -d ${B}/src/$(dirname ${GO_IMPORT})
	ln -snf ${S} ${B}/src/${GO_IMPORT}
}

# Only the binary: the go class would also install the Go source tree for a -dev package.
do_install() {
	install -D -m 0755 ${B}/${GO_BUILD_BINDIR}/hostos ${D}${bindir}/hostos
}

BBCLASSEXTEND = "native nativesdk"
