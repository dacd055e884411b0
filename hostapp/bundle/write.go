package bundle

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// Write streams a bundle to w. rootfs yields the stored (already compressed) bytes m.Rootfs describes, and
// boot those of m.Boot; boot must be nil exactly when m.Boot is. Write checks that each yields Size bytes
// with the given SHA256 (it does not decompress them to check ImageSize and ImageSHA256). A zero m.Format
// means FormatVersion. With a key the metadata is signed; with nil the bundle is unsigned.
//
// Write streams and holds no payload in memory. When it fails after it has started writing, w holds the
// start of a bundle that readers reject.
func Write(w io.Writer, m Metadata, rootfs io.Reader, boot io.Reader, key ed25519.PrivateKey) error {
	if m.Format == 0 {
		m.Format = FormatVersion
	}
	if err := m.validate(); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	if key != nil && len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("write bundle: signing key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if rootfs == nil {
		return errors.New("write bundle: no rootfs payload")
	}
	if (boot == nil) != (m.Boot == nil) {
		return errors.New("write bundle: boot payload given without boot metadata, or the other way round")
	}
	meta, err := m.encode()
	if err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}

	tw := tar.NewWriter(w)
	mtime := time.Unix(m.Created, 0)
	if err := writeMember(tw, MetadataName, mtime, int64(len(meta)), meta); err != nil {
		return err
	}
	if key != nil {
		sig := ed25519.Sign(key, meta)
		if err := writeMember(tw, SignatureName, mtime, int64(len(sig)), sig); err != nil {
			return err
		}
	}
	if err := writePayload(tw, mtime, m.Rootfs, rootfs); err != nil {
		return err
	}
	if m.Boot != nil {
		if err := writePayload(tw, mtime, *m.Boot, boot); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write bundle end: %w", err)
	}
	return nil
}

// memberHeader is the fixed header of every bundle member.
func memberHeader(name string, mtime time.Time, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: mtime}
}

func writeMember(tw *tar.Writer, name string, mtime time.Time, size int64, data []byte) error {
	if err := tw.WriteHeader(memberHeader(name, mtime, size)); err != nil {
		return fmt.Errorf("write bundle member %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("write bundle member %s: %w", name, err)
	}
	return nil
}

// writePayload copies exactly p.Size bytes from r into a member and checks them against p.
func writePayload(tw *tar.Writer, mtime time.Time, p Payload, r io.Reader) error {
	if err := tw.WriteHeader(memberHeader(p.Name, mtime, p.Size)); err != nil {
		return fmt.Errorf("write bundle member %s: %w", p.Name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(r, p.Size))
	if err != nil {
		return fmt.Errorf("write bundle member %s: %w", p.Name, err)
	}
	if n < p.Size {
		return fmt.Errorf("write bundle member %s: payload ended after %d bytes, metadata says %d", p.Name, n, p.Size)
	}
	var one [1]byte
	switch k, err := io.ReadFull(r, one[:]); {
	case k > 0:
		return fmt.Errorf("write bundle member %s: payload is longer than the %d bytes metadata says", p.Name, p.Size)
	case err != io.EOF:
		return fmt.Errorf("write bundle member %s: %w", p.Name, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != p.SHA256 {
		return fmt.Errorf("write bundle member %s: payload sha256 %s, metadata says %s", p.Name, sum, p.SHA256)
	}
	return nil
}
