package bundle

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
)

// TestTarLists has GNU tar list and extract a bundle: the members in order, with fixed modes and owners,
// and their bytes as the metadata describes them.
func TestTarLists(t *testing.T) {
	tarBin := testtool.Need(t, "tar")
	_, priv := testKey(t, 1)
	f := newFixture(t, true)
	dir := t.TempDir()
	p := filepath.Join(dir, "bundle.hostos")
	if err := os.WriteFile(p, f.write(t, priv), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tarBin, "--numeric-owner", "-tvf", p).CombinedOutput()
	if err != nil {
		t.Fatalf("tar tvf: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var names []string
	for _, l := range lines {
		fields := strings.Fields(l)
		if len(fields) < 6 || fields[0] != "-rw-r--r--" || fields[1] != "0/0" {
			t.Errorf("tar tvf line %q: want -rw-r--r-- 0/0", l)
			continue
		}
		names = append(names, fields[len(fields)-1])
	}
	if want := []string{MetadataName, SignatureName, RootfsName, BootName}; !slices.Equal(names, want) {
		t.Fatalf("tar lists %v, want %v", names, want)
	}

	x := filepath.Join(dir, "x")
	if err := os.Mkdir(x, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tarBin, "-xf", p, "-C", x).CombinedOutput(); err != nil {
		t.Fatalf("tar xf: %v\n%s", err, out)
	}
	if got := testtool.SHA256(t, filepath.Join(x, RootfsName)); got != f.m.Rootfs.SHA256 {
		t.Errorf("extracted rootfs sha256 %s, metadata %s", got, f.m.Rootfs.SHA256)
	}
	if got := testtool.SHA256(t, filepath.Join(x, BootName)); got != f.m.Boot.SHA256 {
		t.Errorf("extracted boot sha256 %s, metadata %s", got, f.m.Boot.SHA256)
	}
	out, err = exec.Command(tarBin, "-tf", filepath.Join(x, BootName)).CombinedOutput()
	if err != nil {
		t.Fatalf("tar tf boot.tar: %v\n%s", err, out)
	}
	if want := "config.json\noverlays/\noverlays/x.dtbo\nos-release\nempty\n"; string(out) != want {
		t.Errorf("boot.tar lists %q, want %q", out, want)
	}
	if zstdBin, err := exec.LookPath("zstd"); err == nil {
		out, err := exec.Command(zstdBin, "-dc", filepath.Join(x, RootfsName)).Output()
		if err != nil {
			t.Fatalf("zstd -d: %v", err)
		}
		if digest(out) != f.m.Rootfs.ImageSHA256 {
			t.Error("zstd -d gives another image")
		}
	}
}

// TestOpenSSLKeys reads keys as openssl writes them and checks that a signature openssl makes over the
// metadata verifies: the format's signature is plain Ed25519 over the member bytes.
func TestOpenSSLKeys(t *testing.T) {
	openssl := testtool.Need(t, "openssl")
	dir := t.TempDir()
	privPath, pubPath := filepath.Join(dir, "priv.pem"), filepath.Join(dir, "pub.pem")
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
		return out
	}
	run("genpkey", "-algorithm", "ed25519", "-out", privPath)
	run("pkey", "-in", privPath, "-pubout", "-out", pubPath)
	privPEM, _ := os.ReadFile(privPath)
	pubPEM, _ := os.ReadFile(pubPath)
	priv, err := ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatal("openssl's public key is not the private key's")
	}

	// Signed by us, verified with openssl's public key.
	f := newFixture(t, true)
	if _, err := readAll(f.write(t, priv), WithKeys(pub)); err != nil {
		t.Fatal(err)
	}

	// Signed by openssl, verified by us.
	unsigned := f.write(t, nil)
	meta := memberSpans(t, unsigned)[MetadataName].data
	metaPath, sigPath := filepath.Join(dir, MetadataName), filepath.Join(dir, SignatureName)
	os.WriteFile(metaPath, meta, 0o644)
	run("pkeyutl", "-sign", "-rawin", "-inkey", privPath, "-in", metaPath, "-out", sigPath)
	sig, _ := os.ReadFile(sigPath)
	b := makeTar(t, entry{name: MetadataName, body: string(meta)}, entry{name: SignatureName, body: string(sig)},
		entry{name: RootfsName, body: string(f.rootfs)}, entry{name: BootName, body: string(f.boot)})
	if _, err := readAll(b, WithKeys(pub)); err != nil {
		t.Fatalf("bundle signed by openssl: %v", err)
	}

	// Our keys, read by openssl.
	ourPriv, ourPub, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(privPath, ourPriv, 0o600)
	if got := run("pkey", "-in", privPath, "-pubout"); !bytes.Equal(got, ourPub) {
		t.Errorf("openssl derives public key\n%s\nwant\n%s", got, ourPub)
	}
}

func TestKeys(t *testing.T) {
	privPEM, pubPEM, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, false)
	if _, err := readAll(f.write(t, priv), WithKeys(pub)); err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivateKey(pubPEM); err == nil {
		t.Error("public PEM parsed as private key")
	}
	if _, err := ParsePublicKey(privPEM); err == nil {
		t.Error("private PEM parsed as public key")
	}
	if _, err := ParsePublicKey([]byte("not pem")); err == nil {
		t.Error("garbage parsed")
	}
	bad := bytes.Replace(pubPEM, []byte("MCow"), []byte("MCox"), 1)
	if _, err := ParsePublicKey(bad); err == nil {
		t.Error("damaged DER parsed")
	}
	if _, _, err := GenerateKey(strings.NewReader("short")); err == nil {
		t.Error("GenerateKey from a short random source: no error")
	}
}
