package enginestore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// plan is an image checked before anything is written.
type plan struct {
	image   Image
	name    string // for messages: the first tag or the image id
	config  []byte
	id      v1.Hash
	diffIDs []v1.Hash
	chains  []v1.Hash
	layers  []v1.Layer
	digests []v1.Hash
	refs    [][2]string
	created time.Time
}

// rootfsConfig is the part of an image config the store depends on.
type rootfsConfig struct {
	Created string `json:"created"`
	RootFS  struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

func planAll(images []Image) ([]*plan, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("engine store: no images")
	}
	out := make([]*plan, 0, len(images))
	for i, im := range images {
		p, err := planImage(im)
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func planImage(im Image) (*plan, error) {
	if im.Image == nil {
		return nil, fmt.Errorf("no image")
	}
	p := &plan{image: im}
	var err error
	if p.refs, err = im.references(); err != nil {
		return nil, err
	}
	if p.config, err = im.Image.RawConfigFile(); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	sum := sha256.Sum256(p.config)
	p.id = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	p.name = p.id.String()
	if len(im.Tags) > 0 {
		p.name = im.Tags[0]
	}
	name, err := im.Image.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("image %s: config name: %w", p.name, err)
	}
	if name != p.id {
		return nil, fmt.Errorf("image %s: config bytes hash to %s, not %s: %w", p.name, p.id, name, ErrDigestMismatch)
	}
	var cfg rootfsConfig
	dec := json.NewDecoder(bytes.NewReader(p.config))
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", p.name, err)
	}
	// A creation time that does not parse only leaves the store's own timestamps at the default.
	p.created, _ = time.Parse(time.RFC3339Nano, cfg.Created)
	if cfg.RootFS.Type != "layers" {
		return nil, fmt.Errorf("image %s: config rootfs type %q, not \"layers\"", p.name, cfg.RootFS.Type)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		h, err := v1.NewHash(d)
		if err != nil || h.Algorithm != "sha256" {
			return nil, fmt.Errorf("image %s: config diffID %q: not a sha256 digest", p.name, d)
		}
		p.diffIDs = append(p.diffIDs, h)
	}
	if len(p.diffIDs) == 0 {
		return nil, fmt.Errorf("image %s: config lists no layers", p.name)
	}
	if p.layers, err = im.Image.Layers(); err != nil {
		return nil, fmt.Errorf("image %s: layers: %w", p.name, err)
	}
	if len(p.layers) != len(p.diffIDs) {
		return nil, fmt.Errorf("image %s: %d layers but the config lists %d diffIDs", p.name, len(p.layers), len(p.diffIDs))
	}
	for i, l := range p.layers {
		d, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("image %s: layer %d digest: %w", p.name, i+1, err)
		}
		if d.Algorithm != "sha256" || len(d.Hex) != 64 {
			return nil, fmt.Errorf("image %s: layer %d digest %s: not a sha256 digest", p.name, i+1, d)
		}
		p.digests = append(p.digests, d)
		p.chains = append(p.chains, ChainID(p.diffIDs[:i+1]))
	}
	return p, nil
}
