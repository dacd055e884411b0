package main

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/hostos/hostos/hostapp/container"
)

// Limits of the small files flags name: each format's own bound, checked before the file is read, so
// that /dev/zero or an endless FIFO cannot grow memory or hold the command.
const (
	limitConfigJSON = 1 << 20  // config.json; balena's own are a few KiB
	limitSplash     = 16 << 20 // a boot splash PNG
	limitSSHKey     = 64 << 10 // an OpenSSH public key or authorized_keys file
	limitUdevRule   = 1 << 20
	limitKeyfile    = 64 << 10 // a NetworkManager keyfile
	limitPEMKey     = 16 << 10 // an ed25519 key in PEM
	limitSpec       = 1 << 20  // a build spec or health checks in TOML
)

// readFlagFile reads the file a flag names, refusing anything but a regular file (a FIFO, a device, a
// socket or a directory) and anything larger than limit bytes. what names the format in errors ("splash").
func readFlagFile(path, what string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked on the open file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err) // *PathError names the file
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s: not a regular file", what, path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s %s: %d bytes, more than the %s allowed", what, path, fi.Size(), sizeText(limit))
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s %s: more than the %s allowed", what, path, sizeText(limit))
	}
	return b, nil
}

// sizeText writes a limit as people do: 16 MiB, 64 KiB, else bytes.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// limitCredentials bounds a --registry-auth file: one USER:PASSWORD line.
const limitCredentials = 4 << 10

// registryAuth reads --registry-auth: USER:PASSWORD, or a FILE holding that line (the safer form: a
// password on the command line shows in ps). "" means the docker config's credentials, else anonymous.
func registryAuth(v string) (authn.Authenticator, error) {
	if v == "" {
		return nil, nil
	}
	text := v
	if fi, err := os.Stat(v); err == nil && !fi.IsDir() {
		b, err := readFlagFile(v, "--registry-auth", limitCredentials)
		if err != nil {
			return nil, err
		}
		text = string(b)
	}
	a, err := container.ParseCredentials(text)
	if err != nil {
		return nil, fmt.Errorf("--registry-auth: %w", err)
	}
	return a, nil
}
