package configure

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/partition/disk"
)

// ErrCompressed marks a compressed image that can only be configured into a new file.
var ErrCompressed = errors.New("compressed image")

// Image configures the image file (or block device) image in place, or, when output is not empty, a
// copy of it written to output: a sparse copy (a reflink where the file system offers one), or the
// decompressed image when image is zstd, xz, gzip or zip compressed. output appears only complete.
// progress, if not nil, follows the decompression.
func Image(ctx context.Context, image, output string, o Options, progress func(done, total int64)) (Result, error) {
	algo, err := compression(image)
	if err != nil {
		return Result{}, err
	}
	if output == "" {
		if algo != "" {
			return Result{}, fmt.Errorf("%s is %s-compressed: %w", image, algo, ErrCompressed)
		}
		return configureFile(image, o)
	}
	si, err := os.Stat(image)
	if err != nil {
		return Result{}, err
	}
	if oi, err := os.Stat(output); err == nil && os.SameFile(si, oi) {
		return Result{}, fmt.Errorf("output %s is the input image", output)
	}
	// Assembled in a directory only the user can enter: the copy is readable only through it until it
	// has the input's permission bits.
	work, release, err := disk.WorkDir(filepath.Dir(output), "."+filepath.Base(output)+".hostos-")
	if err != nil {
		return Result{}, fmt.Errorf("output: %w", err)
	}
	defer release()
	tmp := filepath.Join(work, "image")
	if algo != "" {
		err = disk.Decompress(ctx, image, tmp, progress)
	} else {
		err = disk.SparseCopy(tmp, image)
	}
	if err != nil {
		return Result{}, err
	}
	// The output keeps the input's permission bits: an image holding a provisioning key stays as private
	// as it was (0600 stays 0600, whatever the umask).
	if err := os.Chmod(tmp, si.Mode().Perm()); err != nil {
		return Result{}, fmt.Errorf("output: %w", err)
	}
	res, err := configureFile(tmp, o)
	if err != nil {
		return Result{}, err
	}
	if err := disk.Publish(tmp, output); err != nil {
		return Result{}, fmt.Errorf("output: %w", err)
	}
	return res, nil
}

// ReadConfig reads config.json from the image file image.
func ReadConfig(image string) (config.Config, error) {
	algo, err := compression(image)
	if err != nil {
		return config.Config{}, err
	}
	if algo != "" {
		return config.Config{}, fmt.Errorf("%s is %s-compressed: %w", image, algo, ErrCompressed)
	}
	d, err := disk.Open(image, false)
	if err != nil {
		return config.Config{}, err
	}
	defer d.Close()
	tg, err := Open(d)
	if err != nil {
		return config.Config{}, fmt.Errorf("%s: %w", image, err)
	}
	return tg.Config()
}

func compression(image string) (string, error) {
	if fi, err := os.Stat(image); err == nil && fi.IsDir() {
		return "", fmt.Errorf("%s: is a directory, not a disk image (use --boot-dir for a mounted boot partition)", image)
	}
	// disk.Open refuses a FIFO or another special file without waiting on it.
	f, err := disk.Open(image, false)
	if err != nil {
		return "", err
	}
	defer f.Close()
	algo, err := disk.Compression(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", image, err)
	}
	return algo, nil
}

func configureFile(image string, o Options) (Result, error) {
	d, err := disk.Open(image, true)
	if err != nil {
		return Result{}, err
	}
	defer d.Close()
	tg, err := Open(d)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", image, err)
	}
	res, err := tg.Apply(o)
	if err != nil {
		return res, err
	}
	if err := d.Sync(); err != nil {
		return res, fmt.Errorf("%s: %w", image, err)
	}
	return res, d.Close()
}
