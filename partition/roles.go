package partition

// Role is what a partition is for in the balenaOS layout. It is the one description of that layout's
// partitions (label spellings, filesystem) that build, inspect, configure, update and the device code share.
type Role int

// The partitions of the balenaOS layout, in disk order.
const (
	Boot Role = iota
	RootA
	RootB
	State
	Data
)

// Roles lists every role in disk order.
var Roles = []Role{Boot, RootA, RootB, State, Data}

var roleInfo = [...]struct {
	name, suffix, fs string
}{
	Boot:  {"boot", "boot", "vfat"},
	RootA: {"rootA", "rootA", "ext4"},
	RootB: {"rootB", "rootB", "ext4"},
	State: {"state", "state", "ext4"},
	Data:  {"data", "data", "ext4"},
}

func (r Role) String() string { return roleInfo[r].name }

// Label is the label hostos writes for the role: resin-boot, resin-rootA, ...
func (r Role) Label() string { return "resin-" + roleInfo[r].suffix }

// Labels are the labels the installed OS accepts for the role, in the order they are tried: balenaOS
// finds partitions by label and takes resin-* and balena-* alike.
func (r Role) Labels() []string {
	return []string{"resin-" + roleInfo[r].suffix, "balena-" + roleInfo[r].suffix}
}

// ImageLabels are Labels plus the flasher images' spelling (flash-boot, flash-rootA, ...), for tools
// that read any balenaOS image.
func (r Role) ImageLabels() []string { return append(r.Labels(), "flash-"+roleInfo[r].suffix) }

// Filesystem is the filesystem the role's partition holds ("vfat" or "ext4", as rootfs/probe names them).
func (r Role) Filesystem() string { return roleInfo[r].fs }
