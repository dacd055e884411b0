SUMMARY = "hostos on the device: boot fallback, post-update health checks and bundle keys"
DESCRIPTION = "Installs hostos with the systemd units that run `hostos rollback-altboot` early at boot and \
`hostos health` once the system is up (unless HOSTOS_ROLLBACK_SERVICES is balena), the default health checks (/etc/hostos/health.toml) and the public \
keys that signed update bundles are checked against (/etc/hostos/keys/)."
HOMEPAGE = "https://github.com/hostos/hostos"
# The hostos repository carries no licence file yet.
LICENSE = "CLOSED"

inherit allarch systemd features_check

REQUIRED_DISTRO_FEATURES = "systemd"

# Which rollback services the image runs, HOSTOS_ROLLBACK_SERVICES (default in conf/layer.conf, see the
# README): "hostos", this package's units, and where meta-balena is in the build a drop-in that keeps its
# rollback-altboot and rollback-health from starting where hostos's units are installed, since beside
# hostos's they would race them over the bootloader environment and their failing-health path cannot roll
# back the flat root slots hostos writes (a drop-in, not a mask: balena-rollback's postinst enables its
# units, which fails on a masked one); "balena", no units here and meta-balena's balena-rollback instead.
python () {
    services = d.getVar('HOSTOS_ROLLBACK_SERVICES')
    if services not in ('hostos', 'balena'):
        bb.fatal('HOSTOS_ROLLBACK_SERVICES = "%s": want "hostos" (hostos-update\'s units) or "balena" (meta-balena\'s balena-rollback)' % services)
}
HOSTOS_UNITS = "${@'hostos-rollback-altboot.service hostos-health.service' if d.getVar('HOSTOS_ROLLBACK_SERVICES') == 'hostos' else ''}"
HOSTOS_DEFERRED_UNITS = "${@'rollback-altboot.service:hostos-rollback-altboot.service rollback-health.service:hostos-health.service' \
    if d.getVar('HOSTOS_ROLLBACK_SERVICES') == 'hostos' and 'balena-common' in (d.getVar('BBFILE_COLLECTIONS') or '').split() else ''}"

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
	for unit in ${HOSTOS_UNITS}; do
		sed -e 's,@BINDIR@,${bindir},g' ${S}/$unit > ${D}${systemd_system_unitdir}/$unit
		chmod 0644 ${D}${systemd_system_unitdir}/$unit
	done
	for pair in ${HOSTOS_DEFERRED_UNITS}; do
		balena=${pair%%:*} hostos=${pair#*:}
		install -d ${D}${systemd_system_unitdir}/$balena.d
		printf '[Unit]\n# meta-hostos: %s judges updates on this image (HOSTOS_ROLLBACK_SERVICES = "hostos")\nConditionPathExists=!%s\n' \
			$hostos ${systemd_system_unitdir}/$hostos > ${D}${systemd_system_unitdir}/$balena.d/hostos.conf
	done
	install -m 0644 ${S}/health.toml ${D}${sysconfdir}/hostos/health.toml
	for key in ${HOSTOS_PUBLIC_KEYS}; do
		# A file:// source lands at its path below ${S}, the leading / of an absolute one dropped.
		install -m 0644 "${S}/${key#/}" ${D}${sysconfdir}/hostos/keys/
	done
}

SYSTEMD_SERVICE:${PN} = "${HOSTOS_UNITS}"

FILES:${PN} += "${sysconfdir}/hostos ${@' '.join('${systemd_system_unitdir}/' + u.split(':')[0] + '.d' for u in d.getVar('HOSTOS_DEFERRED_UNITS').split())}"
RDEPENDS:${PN} = "hostos ${@'balena-rollback' if d.getVar('HOSTOS_ROLLBACK_SERVICES') == 'balena' else ''}"
