SUMMARY = "hostos on the device: boot fallback, post-update health checks and bundle keys"
DESCRIPTION = "Installs hostos with the systemd units that run `hostos rollback-altboot` early at boot and \
`hostos health` once the system is up, the default health checks (/etc/hostos/health.toml) and the public \
keys that signed update bundles are checked against (/etc/hostos/keys/)."
HOMEPAGE = "https://github.com/hostos/hostos"
# The hostos repository carries no licence file yet.
LICENSE = "CLOSED"

inherit allarch systemd features_check

REQUIRED_DISTRO_FEATURES = "systemd"

# PEM public keys (.pub) trusted for signed bundles, installed into /etc/hostos/keys/. Absolute paths, or
# paths found through FILESPATH (a bbappend's files directory). Empty: no keys, only unsigned bundles.
HOSTOS_PUBLIC_KEYS ?= ""

SRC_URI = "file://hostos-rollback-altboot.service \
           file://hostos-health.service \
           file://health.toml \
           ${@' '.join('file://' + k for k in (d.getVar('HOSTOS_PUBLIC_KEYS') or '').split())}"

# scarthgap unpacks local files into WORKDIR, styhead and newer into UNPACKDIR.
S = "${@d.getVar('UNPACKDIR') or d.getVar('WORKDIR')}"

do_install() {
	install -d ${D}${systemd_system_unitdir} ${D}${sysconfdir}/hostos/keys
	for unit in hostos-rollback-altboot.service hostos-health.service; do
		sed -e 's,@BINDIR@,${bindir},g' ${S}/$unit > ${D}${systemd_system_unitdir}/$unit
		chmod 0644 ${D}${systemd_system_unitdir}/$unit
	done
	install -m 0644 ${S}/health.toml ${D}${sysconfdir}/hostos/health.toml
	for key in ${HOSTOS_PUBLIC_KEYS}; do
		# A file:// source lands at its path below ${S}, the leading / of an absolute one dropped.
		install -m 0644 "${S}/${key#/}" ${D}${sysconfdir}/hostos/keys/
	done
}

SYSTEMD_SERVICE:${PN} = "hostos-rollback-altboot.service hostos-health.service"

FILES:${PN} += "${sysconfdir}/hostos"
RDEPENDS:${PN} = "hostos"
