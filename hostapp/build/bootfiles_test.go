package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBootFileDeviceOwned: a boot file list may not name what belongs to the device or the bootloader
// environment, however the name is spelt for the case-insensitive FAT. "kernel:/config.json" used to be
// dropped silently in favour of the generated config.json.
func TestBootFileDeviceOwned(t *testing.T) {
	for _, tc := range []struct {
		entry, why string
	}{
		{"kernel:/config.json", "/config.json belongs to the device"},
		{"kernel:/CONFIG.JSON", "/config.json belongs to the device"},
		{"kernel:config.json.", "/config.json belongs to the device"},
		{"kernel:/./balenaos.fingerprint", "/balenaos.fingerprint belongs to the device"},
		{"logo.png:/Splash/balena-logo.png", "/splash/ belongs to the device"},
		{"conn:/system-connections/", "/system-connections/ belongs to the device"},
		{"proxy://System-Proxy//redsocks.conf", "/system-proxy/ belongs to the device"},
		{"env:/extra_uEnv.txt", "/extra_uEnv.txt belongs to the device"},
		{"env:/grub/grubenv", "/grub/grubenv is the bootloader environment"},
		{"env:/EFI/BOOT/GRUBENV", "/EFI/BOOT/grubenv is the bootloader environment"},
		{"env:/resinOS_uEnv.txt", "/resinOS_uEnv.txt is the bootloader environment"},
		{"env:/bootenv", "/bootenv is the bootloader environment"},
		{"x:/SYSTEM~1/x", "8.3 alias"},
		{"x:/" + strings.Repeat("d/", 70) + "x", "nested deeper than 64"},
	} {
		_, err := ParseBootFile(tc.entry)
		if err == nil || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), tc.entry) {
			t.Errorf("ParseBootFile(%q): %v, want an error naming it and saying %q", tc.entry, err, tc.why)
		}
	}
	for _, ok := range []string{"kernel", "kernel:/config.json.bak", "dtbs:/", "overlays:/overlays/", "grub.cfg:/grub/grub.cfg", "logo:/splashscreen.png"} {
		if _, err := ParseBootFile(ok); err != nil {
			t.Errorf("ParseBootFile(%q): %v", ok, err)
		}
	}
	if _, err := ParseSpec([]byte("[boot]\nfiles = [\"kernel:/config.json\"]\n"), "spec.toml", t.TempDir()); err == nil ||
		!strings.Contains(err.Error(), "belongs to the device") {
		t.Errorf("a spec with kernel:/config.json: %v, want a refusal", err)
	}

	// A directory source copies its files to their names: its config.json would land on the device's.
	deploy := t.TempDir()
	for _, n := range []string{"a.dtb", "Config.json"} {
		if err := os.WriteFile(filepath.Join(deploy, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := expandBootFiles([]string{".:/"}, deploy); err == nil || !strings.Contains(err.Error(), "/Config.json") {
		t.Errorf("a directory source holding Config.json copied to /: %v, want a refusal naming it", err)
	}
	if files, err := expandBootFiles([]string{".:/dtbs/"}, deploy); err != nil || len(files) != 2 {
		t.Errorf("the same directory to /dtbs/: %v, %v", files, err)
	}
}
