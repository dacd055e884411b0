package configure

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/rootfs/bootfs"
)

// Options is one configure run. Everything is validated and planned before the first byte is written.
type Options struct {
	// Config is merged over config.json (objects merged key by key, everything else replaced), or
	// replaces it whole with Replace.
	Config  *config.Config
	Replace bool
	// Set holds dotted-key edits, applied after Config.
	Set []Setting

	Hostname          string
	PersistentLogging *bool
	Development       *bool
	// SSHKeys are OpenSSH public keys as config.ParseSSHKeys returns them.
	SSHKeys      []string
	Provisioning *config.Provisioning
	UUID         string
	DNS, NTP     *string
	Country      string
	// UdevRules maps a rule file name to its text, stored in os.udevRules.
	UdevRules map[string]string

	Wifi     *config.Wifi
	Ethernet *config.Ethernet
	// Connections are NetworkManager keyfiles copied into system-connections/.
	Connections []File
	// Splash is a PNG for splash/balena-logo.png.
	Splash []byte

	// Time stamps the files written. Zero keeps the output deterministic: the time config.json (or the
	// boot partition's os-release) already carries.
	Time time.Time
}

// Setting is one dotted-key edit of config.json.
type Setting struct {
	Key   string
	Value any
}

// File is a file to place on the boot partition.
type File struct {
	Name string
	Data []byte
}

// Result says what a run changed.
type Result struct {
	// Written lists the files whose content changed, in the order written; empty when the image already
	// was as asked.
	Written []string `json:"written"`
}

// change is one file to write.
type change struct {
	name string
	data []byte
	old  int64 // size of the file it replaces, -1 when new
}

// legacySplashBefore is the first OS version that reads splash/balena-logo.png instead of resin-logo.png.
var legacySplashBefore = [2]int{2, 53}

// Apply validates o against the target, then writes every file that changes, config.json last.
func (tg *Target) Apply(o Options) (Result, error) {
	changes, dirs, err := tg.plan(o)
	if err != nil {
		return Result{}, err
	}
	if len(changes) == 0 {
		return Result{}, nil
	}
	if err := tg.checkSpace(changes, dirs); err != nil {
		return Result{}, err
	}
	mtime := o.Time
	if mtime.IsZero() {
		mtime = tg.referenceTime()
	}
	for _, d := range dirs {
		if err := tg.FS.MkdirAll(d, mtime); err != nil {
			return Result{}, fmt.Errorf("create %s: %w", strings.TrimPrefix(d, "/"), err)
		}
	}
	var res Result
	for _, c := range changes {
		if err := tg.FS.WriteFile(c.name, c.data, mtime); err != nil {
			return res, fmt.Errorf("write %s: %w", strings.TrimPrefix(c.name, "/"), err)
		}
		res.Written = append(res.Written, strings.TrimPrefix(c.name, "/"))
	}
	return res, nil
}

// plan computes the new content of every file o touches and keeps those that differ.
func (tg *Target) plan(o Options) ([]change, []string, error) {
	files, err := tg.files(o)
	if err != nil {
		return nil, nil, err
	}
	newConfig, err := tg.newConfig(o)
	if err != nil {
		return nil, nil, err
	}
	if newConfig != nil {
		files = append(files, File{Name: tg.ConfigPath, Data: newConfig})
	}
	var changes []change
	var dirs []string
	for _, f := range files {
		old, err := tg.FS.ReadFile(f.Name)
		switch {
		case err == nil && bytes.Equal(old, f.Data):
			continue
		case err == nil:
			changes = append(changes, change{name: f.Name, data: f.Data, old: int64(len(old))})
		case errors.Is(err, fs.ErrNotExist):
			changes = append(changes, change{name: f.Name, data: f.Data, old: -1})
			if d := path.Dir(f.Name); d != "/" && !slices.Contains(dirs, d) {
				if _, err := tg.FS.ModTime(d); errors.Is(err, fs.ErrNotExist) {
					dirs = append(dirs, d)
				}
			}
		default:
			return nil, nil, fmt.Errorf("read %s: %w", strings.TrimPrefix(f.Name, "/"), err)
		}
	}
	return changes, dirs, nil
}

// files returns the keyfiles and splash images o asks for, validated.
func (tg *Target) files(o Options) ([]File, error) {
	var files []File
	if o.Wifi != nil {
		b, err := o.Wifi.Keyfile()
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: connectionPath(o.Wifi.ID, "resin-wifi"), Data: b})
	}
	if o.Ethernet != nil {
		b, err := o.Ethernet.Keyfile()
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: connectionPath(o.Ethernet.ID, "resin-ethernet"), Data: b})
	}
	for _, c := range o.Connections {
		if err := config.ValidateConnectionFile(c.Name, c.Data); err != nil {
			return nil, err
		}
		files = append(files, File{Name: "/system-connections/" + c.Name, Data: c.Data})
	}
	seen := map[string]bool{}
	for _, f := range files {
		k := strings.ToLower(f.Name) // FAT names are case-insensitive
		if seen[k] {
			return nil, fmt.Errorf("two connections would be written to %s", strings.TrimPrefix(f.Name, "/"))
		}
		seen[k] = true
	}
	if o.Splash != nil {
		if err := config.ValidatePNG(o.Splash); err != nil {
			return nil, fmt.Errorf("splash: %w", err)
		}
		files = append(files, File{Name: "/splash/balena-logo.png", Data: o.Splash})
		if v := tg.OSVersion(); v != "" && versionBefore(v, legacySplashBefore) {
			files = append(files, File{Name: "/splash/resin-logo.png", Data: o.Splash})
		}
	}
	return files, nil
}

func connectionPath(id, def string) string {
	if id == "" {
		id = def
	}
	return "/system-connections/" + id
}

// newConfig returns the encoded config.json o asks for, or nil when o does not touch config.json.
func (tg *Target) newConfig(o Options) ([]byte, error) {
	if !touchesConfig(o) {
		return nil, nil
	}
	// old is what config.json holds now; replacing it whole works even when it does not parse.
	old, err := tg.Config()
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !(o.Replace && o.Config != nil) {
			return nil, err
		}
		old = config.Config{}
	}
	var c config.Config
	if o.Replace && o.Config != nil {
		c = o.Config.Clone()
	} else {
		c = old.Clone()
		if o.Config != nil {
			if err := merge(&c, *o.Config); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range o.Set {
		if err := c.Set(s.Key, s.Value); err != nil {
			return nil, err
		}
	}
	// The flags set typed keys; NormalizeChanged below checks them with every other change, one way.
	set := func(key string, v any) error {
		if err := c.Set(key, v); err != nil {
			return err
		}
		if _, err := config.NormalizeSetting(key, v); err != nil {
			return err
		}
		return nil
	}
	if o.Hostname != "" {
		if err := set("hostname", o.Hostname); err != nil {
			return nil, err
		}
	}
	if o.PersistentLogging != nil {
		_ = c.Set("persistentLogging", *o.PersistentLogging)
	}
	if o.Development != nil {
		_ = c.Set("developmentMode", *o.Development)
	}
	if len(o.SSHKeys) > 0 {
		if _, err := config.AddSSHKeys(&c, o.SSHKeys); err != nil {
			return nil, err
		}
	}
	if o.DNS != nil {
		if err := set("dnsServers", *o.DNS); err != nil {
			return nil, err
		}
	}
	if o.NTP != nil {
		if err := set("ntpServers", *o.NTP); err != nil {
			return nil, err
		}
	}
	if o.Country != "" {
		if err := set("country", o.Country); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(o.UdevRules) {
		if err := config.CheckUdevRuleName(name); err != nil {
			return nil, err
		}
		if err := c.SetPath(o.UdevRules[name], "os", "udevRules", name); err != nil {
			return nil, fmt.Errorf("udev rule %s: %w", name, err)
		}
	}
	if o.Provisioning != nil {
		p := *o.Provisioning
		if p.DeviceType == "" {
			p.DeviceType = tg.DeviceType
		} else if err := tg.checkDeviceType(p.DeviceType); err != nil {
			return nil, err
		}
		if p.DeviceType == "" {
			return nil, errors.New("the image names no device type: give --device-type")
		}
		if p.UUID == "" {
			p.UUID = o.UUID
		}
		if err := c.Provision(p); err != nil {
			return nil, err
		}
	} else if o.UUID != "" {
		if err := set("uuid", o.UUID); err != nil {
			return nil, err
		}
	}
	if err := config.NormalizeChanged(old, &c); err != nil {
		return nil, err
	}
	if dt, ok := c.String("deviceType"); ok && tg.typeFromManifest {
		if was, _ := old.String("deviceType"); dt != was {
			if err := tg.checkDeviceType(dt); err != nil {
				return nil, fmt.Errorf("config.json: %w", err)
			}
		}
	}
	return c.Encode(), nil
}

// checkDeviceType refuses a device type other than the image's own (or one of its aliases): the OS
// refuses to join a fleet of another type.
func (tg *Target) checkDeviceType(slug string) error {
	if tg.DeviceType != "" && slug != tg.DeviceType && !slices.Contains(tg.Aliases, slug) {
		return fmt.Errorf("device type %q does not match the image's %q", slug, tg.DeviceType)
	}
	return nil
}

func touchesConfig(o Options) bool {
	return o.Config != nil || len(o.Set) > 0 || o.Hostname != "" || o.PersistentLogging != nil ||
		o.Development != nil || len(o.SSHKeys) > 0 || o.Provisioning != nil || o.UUID != "" ||
		o.DNS != nil || o.NTP != nil || o.Country != "" || len(o.UdevRules) > 0
}

// merge deep-merges src over dst: objects key by key, every other value replaced.
func merge(dst *config.Config, src config.Config) error {
	for _, k := range src.Keys() {
		v, _ := src.GetPath(k)
		if err := mergeValue(dst, []string{k}, v); err != nil {
			return err
		}
	}
	return nil
}

func mergeValue(dst *config.Config, p []string, v any) error {
	if m, ok := v.(map[string]any); ok {
		if cur, ok := dst.GetPath(p...); ok {
			if _, ok := cur.(map[string]any); ok {
				for _, k := range sortedKeys(m) {
					if err := mergeValue(dst, append(slices.Clone(p), k), m[k]); err != nil {
						return err
					}
				}
				return nil
			}
		}
	}
	return dst.SetPath(v, p...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkSpace refuses the run before any write when the directories and files will not fit.
func (tg *Target) checkSpace(changes []change, dirs []string) error {
	var cs []bootfs.Change
	for _, d := range dirs {
		cs = append(cs, bootfs.Change{Name: d, NewDir: true})
	}
	for _, c := range changes {
		cs = append(cs, bootfs.Change{Name: c.name, Size: int64(len(c.data)), OldSize: c.old})
	}
	return bootfs.Fits(tg.FS, cs)
}

// referenceTime is the time already on config.json (or os-release): stamping written files with it keeps
// the output a function of the inputs.
func (tg *Target) referenceTime() time.Time {
	for _, n := range []string{tg.ConfigPath, "/os-release", "/device-type.json"} {
		if t, err := tg.FS.ModTime(n); err == nil && !t.IsZero() {
			return t
		}
	}
	return time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
}

// versionBefore reports whether an OS version such as "2.52.7+rev1" or "v2.113.4" is older than v.
func versionBefore(version string, v [2]int) bool {
	s := strings.TrimPrefix(strings.TrimSpace(version), "v")
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return false
	}
	leading := func(s string) string {
		if i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			return s[:i]
		}
		return s
	}
	major, err1 := strconv.Atoi(leading(parts[0]))
	minor, err2 := strconv.Atoi(leading(parts[1]))
	if err1 != nil || err2 != nil {
		return false
	}
	return major < v[0] || major == v[0] && minor < v[1]
}
