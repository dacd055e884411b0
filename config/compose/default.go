package compose

import "strings"

// defaultFile is balena's single-container default compose (seed 000), for a release built from a lone
// Dockerfile; %s is the service's image: or build: line.
const defaultFile = `version: '2.1'
networks: {}
volumes:
  resin-data: {}
services:
  main:
%s
    privileged: true
    restart: always
    network_mode: host
    volumes:
      - 'resin-data:/data'
    labels:
      io.balena.features.kernel-modules: '1'
      io.balena.features.firmware: '1'
      io.balena.features.dbus: '1'
      io.balena.features.supervisor-api: '1'
      io.balena.features.balena-api: '1'
`

// DefaultFile returns balena's single-container default compose file: service main with image (or, when
// image is empty, build context "."), privileged, restart always, host networking, the resin-data volume
// at /data and the five default feature labels.
func DefaultFile(image string) []byte {
	line := "    build:\n      context: ."
	if image != "" {
		quoted := strings.ReplaceAll(strings.ReplaceAll(image, "'", "''"), "$", "$$")
		line = "    image: '" + quoted + "'"
	}
	return []byte(strings.Replace(defaultFile, "%s", line, 1))
}

// defaultLabels are the feature labels of the default compose.
var defaultLabels = []string{
	"io.balena.features.kernel-modules",
	"io.balena.features.firmware",
	"io.balena.features.dbus",
	"io.balena.features.supervisor-api",
	"io.balena.features.balena-api",
}

// Default returns the project of DefaultFile(image): what Parse makes of it, without parsing.
func Default(image string) *Project {
	labels := map[string]string{}
	composeLabels := map[string]any{}
	for _, l := range defaultLabels {
		labels[l] = "1"
		composeLabels[l] = "1"
	}
	s := Service{
		Name:        "main",
		Image:       image,
		Environment: map[string]string{},
		Labels:      labels,
		Features:    Features{KernelModules: true, Firmware: true, DBus: true, SupervisorAPI: true, BalenaAPI: true},
		Update:      Update{Strategy: StrategyDownloadThenKill},
		Volumes:     []Mount{{Source: "resin-data", Target: "/data"}},
		NetworkMode: "host",
		Privileged:  true,
		Restart:     "always",
		Composition: map[string]any{
			"privileged":   true,
			"restart":      "always",
			"network_mode": "host",
			"volumes":      []any{"resin-data:/data"},
			"labels":       composeLabels,
		},
	}
	if image == "" {
		s.Build = &Build{Context: ".", Dockerfile: "Dockerfile"}
	}
	return &Project{
		Services: []Service{s},
		Volumes:  map[string]Volume{"resin-data": {Composition: map[string]any{}}},
		Networks: map[string]Network{},
	}
}
