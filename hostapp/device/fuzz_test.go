package device

import (
	"slices"
	"strings"
	"testing"
)

func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 root=LABEL=resin-rootA rootwait", "PARTUUID=a1b2c3d4-02")
	f.Add(`root="LABEL=x" -- root=y`, "/dev/sda2")
	f.Fuzz(func(t *testing.T, cmdline, value string) {
		ParseCmdline(cmdline)
		// A plain value appended last is what the kernel would use.
		if value == "" || strings.ContainsAny(value, " \t\n\r\"") || strings.Contains(cmdline, `"`) || slices.Contains(cmdlineParams(cmdline), "--") {
			return
		}
		if got, ok := ParseCmdline(cmdline + " root=" + value); !ok || got != value {
			t.Fatalf("ParseCmdline(%q) = %q, %v; want %q", cmdline+" root="+value, got, ok, value)
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte(mountinfoB), "/")
	f.Add([]byte(`50 23 0:40 / /mnt/my\040disk rw shared:3 - ext4 /dev/sd\134x1 rw`), "/mnt/my disk")
	f.Fuzz(func(t *testing.T, data []byte, point string) {
		ParseMountinfo(data, point)
		if _, _, err := Active("root=LABEL=resin-rootA", data, emmc("resin-rootA", "resin-rootB")); err != nil {
			return
		}
	})
}
