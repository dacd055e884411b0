package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hostos/hostos/tests/testtool"
	"golang.org/x/crypto/ssh"
)

// testKeys are public keys of each accepted type, as "type base64" without comment.
type testKeys struct {
	ed, ed2, ecdsa, rsa, skEd string
	rsa512, cert              string
	edBlob                    []byte
}

func newTestKeys(t *testing.T) testKeys {
	t.Helper()
	line := func(pub ssh.PublicKey) string {
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	}
	edPriv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	edPub, err := ssh.NewPublicKey(edPriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	ed2Pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32)).Public())
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err := ssh.NewPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// RSA public keys need no real primes to be parsed: an odd modulus of the right size will do.
	modulus := func(bits int) *big.Int {
		n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
		return n.Add(n, big.NewInt(12345))
	}
	rsaPub, err := ssh.NewPublicKey(&rsa.PublicKey{N: modulus(2048), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	rsa512, err := ssh.NewPublicKey(&rsa.PublicKey{N: modulus(512), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	// A security-key Ed25519 key: type, key, application.
	skBlob := ssh.Marshal(struct {
		Name, Key, App string
	}{ssh.KeyAlgoSKED25519, string(edPriv.Public().(ed25519.PublicKey)), "ssh:"})
	signer, err := ssh.NewSignerFromKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: ed2Pub, CertType: ssh.UserCert, ValidPrincipals: []string{"root"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	return testKeys{
		ed:     line(edPub),
		ed2:    line(ed2Pub),
		ecdsa:  line(ecPub),
		rsa:    line(rsaPub),
		skEd:   ssh.KeyAlgoSKED25519 + " " + base64.StdEncoding.EncodeToString(skBlob),
		rsa512: line(rsa512),
		cert:   line(cert),
		edBlob: edPub.Marshal(),
	}
}

func TestParseSSHKeys(t *testing.T) {
	k := newTestKeys(t)
	edData := strings.TrimPrefix(k.ed, "ssh-ed25519 ")
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{"one key", k.ed + " me@laptop\n", []string{k.ed + " me@laptop"}, ""},
		{"no comment, no newline", k.ed, []string{k.ed}, ""},
		{"comment with spaces", k.ecdsa + "  Jane Doe  work laptop \r\n", []string{k.ecdsa + " Jane Doe  work laptop"}, ""},
		{"tabs", "ssh-ed25519\t" + edData + "\tc", []string{k.ed + " c"}, ""},
		{"rsa and sk", k.rsa + " r\n" + k.skEd + " s\n", []string{k.rsa + " r", k.skEd + " s"}, ""},
		{"authorized_keys", "# team keys\n\n   \n" + k.ed + " a\n\t# old\n" +
			`no-pty,from="10.0.0.0/8,192.168.0.0/16" ` + k.ecdsa + " b\n" +
			`command="echo \"hi there\"",restrict ` + k.rsa + "\n" +
			"restrict " + k.ed2 + " d\n",
			[]string{k.ed + " a", `no-pty,from="10.0.0.0/8,192.168.0.0/16" ` + k.ecdsa + " b",
				`command="echo \"hi there\"",restrict ` + k.rsa, "restrict " + k.ed2 + " d"}, ""},

		{"empty", "", nil, "no ssh public key found"},
		{"only comments", "# nothing\n\n", nil, "no ssh public key found"},
		{"error names the line", k.ed + "\n\n" + "ssh-ed25519 @@@@\n", nil, "ssh key line 3: ssh-ed25519 key: key data is not valid base64"},
		{"wrong type", "ssh-rsa " + edData + " x", nil, "ssh-rsa key: the key data holds a ssh-ed25519 key"},
		{"corrupt base64", "ssh-ed25519 " + edData[:10] + "!" + edData[11:], nil, "not valid base64"},
		{"truncated blob", "ssh-ed25519 " + b64(k.edBlob[:len(k.edBlob)-5]), nil, "key data is corrupt or truncated"},
		{"trailing junk", "ssh-ed25519 " + b64(append(append([]byte{}, k.edBlob...), 0, 0, 0, 1, 'x')), nil, "corrupt or truncated"},
		{"key data missing", "ssh-ed25519\n", nil, "ssh-ed25519 key: key data missing"},
		{"unknown type", "ssh-foo " + edData, nil, `key type "ssh-foo" is not supported`},
		{"dsa", "ssh-dss AAAAB3NzaC1kc3MAAACBAP x", nil, "ssh-dss (DSA) keys are no longer accepted"},
		{"certificate", k.cert + " c", nil, "is a certificate, not a public key"},
		{"small rsa", k.rsa512, nil, "ssh-rsa key of 512 bits: OpenSSH requires at least 1024"},
		{"private key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n", nil, "line 1: this is a private key"},
		{"ssh2 format", "---- BEGIN SSH2 PUBLIC KEY ----\n", nil, "RFC 4716"},
		{"not a key", "hello world\n", nil, "line 1: no key type found"},
		{"single word", "hello\n", nil, "no key type found"},
		{"unclosed option quote", `from="10.0.0.1 ` + k.ed, nil, "options not closed"},
		{"options then nonsense", `no-pty hello ` + edData, nil, "no key type found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSSHKeys([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "b3BlbnNzaC1rZXkt") {
					t.Fatalf("error shows private key material: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestParseSSHKeysOpenSSH parses keys ssh-keygen made and has ssh-keygen read the normalised keys
// back as an authorized_keys file.
func TestParseSSHKeysOpenSSH(t *testing.T) {
	keygen := testtool.Need(t, "ssh-keygen")
	dir := t.TempDir()
	var all []byte
	var want []string
	for _, typ := range []struct{ name, args string }{
		{"ed25519", "-t ed25519"},
		{"ecdsa", "-t ecdsa -b 384"},
		{"rsa", "-t rsa -b 2048"},
	} {
		path := filepath.Join(dir, typ.name)
		args := append(strings.Fields(typ.args), "-q", "-N", "", "-C", "user@host "+typ.name, "-f", path)
		if out, err := exec.Command(keygen, args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %s: %v\n%s", typ.args, err, out)
		}
		pub, err := os.ReadFile(path + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseSSHKeys(pub)
		if err != nil {
			t.Fatalf("%s: %v", typ.name, err)
		}
		if len(got) != 1 || got[0] != strings.TrimSpace(string(pub)) {
			t.Fatalf("%s: got %q, want %q", typ.name, got, pub)
		}
		want = append(want, `from="127.0.0.1",no-pty `+got[0])
		all = append(all, `from="127.0.0.1",no-pty `...)
		all = append(all, pub...)
	}
	got, err := ParseSSHKeys(all)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("authorized_keys with options: got %q, want %q", got, want)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, []byte(strings.Join(got, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(keygen, "-l", "-f", authorized).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v\n%s", err, out)
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; n != len(got) {
		t.Fatalf("ssh-keygen -l read %d keys, want %d:\n%s", n, len(got), out)
	}
}

func TestAddSSHKeys(t *testing.T) {
	k := newTestKeys(t)
	tests := []struct {
		name        string
		config      string
		keys        []string
		wantChanged bool
		want        string // config after; "" for unchanged
		wantErr     string
	}{
		{"creates os and sshKeys", `{"deviceType":"x"}`, []string{k.ed + " a"}, true,
			`{"deviceType":"x","os":{"sshKeys":["` + k.ed + ` a"]}}`, ""},
		{"keeps other os keys", `{"os":{"udevRules":{"r":"x"}}}`, []string{k.ed}, true,
			`{"os":{"sshKeys":["` + k.ed + `"],"udevRules":{"r":"x"}}}`, ""},
		{"appends, normalised", `{"os":{"sshKeys":["` + k.ed + ` a"]}}`, []string{"  no-pty " + k.ecdsa + "  b \n"}, true,
			`{"os":{"sshKeys":["` + k.ed + ` a","no-pty ` + k.ecdsa + ` b"]}}`, ""},
		{"same key, other comment", `{"os":{"sshKeys":["` + k.ed + ` a"]}}`, []string{k.ed + " other"}, false, "", ""},
		{"same key as one with options", `{"os":{"sshKeys":["restrict ` + k.ed + `"]}}`, []string{k.ed}, false, "", ""},
		{"duplicates in the input", `{}`, []string{k.ed + " a", k.ed2, k.ed + " b"}, true,
			`{"os":{"sshKeys":["` + k.ed + ` a","` + k.ed2 + `"]}}`, ""},
		{"unreadable entry stays", `{"os":{"sshKeys":["garbage"]}}`, []string{k.ed}, true,
			`{"os":{"sshKeys":["garbage","` + k.ed + `"]}}`, ""},
		{"no keys", `{}`, nil, false, "", ""},
		{"empty sshKeys, no keys", `{"os":{"sshKeys":[]}}`, nil, false, "", ""},

		{"os not an object", `{"os":"x"}`, []string{k.ed}, false, "", "config key os is a string, not an object"},
		{"sshKeys not an array", `{"os":{"sshKeys":"` + k.ed + `"}}`, []string{k.ed2}, false, "", "os.sshKeys is a string, not an array"},
		{"sshKeys element not a string", `{"os":{"sshKeys":["` + k.ed + `",3]}}`, []string{k.ed2}, false, "", "os.sshKeys[1] is a number"},
		{"bad key", `{}`, []string{k.ed, "ssh-ed25519 AAAA"}, false, "", "ssh key 2: ssh-ed25519 key: key data is corrupt"},
		{"two lines", `{}`, []string{k.ed + "\n" + k.ed2}, false, "", "ssh key 1: holds more than one line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			before := string(c.Encode())
			changed, err := AddSSHKeys(&c, tc.keys)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if changed != tc.wantChanged {
				t.Fatalf("changed = %v, want %v", changed, tc.wantChanged)
			}
			want := tc.want
			if want == "" {
				want = before
			}
			if got := string(c.Encode()); got != want {
				t.Fatalf("config\n got %s\nwant %s", got, want)
			}
		})
	}
}

// FuzzParseSSHKeys checks that parsing never panics and that normalised keys parse to themselves.
func FuzzParseSSHKeys(f *testing.F) {
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2/sjL7JdiKJkQTDlYhEn24wOTp5qnwsKDfhujv9Tqi a b\n"))
	f.Add([]byte(`command="x \"y\"",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2/sjL7JdiKJkQTDlYhEn24wOTp5qnwsKDfhujv9Tqi`))
	f.Add([]byte("# c\n\nfrom=\"a b\tc\" \t ssh-rsa AAAA\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseSSHKeys(data)
		if err != nil {
			return
		}
		again, err := ParseSSHKeys([]byte(strings.Join(keys, "\n")))
		if err != nil {
			t.Fatalf("normalised keys do not parse: %v\n%q", err, keys)
		}
		if !reflect.DeepEqual(keys, again) {
			t.Fatalf("normalising twice changed the keys:\n%q\n%q", keys, again)
		}
	})
}
