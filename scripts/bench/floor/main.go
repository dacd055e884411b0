// Command floor does nothing but link the third-party packages hostos imports, as hostos is built: its
// start-up (loading the binary, the packages' initialisation) is the least any hostos command can take
// while it uses those libraries. scripts/bench-configure.sh sets it against a Go hello-world, `hostos
// --version` and balena-device-init, which tells what start-up targets the libraries leave reachable.
// TestImportsMatchHostos keeps the list equal to what hostos imports.
package main

import (
	_ "github.com/diskfs/go-diskfs/backend"
	_ "github.com/diskfs/go-diskfs/filesystem/ext4"
	_ "github.com/docker/go-connections/nat"
	_ "github.com/google/go-containerregistry/pkg/authn"
	_ "github.com/google/go-containerregistry/pkg/name"
	_ "github.com/google/go-containerregistry/pkg/v1"
	_ "github.com/google/go-containerregistry/pkg/v1/empty"
	_ "github.com/google/go-containerregistry/pkg/v1/layout"
	_ "github.com/google/go-containerregistry/pkg/v1/mutate"
	_ "github.com/google/go-containerregistry/pkg/v1/partial"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-containerregistry/pkg/v1/remote/transport"
	_ "github.com/google/go-containerregistry/pkg/v1/tarball"
	_ "github.com/google/go-containerregistry/pkg/v1/types"
	_ "github.com/google/uuid"
	_ "github.com/klauspost/compress/gzip"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/mattn/go-shellwords"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/pelletier/go-toml/v2/unstable"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/spf13/cobra"
	_ "github.com/ulikunitz/xz"
	_ "github.com/vbatts/tar-split/tar/asm"
	_ "github.com/vbatts/tar-split/tar/storage"
	_ "go.yaml.in/yaml/v4"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/term"
)

func main() {}
