package lock

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// openNoFollow: os.OpenFile on Windows opens a symbolic link's target; checkOwnFile then sees a
// regular file, as a link planted in a user's own temporary directory would need the user's rights.
const openNoFollow = 0

func checkOwnFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	return nil
}

// openTarget opens the lock file that stands for directory dir: a file in the temporary directory named
// after a hash of dir's absolute path, case folded as Windows paths are.
func openTarget(dir string) (*os.File, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(strings.ToLower(filepath.Clean(abs))))
	return os.OpenFile(filepath.Join(os.TempDir(), "hostos-target-"+hex.EncodeToString(sum[:8])+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
}
