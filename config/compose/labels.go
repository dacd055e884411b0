package compose

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Features are the io.balena.features.* labels of a service: what the supervisor mounts or sets in the
// container (seed 001's table and the supervisor's compose/utils.ts).
type Features struct {
	BalenaSocket   bool // balena-socket: the engine socket, DOCKER_HOST
	DBus           bool // dbus: /run/dbus at /host/run/dbus
	Sysfs          bool // sysfs: /sys
	Procfs         bool // procfs: /proc
	KernelModules  bool // kernel-modules: /lib/modules
	Firmware       bool // firmware: /lib/firmware
	JournalLogs    bool // journal-logs: /var/log/journal, /run/log/journal, /etc/machine-id read-only
	SupervisorAPI  bool // supervisor-api: BALENA_SUPERVISOR_{HOST,PORT,ADDRESS,API_KEY}
	BalenaAPI      bool // balena-api: BALENA_API_KEY, BALENA_API_URL
	GPU            bool // gpu: a GPU device request
	ExtraFirmware  bool // extra-firmware: the extra-firmware volume at /extra-firmware
	HostOSBoardRev bool // host-os.board-rev: BALENA_HOST_OS_BOARD_REV
	Optional       bool // optional: the release installs without this service when its contract fails
}

// Update is the io.balena.update.* labels of a service.
type Update struct {
	// Strategy is download-then-kill (the default), kill-then-download, delete-then-download or hand-over.
	Strategy string
	// HandoverTimeoutMS is the hand-over wait in milliseconds; 0 when the label is absent or empty (the
	// supervisor then waits 60000).
	HandoverTimeoutMS int
	// RequiresReboot: the supervisor reboots the device before starting the new container.
	RequiresReboot bool
}

// Update strategies the supervisor knows.
const (
	StrategyDownloadThenKill   = "download-then-kill"
	StrategyKillThenDownload   = "kill-then-download"
	StrategyDeleteThenDownload = "delete-then-download"
	StrategyHandOver           = "hand-over"
)

const (
	featurePrefix  = "io.balena.features."
	requiresPrefix = "io.balena.features.requires."
)

func (f *Features) field(name string) *bool {
	switch name {
	case "balena-socket":
		return &f.BalenaSocket
	case "dbus":
		return &f.DBus
	case "sysfs":
		return &f.Sysfs
	case "procfs":
		return &f.Procfs
	case "kernel-modules":
		return &f.KernelModules
	case "firmware":
		return &f.Firmware
	case "journal-logs":
		return &f.JournalLogs
	case "supervisor-api":
		return &f.SupervisorAPI
	case "balena-api":
		return &f.BalenaAPI
	case "gpu":
		return &f.GPU
	case "extra-firmware":
		return &f.ExtraFirmware
	case "host-os.board-rev":
		return &f.HostOSBoardRev
	case "optional":
		return &f.Optional
	}
	return nil
}

// supervisorLabels are set by the supervisor on every container; a compose file setting them is overridden.
var supervisorLabels = map[string]bool{
	"io.balena.supervised":   true,
	"io.balena.app-id":       true,
	"io.balena.app-uuid":     true,
	"io.balena.service-id":   true,
	"io.balena.service-name": true,
}

// internalLabels are written by balena's tools, not by a compose file, but are known to the supervisor.
var internalLabels = map[string]bool{
	"io.balena.legacy-container": true,
	"io.balena.image.class":      true,
	"io.balena.image.store":      true,
}

// requirements maps a contract requirement (io.balena.features.requires.<type>) to the kind of value it takes.
var requirements = map[string]string{
	"sw.supervisor":  "range",
	"sw.l4t":         "range",
	"sw.balena-os":   "range",
	"sw.linux":       "range",
	"hw.device-type": "slug",
	"arch.sw":        "arch",
}

var (
	labelKeyRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("^[!#-&(-_a-~]+$") })
	// rangeRE accepts what a node-semver range is made of; the supervisor evaluates it.
	rangeRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9A-Za-z.*xX^~<>=|\- +]+$`) })
)

// normalLabel spells a legacy io.resin.* label as the supervisor reads it (every "resin" becomes "balena").
func normalLabel(key string) string {
	if strings.HasPrefix(key, "io.resin.") {
		return strings.ReplaceAll(key, "resin", "balena")
	}
	return key
}

func truthy(v string) (value, ok bool) {
	switch strings.ToLower(v) {
	case "1", "true", "on":
		return true, true
	case "0", "false", "off":
		return false, true
	}
	return false, false
}

// labels checks a service's labels and fills its features, update settings and contract requirements.
func (p *parser) labels(s *Service) error {
	path := "services." + s.Name + ".labels"
	for _, key := range sortedKeys(s.Labels) {
		value := s.Labels[key]
		at := path + "." + key
		if len(key) > 255 || !labelKeyRE().MatchString(key) {
			return p.errorf(at, "service %s: label %q: a label name is 1 to 255 printable ASCII characters without space, quotes or backtick", s.Name, key)
		}
		name := normalLabel(key)
		if !strings.HasPrefix(name, "io.balena.") {
			continue
		}
		switch {
		case strings.HasPrefix(name, requiresPrefix):
			req := strings.TrimPrefix(name, requiresPrefix)
			kind, ok := requirements[req]
			if !ok {
				p.warnf(at, "service %s: label %s: unknown contract requirement; balena ignores it", s.Name, key)
				continue
			}
			if err := checkRequirement(kind, value); err != nil {
				return p.errorf(at, "service %s: label %s: %v", s.Name, key, err)
			}
			if s.Requires == nil {
				s.Requires = map[string]string{}
			}
			s.Requires[req] = value
		case strings.HasPrefix(name, featurePrefix):
			f := s.Features.field(strings.TrimPrefix(name, featurePrefix))
			if f == nil {
				p.warnf(at, "service %s: label %s: unknown feature; balena ignores it", s.Name, key)
				continue
			}
			on, ok := truthy(value)
			if !ok {
				return p.errorf(at, "service %s: label %s: %q is not a boolean (1, true, on, 0, false, off)", s.Name, key, value)
			}
			*f = *f || on
		case name == "io.balena.update.strategy":
			switch value {
			case StrategyDownloadThenKill, StrategyKillThenDownload, StrategyDeleteThenDownload, StrategyHandOver:
				s.Update.Strategy = value
			default:
				return p.errorf(at, "service %s: label %s: %q is not an update strategy (download-then-kill, kill-then-download, delete-then-download, hand-over)", s.Name, key, value)
			}
		case name == "io.balena.update.handover-timeout":
			if value == "" {
				continue
			}
			ms, err := strconv.Atoi(value)
			if err != nil || ms <= 0 {
				return p.errorf(at, "service %s: label %s: %q is not a positive number of milliseconds", s.Name, key, value)
			}
			s.Update.HandoverTimeoutMS = ms
		case name == "io.balena.update.requires-reboot":
			on, ok := truthy(value)
			if !ok {
				return p.errorf(at, "service %s: label %s: %q is not a boolean (1, true, on, 0, false, off)", s.Name, key, value)
			}
			s.Update.RequiresReboot = on
		case supervisorLabels[name]:
			p.warnf(at, "service %s: label %s is set by the supervisor; the value here is replaced", s.Name, key)
		case internalLabels[name]:
			p.warnf(at, "service %s: label %s is set by balena's tools, not by a compose file", s.Name, key)
		case strings.HasPrefix(name, "io.balena.private"):
			p.warnf(at, "service %s: label %s: the io.balena.private namespace is reserved for balena", s.Name, key)
		default:
			p.warnf(at, "service %s: label %s: unknown io.balena label; balena ignores it", s.Name, key)
		}
	}
	if s.Update.Strategy == "" {
		s.Update.Strategy = StrategyDownloadThenKill
	}
	return nil
}

func checkRequirement(kind, value string) error {
	switch kind {
	case "arch":
		switch value {
		case "aarch64", "rpi", "amd64", "armv7hf", "i386":
			return nil
		}
		return fmt.Errorf("%q is not an architecture (aarch64, rpi, amd64, armv7hf, i386)", value)
	case "range":
		if strings.TrimSpace(value) == "" || !rangeRE().MatchString(value) {
			return fmt.Errorf("%q is not a semver range", value)
		}
	case "slug":
		if value == "" {
			return fmt.Errorf("empty device type")
		}
	}
	return nil
}

// otherLabels warns about the reserved io.balena.private namespace in a volume's or a network's labels.
func (p *parser) otherLabels(path, what string, labels map[string]string) error {
	for _, key := range sortedKeys(labels) {
		if len(key) > 255 || !labelKeyRE().MatchString(key) {
			return p.errorf(path+"."+key, "%s: label %q: a label name is 1 to 255 printable ASCII characters without space, quotes or backtick", what, key)
		}
		if strings.HasPrefix(normalLabel(key), "io.balena.private") {
			p.warnf(path+"."+key, "%s: label %s: the io.balena.private namespace is reserved for balena", what, key)
		}
	}
	return nil
}
