package config

import (
	"crypto/ecdh"
	"encoding/binary"
	"fmt"
	"math/big"
)

// The SSH public key types sshd accepts in authorized_keys, and that parseSSHPublicKey decodes.
const (
	sshKeyRSA        = "ssh-rsa"
	sshKeyECDSA256   = "ecdsa-sha2-nistp256"
	sshKeyECDSA384   = "ecdsa-sha2-nistp384"
	sshKeyECDSA521   = "ecdsa-sha2-nistp521"
	sshKeyEd25519    = "ssh-ed25519"
	sshKeySKECDSA256 = "sk-ecdsa-sha2-nistp256@openssh.com"
	sshKeySKEd25519  = "sk-ssh-ed25519@openssh.com"
)

// maxRSABits is the largest RSA modulus ssh-keygen makes, and the largest golang.org/x/crypto/ssh
// (and so hostos until it had its own codec) takes.
const maxRSABits = 16384

// sshPublicKey is an SSH public key decoded from its wire format.
type sshPublicKey struct {
	typ     string // key type, one of the sshKey* constants
	blob    []byte // the wire format, re-encoded: see parseSSHPublicKey
	rsaBits int    // an RSA key's modulus size, 0 for other types
}

// parseSSHPublicKey decodes the wire format of an SSH public key (the base64 field of an
// authorized_keys line): "string type" followed by the type's fields, as RFC 4253 6.6 (ssh-rsa:
// mpint e, mpint n), RFC 5656 3.1 (ecdsa-sha2-*: string curve, string point), RFC 8709 4
// (ssh-ed25519: string key) and OpenSSH's PROTOCOL.u2f (the sk- types: the same, then string
// application) define them. It takes and refuses what golang.org/x/crypto/ssh's ParsePublicKey does
// for these types: an RSA exponent of at most 24 bits, odd and at least 3, and a modulus of at most
// 16384 bits (both read as signed, as RFC 4251 defines mpints, so a negative modulus counts by its
// magnitude: x/crypto/ssh takes one, OpenSSH would not); an ECDSA point in uncompressed form, on the curve its type names; a 32-byte Ed25519
// key; nothing after the last field. The blob it returns is re-encoded as that package encodes keys,
// which changes only RSA integers: they are written in their shortest form. Errors are one-line
// phrases naming the problem. Lengths are checked against the data before any slicing, so a length
// field claiming gigabytes allocates nothing.
func parseSSHPublicKey(in []byte) (sshPublicKey, error) {
	r := sshWireReader{rest: in}
	typ := string(r.str("key type"))
	if r.err != nil {
		return sshPublicKey{}, r.err
	}
	k := sshPublicKey{typ: typ, blob: in}
	switch typ {
	case sshKeyRSA:
		e, n := r.mpint("RSA exponent"), r.mpint("RSA modulus")
		if err := r.end(); err != nil {
			return sshPublicKey{}, err
		}
		// The order of checks is x/crypto/ssh's, so that a key with several faults names the same one.
		if n.BitLen() > maxRSABits {
			return sshPublicKey{}, fmt.Errorf("RSA modulus of %d bits is larger than the %d-bit maximum", n.BitLen(), maxRSABits)
		}
		if e.BitLen() > 24 {
			return sshPublicKey{}, fmt.Errorf("RSA exponent of %d bits is larger than the 24-bit maximum", e.BitLen())
		}
		if v := e.Int64(); v < 3 || v&1 == 0 {
			return sshPublicKey{}, fmt.Errorf("RSA exponent %d is not an odd number of at least 3", v)
		}
		k.rsaBits = n.BitLen()
		b := appendSSHString(nil, sshKeyRSA)
		b = appendSSHMPInt(b, e)
		k.blob = appendSSHMPInt(b, n)
	case sshKeyECDSA256, sshKeyECDSA384, sshKeyECDSA521, sshKeySKECDSA256:
		curveName, point := r.str("curve name"), r.str("public point")
		if typ == sshKeySKECDSA256 {
			r.str("application")
		}
		if err := r.end(); err != nil {
			return sshPublicKey{}, err
		}
		want, curve := "nistp256", ecdh.P256()
		switch typ {
		case sshKeyECDSA384:
			want, curve = "nistp384", ecdh.P384()
		case sshKeyECDSA521:
			want, curve = "nistp521", ecdh.P521()
		}
		if string(curveName) != want {
			return sshPublicKey{}, fmt.Errorf("key type %s needs curve %s, the key data names %s", typ, want, printableWireString(curveName))
		}
		// NewPublicKey takes the uncompressed form of a point on the curve, not the point at
		// infinity: what elliptic.Unmarshal, which x/crypto/ssh uses, takes.
		if _, err := curve.NewPublicKey(point); err != nil {
			return sshPublicKey{}, fmt.Errorf("public point (%d bytes) is not an uncompressed point on curve %s", len(point), want)
		}
	case sshKeyEd25519, sshKeySKEd25519:
		key := r.str("Ed25519 key")
		if typ == sshKeySKEd25519 {
			r.str("application")
		}
		if err := r.end(); err != nil {
			return sshPublicKey{}, err
		}
		if len(key) != 32 {
			return sshPublicKey{}, fmt.Errorf("Ed25519 key of %d bytes, not 32", len(key))
		}
	default:
		return sshPublicKey{}, fmt.Errorf("key type %s is not supported", printableWireString([]byte(typ)))
	}
	return k, nil
}

// sshWireKeyType returns the key type that starts an SSH public key's wire format.
func sshWireKeyType(in []byte) (string, bool) {
	r := sshWireReader{rest: in}
	typ := r.str("key type")
	return string(typ), r.err == nil
}

// sshWireReader reads the fields of an SSH wire format message; the first fault is kept in err, and
// later reads return nothing.
type sshWireReader struct {
	rest []byte
	err  error
}

// str reads a string field (uint32 length, then the bytes), what naming it in an error.
func (r *sshWireReader) str(what string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.rest) < 4 {
		r.err = fmt.Errorf("ends before the %s", what)
		return nil
	}
	n := binary.BigEndian.Uint32(r.rest)
	if uint64(n) > uint64(len(r.rest)-4) {
		r.err = fmt.Errorf("%s of %d bytes runs past the end (%d bytes left)", what, n, len(r.rest)-4)
		return nil
	}
	s := r.rest[4 : 4+n]
	r.rest = r.rest[4+n:]
	return s
}

// mpint reads a multiple-precision integer: a string holding the number in two's complement, big
// endian. It returns zero after a fault.
func (r *sshWireReader) mpint(what string) *big.Int {
	b := r.str(what)
	n := new(big.Int)
	if len(b) == 0 || b[0]&0x80 == 0 {
		return n.SetBytes(b)
	}
	// A negative number v is held as 2^(8*len(b)) + v, so v = -(^b + 1).
	inv := make([]byte, len(b))
	for i, c := range b {
		inv[i] = ^c
	}
	n.SetBytes(inv)
	n.Add(n, big.NewInt(1))
	return n.Neg(n)
}

// end reports the first fault, or bytes left after the last field.
func (r *sshWireReader) end() error {
	if r.err == nil && len(r.rest) > 0 {
		r.err = fmt.Errorf("%d bytes of junk after the key", len(r.rest))
	}
	return r.err
}

// appendSSHString appends s as an SSH string field.
func appendSSHString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendSSHMPInt appends n as an SSH mpint in its shortest form (RFC 4251 5): zero is the empty
// string, and a leading 0x00 (or, for a negative number, 0xff) byte is added only where the top bit
// would otherwise give the wrong sign.
func appendSSHMPInt(b []byte, n *big.Int) []byte {
	var mag []byte
	switch n.Sign() {
	case 0:
		return binary.BigEndian.AppendUint32(b, 0)
	case 1:
		mag = n.Bytes()
		if mag[0]&0x80 != 0 {
			mag = append([]byte{0}, mag...)
		}
	case -1:
		// Two's complement of -m is ^(m-1).
		m := new(big.Int).Neg(n)
		mag = m.Sub(m, big.NewInt(1)).Bytes()
		for i := range mag {
			mag[i] = ^mag[i]
		}
		if len(mag) == 0 || mag[0]&0x80 == 0 {
			mag = append([]byte{0xff}, mag...)
		}
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(mag)))
	return append(b, mag...)
}

// printableWireString returns s for an error message: as it is when it is short printable ASCII,
// quoted (and cut to 64 bytes) otherwise.
func printableWireString(s []byte) string {
	if len(s) > 0 && len(s) <= 64 {
		plain := true
		for _, c := range s {
			if c <= ' ' || c > '~' || c == '"' || c == '\\' {
				plain = false
				break
			}
		}
		if plain {
			return string(s)
		}
	}
	if len(s) > 64 {
		return fmt.Sprintf("%q…", s[:64])
	}
	return fmt.Sprintf("%q", s)
}
