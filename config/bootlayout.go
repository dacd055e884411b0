package config

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The files every balenaOS boot partition ships besides config.json, device-type.json and os-release,
// as meta-balena's balena-image.bb lists them in BALENA_BOOT_PARTITION_FILES (and image-balena.bbclass
// writes image-version-info and the flag file): the balena-image flag, samples in system-connections/
// and system-proxy/, and an empty extra_uEnv.txt on U-Boot boards. balena's own tools count on them:
// balena-device-init's Wi-Fi configure lists system-connections/ and fails when it is missing. The
// texts are hostos's own; only the names and roles follow balenaOS.
const (
	// ImageFlagName marks a balenaOS boot partition; FlasherFlagName marks a flasher's.
	ImageFlagName   = "balena-image"
	FlasherFlagName = "balena-image-flasher"
	// ImageVersionInfoName holds the image name, balena-image-<slug>-<version>.
	ImageVersionInfoName = "image-version-info"
)

// imageFlag is the content of the flag file.
const imageFlag = "DO NOT REMOVE THIS FILE\n"

// sampleConnection is a Wi-Fi connection to copy and edit; .ignore keeps the OS from loading it.
const sampleConnection = `[connection]
id=balena-sample
type=wifi

[wifi]
mode=infrastructure
ssid=YOUR-NETWORK-NAME

[wifi-security]
auth-alg=open
key-mgmt=wpa-psk
psk=YOUR-WIFI-PASSPHRASE

[ipv4]
method=auto

[ipv6]
addr-gen-mode=stable-privacy
method=auto
`

const connectionsReadme = `NetworkManager connection profiles for this device.

At every boot the OS copies each file of this directory into
/etc/NetworkManager/system-connections, except files whose names end in .ignore.

To join a Wi-Fi network, copy balena-sample.ignore to a name without .ignore
(resin-wifi, say), set ssid and psk, and keep id unique. hostos configure
--wifi-ssid/--wifi-key and --system-connection FILE write these files for you.
The format is NetworkManager's keyfile format (man nm-settings-keyfile).
`

// sampleProxy is a redsocks configuration: balenaOS routes TCP through the proxy it names when
// system-proxy/redsocks.conf exists. local_ip and local_port must stay as they are.
const sampleProxy = `base {
	log_debug = off;
	log_info = on;
	log = stderr;
	daemon = off;
	redirector = iptables;
}

redsocks {
	type = socks5;
	ip = 192.0.2.10;
	port = 1080;
	local_ip = 127.0.0.1;
	local_port = 12345;
	// login = "user";
	// password = "secret";
}
`

const proxyReadme = `Proxy settings for this device.

Copy redsocks.conf.ignore to redsocks.conf and set the proxy's type (socks4,
socks5, http-connect or http-relay), ip and port; the OS then sends its TCP
traffic through it with redsocks. Keep local_ip 127.0.0.1 and local_port 12345.
An optional file no_proxy lists addresses to reach directly, one per line.
Files whose names end in .ignore are not used.
`

// BootFile is a file of the boot partition: an absolute slash path and its content.
type BootFile struct {
	Path string
	Data []byte
}

// DefaultBootFiles returns the files a balenaOS boot partition of device type dt ships by default, by
// path, besides config.json, device-type.json, os-release, the bootloader environment and the
// fingerprint. version names the image in image-version-info.
func DefaultBootFiles(dt DeviceType, version string) []BootFile {
	if version == "" {
		version = "unknown"
	}
	files := []BootFile{
		{"/" + ImageFlagName, []byte(imageFlag)},
		{"/" + ImageVersionInfoName, []byte(ImageName(dt, version) + "\n")},
		{"/system-connections/balena-sample.ignore", []byte(sampleConnection)},
		{"/system-connections/README.ignore", []byte(connectionsReadme)},
		{"/system-proxy/redsocks.conf.ignore", []byte(sampleProxy)},
		{"/system-proxy/README.ignore", []byte(proxyReadme)},
	}
	switch dt.Bootloader {
	case BootloaderUBoot, BootloaderRPi:
		// balena's U-Boot boards (Raspberry Pis boot through U-Boot too) ship it empty; the supervisor
		// and the OS add lines to it and U-Boot imports it.
		files = append(files, BootFile{"/extra_uEnv.txt", []byte{}})
	}
	return files
}

// ImageName is the name balenaOS gives an image: balena-image-<slug>-<version>.
func ImageName(dt DeviceType, version string) string {
	return fmt.Sprintf("balena-image-%s-%s", dt.Slug, version)
}

// ValidateConnectionFile checks a NetworkManager keyfile about to be placed in system-connections/ as
// name: a plain file name FAT can hold that stays in the directory, and a connection NetworkManager can
// load (ValidateConnection). build and configure both check connections with it.
func ValidateConnectionFile(name string, data []byte) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("system connection name %q is not a file name", name)
	case strings.ContainsAny(name, "/\\"):
		return fmt.Errorf("system connection name %q must not contain a path separator", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("system connection name %q must not start with a dot", name)
	case strings.ContainsAny(name, "\"*:<>?|") || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("system connection name %q holds a character FAT cannot store", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("system connection name %q is not valid UTF-8", name)
	case len(name) > 255:
		return fmt.Errorf("system connection name is longer than 255 bytes")
	}
	if err := ValidateConnection(data); err != nil {
		return fmt.Errorf("system connection %s: %w", name, err)
	}
	return nil
}
