package compose

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// This file merges a service over the one it extends and removes duplicate entries of a service's lists,
// with the rules of the Compose specification (as compose-go's override package applies them): mappings
// merge key by key, the extending side winning; command, entrypoint and healthcheck.test are replaced;
// key=value lists (environment, labels, sysctls, build args) merge by key; other lists are appended
// without duplicates; volumes and devices are unique by target, ports by their binding.

// mergeService returns base with over merged onto it. Both are raw (interpolated) service mappings.
func mergeService(base, over map[string]any) (map[string]any, error) {
	return mergeMappings(base, over, "")
}

func mergeValue(e, o any, key string) (any, error) {
	switch key {
	case "command", "entrypoint", "healthcheck.test":
		return o, nil
	case "environment", "labels", "sysctls", "annotations", "build.args", "build.labels", "build.additional_contexts":
		return uniqueEntries(slices.Concat(intoSequence(e), intoSequence(o)), keyValueIndex)
	case "dns", "dns_opt", "dns_search", "env_file", "label_file", "extra_hosts", "tmpfs", "build.extra_hosts":
		return appendUnique(intoSequence(e), intoSequence(o)), nil
	case "depends_on":
		return mergeAsMapping(e, o, map[string]any{"condition": "service_started", "required": true})
	case "networks", "models":
		return mergeAsMapping(e, o, nil)
	case "build":
		return mergeMappings(buildMapping(e), buildMapping(o), key)
	case "logging":
		b, ok1 := e.(map[string]any)
		ov, ok2 := o.(map[string]any)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("cannot merge logging: expected a mapping")
		}
		d, hasOver := ov["driver"]
		bd, hasBase := b["driver"]
		if d == bd || !hasOver || !hasBase {
			return mergeMappings(b, ov, key)
		}
		return ov, nil
	}
	if strings.HasPrefix(key, "ulimits.") && strings.Count(key, ".") == 1 {
		b, ok1 := e.(map[string]any)
		ov, ok2 := o.(map[string]any)
		if ok1 && ok2 {
			return mergeMappings(b, ov, key)
		}
		return o, nil
	}
	if o == nil {
		return e, nil
	}
	switch v := e.(type) {
	case map[string]any:
		other, ok := o.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("cannot override %s", key)
		}
		return mergeMappings(v, other, key)
	case []any:
		other, ok := o.([]any)
		if !ok {
			return nil, fmt.Errorf("cannot override %s", key)
		}
		return appendUnique(v, other), nil
	}
	return o, nil
}

func mergeMappings(m, other map[string]any, prefix string) (map[string]any, error) {
	if m == nil {
		m = map[string]any{}
	}
	for k, v := range other {
		e, ok := m[k]
		if !ok {
			m[k] = v
			continue
		}
		merged, err := mergeValue(e, v, join(prefix, k))
		if err != nil {
			return nil, err
		}
		m[k] = merged
	}
	return m, nil
}

func buildMapping(v any) map[string]any {
	switch v := v.(type) {
	case string:
		return map[string]any{"context": v}
	case map[string]any:
		return v
	}
	return nil
}

func mergeAsMapping(e, o any, defaults map[string]any) (any, error) {
	left, err := intoMapping(e, defaults)
	if err != nil {
		return nil, err
	}
	right, err := intoMapping(o, defaults)
	if err != nil {
		return nil, err
	}
	return mergeMappings(left, right, "")
}

func intoMapping(v any, defaults map[string]any) (map[string]any, error) {
	switch v := v.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return v, nil
	case string:
		return map[string]any{v: copyDefaults(defaults)}, nil
	case []any:
		out := map[string]any{}
		for _, e := range v {
			k, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("cannot use %T as a mapping key", e)
			}
			out[k] = copyDefaults(defaults)
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot convert %T into a mapping", v)
}

func copyDefaults(d map[string]any) any {
	if d == nil {
		return nil
	}
	c := make(map[string]any, len(d))
	for k, v := range d {
		c[k] = v
	}
	return c
}

// intoSequence writes a key/value mapping as a sorted key=value list.
func intoSequence(v any) []any {
	switch v := v.(type) {
	case map[string]any:
		var seq []any
		for k, val := range v {
			switch val := val.(type) {
			case nil:
				seq = append(seq, k)
			case []any:
				for _, x := range val {
					seq = append(seq, fmt.Sprintf("%s=%v", k, x))
				}
			default:
				seq = append(seq, fmt.Sprintf("%s=%v", k, val))
			}
		}
		sort.Slice(seq, func(i, j int) bool { return seq[i].(string) < seq[j].(string) })
		return seq
	case []any:
		return v
	case string:
		return []any{v}
	}
	return nil
}

// appendUnique appends to base the entries of over it does not hold (compared by value, in linear time:
// a file's lists may have many thousand entries).
func appendUnique(base, over []any) []any {
	seen := make(map[string]bool, len(base)+len(over))
	key := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprintf("%T %#v", v, v)
		}
		return fmt.Sprintf("%T %s", v, b)
	}
	for _, v := range base {
		seen[key(v)] = true
	}
	merged := base
	for _, v := range over {
		if k := key(v); !seen[k] {
			seen[k] = true
			merged = append(merged, v)
		}
	}
	return merged
}

type indexer func(any) (string, error)

// uniqueEntries keeps one entry per key: the last one, at the place of the first.
func uniqueEntries(entries []any, index indexer) ([]any, error) {
	seq := []any{}
	keys := map[string]int{}
	for _, e := range entries {
		k, err := index(e)
		if err != nil {
			return nil, err
		}
		if j, ok := keys[k]; ok {
			seq[j] = e
		} else {
			seq = append(seq, e)
			keys[k] = len(seq) - 1
		}
	}
	return seq, nil
}

func keyValueIndex(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("unexpected type %s", typeName(v))
	}
	k, _, _ := strings.Cut(s, "=")
	return k, nil
}

func volumeIndex(v any) (string, error) {
	switch v := v.(type) {
	case map[string]any:
		t, ok := v["target"].(string)
		if !ok {
			return "", fmt.Errorf("a volume without a mount target")
		}
		return t, nil
	case string:
		vol, err := parseVolume(v)
		if err != nil {
			return "", err
		}
		return str(vol["target"]), nil
	}
	return "", nil
}

func deviceIndex(v any) (string, error) {
	switch v := v.(type) {
	case map[string]any:
		t, ok := v["target"].(string)
		if !ok {
			return "", fmt.Errorf("a device without a target")
		}
		return t, nil
	case string:
		arr := strings.Split(v, ":")
		if len(arr) == 1 {
			return arr[0], nil
		}
		return arr[1], nil
	}
	return "", nil
}

func portIndex(v any) (string, error) {
	switch v := v.(type) {
	case int:
		return strconv.Itoa(v), nil
	case map[string]any:
		target, ok := v["target"]
		if !ok {
			return "", fmt.Errorf("a port without a target")
		}
		host, ok := v["host_ip"]
		if !ok {
			host = "0.0.0.0"
		}
		proto, ok := v["protocol"]
		if !ok {
			proto = "tcp"
		}
		return fmt.Sprintf("%v:%v:%v/%v", host, v["published"], target, proto), nil
	case string:
		return v, nil
	}
	return "", nil
}

// uniqueLists removes the duplicate entries of a service's lists, as compose does after every merge.
func uniqueLists(svc map[string]any) error {
	for k, index := range map[string]indexer{
		"cap_add": keyValueIndex, "cap_drop": keyValueIndex, "dns": keyValueIndex, "dns_opt": keyValueIndex,
		"dns_search": keyValueIndex, "environment": keyValueIndex, "labels": keyValueIndex,
		"profiles": keyValueIndex, "sysctls": keyValueIndex, "tmpfs": keyValueIndex, "links": keyValueIndex,
		"annotations": keyValueIndex, "volumes": volumeIndex, "devices": deviceIndex, "ports": portIndex,
	} {
		l, ok := svc[k].([]any)
		if !ok {
			continue
		}
		u, err := uniqueEntries(l, index)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		svc[k] = u
	}
	if b, ok := svc["build"].(map[string]any); ok {
		for _, k := range []string{"args", "labels", "additional_contexts", "tags", "platform"} {
			if l, ok := b[k].([]any); ok {
				u, err := uniqueEntries(l, keyValueIndex)
				if err != nil {
					return fmt.Errorf("build.%s: %w", k, err)
				}
				b[k] = u
			}
		}
	}
	return nil
}
