# Image types in the balenaOS layout, built by hostos-native:
#
#   hostos-img     the disk image (resin-boot, resin-rootA/B, resin-state, resin-data), from
#                  `hostos build --spec`. OE's conversions apply as to wic: hostos-img.zst,
#                  hostos-img.xz, hostos-img.bmap, ...
#   hostos-bundle  the update bundle, from `hostos bundle create`.
#
# Use:  IMAGE_CLASSES += "image_types_hostos"
#       IMAGE_FSTYPES += "hostos-img.zst hostos-img.bmap hostos-bundle"
#
# The IMAGE_CMDs are thin: the HOSTOS_* variables below become a hostos build spec (hostapp/build/spec.go in
# the hostos repository) or command-line flags; hostos does the rest. The layer's README documents the
# variables. Empty means "hostos decides": the device type's default for sizes, alignment and partition table.

# Device type slug from hostos's registry (`hostos build` lists the known ones when given an unknown one).
HOSTOS_DEVICE_TYPE ?= "${MACHINE}"
# OS version of the bundle and of the image (empty: the image takes the root filesystem's VERSION_ID).
HOSTOS_VERSION ?= "${DISTRO_VERSION}"
# "msdos" or "gpt".
HOSTOS_PARTITION_TABLE ?= ""
# MiB.
HOSTOS_ALIGNMENT ?= ""
HOSTOS_BOOT_SIZE ?= ""
HOSTOS_ROOT_SIZE ?= ""
HOSTOS_STATE_SIZE ?= ""
HOSTOS_DATA_SIZE ?= ""
# Whole image, MiB: resin-data grows to fill it. Empty: the smallest image that fits.
HOSTOS_IMAGE_SIZE ?= ""
# Boot partition contents, meta-balena's "src:dst" entries, src relative to DEPLOY_DIR_IMAGE.
HOSTOS_BOOT_PARTITION_FILES ?= ""
# Files. A relative path is taken from the build directory (TOPDIR).
HOSTOS_CONFIG_JSON ?= ""
HOSTOS_SPLASH ?= ""
HOSTOS_OS_RELEASE ?= ""
HOSTOS_SYSTEM_CONNECTIONS ?= ""
# Private key signing the bundle; empty: unsigned.
HOSTOS_SIGNING_KEY ?= ""
# developmentMode in config.json.
HOSTOS_DEVELOPMENT ?= "0"
# A release preloaded into resin-data at build time (the spec's [preload] table): a compose file, its
# services' images as space-separated SERVICE=SOURCE (an OCI layout directory, a docker save or OCI
# archive, or docker://registry/repo:tag; a relative path is taken from TOPDIR) and the app's name.
# Empty: nothing preloaded.
HOSTOS_PRELOAD_COMPOSE ?= ""
HOSTOS_PRELOAD_IMAGES ?= ""
HOSTOS_PRELOAD_APP_NAME ?= ""

# Every variable a hostos image type reads: changing one rebuilds the image.
HOSTOS_IMG_VARS = "HOSTOS_DEVICE_TYPE HOSTOS_VERSION HOSTOS_PARTITION_TABLE HOSTOS_ALIGNMENT \
    HOSTOS_BOOT_SIZE HOSTOS_ROOT_SIZE HOSTOS_STATE_SIZE HOSTOS_DATA_SIZE HOSTOS_IMAGE_SIZE \
    HOSTOS_BOOT_PARTITION_FILES HOSTOS_CONFIG_JSON HOSTOS_SPLASH HOSTOS_OS_RELEASE \
    HOSTOS_SYSTEM_CONNECTIONS HOSTOS_DEVELOPMENT HOSTOS_PRELOAD_COMPOSE HOSTOS_PRELOAD_IMAGES \
    HOSTOS_PRELOAD_APP_NAME IMAGE_ROOTFS DEPLOY_DIR_IMAGE"
HOSTOS_BUNDLE_VARS = "HOSTOS_DEVICE_TYPE HOSTOS_VERSION HOSTOS_BOOT_PARTITION_FILES HOSTOS_SIGNING_KEY \
    IMAGE_ROOTFS DEPLOY_DIR_IMAGE"

# The native tools each type runs: hostos, and what hostos runs (mkfs.ext4, debugfs, e2fsck, resize2fs;
# mkfs.vfat, fsck.vfat; mmd, mcopy).
HOSTOS_IMG_DEPENDS ?= "hostos-native e2fsprogs-native dosfstools-native mtools-native"
HOSTOS_BUNDLE_DEPENDS ?= "hostos-native e2fsprogs-native"

def hostos_toml_string(s):
    """s as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for c in s:
        if c in '"\\':
            out.append('\\' + c)
        elif ord(c) < 0x20 or ord(c) == 0x7f:
            out.append('\\u%04x' % ord(c))
        else:
            out.append(c)
    return '"' + ''.join(out) + '"'

def hostos_path(d, var):
    """The file var names, absolute (a relative path is taken from the build directory, TOPDIR), or ''."""
    p = (d.getVar(var) or '').strip()
    return os.path.join(d.getVar('TOPDIR'), p) if p else ''

def hostos_paths(d, var):
    """The files var names, space-separated, each as hostos_path."""
    return [os.path.join(d.getVar('TOPDIR'), p) for p in (d.getVar(var) or '').split()]

def hostos_preload_images(d):
    """HOSTOS_PRELOAD_IMAGES as (service, source) pairs, a local source made absolute as hostos_path."""
    pairs = []
    for item in (d.getVar('HOSTOS_PRELOAD_IMAGES') or '').split():
        service, sep, src = item.partition('=')
        if not sep or not service or not src:
            bb.fatal('HOSTOS_PRELOAD_IMAGES: "%s": want SERVICE=SOURCE' % item)
        if not src.startswith('docker://'):
            src = os.path.join(d.getVar('TOPDIR'), src)
        pairs.append((service, src))
    return pairs

def hostos_preload_files(d):
    """The local files and directories the preload reads, for file-checksums."""
    files = [src for _, src in hostos_preload_images(d) if not src.startswith('docker://')]
    return ' '.join('%s:%s' % (p, os.path.exists(p)) for p in files if ':' not in p)

def hostos_mib(d, var):
    """var as a whole number of MiB, or '' when empty (hostos then uses the device type's default)."""
    v = (d.getVar(var) or '').strip()
    if v and not v.isdigit():
        bb.fatal('%s = "%s": want a whole number of MiB, or nothing for the default' % (var, v))
    return v

def hostos_spec(d):
    """The `hostos build --spec` TOML for this image. A key whose variable is empty is left out."""
    q = hostos_toml_string

    def string(var):
        v = d.getVar(var) or ''
        return q(v) if v else ''

    def strings(items):
        return '[' + ', '.join(q(i) for i in items) + ']' if items else ''

    def path(var):
        p = hostos_path(d, var)
        return q(p) if p else ''

    def table(name, keys):
        lines = ['%s = %s' % (k, v) for k, v in keys if v]
        return ['', '[%s]' % name] + lines if lines else []

    lines = ['# hostos build spec for %s, written by image_types_hostos.bbclass' % d.getVar('PN')]
    lines += ['%s = %s' % (k, v) for k, v in [
        ('device_type', string('HOSTOS_DEVICE_TYPE')),
        ('partition_table', string('HOSTOS_PARTITION_TABLE')),
        ('alignment_mib', hostos_mib(d, 'HOSTOS_ALIGNMENT')),
        ('image_size_mib', hostos_mib(d, 'HOSTOS_IMAGE_SIZE')),
        ('version', string('HOSTOS_VERSION')),
        ('development', 'true' if bb.utils.to_boolean(d.getVar('HOSTOS_DEVELOPMENT')) else 'false'),
    ] if v]
    lines += table('sizes', [
        ('boot', hostos_mib(d, 'HOSTOS_BOOT_SIZE')),
        ('root', hostos_mib(d, 'HOSTOS_ROOT_SIZE')),
        ('state', hostos_mib(d, 'HOSTOS_STATE_SIZE')),
        ('data', hostos_mib(d, 'HOSTOS_DATA_SIZE')),
    ])
    lines += table('rootfs', [('source', string('IMAGE_ROOTFS'))])
    lines += table('boot', [
        ('deploy_dir', string('DEPLOY_DIR_IMAGE')),
        ('files', strings((d.getVar('HOSTOS_BOOT_PARTITION_FILES') or '').split())),
        ('config_json', path('HOSTOS_CONFIG_JSON')),
        ('splash', path('HOSTOS_SPLASH')),
        ('os_release', path('HOSTOS_OS_RELEASE')),
        ('system_connections', strings(hostos_paths(d, 'HOSTOS_SYSTEM_CONNECTIONS'))),
    ])
    images = hostos_preload_images(d)
    if images and not d.getVar('HOSTOS_PRELOAD_COMPOSE'):
        bb.fatal('HOSTOS_PRELOAD_IMAGES is set but HOSTOS_PRELOAD_COMPOSE is not')
    if d.getVar('HOSTOS_PRELOAD_COMPOSE'):
        lines += table('preload', [
            ('compose', path('HOSTOS_PRELOAD_COMPOSE')),
            ('app_name', string('HOSTOS_PRELOAD_APP_NAME')),
            ('images', '{ ' + ', '.join('%s = %s' % (q(k), q(v)) for k, v in images) + ' }' if images else ''),
        ])
    return '\n'.join(lines)

def hostos_bundle_args(d):
    """The arguments of `hostos bundle create` but -o, shell-quoted:
    --rootfs IMAGE_ROOTFS --device-type SLUG --version V --deploy-dir DEPLOY_DIR_IMAGE
    [--boot-files SRC:DST]... [--sign KEY]"""
    import shlex
    args = ['--rootfs', d.getVar('IMAGE_ROOTFS'),
            '--device-type', d.getVar('HOSTOS_DEVICE_TYPE') or '',
            '--version', d.getVar('HOSTOS_VERSION') or '',
            '--deploy-dir', d.getVar('DEPLOY_DIR_IMAGE')]
    for f in (d.getVar('HOSTOS_BOOT_PARTITION_FILES') or '').split():
        args += ['--boot-files', f]
    if d.getVar('HOSTOS_SIGNING_KEY'):
        args += ['--sign', hostos_path(d, 'HOSTOS_SIGNING_KEY')]
    return ' '.join(shlex.quote(a) for a in args)

def hostos_file_checksums(d, single, lists=''):
    """file-checksums entries for the files the variables name: editing one rebuilds the image."""
    paths = [hostos_path(d, v) for v in single.split() if d.getVar(v)]
    paths += [p for v in lists.split() for p in hostos_paths(d, v)]
    # (bitbake's format cannot carry a path with a colon)
    return ' '.join('%s:%s' % (p, os.path.exists(p)) for p in paths if ':' not in p)

HOSTOS_SPEC = "${@hostos_spec(d)}"
HOSTOS_SPEC[vardeps] = "${HOSTOS_IMG_VARS}"

# hostos builds in a directory of its own that pseudo does not track (as wic does with build-wic). It copies
# IMAGE_ROOTFS with mkfs.ext4 -d, which runs under pseudo and so sees the owners pseudo recorded (all but the
# root directory's own: hostos reads that itself, and Go programs bypass pseudo; see the README).
# SOURCE_DATE_EPOCH is exported to every task by bitbake.conf; hostos takes its timestamps from it.
HOSTOS_IMG_WORKDIR = "${WORKDIR}/build-hostos-img"
IMAGE_CMD:hostos-img () {
	spec="${HOSTOS_IMG_WORKDIR}/spec.toml"
	cat > "$spec" <<'HOSTOS_SPEC_END'
${HOSTOS_SPEC}
HOSTOS_SPEC_END
	hostos build -q --spec "$spec" -o "${HOSTOS_IMG_WORKDIR}/${IMAGE_NAME}.hostos-img"
	mv "${HOSTOS_IMG_WORKDIR}/${IMAGE_NAME}.hostos-img" "${IMGDEPLOYDIR}/${IMAGE_NAME}.hostos-img"
}
do_image_hostos_img[cleandirs] = "${HOSTOS_IMG_WORKDIR}"
do_image_hostos_img[vardeps] += "${HOSTOS_IMG_VARS}"
do_image_hostos_img[depends] += "${@' '.join('%s:do_populate_sysroot' % r for r in d.getVar('HOSTOS_IMG_DEPENDS').split())}"
do_image_hostos_img[file-checksums] += "${@hostos_file_checksums(d, 'HOSTOS_CONFIG_JSON HOSTOS_SPLASH HOSTOS_OS_RELEASE HOSTOS_PRELOAD_COMPOSE', 'HOSTOS_SYSTEM_CONNECTIONS')}"
do_image_hostos_img[file-checksums] += "${@hostos_preload_files(d)}"
# Boot partition files come from DEPLOY_DIR_IMAGE: everything the image depends on must have deployed.
do_image_hostos_img[recrdeptask] += "do_deploy"

HOSTOS_BUNDLE_WORKDIR = "${WORKDIR}/build-hostos-bundle"
IMAGE_CMD:hostos-bundle () {
	hostos bundle create ${@hostos_bundle_args(d)} \
		-o "${HOSTOS_BUNDLE_WORKDIR}/${IMAGE_NAME}.hostos-bundle"
	mv "${HOSTOS_BUNDLE_WORKDIR}/${IMAGE_NAME}.hostos-bundle" "${IMGDEPLOYDIR}/${IMAGE_NAME}.hostos-bundle"
}
do_image_hostos_bundle[cleandirs] = "${HOSTOS_BUNDLE_WORKDIR}"
do_image_hostos_bundle[vardeps] += "${HOSTOS_BUNDLE_VARS}"
do_image_hostos_bundle[depends] += "${@' '.join('%s:do_populate_sysroot' % r for r in d.getVar('HOSTOS_BUNDLE_DEPENDS').split())}"
do_image_hostos_bundle[file-checksums] += "${@hostos_file_checksums(d, 'HOSTOS_SIGNING_KEY')}"
do_image_hostos_bundle[recrdeptask] += "do_deploy"

PSEUDO_IGNORE_PATHS .= ",${HOSTOS_IMG_WORKDIR},${HOSTOS_BUNDLE_WORKDIR}"

IMAGE_TYPES:append = " hostos-img hostos-img.zst hostos-img.xz hostos-img.bmap hostos-bundle"
