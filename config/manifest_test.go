package config

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestAllBalenaManifests parses the 64 real manifests of balena-device-types.json.
func TestAllBalenaManifests(t *testing.T) {
	data, err := os.ReadFile(referenceFile(t, "balena-device-types.json"))
	if err != nil {
		t.Fatal(err)
	}
	var all []json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 64 {
		t.Fatalf("reference holds %d manifests, want 64", len(all))
	}
	// The unusual config locations section 6 of the image-format contract calls out.
	special := map[string]struct {
		partition int
		image     string
	}{
		"ts7700":          {partition: 5},                       // {"primary": 4, "logical": 1}
		"jetson-tx1":      {partition: 10},                      // {"primary": 10}
		"jetson-xavier":   {partition: 37},                      // {"primary": 37}
		"jetson-nano":     {partition: 12},                      // 12
		"jn30b-nano":      {partition: 12},                      // 12
		"intel-edison":    {image: "resin-image-edison.hddimg"}, // image instead of partition
		"generic":         {},                                   // configuration.config null
		"edge":            {},                                   // configuration.config null
		"generic-aarch64": {},                                   // configuration.config null
	}
	seen := map[string]bool{}
	for i, raw := range all {
		var fields struct {
			Slug  string `json:"slug"`
			Arch  string `json:"arch"`
			Yocto struct {
				Machine string `json:"machine"`
			} `json:"yocto"`
		}
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatal(err)
		}
		m, err := ParseManifest(raw)
		if err != nil {
			t.Errorf("manifest %d (%s): %v", i, fields.Slug, err)
			continue
		}
		seen[m.Slug] = true
		if m.Slug != fields.Slug || m.Arch != fields.Arch || m.Machine != fields.Yocto.Machine {
			t.Errorf("%s: parsed %+v", fields.Slug, m)
		}
		want, isSpecial := special[m.Slug]
		switch {
		case isSpecial && want.partition == 0 && want.image == "":
			if m.HasConfigLocation() {
				t.Errorf("%s: unexpected config location %+v", m.Slug, m)
			}
		case isSpecial:
			if m.ConfigPartition != want.partition || m.ConfigImage != want.image || m.ConfigPath != "/config.json" {
				t.Errorf("%s: config at partition %d image %q path %q, want %d %q /config.json",
					m.Slug, m.ConfigPartition, m.ConfigImage, m.ConfigPath, want.partition, want.image)
			}
		default:
			if m.ConfigPartition != 1 || m.ConfigPath != "/config.json" || !m.HasConfigLocation() {
				t.Errorf("%s: config at partition %d path %q, want 1 /config.json", m.Slug, m.ConfigPartition, m.ConfigPath)
			}
		}
	}
	for slug := range special {
		if !seen[slug] {
			t.Errorf("reference has no %s", slug)
		}
	}
}

func TestParseManifestPartitionForms(t *testing.T) {
	for _, tc := range []struct {
		name, partition string
		want            int
	}{
		{"number", `12`, 12},
		{"primary", `{"primary": 1}`, 1},
		{"primary 37", `{"primary": 37}`, 37},
		{"logical", `{"primary": 4, "logical": 1}`, 5},
		{"second logical", `{"logical": 2, "primary": 4}`, 6},
		{"string number", `"3"`, 3},
		{"string primary:logical", `"4:1"`, 5},
		{"integral float", `{"primary": 2.0}`, 0},
		{"null", `null`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"slug":"s","arch":"aarch64","configuration":{"config":{"partition":` + tc.partition + `,"path":"/config.json"}}}`
			m, err := ParseManifest([]byte(doc))
			if tc.want == 0 {
				if err == nil {
					t.Fatalf("accepted %s as partition %d", tc.partition, m.ConfigPartition)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.ConfigPartition != tc.want {
				t.Fatalf("partition %s read as %d, want %d", tc.partition, m.ConfigPartition, tc.want)
			}
		})
	}
}

func TestParseManifestRejects(t *testing.T) {
	for _, tc := range []struct {
		name, doc, wantErr string
	}{
		{"not json", `{`, "device-type manifest"},
		{"array", `[]`, "device-type manifest"},
		{"no slug", `{"arch":"amd64"}`, "missing slug"},
		{"no arch", `{"slug":"x"}`, "missing arch"},
		{"zero partition", `{"slug":"x","arch":"amd64","configuration":{"config":{"partition":0,"path":"/config.json"}}}`, "partition"},
		{"negative", `{"slug":"x","arch":"amd64","configuration":{"config":{"partition":{"primary":-1},"path":"/config.json"}}}`, "partition"},
		{"logical without primary", `{"slug":"x","arch":"amd64","configuration":{"config":{"partition":{"logical":1},"path":"/config.json"}}}`, "missing primary"},
		{"unknown key", `{"slug":"x","arch":"amd64","configuration":{"config":{"partition":{"primary":1,"extended":4},"path":"/config.json"}}}`, "extended"},
		{"bool", `{"slug":"x","arch":"amd64","configuration":{"config":{"partition":true,"path":"/config.json"}}}`, "unsupported"},
		{"relative path", `{"slug":"x","arch":"amd64","configuration":{"config":{"partition":1,"path":"config.json"}}}`, "not absolute"},
		{"path without location", `{"slug":"x","arch":"amd64","configuration":{"config":{"path":"/config.json"}}}`, "without partition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}
