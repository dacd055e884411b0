package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/build"
	"github.com/hostos/hostos/hostapp/bundle"
	"github.com/hostos/hostos/hostapp/update"
	"github.com/hostos/hostos/partition/disk"
	"github.com/hostos/hostos/rootfs/ext4"
	"github.com/hostos/hostos/rootfs/hostappfs"
)

func newBundleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Make, sign and inspect update bundles",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBundleCreateCmd(), newBundleKeygenCmd(), newBundleInspectCmd())
	return cmd
}

// bundleSummary is what bundle create and bundle inspect print with --json.
type bundleSummary struct {
	File      string          `json:"file"`
	Size      int64           `json:"size,omitempty"`
	Signed    *bool           `json:"signed,omitempty"`
	Signature string          `json:"signature,omitempty"`
	Verified  *bool           `json:"verified,omitempty"`
	BootFiles []string        `json:"bootFiles,omitempty"`
	Metadata  bundle.Metadata `json:"metadata"`
}

func newBundleCreateCmd() *cobra.Command {
	var (
		rootfs, deviceType, version, deployDir, keyFile, out string
		deltaFrom                                            string
		bootFiles                                            []string
		rootMiB                                              int
		quiet, asJSON, chunked                               bool
	)
	cmd := &cobra.Command{
		Use:   "create --rootfs SRC --device-type SLUG --version V -o FILE",
		Short: "Make an update bundle of a root filesystem and boot files (SOURCE_DATE_EPOCH makes it reproducible)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case out == "":
				return usageError{errors.New("no output: give -o FILE, or -o - for standard output")}
			case deviceType == "":
				return usageError{errors.New("no device type: give --device-type SLUG")}
			case version == "":
				return usageError{errors.New("no version: give --version V")}
			case rootMiB < 0:
				return usageError{fmt.Errorf("--root-size %d: negative", rootMiB)}
			case chunked && out == "-":
				return usageError{errors.New("--chunked: the chunks go next to the bundle: give -o FILE")}
			case chunked && deltaFrom != "":
				return usageError{errors.New("--chunked and --delta-from: a bundle is one or the other")}
			case out == "-" && term.IsTerminal(int(os.Stdout.Fd())):
				return usageError{errors.New("-o -: standard output is a terminal; redirect it")}
			}
			for _, f := range bootFiles {
				if _, err := build.ParseBootFile(f); err != nil {
					return usageError{fmt.Errorf("--boot-files: %w", err)}
				}
			}
			epoch, err := sourceDateEpoch()
			if err != nil {
				return err
			}
			var key ed25519.PrivateKey
			if keyFile != "" {
				b, err := disk.ReadInput(keyFile, "signing key", bundle.MaxKeyBytes)
				if err != nil {
					return err
				}
				if key, err = bundle.ParsePrivateKey(b); err != nil {
					return fmt.Errorf("signing key %s: %w", keyFile, err)
				}
			}
			pr := newProgress(quiet || asJSON)
			o := build.BundleOptions{
				Rootfs: rootfs, DeviceType: deviceType, Version: version, DeployDir: deployDir, BootFiles: bootFiles,
				Key: key, Epoch: epoch, RootSize: int64(rootMiB) << 20, Progress: pr.update,
			}
			if chunked {
				o.ChunkStore = filepath.Join(filepath.Dir(out), bundle.ChunkStoreName)
			}
			if deltaFrom != "" {
				tmp := os.TempDir()
				if out != "-" {
					tmp = filepath.Dir(out)
				}
				base, closeBase, err := openDeltaBase(deltaFrom, tmp)
				if err != nil {
					return err
				}
				defer closeBase()
				o.DeltaFrom = base
			}
			var m bundle.Metadata
			summaryTo := cmd.OutOrStdout()
			if out == "-" {
				summaryTo = cmd.ErrOrStderr()
				bw := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<20)
				if m, err = build.Bundle(cmd.Context(), o, bw); err == nil {
					err = bw.Flush()
				}
			} else {
				o.TempDir = filepath.Dir(out)
				err = writeBundleFile(out, append([]string{rootfs, keyFile, deltaFrom}, bootFileSources(deployDir, bootFiles)...), func(w io.Writer) error {
					var err error
					m, err = build.Bundle(cmd.Context(), o, w)
					return err
				})
			}
			if err != nil {
				return err
			}
			signed := key != nil
			s := bundleSummary{File: out, Signed: &signed, Metadata: m}
			if fi, err := os.Stat(out); err == nil && out != "-" {
				s.Size = fi.Size()
			}
			if asJSON {
				return printJSON(summaryTo, s)
			}
			sig := "unsigned"
			if signed {
				sig = "signed"
			}
			if m.Chunks != nil {
				fmt.Fprintf(summaryTo, "chunked bundle %s: %s (%s) %s, root filesystem %d MiB, chunk index %d KiB, chunks in %s\n",
					out, m.DeviceType, m.Arch, m.Version, m.Rootfs.ImageSize>>20, (m.Rootfs.Size+1023)>>10, o.ChunkStore)
				return nil
			}
			if m.Delta != nil {
				fmt.Fprintf(summaryTo, "delta bundle %s: %s (%s) %s from %s, root filesystem %d MiB, delta %d KiB, %s\n",
					out, m.DeviceType, m.Arch, m.Version, m.Delta.BaseVersion, m.Rootfs.ImageSize>>20, (m.Rootfs.Size+1023)>>10, sig)
				return nil
			}
			fmt.Fprintf(summaryTo, "bundle %s: %s (%s) %s, root filesystem %d MiB, %s\n",
				out, m.DeviceType, m.Arch, m.Version, m.Rootfs.ImageSize>>20, sig)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&rootfs, "rootfs", "", "root filesystem: a directory, a tar (gzip, xz, zstd), an OCI layout, a docker save archive or an ext4 image; default: the embedded demo")
	f.StringVar(&deviceType, "device-type", "", "device-type `SLUG` the bundle is for")
	f.StringVar(&version, "version", "", "OS version the bundle installs")
	f.StringVar(&deployDir, "deploy-dir", "", "base `DIR` of relative --boot-files sources (default: the current directory)")
	f.StringArrayVar(&bootFiles, "boot-files", nil, "a boot partition file as meta-balena's `SRC:DST` (repeatable; commas are not separators)")
	f.StringVar(&keyFile, "sign", "", "sign with the Ed25519 private key `KEY.pem` (hostos bundle keygen)")
	f.IntVar(&rootMiB, "root-size", 0, "size of the root filesystem in `MiB` (default: the device type's root partition)")
	f.StringVarP(&out, "output", "o", "", "write the bundle to `FILE` (- for standard output)")
	f.BoolVar(&chunked, "chunked", false, "make a chunked bundle: FILE holds the signed chunk index, the chunks go into "+bundle.ChunkStoreName+"/ next to it (one file per chunk, named by its sha256; a store shared by versions); hostos update of its http(s) URL fetches only the chunks the running slot lacks")
	f.StringVar(&deltaFrom, "delta-from", "", "make a delta bundle that updates the root filesystem of `OLD` (an older bundle, a disk image: its active slot, or an ext4 image), carrying only the chunks OLD lacks")
	f.BoolVar(&asJSON, "json", false, "print a JSON summary")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bars")
	return cmd
}

// openDeltaBase opens the base of a delta bundle: an older full bundle (its image is extracted into a
// file in tmp), a disk image (the root slot its bootloader points at) or an ext4 filesystem image.
func openDeltaBase(path, tmp string) (*bundle.DeltaBase, func(), error) {
	fail := func(err error) (*bundle.DeltaBase, func(), error) {
		return nil, nil, fmt.Errorf("delta base %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return fail(errors.New("not a regular file"))
	}
	head := make([]byte, 2048)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case n >= 512 && isBundleHead(head):
		defer f.Close()
		img, err := os.CreateTemp(tmp, ".hostos-delta-base-*")
		if err != nil {
			return fail(err)
		}
		drop := func() { img.Close(); os.Remove(img.Name()) }
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			drop()
			return fail(err)
		}
		bw := bufio.NewWriterSize(img, 1<<20)
		m, err := bundle.ExtractImage(bufio.NewReaderSize(f, 1<<20), bw)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			drop()
			return fail(err)
		}
		return &bundle.DeltaBase{Image: img, Size: m.Rootfs.ImageSize, Version: m.Version}, drop, nil
	case n >= 1082 && head[1080] == 0x53 && head[1081] == 0xef: // an ext4 superblock at 1024
		size, err := ext4.FilesystemSize(f, 0)
		if err == nil && size > fileSize(f) {
			err = fmt.Errorf("ext4 filesystem of %d bytes in a file of %d", size, fileSize(f))
		}
		if err != nil {
			f.Close()
			return fail(err)
		}
		osr, err := hostappfs.ReadFile(f, 0, size, "/etc/os-release") // a flat or a balenaOS hostapp slot
		v := config.OSVersion(osr)
		if err != nil || v == "" {
			f.Close()
			return fail(errors.New("its /etc/os-release names no version"))
		}
		return &bundle.DeltaBase{Image: f, Size: size, Version: v}, func() { f.Close() }, nil
	}
	f.Close()
	d, err := disk.Open(path, false)
	if err != nil {
		return fail(err)
	}
	tg, err := update.OpenImage(d, "")
	if err != nil {
		d.Close()
		return fail(fmt.Errorf("neither a bundle, an ext4 image nor a disk image with root slots: %w", err))
	}
	slot := tg.Slots[tg.Booted]
	size, err := ext4.FilesystemSize(d, slot.Start)
	if err == nil && size > slot.Size {
		err = fmt.Errorf("slot %s: filesystem of %d bytes in a partition of %d", tg.Booted, size, slot.Size)
	}
	v := tg.SlotVersion(tg.Booted)
	if err == nil && v == "" {
		err = fmt.Errorf("slot %s: its /etc/os-release names no version", tg.Booted)
	}
	if err != nil {
		d.Close()
		return fail(err)
	}
	return &bundle.DeltaBase{Image: io.NewSectionReader(d, slot.Start, size), Size: size, Version: v}, func() { d.Close() }, nil
}

// isBundleHead tells a hostos bundle by its first tar header.
func isBundleHead(head []byte) bool {
	h, err := tar.NewReader(bytes.NewReader(head[:512])).Next()
	return err == nil && h.Name == bundle.MetadataName
}

func fileSize(f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// writeBundleFile writes path atomically (disk.Output): nothing appears at path unless write succeeds.
// No input may be the output.
func writeBundleFile(path string, inputs []string, write func(io.Writer) error) error {
	o, err := disk.CreateOutput(path, 0o644, inputs...)
	if err != nil {
		return err
	}
	defer o.Abort()
	bw := bufio.NewWriterSize(o, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	return o.Commit()
}

func newBundleKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen -o NAME",
		Short: "Make an Ed25519 key pair for signing bundles: NAME (private) and NAME.pub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{errors.New("no output: give -o NAME")}
			}
			pub := out + ".pub"
			for _, p := range []string{out, pub} {
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("key %s: already exists; not overwriting a key", p)
				}
			}
			privPEM, pubPEM, err := bundle.GenerateKey(nil)
			if err != nil {
				return err
			}
			if err := writeNewFile(out, privPEM, 0o600); err != nil {
				return err
			}
			if err := writeNewFile(pub, pubPEM, 0o644); err != nil {
				os.Remove(out)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (private: signs bundles, keep it secret) and %s (public: verifies them)\n", out, pub)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the private key to `NAME` and the public key to NAME.pub")
	return cmd
}

// writeNewFile writes a file that must not exist yet, with mode perm.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("key %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("key %s: %w", path, err)
	}
	return nil
}

func newBundleInspectCmd() *cobra.Command {
	var (
		keyFiles       []string
		asJSON, verify bool
	)
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Show a bundle's metadata; with --key check its signature, with --verify every digest (FILE - reads standard input)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []bundle.ReadOption
			if len(keyFiles) > 0 {
				keys := make([]ed25519.PublicKey, 0, len(keyFiles))
				for _, kf := range keyFiles {
					b, err := disk.ReadInput(kf, "public key", bundle.MaxKeyBytes)
					if err != nil {
						return err
					}
					k, err := bundle.ParsePublicKey(b)
					if err != nil {
						return fmt.Errorf("public key %s: %w", kf, err)
					}
					keys = append(keys, k)
				}
				opts = append(opts, bundle.WithKeys(keys...))
			}
			in := io.Reader(cmd.InOrStdin())
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("bundle: %w", err)
				}
				defer f.Close()
				in = bufio.NewReaderSize(f, 1<<20)
			}
			if verify {
				opts = append(opts, bundle.VerifyStored())
			}
			r, err := bundle.NewReader(in, opts...)
			if err != nil {
				return fmt.Errorf("bundle %s: %w", args[0], err)
			}
			s := bundleSummary{File: args[0], Metadata: r.Metadata(), Signature: "not checked (no --key)"}
			if len(keyFiles) > 0 {
				s.Signature = "verified"
			}
			if verify {
				if s.BootFiles, err = verifyBundle(r); err != nil {
					return fmt.Errorf("bundle %s: %w", args[0], err)
				}
				ok := true
				s.Verified = &ok
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), s)
			}
			printBundle(cmd.OutOrStdout(), s)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&keyFiles, "key", nil, "require a signature by the Ed25519 public key `PUB.pem` (repeatable: any of them)")
	cmd.Flags().BoolVar(&verify, "verify", false, "read the whole bundle, checking every size and digest, and list the boot files")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// verifyBundle reads the rest of a bundle, which checks it, and returns the names of its boot files.
func verifyBundle(r *bundle.Reader) ([]string, error) {
	img, err := r.Rootfs()
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, img); err != nil {
		return nil, err
	}
	var names []string
	err = r.Boot(func(name string, _ int64, rd io.Reader) error {
		names = append(names, name)
		_, err := io.Copy(io.Discard, rd)
		return err
	})
	return names, err
}

func printBundle(w io.Writer, s bundleSummary) {
	m := s.Metadata
	fmt.Fprintf(w, "bundle:      %s (format %d)\n", s.File, m.Format)
	fmt.Fprintf(w, "device type: %s (%s)\n", m.DeviceType, m.Arch)
	fmt.Fprintf(w, "version:     %s\n", m.Version)
	fmt.Fprintf(w, "created:     %s\n", time.Unix(m.Created, 0).UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "rootfs:      %s, %d MiB (%d KiB stored, %s), sha256 %s\n", m.Rootfs.Filesystem,
		m.Rootfs.ImageSize>>20, m.Rootfs.Size>>10, m.Rootfs.Compression, m.Rootfs.ImageSHA256)
	if d := m.Delta; d != nil {
		fmt.Fprintf(w, "delta:       applies to %s only (%d MiB, sha256 %s with its label cleared)\n", d.BaseVersion, d.BaseSize>>20, d.BaseSHA256)
	}
	if c := m.Chunks; c != nil {
		fmt.Fprintf(w, "chunks:      in %s/ next to the bundle (one file per chunk, named by its sha256)\n", c.Store)
	}
	if m.Boot != nil {
		fmt.Fprintf(w, "boot files:  %d KiB tar, sha256 %s\n", m.Boot.ImageSize>>10, m.Boot.ImageSHA256)
	} else {
		fmt.Fprintln(w, "boot files:  none")
	}
	fmt.Fprintf(w, "signature:   %s\n", s.Signature)
	if s.Verified != nil {
		if m.Delta != nil || m.Chunks != nil {
			fmt.Fprintln(w, "content:     verified (every member's size and digest; the image's digest is checked when it is assembled on the device)")
		} else {
			fmt.Fprintln(w, "content:     verified (every size and digest)")
		}
		for _, n := range s.BootFiles {
			fmt.Fprintf(w, "  /%s\n", n)
		}
	}
}

// bootFileSources are the source paths of SRC:DST boot file arguments, relative to deployDir.
func bootFileSources(deployDir string, files []string) []string {
	var out []string
	for _, f := range files {
		src, _, _ := strings.Cut(f, ":")
		if src != "" && !filepath.IsAbs(src) && deployDir != "" {
			src = filepath.Join(deployDir, src)
		}
		out = append(out, src)
	}
	return out
}
