package compose

import (
	"strings"
	"testing"

	units "github.com/docker/go-units"
	str2duration "github.com/xhit/go-str2duration/v2"
)

// sizeCases are byte sizes for ramInBytes, valid and not.
var sizeCases = []string{
	"", "0", "1", "512", "1b", "1B", "1k", "1K", "1kb", "1KB", "1kib", "1KiB", "1kiB", "1kB ", "1 k", "1  k",
	"1 ", " 1", "1.5g", "1.5G", "0.5m", ".5m", "5.m", "1e3", "1e3k", "1E3", "1e400", "-1", "-0", "-1k", "+1k",
	"1m", "64M", "1g", "1t", "1p", "1e", "1x", "1kk", "1kbb", "1kibb", "1ki", "1kbi", "1 kib", "k", "kb", "m",
	"1.2.3", "1..", ".", "..", " ", "0x10", "0x1p4", "0x1p4k", "1_000", "Inf", "1Inf", "NaN", "inf1",
	"1\u212a", "1\u212aB", "1k\u023a", "1\u0130", "1\u00b5", "9223372036854775807", "9223372036854775808",
	"9223372036854775807k", "8388608t", "8192p", "99999999999999999999p", "1\xff", "\xff1", "1 \xff",
	"1e-400", "4.9e-324k", "1.0000000000000000001k", "1 kb", "1\tk", "1\nk", "1bk",
}

// durationCases are durations for parseDuration, valid and not.
var durationCases = []string{
	"", "0", "+0", "-0", "00", "0s", "1s", "1.5s", ".5s", "5.s", ".s", "-.s", "1", "1x", "1ns", "1us",
	"1\u00b5s", "1\u03bcs", "1ms", "1m", "1h", "1d", "1w", "1m30s", "2h45m", "1w2d3h4m5s6ms7us8ns", "-1.5h",
	"+1h", "--1h", "1h-1m", "1.s", "1..5s", "1.5.5s", "1e3s", "9223372036854775807ns",
	"9223372036854775808ns", "-9223372036854775808ns", "9223372036854775807s", "15250w", "15251w",
	"15250w1d23h47m16s854ms775us807ns", "15250w1d23h47m16s854ms775us808ns", "0.1234567890123456789012345h",
	"1.99999999999999999999999999999h", "100000000000000000000ns", "1S", "1H", "1 s", " 1s", "1s ",
	"1\xffs", "1h\xff", "2562047h47m16.854775807s", "2562047h47m16.854775808s", "0.000000001ns",
	"1.0000000000000000001w", "99999999999999999999.5s", ".0000000000000000000000000001h",
}

func compareSize(t *testing.T, s string) {
	t.Helper()
	got, err := ramInBytes(s)
	want, wantErr := units.RAMInBytes(s)
	if (err == nil) != (wantErr == nil) || err == nil && got != want {
		t.Errorf("%q: %d, %v; go-units %d, %v", s, got, err, want, wantErr)
	}
}

func compareDuration(t *testing.T, s string) {
	t.Helper()
	got, err := parseDuration(s)
	want, wantErr := str2duration.ParseDuration(s)
	if (err == nil) != (wantErr == nil) || err == nil && got != want {
		t.Errorf("%q: %v, %v; str2duration %v, %v", s, got, err, want, wantErr)
	}
}

// TestRAMInBytesMatchesGoUnits compares ramInBytes with go-units' RAMInBytes.
func TestRAMInBytesMatchesGoUnits(t *testing.T) {
	for _, s := range append(sizeCases, strings.Repeat("9", 400), strings.Repeat("1", 100000)+"k") {
		compareSize(t, s)
	}
}

// TestParseDurationMatchesStr2duration compares parseDuration with go-str2duration's ParseDuration.
func TestParseDurationMatchesStr2duration(t *testing.T) {
	for _, s := range append(durationCases, strings.Repeat("1s", 50000), "0."+strings.Repeat("9", 100000)+"s") {
		compareDuration(t, s)
	}
}

// FuzzRAMInBytesMatchesGoUnits: ramInBytes and go-units agree on every string.
func FuzzRAMInBytesMatchesGoUnits(f *testing.F) {
	for _, s := range sizeCases {
		f.Add(s)
	}
	f.Fuzz(compareSize)
}

// FuzzParseDurationMatchesStr2duration: parseDuration and go-str2duration agree on every string.
func FuzzParseDurationMatchesStr2duration(f *testing.F) {
	for _, s := range durationCases {
		f.Add(s)
	}
	f.Fuzz(compareDuration)
}
