package compose

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Project is a release's compose file: its services (sorted by name), named volumes and networks.
type Project struct {
	Services []Service
	Volumes  map[string]Volume
	Networks map[string]Network
}

// Service returns the service called name.
func (p *Project) Service(name string) (Service, bool) {
	for _, s := range p.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// Service is one service of a compose file, as a balena device runs it.
type Service struct {
	Name  string
	Image string // the image reference; empty only for a build-only service under AllowBuild
	Build *Build // the build: section, nil when absent

	Environment map[string]string // null values read as ""
	Labels      map[string]string // as written, plus the feature labels allowed bind mounts stand for
	Features    Features
	Update      Update
	// Requires holds the io.balena.features.requires.<type> contract requirements by type
	// (sw.supervisor, sw.l4t, sw.balena-os, sw.linux, hw.device-type, arch.sw).
	Requires map[string]string

	Volumes     []Mount           // named volumes, in file order
	Tmpfs       []string          // tmpfs mount points, tmpfs-type volumes included
	NetworkMode string            // "" (the release's default bridge), host, none, bridge or service:NAME
	Networks    []string          // the networks the file names for the service, sorted
	Privileged  bool              //
	CapAdd      []string          //
	CapDrop     []string          //
	Devices     []string          // host:container:permissions
	Restart     string            // "" means always on balena
	DependsOn   []string          // sorted
	Ports       []string          // short syntax: [ip:][published:]target[/udp]
	Ulimits     map[string]Ulimit //
	Command     []string          // nil: the image's
	Entrypoint  []string          // nil: the image's
	WorkingDir  string
	User        string

	// Composition is the service as balena's builder hands it to the supervisor (the "composition" of a
	// target-state service): compose keys in snake_case, ports, volumes, devices and depends_on in short
	// syntax, without image, build and what balena drops. Values are JSON types (string, float64, bool,
	// []any, map[string]any).
	Composition map[string]any
}

// Build is the build: section of a service.
type Build struct {
	Context    string
	Dockerfile string
	Target     string
	Args       map[string]string
}

// Mount is a named volume mounted into a service.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// Ulimit is a soft and a hard limit; a single number in the file sets both.
type Ulimit struct {
	Soft int64
	Hard int64
}

// Volume is a top-level named volume.
type Volume struct {
	Driver      string
	DriverOpts  map[string]string
	Labels      map[string]string
	Composition map[string]any // the volume's compose configuration, for the release's "volumes"
}

// Network is a top-level network.
type Network struct {
	Driver      string
	Internal    bool
	DriverOpts  map[string]string
	Labels      map[string]string
	Composition map[string]any // the network's compose configuration, for the release's "networks"
}

var (
	dockerNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`) })
	envNameRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`) })
	profileRE    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`) })
)

// deniedFields are compose service fields balena's builder refuses.
var deniedFields = map[string]bool{
	"blkio_config": true, "configs": true, "cpu_count": true, "cpu_percent": true, "cpu_period": true,
	"credential_spec": true, "deploy": true, "develop": true, "external_links": true, "gpus": true,
	"isolation": true, "links": true, "logging": true, "mem_swappiness": true, "memswap_limit": true,
	"oom_kill_disable": true, "platform": true, "pull_policy": true, "runtime": true, "scale": true,
	"secrets": true, "stdin_open": true, "storage_opt": true, "provider": true, "models": true,
}

// deniedBuildFields are build: fields balena's builder refuses.
var deniedBuildFields = map[string]bool{
	"additional_contexts": true, "cache_to": true, "dockerfile_inline": true, "entitlements": true,
	"isolation": true, "network": true, "no_cache": true, "platforms": true, "privileged": true,
	"pull": true, "secrets": true, "ssh": true, "tags": true, "ulimits": true,
}

// supervisorFields are the compose service fields the supervisor applies (src/compose/sanitise.ts, in
// snake_case), plus the ones the builder consumes or rewrites.
var supervisorFields = map[string]bool{
	"cap_add": true, "cap_drop": true, "command": true, "cgroup_parent": true, "devices": true, "dns": true,
	"dns_opt": true, "dns_search": true, "tmpfs": true, "entrypoint": true, "environment": true,
	"extra_hosts": true, "group_add": true, "healthcheck": true, "image": true, "init": true, "labels": true,
	"running": true, "network_mode": true, "networks": true, "pid": true, "pids_limit": true, "ports": true,
	"security_opt": true, "stop_grace_period": true, "stop_signal": true, "sysctls": true,
	"ulimits": true, "userns_mode": true, "volumes": true, "restart": true, "cpu_shares": true,
	"cpu_quota": true, "cpus": true, "cpuset": true, "domainname": true, "hostname": true, "ipc": true,
	"mac_address": true, "mem_limit": true, "mem_reservation": true, "oom_score_adj": true,
	"privileged": true, "read_only": true, "shm_size": true, "user": true, "working_dir": true, "tty": true,
	"depends_on": true, "build": true, "profiles": true, "expose": true, "container_name": true,
	"env_file": true, "label_file": true, "extends": true,
}

// featureBinds are the host paths balena accepts as bind mounts: each stands for a feature label, which
// needs every path of its set.
var featureBinds = []struct {
	label string
	paths []string
}{
	{"io.balena.features.balena-socket", []string{"/var/run/docker.sock"}},
	{"io.balena.features.balena-socket", []string{"/var/run/balena-engine.sock"}},
	{"io.balena.features.dbus", []string{"/run/dbus"}},
	{"io.balena.features.sysfs", []string{"/sys"}},
	{"io.balena.features.procfs", []string{"/proc"}},
	{"io.balena.features.kernel-modules", []string{"/lib/modules"}},
	{"io.balena.features.firmware", []string{"/lib/firmware"}},
	{"io.balena.features.journal-logs", []string{"/var/log/journal", "/run/log/journal", "/etc/machine-id"}},
}

func featureBindPath(source string) bool {
	for _, fb := range featureBinds {
		for _, p := range fb.paths {
			if p == source {
				return true
			}
		}
	}
	return false
}

func (p *parser) project(model map[string]any) (*Project, error) {
	proj := &Project{Volumes: map[string]Volume{}, Networks: map[string]Network{}}
	services, _ := model["services"].(map[string]any)
	for _, name := range sortedKeys(services) {
		m, _ := services[name].(map[string]any)
		s, err := p.service(name, m)
		if err != nil {
			return nil, err
		}
		proj.Services = append(proj.Services, s)
	}
	rawVolumes, _ := p.raw["volumes"].(map[string]any)
	volumes, _ := model["volumes"].(map[string]any)
	for _, name := range sortedKeys(volumes) {
		if _, ok := rawVolumes[name]; !ok {
			continue
		}
		v, err := p.volume(name, asMap(volumes[name]))
		if err != nil {
			return nil, err
		}
		proj.Volumes[name] = v
	}
	rawNetworks, _ := p.raw["networks"].(map[string]any)
	networks, _ := model["networks"].(map[string]any)
	for _, name := range sortedKeys(networks) {
		if _, ok := rawNetworks[name]; !ok {
			continue
		}
		n, err := p.network(name, asMap(networks[name]))
		if err != nil {
			return nil, err
		}
		proj.Networks[name] = n
	}
	return proj, nil
}

func (p *parser) service(name string, m map[string]any) (Service, error) {
	at := "services." + name
	s := Service{Name: name}
	if len(name) > 255 || !dockerNameRE().MatchString(name) {
		return s, p.errorf(at, "service %s: a service name starts with a letter or digit and has only letters, digits, _ . and -", name)
	}
	for _, k := range sortedKeys(m) {
		if deniedFields[k] {
			return s, p.errorf(at+"."+k, "service %s: %s is not supported by balena", name, k)
		}
	}
	rawService, _ := asMap(p.raw["services"])[name].(map[string]any)

	s.Image = str(m["image"])
	if b, ok := m["build"].(map[string]any); ok {
		for _, k := range sortedKeys(b) {
			if deniedBuildFields[k] {
				return s, p.errorf(at+".build."+k, "service %s: build.%s is not supported by balena", name, k)
			}
		}
		s.Build = &Build{Context: str(b["context"]), Dockerfile: str(b["dockerfile"]), Target: str(b["target"]), Args: strMap(b["args"])}
		if s.Image == "" && !p.opts.allowBuild {
			return s, p.errorf(at+".build", "service %s has only build:; build it first and pass the image with --images", name)
		}
	}
	if s.Image == "" && s.Build == nil {
		return s, p.errorf(at, "service %s has neither image: nor build:", name)
	}

	for _, k := range []string{"network_mode", "pid"} {
		if v := str(m[k]); strings.HasPrefix(v, "container:") {
			return s, p.errorf(at+"."+k, "service %s: %s %s: a container reference is not supported by balena", name, k, v)
		}
	}
	if v := strings.TrimSpace(str(m["ipc"])); strings.HasPrefix(v, "service:") {
		return s, p.errorf(at+".ipc", "service %s: ipc %s: a service reference is not supported by balena", name, v)
	}
	for i, v := range list(m["volumes_from"]) {
		if strings.HasPrefix(str(v), "container:") {
			return s, p.errorf(at+".volumes_from."+strconv.Itoa(i), "service %s: volumes_from %s: a container reference is not supported by balena", name, str(v))
		}
	}
	for i, v := range list(m["security_opt"]) {
		opt := str(v)
		if !securityOptAllowed(opt) {
			return s, p.errorf(at+".security_opt."+strconv.Itoa(i), "service %s: security_opt %s: balena allows only no-new-privileges and apparmor or seccomp unconfined", name, opt)
		}
	}
	if sec := list(m["security_opt"]); sec != nil {
		for i, v := range sec {
			sec[i] = strings.Replace(str(v), ":", "=", 1)
		}
	}
	if n, ok := m["pids_limit"].(float64); ok && n < 0 {
		return s, p.errorf(at+".pids_limit", "service %s: a negative pids_limit is not supported by balena", name)
	}
	if n, ok := m["oom_score_adj"].(float64); ok && n <= -900 {
		p.warnf(at+".oom_score_adj", "service %s: oom_score_adj %v may break the device's own services", name, n)
	}
	for i, v := range list(m["profiles"]) {
		if !profileRE().MatchString(str(v)) {
			return s, p.errorf(at+".profiles."+strconv.Itoa(i), "service %s: profiles: %q is not a valid profile name", name, str(v))
		}
	}
	for _, k := range []string{"expose", "container_name"} {
		if _, ok := m[k]; ok {
			p.warnf(at+"."+k, "service %s: %s is not used by balena; dropped", name, k)
		}
	}
	for _, k := range sortedKeys(m) {
		if !supervisorFields[k] && !deniedFields[k] {
			p.warnf(at+"."+k, "service %s: %s is not applied by the balena supervisor, which ignores it", name, k)
		}
	}

	// networks
	if nets, ok := m["networks"].(map[string]any); ok {
		for _, n := range sortedKeys(nets) {
			cfg := asMap(nets[n])
			if _, ok := cfg["link_local_ips"]; ok {
				return s, p.errorf(at+".networks."+n, "service %s: networks %s: link_local_ips is not supported by balena", name, n)
			}
			if cfg == nil {
				nets[n] = map[string]any{}
			}
		}
		if _, declared := rawService["networks"]; declared {
			s.Networks = sortedKeys(nets)
		} else {
			delete(m, "networks")
		}
	}

	// environment
	env := asMap(m["environment"])
	s.Environment = map[string]string{}
	for _, k := range sortedKeys(env) {
		if len(k) > 255 || !envNameRE().MatchString(k) {
			return s, p.errorf(at+".environment", "service %s: environment variable %q: a name starts with a letter or _ and has only letters, digits and _", name, k)
		}
		if env[k] == nil {
			env[k] = ""
		}
		s.Environment[k] = str(env[k])
	}

	// volumes
	var shortVolumes []any
	var tmpfs []string
	sources := map[string]bool{}
	for _, v := range list(m["volumes"]) {
		if src := str(asMap(v)["source"]); src != "" {
			sources[src] = true
		}
	}
	labels := strMap(m["labels"])
	if labels == nil {
		labels = map[string]string{}
	}
	for _, fb := range featureBinds {
		all := true
		for _, path := range fb.paths {
			all = all && sources[path]
		}
		if all {
			labels[fb.label] = "1"
		} else if len(fb.paths) > 1 {
			for _, path := range fb.paths {
				if sources[path] {
					p.warnf(at+".volumes", "service %s: bind mount of %s dropped: %s stands for all of %s", name, path, fb.label, strings.Join(fb.paths, ", "))
				}
			}
		}
	}
	for i, v := range list(m["volumes"]) {
		vm := asMap(v)
		vat := at + ".volumes." + strconv.Itoa(i)
		typ, src, dst := str(vm["type"]), str(vm["source"]), str(vm["target"])
		if src != "" && featureBindPath(src) {
			continue
		}
		switch typ {
		case "volume":
			if len(asMap(vm["volume"])) > 0 {
				return s, p.errorf(vat, "service %s: volumes: volume options (nocopy, subpath) are not supported by balena", name)
			}
			if src == "" || dst == "" {
				return s, p.errorf(vat, "service %s: volumes: an anonymous volume is not supported by balena; name it", name)
			}
			mount := Mount{Source: src, Target: dst, ReadOnly: vm["read_only"] == true}
			s.Volumes = append(s.Volumes, mount)
			short := src + ":" + dst
			if mount.ReadOnly {
				short += ":ro"
			}
			shortVolumes = append(shortVolumes, short)
		case "tmpfs":
			if len(asMap(vm["tmpfs"])) > 0 {
				return s, p.errorf(vat, "service %s: volumes: tmpfs options (size, mode) are not supported by balena", name)
			}
			tmpfs = append(tmpfs, dst)
		case "bind":
			return s, p.errorf(vat, "service %s: volumes: bind mount %s:%s is not supported by balena; use a named volume, or a feature label for %s", name, src, dst, featurePaths())
		default:
			return s, p.errorf(vat, "service %s: volumes: a %s volume is not supported by balena", name, typ)
		}
	}
	if len(shortVolumes) > 0 {
		m["volumes"] = shortVolumes
	} else {
		delete(m, "volumes")
	}
	for _, t := range list(m["tmpfs"]) {
		s.Tmpfs = append(s.Tmpfs, str(t))
	}
	s.Tmpfs = append(s.Tmpfs, tmpfs...)
	if len(s.Tmpfs) > 0 {
		m["tmpfs"] = anyList(s.Tmpfs)
	}
	if len(labels) > 0 {
		m["labels"] = anyMap(labels)
	}
	s.Labels = labels
	if err := p.labels(&s); err != nil {
		return s, err
	}

	// ports
	if ports := list(m["ports"]); ports != nil {
		for _, v := range ports {
			s.Ports = append(s.Ports, shortPort(v))
		}
		m["ports"] = anyList(s.Ports)
	}

	// depends_on
	if deps, ok := m["depends_on"].(map[string]any); ok {
		for _, d := range sortedKeys(deps) {
			cfg := asMap(deps[d])
			if str(cfg["condition"]) != "service_started" || cfg["required"] != true {
				return s, p.errorf(at+".depends_on."+d, "service %s: depends_on %s: only the short form (condition service_started, required) is supported by balena", name, d)
			}
			s.DependsOn = append(s.DependsOn, d)
		}
		m["depends_on"] = anyList(s.DependsOn)
	}

	// devices
	for i, v := range list(m["devices"]) {
		d := asMap(v)
		src, dst, perm := str(d["source"]), str(d["target"]), str(d["permissions"])
		if !strings.HasPrefix(src, "/") || !strings.HasPrefix(dst, "/") {
			return s, p.errorf(at+".devices."+strconv.Itoa(i), "service %s: devices: %s: CDI device names are not supported by balena", name, src)
		}
		if perm == "" {
			perm = "rwm"
		}
		s.Devices = append(s.Devices, src+":"+dst+":"+perm)
	}
	if s.Devices != nil {
		m["devices"] = anyList(s.Devices)
	}

	// extra_hosts: the engine takes host:ip
	if hosts := list(m["extra_hosts"]); hosts != nil {
		for i, h := range hosts {
			hosts[i] = strings.Replace(str(h), "=", ":", 1)
		}
	}

	// ulimits
	if u := asMap(m["ulimits"]); u != nil {
		s.Ulimits = map[string]Ulimit{}
		for _, k := range sortedKeys(u) {
			switch v := u[k].(type) {
			case float64:
				s.Ulimits[k] = Ulimit{Soft: int64(v), Hard: int64(v)}
			case map[string]any:
				soft, _ := v["soft"].(float64)
				hard, _ := v["hard"].(float64)
				s.Ulimits[k] = Ulimit{Soft: int64(soft), Hard: int64(hard)}
			}
		}
	}

	for _, k := range []string{"command", "entrypoint"} {
		if m[k] == nil {
			delete(m, k)
		}
	}
	s.Command = strList(m["command"])
	s.Entrypoint = strList(m["entrypoint"])
	s.NetworkMode = str(m["network_mode"])
	s.Privileged = m["privileged"] == true
	s.CapAdd = strList(m["cap_add"])
	s.CapDrop = strList(m["cap_drop"])
	s.Restart = str(m["restart"])
	if s.Restart != "" && !restartAllowed(s.Restart) {
		return s, p.errorf(at+".restart", "service %s: restart %q is not a restart policy (no, always, on-failure, unless-stopped)", name, s.Restart)
	}
	s.WorkingDir = str(m["working_dir"])
	s.User = str(m["user"])

	for _, k := range []string{"image", "build", "env_file", "label_file", "extends", "expose", "container_name", "profiles"} {
		delete(m, k)
	}
	s.Composition = m
	return s, nil
}

func restartAllowed(r string) bool {
	switch r {
	case "no", "always", "unless-stopped", "on-failure":
		return true
	}
	n, ok := strings.CutPrefix(r, "on-failure:")
	if !ok {
		return false
	}
	_, err := strconv.Atoi(n)
	return err == nil
}

func securityOptAllowed(opt string) bool {
	if opt == "no-new-privileges" || strings.HasPrefix(opt, "no-new-privileges:") || strings.HasPrefix(opt, "no-new-privileges=") {
		return true
	}
	switch opt {
	case "apparmor:unconfined", "apparmor=unconfined", "seccomp:unconfined", "seccomp=unconfined":
		return true
	}
	return false
}

func featurePaths() string {
	var paths []string
	seen := map[string]bool{}
	for _, fb := range featureBinds {
		for _, p := range fb.paths {
			if !seen[p] {
				seen[p] = true
				paths = append(paths, p)
			}
		}
	}
	return strings.Join(paths, ", ")
}

// shortPort writes a compose-go long-syntax port as [host_ip:][published:]target[/protocol].
func shortPort(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	m := asMap(v)
	var b strings.Builder
	if ip := str(m["host_ip"]); ip != "" {
		b.WriteString(ip + ":")
	}
	if pub := str(m["published"]); pub != "" {
		b.WriteString(pub + ":")
	}
	b.WriteString(str(m["target"]))
	if proto := str(m["protocol"]); proto != "" && proto != "tcp" {
		b.WriteString("/" + proto)
	}
	return b.String()
}

func (p *parser) volume(name string, m map[string]any) (Volume, error) {
	at := "volumes." + name
	if len(name) > 255 || !dockerNameRE().MatchString(name) {
		return Volume{}, p.errorf(at, "volume %s: a volume name starts with a letter or digit and has only letters, digits, _ . and -", name)
	}
	delete(m, "name")
	v := Volume{Driver: str(m["driver"]), DriverOpts: strMap(m["driver_opts"]), Labels: strMap(m["labels"]), Composition: m}
	if v.Driver != "" && v.Driver != "local" && v.Driver != "default" {
		return v, p.errorf(at+".driver", "volume %s: driver %s: balena supports only local", name, v.Driver)
	}
	if err := p.otherLabels(at+".labels", "volume "+name, v.Labels); err != nil {
		return v, err
	}
	return v, nil
}

func (p *parser) network(name string, m map[string]any) (Network, error) {
	at := "networks." + name
	if len(name) > 255 || !dockerNameRE().MatchString(name) {
		return Network{}, p.errorf(at, "network %s: a network name starts with a letter or digit and has only letters, digits, _ . and -", name)
	}
	delete(m, "name")
	if len(asMap(m["ipam"])) == 0 {
		delete(m, "ipam")
	}
	n := Network{Driver: str(m["driver"]), Internal: m["internal"] == true, DriverOpts: strMap(m["driver_opts"]), Labels: strMap(m["labels"]), Composition: m}
	if _, ok := m["attachable"]; ok {
		return n, p.errorf(at+".attachable", "network %s: attachable is not supported by balena", name)
	}
	if n.Driver != "" && n.Driver != "bridge" && n.Driver != "default" {
		return n, p.errorf(at+".driver", "network %s: driver %s: balena supports only bridge", name, n.Driver)
	}
	for _, c := range list(asMap(m["ipam"])["config"]) {
		if _, ok := asMap(c)["aux_addresses"]; ok {
			return n, p.errorf(at+".ipam", "network %s: ipam aux_addresses is not supported by balena", name)
		}
	}
	if _, ok := m["enable_ipv4"]; ok {
		return n, p.errorf(at+".enable_ipv4", "network %s: enable_ipv4 is not supported by balena", name)
	}
	if m["enable_ipv6"] == true {
		return n, p.errorf(at+".enable_ipv6", "network %s: enable_ipv6 is not supported by balena", name)
	}
	if n.DriverOpts["com.docker.network.bridge.name"] != "" {
		p.warnf(at+".driver_opts", "network %s: driver option com.docker.network.bridge.name may defeat the device's firewall", name)
	}
	if err := p.otherLabels(at+".labels", "network "+name, n.Labels); err != nil {
		return n, err
	}
	return n, nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// str formats a JSON scalar as compose writes it: numbers without exponent or trailing zeros.
func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

func strList(v any) []string {
	l := list(v)
	if l == nil {
		return nil
	}
	out := make([]string, len(l))
	for i, e := range l {
		out[i] = str(e)
	}
	return out
}

func strMap(v any) map[string]string {
	m := asMap(v)
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, e := range m {
		out[k] = str(e)
	}
	return out
}

func anyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func anyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
