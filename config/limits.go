package config

// The largest input files of each format hostos reads, checked before reading (see partition/disk.ReadInput).
const (
	MaxConfigBytes   = 1 << 20  // config.json; balena's own are a few KiB
	MaxKeyfileBytes  = 64 << 10 // a NetworkManager keyfile
	MaxSSHKeysBytes  = 64 << 10 // an OpenSSH public key or authorized_keys file
	MaxUdevRuleBytes = 1 << 20  // one udev rules file
)
