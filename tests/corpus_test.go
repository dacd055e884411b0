package tests

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// patchAt writes b at off of path.
func patchAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	_, err = f.WriteAt(b, off)
	must(t, err)
}

func le16(v uint16) []byte { b := make([]byte, 2); binary.LittleEndian.PutUint16(b, v); return b }
func le32(v uint32) []byte { b := make([]byte, 4); binary.LittleEndian.PutUint32(b, v); return b }

// fatDamage copies img and applies fn to the copy's boot FAT (FAT16: offsets of the boot sector and of
// both FATs passed in).
func fatDamage(t *testing.T, img, dst string, fn func(boot, fat1, fat2 int64)) string {
	t.Helper()
	copyFile(t, img, dst)
	off, _ := bootRange(t, dst)
	f, err := os.Open(dst)
	must(t, err)
	bs := make([]byte, 512)
	_, err = f.ReadAt(bs, off)
	f.Close()
	must(t, err)
	bps := int64(binary.LittleEndian.Uint16(bs[11:]))
	reserved := int64(binary.LittleEndian.Uint16(bs[14:]))
	fatSectors := int64(binary.LittleEndian.Uint16(bs[22:]))
	fat1 := off + reserved*bps
	fn(off, fat1, fat1+fatSectors*bps)
	return dst
}

// patchGPTEntry sets entry n's first and last LBA in both entry arrays of a GPT image and fixes every
// checksum, so that only the geometry is wrong.
func patchGPTEntry(t *testing.T, path string, n int, first, last uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	fi, err := f.Stat()
	must(t, err)
	total := uint64(fi.Size() / 512)
	for _, hdrLBA := range []uint64{1, total - 1} {
		h := make([]byte, 512)
		_, err := f.ReadAt(h, int64(hdrLBA*512))
		must(t, err)
		arr := binary.LittleEndian.Uint64(h[72:])
		num, size := binary.LittleEndian.Uint32(h[80:]), binary.LittleEndian.Uint32(h[84:])
		entries := make([]byte, int(num)*int(size))
		_, err = f.ReadAt(entries, int64(arr*512))
		must(t, err)
		e := entries[(n-1)*int(size):]
		binary.LittleEndian.PutUint64(e[32:], first)
		binary.LittleEndian.PutUint64(e[40:], last)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
		binary.LittleEndian.PutUint32(h[16:], 0)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		_, err = f.WriteAt(entries, int64(arr*512))
		must(t, err)
		_, err = f.WriteAt(h, int64(hdrLBA*512))
		must(t, err)
	}
}

// TestBadInputCorpusMore: crafted FATs and GPTs, broken EBR chains, bundles refused before any write,
// sources and servers that fail, config, keyfile and spec inputs, and flags used wrongly. Each case: one
// line naming the problem, the exit code, every input byte unchanged, nothing left behind, bounded time.
func TestBadInputCorpusMore(t *testing.T) {
	t.Parallel() // own images and work directories: runs beside the other long tests
	fx := newUpdateFixture(t, "genericx86-64-ext")
	dir := t.TempDir()
	img := copyFile(t, fx.img, filepath.Join(dir, "good.img"))
	bundle := copyFile(t, fx.bundle, filepath.Join(dir, "v2.hostos"))
	w := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, b, 0o644))
		return p
	}
	const mibSectors = 2048

	// Crafted boot FATs (FAT16 on this device type).
	fats := []struct{ name, img, want string }{
		{"FAT chain loops", fatDamage(t, img, filepath.Join(dir, "fat-loop.img"), func(_, f1, f2 int64) {
			patchAt(t, filepath.Join(dir, "fat-loop.img"), f1+2*2, le16(2))
			patchAt(t, filepath.Join(dir, "fat-loop.img"), f2+2*2, le16(2))
		}), "loop"},
		{"FAT chain runs into a free cluster", fatDamage(t, img, filepath.Join(dir, "fat-free.img"), func(_, f1, f2 int64) {
			patchAt(t, filepath.Join(dir, "fat-free.img"), f1+2*2, le16(0))
			patchAt(t, filepath.Join(dir, "fat-free.img"), f2+2*2, le16(0))
		}), "cluster"},
		{"FAT chain points past the last cluster", fatDamage(t, img, filepath.Join(dir, "fat-range.img"), func(_, f1, f2 int64) {
			patchAt(t, filepath.Join(dir, "fat-range.img"), f1+2*2, le16(0xfff0))
			patchAt(t, filepath.Join(dir, "fat-range.img"), f2+2*2, le16(0xfff0))
		}), "cluster"},
		{"zero bytes per sector", fatDamage(t, img, filepath.Join(dir, "fat-bps.img"), func(b, _, _ int64) {
			patchAt(t, filepath.Join(dir, "fat-bps.img"), b+11, le16(0))
		}), "sector"},
		{"sectors per cluster not a power of two", fatDamage(t, img, filepath.Join(dir, "fat-spc.img"), func(b, _, _ int64) {
			patchAt(t, filepath.Join(dir, "fat-spc.img"), b+13, []byte{3})
		}), "cluster"},
		{"no FAT copies", fatDamage(t, img, filepath.Join(dir, "fat-nfats.img"), func(b, _, _ int64) {
			patchAt(t, filepath.Join(dir, "fat-nfats.img"), b+16, []byte{0})
		}), "no fat copies"},
		{"file system larger than its partition", fatDamage(t, img, filepath.Join(dir, "fat-total.img"), func(b, _, _ int64) {
			patchAt(t, filepath.Join(dir, "fat-total.img"), b+19, le16(0))
			patchAt(t, filepath.Join(dir, "fat-total.img"), b+32, le32(0xffffff00))
		}), "partition"},
	}
	var cases []badInput
	for _, f := range fats {
		cases = append(cases,
			badInput{name: "configure: " + f.name, args: []string{"configure", f.img, "--hostname", "x"}, inputs: []string{f.img}, code: 1, want: f.want},
			badInput{name: "config write: " + f.name, args: []string{"config", "write", f.img, "hostname", "x"}, inputs: []string{f.img}, code: 1, want: f.want},
			badInput{name: "update: " + f.name, args: []string{"update", "--image", f.img, bundle}, inputs: []string{f.img, bundle}, code: 1, want: f.want},
		)
	}

	// Crafted GPTs (checksums right, geometry wrong) and broken msdos tables.
	gptImg := builtImage(t, "generic-amd64-efi", "gpt")
	gptOverHeader := copyFile(t, gptImg, filepath.Join(dir, "gpt-header.img"))
	patchGPTEntry(t, gptOverHeader, 3, 1, 60*mibSectors)
	gptPastEnd := copyFile(t, gptImg, filepath.Join(dir, "gpt-end.img"))
	st, err := os.Stat(gptPastEnd)
	must(t, err)
	patchGPTEntry(t, gptPastEnd, 3, 100*mibSectors, uint64(st.Size()/512)-2)
	gptOverlap := copyFile(t, gptImg, filepath.Join(dir, "gpt-overlap.img"))
	patchGPTEntry(t, gptOverlap, 2, 10*mibSectors, 500*mibSectors)
	ebrLoop := copyFile(t, img, filepath.Join(dir, "ebr-loop.img"))
	extStart := func(p string) int64 {
		b := make([]byte, 4)
		f, err := os.Open(p)
		must(t, err)
		defer f.Close()
		_, err = f.ReadAt(b, 446+3*16+8)
		must(t, err)
		return int64(binary.LittleEndian.Uint32(b)) * 512
	}
	patchAt(t, ebrLoop, extStart(ebrLoop)+446+16+8, le32(0)) // the link of the first EBR points back at itself
	noSig := copyFile(t, img, filepath.Join(dir, "nosig.img"))
	patchAt(t, noSig, 510, []byte{0, 0})
	empty := w("empty.img", nil)
	junk := w("junk.img", bytes.Repeat([]byte("hostos? "), 1<<17))
	for _, tc := range []struct{ name, img, want string }{
		{"gpt partition over the primary header", gptOverHeader, "before the first usable byte"},
		{"gpt partition over the backup gpt", gptPastEnd, "past the usable end"},
		{"gpt partitions overlap", gptOverlap, "overlap"},
		{"ebr chain loops", ebrLoop, "loops"},
		{"no boot signature", noSig, "boot signature"},
		{"empty file", empty, "empty.img"},
		{"not a disk image", junk, "junk.img"},
	} {
		cases = append(cases,
			badInput{name: "configure: " + tc.name, args: []string{"configure", tc.img, "--hostname", "x"}, inputs: []string{tc.img}, code: 1, want: tc.want},
			badInput{name: "update: " + tc.name, args: []string{"update", "--image", tc.img, bundle}, inputs: []string{tc.img, bundle}, code: 1, want: tc.want},
			badInput{name: "status: " + tc.name, args: []string{"status", "--image", tc.img}, inputs: []string{tc.img}, code: 1, want: tc.want},
		)
	}

	// Bundles refused before a byte of the image is written.
	good, err := os.ReadFile(bundle)
	must(t, err)
	keyDir := filepath.Join(dir, "keys")
	must(t, os.MkdirAll(keyDir, 0o755))
	mustHostos(t, nil, nil, "bundle", "keygen", "-o", filepath.Join(keyDir, "release"))
	otherKey := filepath.Join(t.TempDir(), "other")
	mustHostos(t, nil, nil, "bundle", "keygen", "-o", otherKey)
	signedOther := filepath.Join(dir, "signed-other.hostos")
	mustHostos(t, nil, nil, "bundle", "create", "-q", "--rootfs", rootTree(t, t.TempDir(), "5.0.0"), "--device-type", "genericx86-64-ext",
		"--version", "5.0.0", "--root-size", "32", "--sign", otherKey, "-o", signedOther)
	piBundle := filepath.Join(dir, "pi.hostos")
	mustHostos(t, nil, nil, "bundle", "create", "-q", "--rootfs", rootTree(t, t.TempDir(), "6.0.0"), "--device-type", "raspberrypi4-64",
		"--version", "6.0.0", "--root-size", "32", "-o", piBundle)
	tooBig := filepath.Join(dir, "big.hostos")
	mustHostos(t, nil, nil, "bundle", "create", "-q", "--rootfs", rootTree(t, t.TempDir(), "7.0.0"), "--device-type", "genericx86-64-ext",
		"--version", "7.0.0", "--root-size", "200", "-o", tooBig)
	for _, tc := range []struct {
		name, src string
		extra     []string
		want      string
	}{
		{"empty bundle", w("empty.hostos", nil), nil, "empty.hostos"},
		{"random bytes", w("random.hostos", randomBytes(1<<20)), nil, "random.hostos"},
		{"header only", w("head.hostos", good[:512]), nil, "truncated"},
		{"metadata cut short", w("meta.hostos", good[:700]), nil, "truncated"},
		{"for another device type", piBundle, nil, "raspberrypi4-64"},
		{"unsigned where keys are required", bundle, []string{"--keys-dir", keyDir}, "not signed"},
		{"signed with another key", signedOther, []string{"--keys-dir", keyDir}, "signature"},
		{"larger than the slot", tooBig, nil, "MiB"},
		{"missing file", filepath.Join(dir, "nope.hostos"), nil, "nope.hostos"},
	} {
		cases = append(cases, badInput{name: "bundle: " + tc.name, args: append([]string{"update", "--image", img, tc.src}, tc.extra...),
			inputs: []string{img}, code: 1, want: tc.want})
	}

	// Sources and servers that fail.
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing.hostos":
			http.NotFound(rw, r)
		case "/broken.hostos":
			http.Error(rw, "down", http.StatusInternalServerError)
		case "/page.hostos":
			rw.Write([]byte("<html><body>a login page</body></html>"))
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct{ name, src, want string }{
		{"http 404", srv.URL + "/missing.hostos", "404"},
		{"http 500 on every try", srv.URL + "/broken.hostos", "500"},
		{"http page that is no update", srv.URL + "/page.hostos", "page.hostos"},
		{"connection refused", "http://" + closed + "/x.hostos", "refused"},
		{"registry refusing connections", "docker://" + closed + "/os:1", closed},
		{"unknown scheme", "gopher://127.0.0.1/x", "gopher"},
	} {
		cases = append(cases, badInput{name: "source: " + tc.name, args: []string{"update", "--image", img, tc.src}, inputs: []string{img}, code: 1, want: tc.want})
	}

	// config.json, keyfile and key inputs.
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"config inject: invalid UTF-8", []string{"config", "inject", img, w("utf8.json", []byte("{\"hostname\":\"a\xffb\"}"))}, 1, "UTF-8"},
		{"config inject: an array", []string{"config", "inject", img, w("array.json", []byte("[1,2]"))}, 1, "object"},
		{"config inject: nested 100000 deep", []string{"config", "inject", img, w("deep.json", []byte(`{"x":`+deep+`}`))}, 1, "deep.json"},
		{"config inject: trailing garbage", []string{"config", "inject", img, w("trail.json", []byte(`{"a":1} {"b":2}`))}, 1, "trail.json"},
		{"config write: hostname with an underscore", []string{"config", "write", img, "hostname", "bad_name"}, 1, "bad_name"},
		{"config write: applicationId not a number", []string{"config", "write", img, "applicationId", "abc", "--string"}, 1, "applicationId"},
		{"--system-connection with a NUL byte", []string{"configure", img, "--system-connection", w("nul.nmconnection", []byte("[connection]\nid=a\x00b\ntype=wifi\n"))}, 1, "nul.nmconnection"},
		{"--system-connection of binary garbage", []string{"configure", img, "--system-connection", w("garbage", randomBytes(4096))}, 1, "garbage"},
		{"--ssh-key file of garbage", []string{"configure", img, "--ssh-key", w("keys.pub", []byte("not a key at all\n"))}, 1, "ssh"},
		{"--udev-rule with a path for a name", []string{"configure", img, "--udev-rule", "../../x=" + w("r.rules", []byte("ACTION==\"add\"\n"))}, 1, "../../x"},
		{"--key that is no key", []string{"update", "--image", img, "--key", w("k.pub", []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")), bundle}, 1, "k.pub"},
		{"--checks that is no TOML", []string{"health", "--image", img, "--checks", w("checks.toml", []byte("[[check]\nname=\n"))}, 1, "checks.toml"},
	} {
		cases = append(cases, badInput{name: tc.name, args: tc.args, inputs: []string{img, bundle}, code: tc.code, want: tc.want})
	}

	// Specs.
	spec := func(name, body string) string { return w(name, []byte(body)) }
	for _, tc := range []struct{ name, spec, want string }{
		{"boot file onto config.json", spec("s1.toml", "[boot]\nfiles = [\""+fx.bundle+":/config.json\"]\n"), "config.json"},
		{"splash that is no PNG", spec("s2.toml", "[boot]\nsplash = \""+fx.bundle+"\"\n"), "splash"},
		{"config_json that is an array", spec("s3.toml", "[boot]\nconfig_json = \""+w("arr.json", []byte("[]"))+"\"\n"), "object"},
		{"system connection with a NUL", spec("s4.toml", "[boot]\nsystem_connections = [\""+filepath.Join(dir, "nul.nmconnection")+"\"]\n"), "nul.nmconnection"},
		{"alignment of zero bytes is fine but negative is not", spec("s5.toml", "alignment_mib = -4\n"), "alignment_mib"},
		{"a table kind that does not exist", spec("s6.toml", "partition_table = \"apm\"\n"), "partition_table"},
	} {
		out := filepath.Join(dir, "spec-out.img")
		cases = append(cases, badInput{name: "spec: " + tc.name, args: []string{"build", "--spec", tc.spec, "-o", out}, inputs: []string{tc.spec}, code: 1, want: tc.want})
	}

	// Flags used wrongly.
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"--booted without --image", []string{"status", "--booted", "A"}, 2, "--booted"},
		{"--booted C", []string{"status", "--image", img, "--booted", "C"}, 1, "C"},
		{"build --compress bogus", []string{"build", "--compress", "lz4", "-o", filepath.Join(dir, "c.img")}, 2, "lz4"},
		{"update without a source", []string{"update", "--image", img}, 2, "arg"},
		{"--reboot with --image", []string{"update", "--image", img, "--reboot", bundle}, 2, "--reboot"},
		{"unknown command", []string{"flashy"}, 2, "flashy"},
	} {
		cases = append(cases, badInput{name: "flags: " + tc.name, args: tc.args, inputs: []string{img, bundle}, code: tc.code, want: tc.want})
	}
	runCorpus(t, dir, cases)
}

// TestReleaseRenderCorpus: projects hostos release render refuses, with the project left as it was and
// no output folder left behind.
func TestReleaseRenderCorpus(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	must(t, os.MkdirAll(empty, 0o755))
	must(t, os.WriteFile(filepath.Join(empty, "README.md"), []byte("no Dockerfile here\n"), 0o644))
	bad := filepath.Join(dir, "bad")
	must(t, os.MkdirAll(bad, 0o755))
	compose := filepath.Join(bad, "docker-compose.yml")
	must(t, os.WriteFile(compose, []byte("services:\n  web:\n    build: .\n    logging:\n      driver: syslog\n"), 0o644))
	dockerfile := filepath.Join(bad, "Dockerfile")
	must(t, os.WriteFile(dockerfile, []byte("FROM alpine\n"), 0o644))
	out := filepath.Join(dir, "out")
	runCorpus(t, dir, []badInput{
		{name: "no Dockerfile", args: []string{"release", "render", empty, "--device-type", "raspberrypi4-64", "-o", out},
			code: 1, want: "no docker-compose.yml, Dockerfile, Dockerfile.template or package.json"},
		{name: "unsupported compose field", args: []string{"release", "render", bad, "--device-type", "raspberrypi4-64", "-o", out},
			inputs: []string{compose, dockerfile}, code: 1, want: "docker-compose.yml:4: service web: logging is not supported by balena"},
		{name: "unknown device type", args: []string{"release", "render", bad, "--device-type", "raspberrypi4", "-o", out},
			inputs: []string{compose, dockerfile}, code: 1, want: `unknown device type "raspberrypi4": did you mean raspberrypi4-64`},
		{name: "output inside the project", args: []string{"release", "render", bad, "--device-type", "intel-nuc", "-o", filepath.Join(bad, "out")},
			inputs: []string{compose, dockerfile}, code: 1, want: "render writes nothing into the project"},
		{name: "no device type", args: []string{"release", "render", bad}, inputs: []string{compose, dockerfile}, code: 2, want: "--device-type"},
	})
}
