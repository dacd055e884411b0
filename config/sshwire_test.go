package config

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The equivalence tests hold parseSSHKeyLine, with its own wire codec, to what it did when it used
// golang.org/x/crypto/ssh: the same key data accepted and refused for each declared type, and the
// same normalised key. x/crypto/ssh is a test dependency only.

// sshKeyTypeList is sshKeyTypes in a fixed order, for the fuzz target to pick a declared type from.
var sshKeyTypeList = []string{sshKeyRSA, sshKeyECDSA256, sshKeyECDSA384, sshKeyECDSA521, sshKeyEd25519, sshKeySKECDSA256, sshKeySKEd25519}

// xcryptoSSHKeyID reads key data declared as typ as sshkeys.go did before it had its own codec, and
// returns the key's id ("type base64").
func xcryptoSSHKeyID(typ string, blob []byte) (string, error) {
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return "", err
	}
	if pub.Type() != typ {
		return "", fmt.Errorf("the key data holds a %s key", pub.Type())
	}
	if c, ok := pub.(ssh.CryptoPublicKey); ok {
		if r, ok := c.CryptoPublicKey().(*rsa.PublicKey); ok && r.N.BitLen() < minRSABits {
			return "", errors.New("rsa key too small")
		}
	}
	return pub.Type() + " " + base64.StdEncoding.EncodeToString(pub.Marshal()), nil
}

// checkSSHKeyMatchesXCrypto has parseSSHKeyLine read "typ base64(blob)" and fails t unless it
// decides as xcryptoSSHKeyID does and normalises the key the same way. It returns the id, or "" for
// a refused key.
func checkSSHKeyMatchesXCrypto(t *testing.T, typ string, blob []byte) string {
	t.Helper()
	want, wantErr := xcryptoSSHKeyID(typ, blob)
	k, err := parseSSHKeyLine(typ + " " + base64.StdEncoding.EncodeToString(blob))
	switch {
	case err != nil && wantErr == nil:
		t.Fatalf("%s key %x: refused (%v), x/crypto/ssh accepts it as %s", typ, blob, err, want)
	case err == nil && wantErr != nil:
		t.Fatalf("%s key %x: accepted as %s, x/crypto/ssh refuses it (%v)", typ, blob, k.id(), wantErr)
	case err == nil && k.id() != want:
		t.Fatalf("%s key %x: normalised to\n%s\nx/crypto/ssh to\n%s", typ, blob, k.id(), want)
	case err != nil:
		if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, typ+" key") {
			t.Fatalf("%s key %x: error %q is not one line naming the key type", typ, blob, msg)
		}
		return ""
	}
	return k.id()
}

// readTestSSHKeys returns the keys in testdata/sshkeys/authorized_keys (made by ssh-keygen) by
// type and decoded key data.
func readTestSSHKeys(t testing.TB) (types []string, blobs [][]byte) {
	data, err := os.ReadFile(filepath.Join("testdata", "sshkeys", "authorized_keys"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0][0] == '#' {
			continue
		}
		blob, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil {
			t.Fatal(err)
		}
		types, blobs = append(types, f[0]), append(blobs, blob)
	}
	return types, blobs
}

// wireFields splits key data into its string fields; it fails t on key data that is not a whole
// number of them.
func wireFields(t testing.TB, blob []byte) [][]byte {
	var fields [][]byte
	r := sshWireReader{rest: blob}
	for len(r.rest) > 0 {
		fields = append(fields, r.str("field"))
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return fields
}

// wire joins string fields into key data.
func wire(fields ...[]byte) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// sshKeyCase is key data declared as typ, and whether it is to be accepted.
type sshKeyCase struct {
	name   string
	typ    string
	blob   []byte
	accept bool
}

// crafted builds the odd and malformed keys from the ssh-keygen ones.
func craftedSSHKeys(t testing.TB) []sshKeyCase {
	types, blobs := readTestSSHKeys(t)
	key := func(typ string) [][]byte {
		for i, ty := range types {
			if ty == typ {
				return wireFields(t, blobs[i])
			}
		}
		t.Fatalf("no %s key in testdata", typ)
		return nil
	}
	ed, ec256, ec384, ec521 := key(sshKeyEd25519), key(sshKeyECDSA256), key(sshKeyECDSA384), key(sshKeyECDSA521)
	rsaKey := key(sshKeyRSA) // the first, 1024 bits
	b := func(s string) []byte { return []byte(s) }
	hugeLen := []byte{0xff, 0xff, 0xff, 0xff}
	n := rsaKey[2] // 0x00-padded 1024-bit modulus
	mod := func(bits int) []byte {
		m := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
		m.Add(m, big.NewInt(0x10001))
		return appendSSHMPInt(nil, m)[4:]
	}
	negMod := func(bits int) []byte {
		m := new(big.Int).Lsh(big.NewInt(-1), uint(bits-1))
		m.Sub(m, big.NewInt(0x10001))
		return appendSSHMPInt(nil, m)[4:]
	}
	rsaWith := func(e, n []byte) []byte { return wire(b(sshKeyRSA), e, n) }
	flip := func(p []byte, i int) []byte {
		q := bytes.Clone(p)
		q[i] ^= 1
		return q
	}
	p256 := cat([]byte{4}, bytes.Repeat([]byte{0xff}, 64)) // x and y of 0xff…: past the field prime
	cases := []sshKeyCase{
		// RSA exponents: at most 24 bits, odd, at least 3.
		{"rsa e=3", sshKeyRSA, rsaWith([]byte{3}, n), true},
		{"rsa e=1", sshKeyRSA, rsaWith([]byte{1}, n), false},
		{"rsa e=0 empty", sshKeyRSA, rsaWith(nil, n), false},
		{"rsa e=0 one byte", sshKeyRSA, rsaWith([]byte{0}, n), false},
		{"rsa e even", sshKeyRSA, rsaWith([]byte{1, 0, 0}, n), false},
		{"rsa e 24 bits", sshKeyRSA, rsaWith([]byte{0, 0xff, 0xff, 0xff}, n), true},
		{"rsa e 25 bits", sshKeyRSA, rsaWith([]byte{1, 0, 0, 1}, n), false},
		{"rsa e 24 bits unpadded, negative", sshKeyRSA, rsaWith([]byte{0xff, 0xff, 0xff}, n), false},
		{"rsa e=-3", sshKeyRSA, rsaWith([]byte{0xfd}, n), false},
		{"rsa e padded with zeros", sshKeyRSA, rsaWith([]byte{0, 0, 0, 1, 0, 1}, n), true},
		{"rsa e long, small value", sshKeyRSA, rsaWith(cat(make([]byte, 100), []byte{1, 0, 1}), n), true},
		// RSA moduli: 1024 to 16384 bits; x/crypto/ssh reads mpints as signed and takes the size of a
		// negative one.
		{"rsa n padded with zeros", sshKeyRSA, rsaWith([]byte{1, 0, 1}, cat(make([]byte, 5), n)), true},
		{"rsa n unpadded: negative, of under 1024 bits", sshKeyRSA, rsaWith([]byte{1, 0, 1}, n[1:]), false},
		{"rsa n negative, of 2048 bits", sshKeyRSA, rsaWith([]byte{1, 0, 1}, negMod(2048)), true},
		{"rsa n negative, padded with 0xff", sshKeyRSA, rsaWith([]byte{1, 0, 1}, cat([]byte{0xff, 0xff}, negMod(2048))), true},
		{"rsa n negative, of 16385 bits", sshKeyRSA, rsaWith([]byte{1, 0, 1}, negMod(16385)), false},
		{"rsa n zero", sshKeyRSA, rsaWith([]byte{1, 0, 1}, nil), false},
		{"rsa n 1023 bits", sshKeyRSA, rsaWith([]byte{1, 0, 1}, mod(1023)), false},
		{"rsa n 1024 bits", sshKeyRSA, rsaWith([]byte{1, 0, 1}, mod(1024)), true},
		{"rsa n 16384 bits", sshKeyRSA, rsaWith([]byte{1, 0, 1}, mod(16384)), true},
		{"rsa n 16385 bits", sshKeyRSA, rsaWith([]byte{1, 0, 1}, mod(16385)), false},
		{"rsa n missing", sshKeyRSA, wire(b(sshKeyRSA), []byte{1, 0, 1}), false},
		{"rsa type only", sshKeyRSA, wire(b(sshKeyRSA)), false},

		// ECDSA: the curve its type names, a point on it in uncompressed form.
		{"ecdsa256 as nistp384", sshKeyECDSA256, wire(ec256[0], b("nistp384"), ec256[2]), false},
		{"ecdsa256 with a nistp384 curve and point", sshKeyECDSA256, wire(ec256[0], ec384[1], ec384[2]), false},
		{"ecdsa384 with a nistp256 point", sshKeyECDSA384, wire(ec384[0], ec384[1], ec256[2]), false},
		{"ecdsa521 with an unknown curve", sshKeyECDSA521, wire(ec521[0], b("nistp999"), ec521[2]), false},
		{"ecdsa256 with an empty curve", sshKeyECDSA256, wire(ec256[0], nil, ec256[2]), false},
		{"ecdsa256 point off the curve", sshKeyECDSA256, wire(ec256[0], ec256[1], flip(ec256[2], 64)), false},
		{"ecdsa384 point off the curve", sshKeyECDSA384, wire(ec384[0], ec384[1], flip(ec384[2], 40)), false},
		{"ecdsa521 point off the curve", sshKeyECDSA521, wire(ec521[0], ec521[1], flip(ec521[2], 1)), false},
		{"ecdsa256 point past the prime", sshKeyECDSA256, wire(ec256[0], ec256[1], p256), false},
		{"ecdsa256 compressed point", sshKeyECDSA256, wire(ec256[0], ec256[1], cat([]byte{2 | ec256[2][64]&1}, ec256[2][1:33])), false},
		{"ecdsa256 hybrid point", sshKeyECDSA256, wire(ec256[0], ec256[1], cat([]byte{6 | ec256[2][64]&1}, ec256[2][1:])), false},
		{"ecdsa256 point at infinity", sshKeyECDSA256, wire(ec256[0], ec256[1], []byte{0}), false},
		{"ecdsa256 empty point", sshKeyECDSA256, wire(ec256[0], ec256[1], nil), false},
		{"ecdsa256 point one byte short", sshKeyECDSA256, wire(ec256[0], ec256[1], ec256[2][:64]), false},
		{"ecdsa256 point one byte long", sshKeyECDSA256, wire(ec256[0], ec256[1], cat(ec256[2], []byte{0})), false},
		{"ecdsa256 with an application", sshKeyECDSA256, wire(ec256[0], ec256[1], ec256[2], b("ssh:")), false},

		// Security keys: a string application follows (any bytes, empty too).
		{"sk-ecdsa", sshKeySKECDSA256, wire(b(sshKeySKECDSA256), ec256[1], ec256[2], b("ssh:")), true},
		{"sk-ecdsa empty application", sshKeySKECDSA256, wire(b(sshKeySKECDSA256), ec256[1], ec256[2], nil), true},
		{"sk-ecdsa binary application", sshKeySKECDSA256, wire(b(sshKeySKECDSA256), ec256[1], ec256[2], []byte{0, 0xff, '\n'}), true},
		{"sk-ecdsa no application", sshKeySKECDSA256, wire(b(sshKeySKECDSA256), ec256[1], ec256[2]), false},
		{"sk-ecdsa on nistp384", sshKeySKECDSA256, wire(b(sshKeySKECDSA256), ec384[1], ec384[2], b("ssh:")), false},
		{"sk-ecdsa point off the curve", sshKeySKECDSA256, wire(b(sshKeySKECDSA256), ec256[1], flip(ec256[2], 10), b("ssh:")), false},
		{"sk-ed25519", sshKeySKEd25519, wire(b(sshKeySKEd25519), ed[1], b("ssh:")), true},
		{"sk-ed25519 empty application", sshKeySKEd25519, wire(b(sshKeySKEd25519), ed[1], nil), true},
		{"sk-ed25519 no application", sshKeySKEd25519, wire(b(sshKeySKEd25519), ed[1]), false},
		{"sk-ed25519 31-byte key", sshKeySKEd25519, wire(b(sshKeySKEd25519), ed[1][:31], b("ssh:")), false},

		// Ed25519: 32 bytes, any 32 (x/crypto/ssh does not check they are a point).
		{"ed25519 31 bytes", sshKeyEd25519, wire(ed[0], ed[1][:31]), false},
		{"ed25519 33 bytes", sshKeyEd25519, wire(ed[0], cat(ed[1], []byte{0})), false},
		{"ed25519 empty", sshKeyEd25519, wire(ed[0], nil), false},
		{"ed25519 all ones", sshKeyEd25519, wire(ed[0], bytes.Repeat([]byte{0xff}, 32)), true},
		{"ed25519 with an application", sshKeyEd25519, wire(ed[0], ed[1], b("ssh:")), false},

		// Type fields and lengths.
		{"no type", sshKeyEd25519, nil, false},
		{"empty type", sshKeyEd25519, wire(nil, ed[1]), false},
		{"type with a NUL", sshKeyEd25519, wire(b(sshKeyEd25519+"\x00"), ed[1]), false},
		{"type in upper case", sshKeyEd25519, wire(b(strings.ToUpper(sshKeyEd25519)), ed[1]), false},
		{"certificate type", sshKeyEd25519, wire(b("ssh-ed25519-cert-v01@openssh.com"), ed[1]), false},
		{"dsa type", sshKeyRSA, wire(b("ssh-dss"), n, n, n, n), false},
		{"rsa-sha2-256 type", sshKeyRSA, wire(b("rsa-sha2-256"), []byte{1, 0, 1}, n), false},
		{"type length 4 GiB", sshKeyEd25519, cat(hugeLen, b(sshKeyEd25519)), false},
		{"key length 4 GiB", sshKeyEd25519, cat(wire(ed[0]), hugeLen, ed[1]), false},
		{"key length 4 GiB less 4", sshKeyEd25519, cat(wire(ed[0]), []byte{0xff, 0xff, 0xff, 0xfb}, ed[1]), false},
		{"curve length 4 GiB", sshKeyECDSA256, cat(wire(ec256[0]), hugeLen, ec256[1]), false},
		{"modulus length 4 GiB", sshKeyRSA, cat(wire(b(sshKeyRSA), []byte{1, 0, 1}), hugeLen, n), false},
		{"application length 4 GiB", sshKeySKEd25519, cat(wire(b(sshKeySKEd25519), ed[1]), hugeLen, b("ssh:")), false},
		{"length cut short", sshKeyEd25519, cat(wire(ed[0]), []byte{0, 0, 0}), false},
	}
	for i, typ := range types {
		// Each real key as itself and as every other type; with junk after it.
		for _, as := range sshKeyTypeList {
			cases = append(cases, sshKeyCase{fmt.Sprintf("%s key %d as %s", typ, i, as), as, blobs[i], as == typ})
		}
		for _, junk := range [][]byte{{0}, {0, 0, 0, 0}, wire(b("x")), blobs[i]} {
			cases = append(cases, sshKeyCase{fmt.Sprintf("%s key %d with %d bytes of junk", typ, i, len(junk)), typ, cat(blobs[i], junk), false})
		}
	}
	return cases
}

func TestSSHKeyMatchesXCrypto(t *testing.T) {
	for _, tc := range craftedSSHKeys(t) {
		t.Run(tc.name, func(t *testing.T) {
			if id := checkSSHKeyMatchesXCrypto(t, tc.typ, tc.blob); (id != "") != tc.accept {
				t.Fatalf("accepted = %v, want %v", id != "", tc.accept)
			}
		})
	}
	// ssh-keygen's keys come out as they went in, and every shorter prefix of one is refused.
	types, blobs := readTestSSHKeys(t)
	if len(types) < len(sshKeyTypeList) {
		t.Fatalf("testdata has %d keys, want at least one of each of the %d types", len(types), len(sshKeyTypeList))
	}
	for i, typ := range types {
		if id, want := checkSSHKeyMatchesXCrypto(t, typ, blobs[i]), typ+" "+base64.StdEncoding.EncodeToString(blobs[i]); id != want {
			t.Fatalf("ssh-keygen key normalised to %s, want it unchanged", id)
		}
		for n := range len(blobs[i]) {
			if id := checkSSHKeyMatchesXCrypto(t, typ, blobs[i][:n]); id != "" {
				t.Fatalf("%s key cut to %d bytes accepted", typ, n)
			}
		}
	}
}

// TestSSHKeyNormalisedRSA checks that non-minimal RSA integers are written in their shortest form,
// as x/crypto/ssh's Marshal writes them.
func TestSSHKeyNormalisedRSA(t *testing.T) {
	mod := append([]byte{0}, bytes.Repeat([]byte{0xc5}, 128)...)
	short := wire([]byte(sshKeyRSA), []byte{1, 0, 1}, mod)
	long := wire([]byte(sshKeyRSA), []byte{0, 0, 1, 0, 1}, append(make([]byte, 3), mod...))
	if got, want := checkSSHKeyMatchesXCrypto(t, sshKeyRSA, long), sshKeyRSA+" "+base64.StdEncoding.EncodeToString(short); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestSSHKeyBoundedAllocation feeds key data whose length fields claim up to 4 GiB.
func TestSSHKeyBoundedAllocation(t *testing.T) {
	for _, blob := range [][]byte{
		{0xff, 0xff, 0xff, 0xff, 's', 's', 'h'},
		cat(wire([]byte(sshKeyEd25519)), []byte{0xff, 0xff, 0xff, 0xff}, make([]byte, 32)),
		cat(wire([]byte(sshKeyRSA), []byte{1, 0, 1}), []byte{0xff, 0xff, 0xff, 0xf0}, make([]byte, 300)),
		cat(wire([]byte(sshKeySKEd25519), make([]byte, 32)), []byte{0x80, 0, 0, 0}),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 100 {
			if _, err := parseSSHPublicKey(blob); err == nil {
				t.Fatalf("%x accepted", blob)
			}
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Fatalf("%x: 100 parses allocated %d bytes", blob, n)
		}
	}
}

// FuzzSSHKeyMatchesXCrypto holds the codec to x/crypto/ssh on key data declared as one of the
// accepted types: the same decision, the same normalised key.
func FuzzSSHKeyMatchesXCrypto(f *testing.F) {
	index := map[string]uint8{}
	for i, typ := range sshKeyTypeList {
		index[typ] = uint8(i)
	}
	for _, tc := range craftedSSHKeys(f) {
		f.Add(index[tc.typ], tc.blob)
	}
	f.Fuzz(func(t *testing.T, typ uint8, blob []byte) {
		checkSSHKeyMatchesXCrypto(t, sshKeyTypeList[int(typ)%len(sshKeyTypeList)], blob)
	})
}
