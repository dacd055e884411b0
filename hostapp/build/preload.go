package build

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hostos/hostos/config/apps"
	"github.com/hostos/hostos/config/compose"
	"github.com/hostos/hostos/hostapp/container"
	"github.com/hostos/hostos/hostapp/preload"
	"github.com/hostos/hostos/partition/disk"
)

// Preload is the spec's [preload] table: a release written into resin-data of the built image, as
// `hostos preload` writes it. Relative paths are relative to the spec file.
type Preload struct {
	// Compose is a compose file (exclusive with Image); Images maps its services to image sources
	// (an OCI layout directory, a docker save or OCI archive, or docker://registry/repo:tag).
	Compose string            `toml:"compose"`
	Images  map[string]string `toml:"images"`
	// Image is the source of a single-container release with balena's default compose.
	Image string `toml:"image"`
	// AppName, AppUUID, AppID and Release name the app and its release; Pin sets pinDevice.
	AppName string `toml:"app_name"`
	AppUUID string `toml:"app_uuid"`
	AppID   int64  `toml:"app_id"`
	Release string `toml:"release"`
	Pin     bool   `toml:"pin"`
	// Supervisor ([IMAGE=]SOURCE) and SupervisorVersion preload the supervisor image.
	Supervisor        string `toml:"supervisor"`
	SupervisorVersion string `toml:"supervisor_version"`
	// Grow lets resin-data grow past sizes.data when the release does not fit.
	Grow bool `toml:"grow"`
}

// empty tells whether the table asks for nothing.
func (p *Preload) empty() bool {
	return p == nil || p.Compose == "" && p.Image == "" && p.Supervisor == ""
}

func (p *Preload) validate() error {
	if p.empty() {
		if p != nil && (len(p.Images) > 0 || p.AppName != "" || p.AppUUID != "" || p.AppID != 0 || p.Release != "" || p.Pin) {
			return errors.New(`table "preload": no compose, image or supervisor to preload`)
		}
		return nil
	}
	if p.Compose != "" && p.Image != "" {
		return errors.New(`table "preload": keys "compose" and "image" both given`)
	}
	if p.Image != "" && len(p.Images) > 0 {
		return errors.New(`table "preload": key "images" is for a compose file, not with "image"`)
	}
	if p.AppID < 0 {
		return fmt.Errorf(`key "preload.app_id": %d is negative`, p.AppID)
	}
	return nil
}

// source resolves an image source relative to the spec's directory; registry references stay as they are.
func (s *Spec) source(ref string) string {
	if ref == "" || strings.HasPrefix(ref, container.PrefixRegistry) {
		return ref
	}
	return s.path(ref)
}

// preloadInputs are the local files the [preload] table names.
func (s *Spec) preloadInputs() []string {
	p := s.Preload
	if p.empty() {
		return nil
	}
	var in []string
	add := func(ref string) {
		if ref != "" && !strings.HasPrefix(ref, container.PrefixRegistry) {
			in = append(in, s.path(ref))
		}
	}
	add(p.Compose)
	add(p.Image)
	for _, ref := range p.Images {
		add(ref)
	}
	if _, src, ok := strings.Cut(p.Supervisor, "="); ok {
		add(src)
	}
	return in
}

// preloadInto preloads the spec's [preload] release into the image file img (the build's work copy).
func (s *Spec) preloadInto(ctx context.Context, img string, o *options) error {
	p := s.Preload
	if p.empty() {
		return nil
	}
	po := preload.Options{
		Image:             s.source(p.Image),
		Release:           apps.Release{AppName: p.AppName, AppUUID: p.AppUUID, AppID: p.AppID, Commit: p.Release},
		Pin:               p.Pin,
		Grow:              p.Grow,
		SupervisorVersion: p.SupervisorVersion,
		Log:               o.log,
		Progress:          func(done, total int64) { o.progress("preload", done, total) },
	}
	if p.Supervisor != "" {
		po.Supervisor = p.Supervisor
		if name, src, ok := strings.Cut(p.Supervisor, "="); ok {
			po.Supervisor = name + "=" + s.source(src)
		}
	}
	if o.epoch != nil {
		po.Time = o.epoch.UTC()
	}
	if p.Compose != "" {
		f := s.path(p.Compose)
		b, err := disk.ReadInput(f, "preload compose file", compose.MaxSize)
		if err != nil {
			return err
		}
		po.Compose, po.ComposeFile, po.ComposeDir = b, f, filepath.Dir(f)
	}
	if len(p.Images) > 0 {
		po.Images = map[string]string{}
		names := make([]string, 0, len(p.Images))
		for k := range p.Images {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			po.Images[k] = s.source(p.Images[k])
		}
	}
	if _, err := preload.Preload(ctx, img, "", po); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	return nil
}
