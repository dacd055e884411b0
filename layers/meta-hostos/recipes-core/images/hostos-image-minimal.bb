SUMMARY = "A small systemd image in the balenaOS layout, updatable with hostos"
DESCRIPTION = "core-image-minimal with hostos and its update services, built as a hostos disk image \
(compressed, with a bmap) and an update bundle."
LICENSE = "MIT"

IMAGE_INSTALL = "packagegroup-core-boot hostos-update ${CORE_IMAGE_EXTRA_INSTALL}"
IMAGE_LINGUAS = " "

inherit core-image features_check

# hostos-update's units need systemd as init: INIT_MANAGER = "systemd" in local.conf.
REQUIRED_DISTRO_FEATURES = "systemd"

IMAGE_CLASSES += "image_types_hostos"
IMAGE_FSTYPES = "hostos-img.zst hostos-img.bmap hostos-bundle"

# The kernel in the boot partition. A bootable image also needs the machine's bootloader files here
# (meta-balena's BALENA_BOOT_PARTITION_FILES of the machine are in the same src:dst syntax).
HOSTOS_BOOT_PARTITION_FILES ?= "${KERNEL_IMAGETYPE}:/${KERNEL_IMAGETYPE}"

