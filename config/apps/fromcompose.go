package apps

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/config/compose"
)

// Release names the app and release a compose project becomes. Zero fields are derived (see FromCompose).
type Release struct {
	AppName   string // default "preloaded"
	AppUUID   string // default: derived from AppName
	AppID     int64  // default: derived from AppUUID
	Commit    string // the release uuid; default: derived from the project and the images
	ReleaseID int64  // default: derived from Commit
	// Images maps a service name to its image as the engine stores it (a tag, or repository@sha256:digest
	// for a registry image); a service absent here uses its compose image:.
	Images map[string]string
	// Config holds device configuration variables for apps.json's config; may be nil.
	Config map[string]string
}

// FromCompose builds the apps.json of one fleet app with one release from a compose project, with
// pinDevice set to pin. The result passes Validate.
//
// Identifiers the caller leaves zero are derived, so the same inputs always give the same file:
//   - AppUUID: the first 32 hex digits of sha256("hostos/app-uuid\x00" + AppName), the shape of a balena
//     app uuid (rehashed in the 1-in-3-million case of 32 decimal digits, which would read as a v2 id);
//   - Commit: the first 32 hex digits of sha256("hostos/commit\x00" + JSON of the services' names, images
//     and compositions and the volumes and networks);
//   - AppID from AppUUID, ReleaseID from Commit, each service id from AppUUID and the service name, each
//     image id from Commit and the service name: the first 4 bytes of sha256("hostos/<kind>\x00" + inputs),
//     big-endian, taken modulo 2^31-1, plus 1 (never 0, which the supervisor treats as missing).
func FromCompose(p *compose.Project, rel Release, pin bool) (*File, error) {
	if p == nil || len(p.Services) == 0 {
		return nil, fmt.Errorf("apps.json: the compose project has no services")
	}
	if rel.AppName == "" {
		rel.AppName = "preloaded"
	}
	if rel.AppUUID == "" {
		rel.AppUUID = hexID("app-uuid", rel.AppName)
	}
	if rel.AppID < 0 || rel.ReleaseID < 0 {
		return nil, fmt.Errorf("apps.json: app id %d and release id %d must not be negative", rel.AppID, rel.ReleaseID)
	}
	if rel.AppID == 0 {
		rel.AppID = numericID("app-id", rel.AppUUID)
	}
	images := map[string]string{}
	for _, s := range p.Services {
		img := rel.Images[s.Name]
		if img == "" {
			img = s.Image
		}
		if img == "" {
			return nil, fmt.Errorf("apps.json: service %s has no image", s.Name)
		}
		images[s.Name] = img
	}
	for name := range rel.Images {
		if _, ok := p.Service(name); !ok {
			return nil, fmt.Errorf("apps.json: an image is given for service %s, which the compose file does not have", name)
		}
	}
	if rel.Commit == "" {
		fingerprint, err := projectFingerprint(p, images)
		if err != nil {
			return nil, err
		}
		rel.Commit = hexID("commit", fingerprint)
	}
	if rel.ReleaseID == 0 {
		rel.ReleaseID = numericID("release-id", rel.Commit)
	}

	release := releaseOf(p, rel, images)
	config := map[string]string{}
	for k, v := range rel.Config {
		config[k] = v
	}
	f := &File{
		Config: config,
		Apps: map[string]App{rel.AppUUID: {
			ID:       ID(rel.AppID),
			Name:     rel.AppName,
			Class:    "fleet",
			Releases: map[string]AppRelease{},
		}},
		PinDevice: pin,
	}
	f.Apps[rel.AppUUID].Releases[rel.Commit] = release
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

func releaseOf(p *compose.Project, rel Release, images map[string]string) AppRelease {
	out := AppRelease{
		ID:       ID(rel.ReleaseID),
		Services: map[string]Service{},
		Volumes:  map[string]map[string]any{},
		Networks: map[string]map[string]any{},
	}
	for _, s := range p.Services {
		svc := Service{
			ID:          ID(numericID("service-id", rel.AppUUID+"\x00"+s.Name)),
			ImageID:     ID(numericID("image-id", rel.Commit+"\x00"+s.Name)),
			Image:       images[s.Name],
			Environment: copyStrings(s.Environment),
			Labels:      copyStrings(s.Labels),
			Composition: copyComposition(s.Composition),
		}
		if c := contract(s); c != nil {
			svc.Contract = c
		}
		out.Services[s.Name] = svc
	}
	for name, v := range p.Volumes {
		out.Volumes[name] = copyComposition(v.Composition)
	}
	for name, n := range p.Networks {
		out.Networks[name] = copyComposition(n.Composition)
	}
	return out
}

// contract is the container contract balena's builder makes of io.balena.features.requires.* labels:
// os and kernel requirements each become an "or" of their alternatives.
func contract(s compose.Service) map[string]any {
	if len(s.Requires) == 0 {
		return nil
	}
	var requires, os, kernel []any
	keys := make([]string, 0, len(s.Requires))
	for k := range s.Requires {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := s.Requires[k]
		switch {
		case k == "hw.device-type" || k == "arch.sw":
			requires = append(requires, map[string]any{"type": k, "slug": v})
		case k == "sw.balena-os":
			os = append(os, map[string]any{"type": "sw.os", "slug": "balena-os", "version": v})
		case k == "sw.linux":
			kernel = append(kernel, map[string]any{"type": "sw.kernel", "slug": "linux", "version": v})
		case strings.HasPrefix(k, "sw."):
			requires = append(requires, map[string]any{"type": k, "version": v})
		}
	}
	if len(os) > 0 {
		requires = append(requires, map[string]any{"or": os})
	}
	if len(kernel) > 0 {
		requires = append(requires, map[string]any{"or": kernel})
	}
	return map[string]any{"type": "sw.container", "slug": "contract-for-" + s.Name, "requires": requires}
}

// projectFingerprint is the canonical JSON of what a release is made of.
func projectFingerprint(p *compose.Project, images map[string]string) (string, error) {
	type svc struct {
		Name        string         `json:"name"`
		Image       string         `json:"image"`
		Composition map[string]any `json:"composition"`
	}
	var services []svc
	for _, s := range p.Services {
		services = append(services, svc{s.Name, images[s.Name], s.Composition})
	}
	volumes := map[string]map[string]any{}
	for k, v := range p.Volumes {
		volumes[k] = v.Composition
	}
	networks := map[string]map[string]any{}
	for k, n := range p.Networks {
		networks[k] = n.Composition
	}
	b, err := json.Marshal(map[string]any{"services": services, "volumes": volumes, "networks": networks})
	if err != nil {
		return "", fmt.Errorf("apps.json: release fingerprint: %w", err)
	}
	return string(b), nil
}

// hexID is 32 hex digits of sha256("hostos/<kind>\x00" + input), never all decimal digits.
func hexID(kind, input string) string {
	sum := sha256.Sum256([]byte("hostos/" + kind + "\x00" + input))
	for {
		id := hex.EncodeToString(sum[:16])
		if strings.Trim(id, "0123456789") != "" {
			return id
		}
		sum = sha256.Sum256(sum[:])
	}
}

// numericID is a positive id below 2^31 from sha256("hostos/<kind>\x00" + input).
func numericID(kind, input string) int64 {
	sum := sha256.Sum256([]byte("hostos/" + kind + "\x00" + input))
	return int64(binary.BigEndian.Uint32(sum[:4])%(1<<31-1)) + 1
}

func copyStrings(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func copyComposition(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return config.CopyJSON(m).(map[string]any)
}
