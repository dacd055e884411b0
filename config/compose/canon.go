package compose

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-connections/nat"
	"github.com/mattn/go-shellwords"
)

// This file checks the type of every field of a service, volume and network and writes it in Compose's
// canonical long syntax, with the values compose-go's model gives it once marshalled to JSON (omitted
// when empty, byte sizes as decimal strings, durations as Go durations, commands split as a shell does).

// composeFields are the service fields of the Compose specification that balena neither applies nor
// refuses: accepted with a warning and kept in the composition, in canonical form (umask and the
// lifecycle hooks as written).
var composeFields = map[string]bool{
	"annotations": true, "attach": true, "cgroup": true, "cpu_rt_period": true, "cpu_rt_runtime": true,
	"device_cgroup_rules": true, "pull_refresh_after": true, "umask": true, "use_api_socket": true,
	"uts": true, "volumes_from": true,
	"post_start": true, "pre_start": true, "pre_stop": true,
}

var containerNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[a-zA-Z0-9][a-zA-Z0-9_.-]+`) })

type fieldError string

func (e fieldError) Error() string { return string(e) }

func errf(format string, args ...any) error { return fieldError(fmt.Sprintf(format, args...)) }

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// quote shows a scalar in a message.
func quote(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

func asString(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", errf("%s is not a string", typeName(v))
	}
	return s, nil
}

// asBool reads a boolean, or a string compose casts to one (true, false, yes, no, on, off, y, n).
func asBool(v any) (bool, error) {
	switch v := v.(type) {
	case bool:
		return v, nil
	case string:
		switch strings.ToLower(v) {
		case "true", "y", "yes", "on":
			return true, nil
		case "false", "n", "no", "off":
			return false, nil
		}
		return false, errf("%q is not a boolean", v)
	}
	return false, errf("%s is not a boolean", typeName(v))
}

// asInt reads an integer: a number (a fraction truncated, as compose does) or a decimal string.
func asInt(v any) (int64, error) {
	switch v := v.(type) {
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	case uint64:
		if v > math.MaxInt64 {
			return 0, errf("%d is out of range", v)
		}
		return int64(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) || v > math.MaxInt64 || v < math.MinInt64 {
			return 0, errf("%v is not an integer", v)
		}
		return int64(v), nil
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, errf("%q is not an integer", v)
		}
		return n, nil
	}
	return 0, errf("%s is not an integer", typeName(v))
}

func asStrings(v any) ([]any, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, errf("%s is not a list of strings", typeName(v))
	}
	for _, e := range l {
		if _, ok := e.(string); !ok {
			return nil, errf("entry %s is not a string", quote(e))
		}
	}
	return l, nil
}

func stringOrList(v any) ([]any, error) {
	if s, ok := v.(string); ok {
		return []any{s}, nil
	}
	return asStrings(v)
}

// scalarString formats a string, number or boolean of a key/value mapping as compose does.
func scalarString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool, int, int64, uint64:
		return fmt.Sprint(v), nil
	case float64:
		return fmt.Sprint(v), nil
	}
	return "", errf("%s is not a string, number or boolean", typeName(v))
}

// listOrDict reads a key/value list (KEY=VALUE, or KEY alone) or mapping; a key without a value maps to
// nil.
func listOrDict(v any) (map[string]any, error) {
	out := map[string]any{}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if e == nil {
				out[k] = nil
				continue
			}
			s, err := scalarString(e)
			if err != nil {
				return nil, errf("%s: %v", k, err)
			}
			out[k] = s
		}
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errf("entry %s is not a string", quote(e))
			}
			k, val, found := strings.Cut(s, "=")
			if found {
				out[k] = val
			} else {
				out[k] = nil
			}
		}
	default:
		return nil, errf("%s is neither a list of KEY=VALUE nor a mapping", typeName(v))
	}
	return out, nil
}

func shellCommand(v any) (any, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		words, err := shellwords.Parse(v)
		if err != nil {
			return nil, errf("%q: %v", v, err)
		}
		out := make([]any, len(words))
		for i, w := range words {
			out[i] = w
		}
		return out, nil
	case []any:
		if _, err := asStrings(v); err != nil {
			return nil, err
		}
		return v, nil
	}
	return nil, errf("%s is neither a string nor a list of strings", typeName(v))
}

// unitBytes reads a byte size (a number, or a string such as 512m) as compose's model writes it: a
// decimal string, or nothing for zero (and for a fraction, which compose drops).
func unitBytes(v any) (any, error) {
	var n int64
	switch v := v.(type) {
	case int:
		n = int64(v)
	case int64:
		n = v
	case uint64, float64:
		return nil, nil
	case string:
		if i, err := strconv.ParseInt(v, 10, 64); err == nil {
			n = i
		} else {
			b, err := ramInBytes(v)
			if err != nil {
				return nil, errf("%q is not a byte size", v)
			}
			n = b
		}
	default:
		return nil, errf("%s is not a byte size", typeName(v))
	}
	if n == 0 {
		return nil, nil
	}
	return strconv.FormatInt(n, 10), nil
}

func duration(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, errf("%s is not a duration string", typeName(v))
	}
	d, err := parseDuration(s)
	if err != nil {
		return nil, errf("%q is not a duration", s)
	}
	return time.Duration(d).String(), nil
}

// canonService checks a service's fields and writes them canonically.
func (p *parser) canonService(name string, raw any) (map[string]any, error) {
	at := "services." + name
	svc, ok := raw.(map[string]any)
	if !ok {
		if raw == nil {
			svc = map[string]any{}
		} else {
			return nil, p.errorf(at, "service %s: %s, not a mapping", name, typeName(raw))
		}
	}
	if v, ok := svc["x-develop"]; ok {
		if _, has := svc["develop"]; !has {
			svc["develop"] = v
		}
	}
	_ = uniqueLists(svc) // a list with an entry of the wrong type stays as it is, for the checks below
	out := map[string]any{"command": nil, "entrypoint": nil}
	fields := schema{field: p.serviceField, notField: "a Compose service field", asWritten: deniedFields}
	if err := fields.decode(svc, out); err != nil {
		return nil, p.sectionError(at, "service "+name, err)
	}

	// network_mode, ipc and pid naming another service, and volumes_from, make it a dependency.
	deps := asMap(out["depends_on"])
	addDep := func(s string, restart bool) {
		if deps == nil {
			deps = map[string]any{}
		}
		if _, ok := deps[s]; !ok {
			deps[s] = map[string]any{"condition": "service_started", "restart": restart, "required": true}
		}
	}
	for _, k := range []string{"network_mode", "ipc", "pid"} {
		if ref, ok := strings.CutPrefix(str(out[k]), "service:"); ok {
			addDep(ref, true)
		}
	}
	for _, v := range list(out["volumes_from"]) {
		if s, ok := v.(string); ok && !strings.HasPrefix(s, "container:") {
			addDep(strings.Split(s, ":")[0], false)
		}
	}
	if len(deps) > 0 {
		out["depends_on"] = deps
	}

	// networks: a service without network_mode is on the default network unless it names others.
	if _, ok := out["network_mode"]; !ok {
		if n, ok := out["networks"].(map[string]any); !ok || len(n) == 0 {
			out["networks"] = map[string]any{"default": nil}
		}
	}

	// environment: env_file values first, the environment's own over them.
	if files := list(out["env_file"]); len(files) > 0 {
		environment := asMap(out["environment"])
		vars, err := p.envFiles(name, files, environment)
		if err != nil {
			return nil, err
		}
		merged := anyMap(vars)
		maps.Copy(merged, environment)
		out["environment"] = merged
	}
	if m, ok := out["environment"].(map[string]any); ok && len(m) == 0 {
		delete(out, "environment")
	}
	if files := strList(out["label_file"]); len(files) > 0 {
		labels, err := p.labelFiles(name, files)
		if err != nil {
			return nil, err
		}
		merged := anyMap(labels)
		maps.Copy(merged, asMap(out["labels"]))
		if len(merged) > 0 {
			out["labels"] = merged
		}
	}
	return out, nil
}

// serviceField gives the decoder of a service field.
func (p *parser) serviceField(k string) decoder {
	switch k {
	case "cgroup_parent", "cpuset", "domainname", "hostname", "image", "ipc", "mac_address", "network_mode",
		"stop_signal", "user", "userns_mode", "working_dir", "restart", "cgroup", "uts", "pull_refresh_after":
		return nonEmptyString
	case "container_name":
		return containerName
	case "pid":
		return func(v any) (any, error) {
			if v == nil {
				return nil, nil
			}
			return nonEmptyString(v)
		}
	case "privileged", "read_only", "tty", "use_api_socket":
		return trueBool
	case "init", "attach":
		return kept(asBool)
	case "cpu_shares", "cpu_quota", "oom_score_adj", "pids_limit", "cpu_rt_period", "cpu_rt_runtime":
		return nonZeroInt
	case "cpus":
		return cpus
	case "mem_limit", "mem_reservation", "shm_size":
		return unitBytes
	case "stop_grace_period":
		return duration
	case "cap_add", "cap_drop", "security_opt", "dns_opt", "device_cgroup_rules", "volumes_from", "profiles":
		return nonEmpty(asStrings)
	case "dns":
		return dnsServers
	case "dns_search", "tmpfs", "label_file":
		return nonEmpty(stringOrList)
	case "group_add":
		return groupAdd
	case "command", "entrypoint":
		return shellCommand
	case "environment":
		return kept(p.fromEnvironment)
	case "labels", "sysctls", "annotations":
		return labelValues
	case "extra_hosts":
		return extraHosts
	case "ulimits":
		return ulimits
	case "healthcheck":
		return healthcheckSchema.mapping
	case "networks":
		return serviceNetworks
	case "ports":
		return ports
	case "volumes":
		return listOf(mount)
	case "devices":
		return listOf(device)
	case "depends_on":
		return dependsOn
	case "build":
		return p.build
	case "expose":
		return expose
	case "env_file":
		return envFileEntries
	case "extends":
		// applied before; an extends left here names a service that does not exist
		return func(any) (any, error) { return nil, nil }
	}
	if composeFields[k] {
		return verbatim
	}
	return nil
}

func containerName(v any) (any, error) {
	s, err := asString(v)
	if err != nil {
		return nil, err
	}
	if !containerNameRE().MatchString(s) {
		return nil, errf("%q is not a container name (a letter or digit, then letters, digits, _ . -)", s)
	}
	return s, nil
}

// dnsServers reads a string or a list of strings, empty ones dropped; left out when empty.
func dnsServers(v any) (any, error) {
	l, err := stringOrList(v)
	if err != nil {
		return nil, err
	}
	var kept []any
	for _, e := range l {
		if e != "" {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 {
		return nil, nil
	}
	return kept, nil
}

// fromEnvironment reads a key/value list or mapping; a key without a value takes that of the environment,
// if set.
func (p *parser) fromEnvironment(v any) (map[string]any, error) {
	m, err := listOrDict(v)
	if err != nil {
		return nil, err
	}
	env := p.env()
	for k, val := range m {
		if val == nil {
			if s, ok := env[k]; ok {
				m[k] = s
			}
		}
	}
	return m, nil
}

func cpus(v any) (any, error) {
	var f float64
	switch v := v.(type) {
	case int:
		f = float64(v)
	case int64:
		f = float64(v)
	case uint64:
		f = float64(v)
	case float64:
		f = v
	case string:
		x, err := strconv.ParseFloat(v, 32)
		if err != nil {
			return nil, errf("%q is not a number", v)
		}
		f = x
	default:
		return nil, errf("%s is not a number", typeName(v))
	}
	f32 := float32(f)
	if f32 == 0 {
		return nil, nil
	}
	return f32, nil
}

func groupAdd(v any) (any, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, errf("%s is not a list", typeName(v))
	}
	out := make([]any, 0, len(l))
	for _, e := range l {
		switch e := e.(type) {
		case string:
			out = append(out, e)
		case int, int64, uint64:
			out = append(out, fmt.Sprint(e))
		default:
			return nil, errf("entry %s is neither a string nor a number", quote(e))
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func expose(v any) (any, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, errf("%s is not a list", typeName(v))
	}
	for _, e := range l {
		switch e.(type) {
		case string, int, int64, uint64, float64:
		default:
			return nil, errf("entry %s is neither a string nor a number", quote(e))
		}
	}
	return l, nil
}

// extraHosts writes host=ip entries, sorted; a list entry may use : or =, an IP list is comma-separated.
func extraHosts(v any) (any, error) {
	hosts := map[string][]string{}
	switch v := v.(type) {
	case map[string]any:
		for h, e := range v {
			switch e := e.(type) {
			case nil:
				hosts[h] = []string{""}
			case string:
				hosts[h] = []string{e}
			case []any:
				for _, ip := range e {
					hosts[h] = append(hosts[h], fmt.Sprint(ip))
				}
			default:
				return nil, errf("%s: %s is not an address", h, typeName(e))
			}
		}
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errf("entry %s is not a string", quote(e))
			}
			host, ip, found := strings.Cut(s, "=")
			if !found {
				host, ip, found = strings.Cut(s, ":")
			}
			if !found {
				return nil, errf("%q: no IP address (host=ip)", s)
			}
			hosts[host] = append(hosts[host], strings.Split(ip, ",")...)
		}
	default:
		return nil, errf("%s is neither a list nor a mapping", typeName(v))
	}
	var out []string
	for h, ips := range hosts {
		if h == "" || strings.ContainsAny(h, ":=") {
			return nil, errf("bad host name %q", h)
		}
		for _, ip := range ips {
			if len(ip) > 2 && ip[0] == '[' && ip[len(ip)-1] == ']' {
				ip = ip[1 : len(ip)-1]
			}
			out = append(out, h+"="+ip)
		}
	}
	if len(out) == 0 {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			return []any{}, nil // hosts named without addresses: an empty list, as compose-go keeps it
		}
		return nil, nil
	}
	sort.Strings(out)
	return anyList(out), nil
}

func ulimitValue(v any) (int64, error) {
	n, err := asInt(v)
	if err != nil {
		return 0, err
	}
	if _, ok := v.(float64); ok {
		return 0, errf("%v is not an integer", v)
	}
	return n, nil
}

func ulimits(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errf("%s is not a mapping", typeName(v))
	}
	out := map[string]any{}
	for name, e := range m {
		switch e := e.(type) {
		case map[string]any:
			l := map[string]any{}
			for _, k := range sortedKeys(e) {
				if k != "soft" && k != "hard" && !strings.HasPrefix(k, "x-") {
					return nil, errf("%s: %s is neither soft nor hard", name, k)
				}
			}
			for _, k := range []string{"soft", "hard"} {
				if _, ok := e[k]; !ok {
					return nil, errf("%s: a limit as a mapping needs both soft and hard", name)
				}
			}
			for _, k := range []string{"soft", "hard"} {
				x, ok := e[k]
				if !ok {
					continue
				}
				n, err := ulimitValue(x)
				if err != nil {
					return nil, errf("%s.%s: %v", name, k, err)
				}
				if n != 0 {
					l[k] = n
				}
			}
			out[name] = l
		default:
			n, err := ulimitValue(e)
			if err != nil {
				return nil, errf("%s: %v", name, err)
			}
			if n != 0 {
				out[name] = n
			} else {
				out[name] = map[string]any{}
			}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

var healthcheckSchema = schema{notField: "a healthcheck field", field: func(k string) decoder {
	switch k {
	case "test":
		return healthcheckTest
	case "interval", "timeout", "start_period", "start_interval":
		return duration
	case "retries":
		return count
	case "disable":
		return trueBool
	}
	return nil
}}

// healthcheckTest reads a healthcheck's test; a string runs in a shell.
func healthcheckTest(v any) (any, error) {
	if s, ok := v.(string); ok {
		return []any{"CMD-SHELL", s}, nil
	}
	return nonEmpty(asStrings)(v)
}

// count reads an integer that is not negative.
func count(v any) (any, error) {
	n, err := asInt(v)
	if err != nil || n < 0 {
		return nil, errf("%s is not a count", quote(v))
	}
	return n, nil
}

var serviceNetworkSchema = schema{notField: "a field of a service's network", field: func(k string) decoder {
	switch k {
	case "aliases", "link_local_ips":
		return uniqueStrings
	case "ipv4_address", "ipv6_address", "mac_address", "interface_name":
		return nonEmptyString
	case "priority", "gw_priority":
		return nonZeroInt
	case "driver_opts":
		return driverOptions
	case "use_service_name_alias":
		return kept(asBool)
	}
	return nil
}}

// uniqueStrings reads a list of strings without repeats, left out when empty.
func uniqueStrings(v any) (any, error) {
	l, err := asStrings(v)
	if err != nil || len(l) == 0 {
		return nil, err
	}
	u, _ := uniqueEntries(l, keyValueIndex)
	return u, nil
}

func serviceNetworks(v any) (any, error) {
	listed := func() any { return nil }
	return namedEntries(v, "a network", listed, func(e any) (any, error) {
		if e == nil {
			return nil, nil
		}
		return serviceNetworkSchema.mapping(e)
	})
}

// namedEntries reads a list of names, each given listed(), or a mapping of names to entries read by
// entry; what is what a name names ("a service"), for the message about a list entry that is none.
func namedEntries(v any, what string, listed func() any, entry decoder) (map[string]any, error) {
	out := map[string]any{}
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errf("entry %s is not %s name", quote(e), what)
			}
			out[s] = listed()
		}
	case map[string]any:
		for n, e := range v {
			c, err := entry(e)
			if err != nil {
				return nil, within(n, err)
			}
			out[n] = c
		}
	default:
		return nil, errf("%s is neither a list nor a mapping", typeName(v))
	}
	return out, nil
}

// driverOptions reads driver options: string or number values, written as strings.
func driverOptions(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errf("%s is not a mapping", typeName(v))
	}
	if len(m) == 0 {
		return nil, nil
	}
	out := map[string]any{}
	for k, e := range m {
		switch e.(type) {
		case string, int, int64, uint64, float64:
			out[k] = fmt.Sprint(e)
		default:
			return nil, errf("%s: %s is neither a string nor a number", k, typeName(e))
		}
	}
	return out, nil
}

var portSchema = schema{notField: "a field of a port", field: func(k string) decoder {
	switch k {
	case "target":
		return portTarget
	case "published":
		return publishedPort
	case "host_ip", "protocol", "mode", "name", "app_protocol":
		return nonEmptyString
	}
	return nil
}}

func portTarget(v any) (any, error) {
	n, err := asInt(v)
	if _, isFloat := v.(float64); err != nil || isFloat || n < 0 || n > math.MaxUint32 {
		return nil, errf("%s is not a port", quote(v))
	}
	if n == 0 {
		return nil, nil
	}
	return n, nil
}

func publishedPort(v any) (any, error) {
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil, nil
		}
		return v, nil
	case int, int64, uint64:
		return fmt.Sprint(v), nil
	}
	return nil, errf("%s is not a port", quote(v))
}

// ports expands the short syntax ([ip:][published[-range]:]target[-range][/protocol]) into one long
// entry per port, as compose does.
func ports(v any) (any, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, errf("%s is not a list", typeName(v))
	}
	var out []any
	for _, e := range l {
		switch e := e.(type) {
		case int, int64, uint64, string:
			expanded, err := parsePort(fmt.Sprint(e))
			if err != nil {
				return nil, err
			}
			out = append(out, expanded...)
		case map[string]any:
			m := map[string]any{}
			if err := portSchema.decode(e, m); err != nil {
				return nil, err
			}
			if _, ok := e["target"]; !ok {
				return nil, errf("a port needs a target")
			}
			if _, ok := e["protocol"]; !ok {
				m["protocol"] = "tcp"
			}
			if _, ok := e["mode"]; !ok {
				m["mode"] = "ingress"
			}
			out = append(out, m)
		default:
			return nil, errf("entry %s is not a port", quote(e))
		}
	}
	u, err := uniqueEntries(out, portIndex)
	if err != nil {
		return nil, err
	}
	if len(u) == 0 {
		return nil, nil
	}
	return u, nil
}

func parsePort(spec string) ([]any, error) {
	exposed, bindings, err := nat.ParsePortSpecs([]string{spec})
	if err != nil {
		return nil, errf("%q: %v", spec, err)
	}
	keys := make([]string, 0, len(exposed))
	for port := range exposed {
		keys = append(keys, string(port))
	}
	sort.Strings(keys)
	var out []any
	for _, k := range keys {
		port := nat.Port(k)
		for _, b := range bindings[port] {
			m := map[string]any{"mode": "ingress", "protocol": strings.ToLower(port.Proto())}
			if b.HostIP != "" {
				m["host_ip"] = b.HostIP
			}
			if t := port.Int(); t != 0 {
				m["target"] = int64(t)
			}
			if b.HostPort != "" {
				m["published"] = b.HostPort
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// parseVolume reads a short volume entry: [source:]target[:options].
func parseVolume(spec string) (map[string]any, error) {
	vol := map[string]any{}
	var source, target string
	readOnly := false
	opts := map[string]any{}
	switch len(spec) {
	case 0:
		return nil, errf("an empty volume")
	case 1, 2:
		target = spec
	default:
		var parts []string
		var buf []rune
		depth := 0
		runes := []rune(spec)
		for i := 0; i <= len(runes); i++ {
			var c rune
			if i < len(runes) {
				c = runes[i]
			}
			switch {
			case i < len(runes) && c == '$' && i+1 < len(runes) && runes[i+1] == '{':
				depth++
				buf = append(buf, c)
			case i < len(runes) && c == '}' && depth > 0:
				depth--
				buf = append(buf, c)
			case i < len(runes) && c == ':' && len(buf) == 1 && isLetter(buf[0]) && len(parts) == 0:
				buf = append(buf, c) // a Windows drive letter
			case (i == len(runes) || c == ':') && depth == 0:
				if len(buf) == 0 {
					return nil, errf("%q: an empty section between colons", spec)
				}
				parts = append(parts, string(buf))
				buf = nil
				if len(parts) == 3 && i < len(runes) {
					return nil, errf("%q: too many colons", spec)
				}
			default:
				buf = append(buf, c)
			}
		}
		switch len(parts) {
		case 1:
			target = parts[0]
		default:
			source, target = parts[0], parts[1]
			if len(parts) == 3 {
				for _, o := range strings.Split(parts[2], ",") {
					switch o {
					case "ro":
						readOnly = true
					case "rw":
						readOnly = false
					case "nocopy":
						opts["nocopy"] = true
					}
				}
			}
		}
	}
	if source != "" && (strings.ContainsAny(source[:1], "./~") || strings.HasPrefix(source, `\\`) || len(source) > 1 && source[1] == ':' && isLetter(rune(source[0]))) {
		vol["type"] = "bind"
		vol["bind"] = map[string]any{"create_host_path": true}
	} else {
		vol["type"] = "volume"
		vol["volume"] = opts
	}
	if source != "" {
		vol["source"] = source
	}
	if target != "" {
		vol["target"] = cleanTarget(target)
	}
	if readOnly {
		vol["read_only"] = true
	}
	return vol, nil
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

// mountSchema is that of a service's volume in the long syntax.
var mountSchema = schema{notField: "a field of a volume", field: func(k string) decoder {
	switch k {
	case "type", "source", "consistency":
		return nonEmptyString
	case "target":
		return mountTarget
	case "read_only":
		return trueBool
	case "bind", "volume", "tmpfs", "image":
		return mountOptions
	}
	return nil
}}

func mountTarget(v any) (any, error) {
	s, err := asString(v)
	if err != nil {
		return nil, err
	}
	return nonEmptyString(cleanTarget(s))
}

// mountOptions keeps the options of a bind, volume, tmpfs or image mount as written, but nocopy: false.
func mountOptions(v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errf("%s is not a mapping", typeName(v))
	}
	out := map[string]any{}
	for k, e := range m {
		if strings.HasPrefix(k, "x-") {
			continue
		}
		if k == "nocopy" {
			b, err := asBool(e)
			if err != nil {
				return nil, &keyError{key: k, err: err}
			}
			if !b {
				continue
			}
		}
		out[k] = e
	}
	return out, nil
}

// mount reads a service's volume, in the short syntax or the long.
func mount(e any) (any, error) {
	switch e := e.(type) {
	case string:
		return parseVolume(e)
	case map[string]any:
		vol := map[string]any{}
		if err := mountSchema.decode(e, vol); err != nil {
			return nil, err
		}
		if _, ok := e["type"]; !ok {
			return nil, errf("a volume needs a type")
		}
		return vol, nil
	}
	return nil, errf("entry %s is not a volume", quote(e))
}

var deviceSchema = schema{notField: "a field of a device", field: func(k string) decoder {
	switch k {
	case "source", "target", "permissions":
		return nonEmptyString
	}
	return nil
}}

// device reads a device mapping, in the short syntax (source[:target[:permissions]]) or the long.
func device(e any) (any, error) {
	switch e := e.(type) {
	case string:
		src, dst, perm := "", "", "rwm"
		arr := strings.Split(e, ":")
		switch len(arr) {
		case 3:
			perm = arr[2]
			fallthrough
		case 2:
			dst = arr[1]
			fallthrough
		case 1:
			src = arr[0]
		default:
			return nil, errf("%q: a confusing device mapping; use the long syntax", e)
		}
		if dst == "" {
			dst = src
		}
		m := map[string]any{}
		for k, s := range map[string]string{"source": src, "target": dst, "permissions": perm} {
			if s != "" {
				m[k] = s
			}
		}
		return m, nil
	case map[string]any:
		return deviceSchema.mapping(e)
	}
	return nil, errf("entry %s is not a device", quote(e))
}

var dependencySchema = schema{notField: "a field of depends_on", field: func(k string) decoder {
	switch k {
	case "condition":
		return condition
	case "required", "restart":
		return kept(asBool)
	}
	return nil
}}

func condition(v any) (any, error) {
	c, err := asString(v)
	if err != nil {
		return nil, err
	}
	switch c {
	case "service_started", "service_healthy", "service_completed_successfully":
		return c, nil
	}
	return nil, errf("%q is not a condition", c)
}

func dependsOn(v any) (any, error) {
	started := func() any { return map[string]any{"condition": "service_started", "required": true} }
	out, err := namedEntries(v, "a service", started, dependency)
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return out, nil
}

// dependency reads an entry of depends_on: the service started and required unless it says otherwise.
func dependency(e any) (any, error) {
	m, ok := e.(map[string]any)
	if !ok {
		return nil, errf("%s is not a mapping", typeName(e))
	}
	d := map[string]any{"condition": "service_started", "required": true}
	if err := dependencySchema.decode(m, d); err != nil {
		return nil, err
	}
	if d["restart"] == false {
		delete(d, "restart")
	}
	return d, nil
}

// envFileSchema is that of an env_file entry, which has no extension keys.
var envFileSchema = schema{notField: "a field of env_file", closed: true, field: func(k string) decoder {
	switch k {
	case "path", "format":
		return kept(asString)
	case "required":
		return kept(asBool)
	}
	return nil
}}

// envFileEntries reads env_file: a path or a list of entries.
func envFileEntries(v any) (any, error) {
	switch v.(type) {
	case string:
		v = []any{v}
	case []any:
	default:
		return nil, errf("%s is neither a path nor a list", typeName(v))
	}
	return listOf(envFile)(v)
}

// envFile reads an env_file entry: a path, or a mapping with one.
func envFile(e any) (any, error) {
	switch e := e.(type) {
	case string:
		return map[string]any{"path": e, "required": true}, nil
	case map[string]any:
		m := map[string]any{"required": true}
		if err := envFileSchema.decode(e, m); err != nil {
			return nil, err
		}
		if _, ok := m["path"]; !ok {
			return nil, errf("an entry needs a path")
		}
		return m, nil
	}
	return nil, errf("entry %s is not a path", quote(e))
}

// buildAsWritten are the build fields kept as written: those balena refuses, and provenance and sbom.
var buildAsWritten = func() map[string]bool {
	m := map[string]bool{"provenance": true, "sbom": true}
	maps.Copy(m, deniedBuildFields)
	return m
}()

func (p *parser) buildField(k string) decoder {
	switch k {
	case "context", "dockerfile", "target":
		return nonEmptyString
	case "args":
		return p.buildArgs
	case "labels":
		return kept(listOrDict)
	case "cache_from", "no_cache_filter":
		return kept(stringOrList)
	case "shm_size":
		return unitBytes
	case "extra_hosts":
		return extraHosts
	}
	return nil
}

// buildArgs reads build arguments; one without a value takes that of the environment, or is dropped.
func (p *parser) buildArgs(v any) (any, error) {
	args, err := p.fromEnvironment(v)
	if err != nil {
		return nil, err
	}
	for k, val := range args {
		if val == nil {
			delete(args, k)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	return args, nil
}

// build reads build: (a context path, or a mapping), with compose's defaults (context ".", dockerfile
// "Dockerfile") and its args resolved from the environment.
func (p *parser) build(v any) (any, error) {
	var m map[string]any
	switch v := v.(type) {
	case string:
		m = map[string]any{"context": v}
	case map[string]any:
		m = v
	default:
		return nil, errf("%s is neither a context path nor a mapping", typeName(v))
	}
	out := map[string]any{}
	build := schema{field: p.buildField, notField: "a field of build", asWritten: buildAsWritten}
	if err := build.decode(m, out); err != nil {
		return nil, err
	}
	if _, ok := out["context"]; !ok {
		out["context"] = "."
	}
	if c := str(out["context"]); p.opts.dir != "" {
		out["context"] = p.contextPath(c)
	}
	if _, ok := m["dockerfile"]; !ok {
		if _, inline := m["dockerfile_inline"]; !inline {
			out["dockerfile"] = "Dockerfile"
		}
	}
	return out, nil
}

var (
	volumeSchema  = schema{field: volumeField, notField: "a field of a volume"}
	networkSchema = schema{field: networkField, notField: "a field of a network"}
)

// volumeField gives the decoder of a field of a top-level volume.
func volumeField(k string) decoder {
	switch k {
	case "name", "driver":
		return nonEmptyString
	case "driver_opts":
		return driverOptions
	case "labels":
		return labelValues
	}
	return nil
}

func (p *parser) canonVolume(name string, raw any) (map[string]any, error) {
	at := "volumes." + name
	m, ok := raw.(map[string]any)
	if !ok && raw != nil {
		return nil, p.errorf(at, "volume %s: %s, not a mapping", name, typeName(raw))
	}
	out := map[string]any{"name": name}
	if err := volumeSchema.decode(m, out); err != nil {
		return nil, p.sectionError(at, "volume "+name, err)
	}
	return out, nil
}

// networkField gives the decoder of a field of a top-level network: those of a volume and more.
func networkField(k string) decoder {
	switch k {
	case "internal", "attachable":
		return trueBool
	case "enable_ipv4", "enable_ipv6":
		return kept(asBool)
	case "ipam":
		return ipamSchema.mapping
	}
	return volumeField(k)
}

func (p *parser) canonNetwork(name string, raw any) (map[string]any, error) {
	at := "networks." + name
	m, ok := raw.(map[string]any)
	if !ok && raw != nil {
		return nil, p.errorf(at, "network %s: %s, not a mapping", name, typeName(raw))
	}
	out := map[string]any{"name": name, "ipam": map[string]any{}}
	if err := networkSchema.decode(m, out); err != nil {
		return nil, p.sectionError(at, "network "+name, err)
	}
	return out, nil
}

var (
	ipamSchema = schema{notField: "a field of ipam", field: func(k string) decoder {
		switch k {
		case "driver":
			return nonEmptyString
		case "options":
			return driverOptions
		case "config":
			return listOf(addressPool)
		}
		return nil
	}}
	addressPoolSchema = schema{notField: "a field of an address pool", field: func(k string) decoder {
		switch k {
		case "subnet", "gateway", "ip_range":
			return nonEmptyString
		case "aux_addresses":
			return nonEmpty(listOrDict)
		}
		return nil
	}}
)

func addressPool(e any) (any, error) {
	m, ok := e.(map[string]any)
	if !ok {
		return nil, errf("entry %s is not a mapping", quote(e))
	}
	pool := map[string]any{}
	if err := addressPoolSchema.decode(m, pool); err != nil {
		return nil, err
	}
	return pool, nil
}

// jsonModel gives the model JSON's types (float64 numbers, float32 as JSON writes it).
func jsonModel(model map[string]any) (map[string]any, error) {
	js, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(js, &out); err != nil {
		return nil, err
	}
	return out, nil
}
