package preload

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hostos/hostos/hostapp/container"
	"github.com/hostos/hostos/rootfs/enginestore"
)

// SupervisorRepo is the repository balenaOS's docker-disk recipe tags the supervisor image with, beside
// its own name: balena_supervisor:<version>.
const SupervisorRepo = "balena_supervisor"

var supervisorVersion = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^v?[0-9]+(\.[0-9]+)*([.+-][0-9A-Za-z.+-]*)?$`) })

// supervisor is the source of the supervisor image and the names meta-balena's docker-disk recipe gives
// it: the image's name without its digest (":latest" when it has no tag) and balena_supervisor:<version>,
// with the manifest digest of a digest reference. spec is [IMAGE=]SOURCE: IMAGE is the name the OS
// knows the supervisor by (its SUPERVISOR_IMAGE), SOURCE where it is read from; a docker:// SOURCE
// alone is both. version defaults to IMAGE's tag when that is a version.
func supervisor(spec, version string) (*source, error) {
	name, src, ok := strings.Cut(spec, "=")
	if !ok {
		src = spec
		if !strings.HasPrefix(src, container.PrefixRegistry) {
			return nil, fmt.Errorf("supervisor %q: a local source needs the image's name, as IMAGE=SOURCE", spec)
		}
		name = strings.TrimPrefix(src, container.PrefixRegistry)
	}
	if name == "" || src == "" {
		return nil, fmt.Errorf("supervisor %q: want [IMAGE=]SOURCE", spec)
	}
	ref, err := enginestore.ParseRef(name)
	if err != nil {
		return nil, fmt.Errorf("supervisor image %q: %w", name, err)
	}
	s := &source{ref: src, services: []string{"the supervisor"}, repo: ref.Repo}
	tag := ref.Tag
	s.tags = append(s.tags, enginestore.Ref{Repo: ref.Repo, Tag: tag}.OrLatest().String())
	if ref.Digest != "" {
		if s.digest, err = v1.NewHash(ref.Digest); err != nil {
			return nil, fmt.Errorf("supervisor image %q: %w", name, err)
		}
	}
	if version == "" && supervisorVersion().MatchString(tag) {
		version = tag
	}
	if version == "" {
		return nil, errors.New("supervisor: no version (give it, or name the image with a version tag such as :v14.11.3)")
	}
	if !supervisorVersion().MatchString(version) {
		return nil, fmt.Errorf("supervisor version %q: not a version", version)
	}
	if !strings.HasPrefix(version, "v") {
		version = "v" + version
	}
	s.tags = append(s.tags, SupervisorRepo+":"+version)
	return s, nil
}
