package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostos/hostos/config"
	"github.com/hostos/hostos/hostapp/configure"
	"github.com/hostos/hostos/partition/disk"
)

// configureFlags are the flags of `hostos configure`, turned into configure.Options by options.
type configureFlags struct {
	configFile, hostname, output, bootDir          string
	replace, dev, production, asJSON, quiet        bool
	persistentLogging                              bool
	sshKeys, udevRules, connections                []string
	provisioningKey, apiEndpoint, deviceType, name string
	fleet                                          int64
	uuid, dns, ntp, country                        string
	wifiSSID, wifiKey, ethernet, gateway, splash   string
	wifiHidden                                     bool
}

func newConfigureCmd() *cobra.Command {
	var f configureFlags
	cmd := &cobra.Command{
		Use:   "configure [IMAGE]",
		Short: "Configure a balenaOS image (or a mounted boot partition) for a device or fleet, offline",
		Long: `Configure a balenaOS image for flashing: config.json, SSH keys, provisioning, Wi-Fi and other
NetworkManager connections, and the splash logo, all in one pass. Everything is validated before the first
byte is written; files are replaced so that an interruption leaves the old or the new version; only the
boot partition's sectors change. With --output the image is left untouched and a configured copy is
written (compressed images are decompressed into it).`,
		Args: imageOrBootDir(&f.bootDir, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd)
			if err != nil {
				return err
			}
			if f.bootDir != "" && f.output != "" {
				return usageError{errors.New("--output works on image files, not with --boot-dir")}
			}
			return runConfigure(cmd, f.bootDir, args, f.output, o, f.asJSON, newProgress(f.quiet || f.asJSON))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configFile, "config", "", "JSON `FILE` merged over the image's config.json")
	fl.BoolVar(&f.replace, "replace", false, "with --config: replace config.json whole instead of merging")
	fl.StringVar(&f.hostname, "hostname", "", "device host name (RFC 1123 label)")
	fl.BoolVar(&f.persistentLogging, "persistent-logging", false, "keep the journal on the data partition (--persistent-logging=false to turn off)")
	fl.BoolVar(&f.dev, "dev", false, "development mode (developmentMode: true)")
	fl.BoolVar(&f.production, "production", false, "production mode (developmentMode: false)")
	fl.StringArrayVar(&f.sshKeys, "ssh-key", nil, "OpenSSH public `KEY`, or a FILE of keys (authorized_keys format); repeatable")
	fl.StringVar(&f.provisioningKey, "provisioning-key", "", "provisioning `KEY` (apiKey) joining the device to --fleet")
	fl.Int64Var(&f.fleet, "fleet", 0, "fleet (application) `ID`")
	fl.StringVar(&f.apiEndpoint, "api-endpoint", "", "API `URL` (default https://api.balena-cloud.com)")
	fl.StringVar(&f.deviceType, "device-type", "", "device type `SLUG`; must match the image's")
	fl.StringVar(&f.name, "initial-device-name", "", "initial device `NAME`")
	fl.StringVar(&f.uuid, "uuid", "", "device UUID (32 lower-case hex)")
	fl.StringVar(&f.dns, "dns", "", `DNS servers, space-separated ("null" disables the fallback)`)
	fl.StringVar(&f.ntp, "ntp", "", "NTP servers, space-separated")
	fl.StringVar(&f.country, "country", "", "Wi-Fi regulatory country (two letters)")
	fl.StringArrayVar(&f.udevRules, "udev-rule", nil, "udev rule `NAME=FILE`; repeatable")
	fl.StringVar(&f.wifiSSID, "wifi-ssid", "", "Wi-Fi network name: writes system-connections/resin-wifi")
	fl.StringVar(&f.wifiKey, "wifi-key", "", "Wi-Fi WPA passphrase (8-63 characters) or 64 hex digits; none for an open network")
	fl.BoolVar(&f.wifiHidden, "wifi-hidden", false, "the Wi-Fi network does not broadcast its name")
	fl.StringVar(&f.ethernet, "ethernet-static", "", "static Ethernet `ADDR/PREFIX`: writes system-connections/resin-ethernet")
	fl.StringVar(&f.gateway, "gateway", "", "with --ethernet-static: the default gateway")
	fl.StringArrayVar(&f.connections, "system-connection", nil, "NetworkManager keyfile `FILE` to copy into system-connections/; repeatable")
	fl.StringVar(&f.splash, "splash", "", "PNG `FILE` for the boot splash")
	fl.StringVarP(&f.output, "output", "o", "", "write a configured copy to `OUT` and leave IMAGE untouched")
	fl.StringVar(&f.bootDir, "boot-dir", "", "configure a boot partition mounted at `DIR` instead of an image")
	fl.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

// options validates flag combinations and reads the files the flags name.
func (f *configureFlags) options(cmd *cobra.Command) (configure.Options, error) {
	var o configure.Options
	changed := cmd.Flags().Changed
	use := func(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }
	switch {
	case f.dev && f.production:
		return o, use("--dev and --production contradict each other")
	case f.replace && f.configFile == "":
		return o, use("--replace needs --config FILE")
	case f.wifiKey != "" && f.wifiSSID == "", f.wifiHidden && f.wifiSSID == "":
		return o, use("--wifi-key and --wifi-hidden need --wifi-ssid")
	case f.gateway != "" && f.ethernet == "":
		return o, use("--gateway needs --ethernet-static")
	case (f.provisioningKey == "") != (f.fleet == 0):
		return o, use("--provisioning-key and --fleet go together")
	case f.provisioningKey == "" && (f.apiEndpoint != "" || f.deviceType != "" || f.name != ""):
		return o, use("--api-endpoint, --device-type and --initial-device-name need --provisioning-key")
	}
	now, err := sourceDateEpoch()
	if err != nil {
		return o, err
	}
	o.Time = now
	if f.configFile != "" {
		b, err := disk.ReadInput(f.configFile, "--config", config.MaxConfigBytes)
		if err != nil {
			return o, err
		}
		c, err := config.ParseConfig(b)
		if err != nil {
			return o, fmt.Errorf("--config %s: %w", f.configFile, err)
		}
		o.Config, o.Replace = &c, f.replace
	}
	o.Hostname, o.UUID, o.Country = f.hostname, f.uuid, f.country
	if changed("persistent-logging") {
		o.PersistentLogging = &f.persistentLogging
	}
	if f.dev || f.production {
		dev := f.dev
		o.Development = &dev
	}
	for _, k := range f.sshKeys {
		data := []byte(k)
		if _, err := os.Stat(k); err == nil {
			if data, err = disk.ReadInput(k, "--ssh-key", config.MaxSSHKeysBytes); err != nil {
				return o, err
			}
		} else if !looksLikeKey(k) {
			return o, fmt.Errorf("--ssh-key %s: %w", k, err)
		}
		keys, err := config.ParseSSHKeys(data)
		if err != nil {
			return o, fmt.Errorf("--ssh-key: %w", err)
		}
		o.SSHKeys = append(o.SSHKeys, keys...)
	}
	if f.provisioningKey != "" {
		registered := time.Now().Unix()
		if !now.IsZero() {
			registered = now.Unix()
		}
		o.Provisioning = &config.Provisioning{
			APIKey: f.provisioningKey, FleetID: f.fleet, APIEndpoint: f.apiEndpoint, DeviceType: f.deviceType,
			InitialDeviceName: f.name, UUID: f.uuid, RegisteredAt: registered,
		}
	}
	if changed("dns") {
		o.DNS = &f.dns
	}
	if changed("ntp") {
		o.NTP = &f.ntp
	}
	for _, r := range f.udevRules {
		name, file, ok := strings.Cut(r, "=")
		if !ok || name == "" || file == "" {
			return o, use("--udev-rule %q: expected NAME=FILE", r)
		}
		b, err := disk.ReadInput(file, "--udev-rule "+name, config.MaxUdevRuleBytes)
		if err != nil {
			return o, err
		}
		if o.UdevRules == nil {
			o.UdevRules = map[string]string{}
		}
		o.UdevRules[name] = string(b)
	}
	if f.wifiSSID != "" {
		o.Wifi = &config.Wifi{SSID: f.wifiSSID, PSK: f.wifiKey, Hidden: f.wifiHidden}
	}
	if f.ethernet != "" {
		e, err := ethernet(f.ethernet, f.gateway, f.dns)
		if err != nil {
			return o, err
		}
		o.Ethernet = e
	}
	for _, file := range f.connections {
		b, err := disk.ReadInput(file, "--system-connection", config.MaxKeyfileBytes)
		if err != nil {
			return o, err
		}
		o.Connections = append(o.Connections, configure.File{Name: baseName(file), Data: b})
	}
	if f.splash != "" {
		if o.Splash, err = disk.ReadInput(f.splash, "--splash", config.MaxSplashBytes); err != nil {
			return o, err
		}
	}
	return o, nil
}

// looksLikeKey tells a key given inline from a file name that does not exist.
func looksLikeKey(s string) bool {
	return strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-") || strings.HasPrefix(s, "sk-") || strings.Contains(s, " ")
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func ethernet(addr, gateway, dns string) (*config.Ethernet, error) {
	pfx, err := netip.ParsePrefix(addr)
	if err != nil {
		return nil, fmt.Errorf("--ethernet-static %q: expected ADDR/PREFIX such as 192.168.1.20/24", addr)
	}
	e := &config.Ethernet{Address: pfx}
	if gateway != "" {
		if e.Gateway, err = netip.ParseAddr(gateway); err != nil {
			return nil, fmt.Errorf("--gateway %q: not an IP address", gateway)
		}
	}
	for _, s := range strings.Fields(dns) {
		if s == "null" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--dns %q: with --ethernet-static, DNS servers must be IP addresses", s)
		}
		e.DNS = append(e.DNS, a)
	}
	return e, nil
}

// imageOrBootDir accepts IMAGE followed by extra positional arguments, or only the extra ones when
// --boot-dir is given.
func imageOrBootDir(bootDir *string, extra int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		want := extra + 1
		if *bootDir != "" {
			want = extra
		}
		if len(args) != want {
			return usageError{fmt.Errorf("%s: expected %d argument(s), got %d (usage: %s)", cmd.Name(), want, len(args), cmd.UseLine())}
		}
		return nil
	}
}

// withHint adds how to proceed to errors a user can fix by changing the command.
func withHint(err error) error {
	if errors.Is(err, configure.ErrCompressed) {
		return fmt.Errorf("%w: configure it into a new image with --output OUT.img (or decompress it first)", err)
	}
	return err
}

func printResult(w io.Writer, target string, res configure.Result, asJSON bool) error {
	if asJSON {
		if res.Written == nil {
			res.Written = []string{}
		}
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, string(b))
		return nil
	}
	if len(res.Written) == 0 {
		fmt.Fprintf(w, "%s: already as asked, nothing written\n", target)
		return nil
	}
	fmt.Fprintf(w, "%s: wrote %s\n", target, strings.Join(res.Written, ", "))
	return nil
}

// sourceDateEpoch is SOURCE_DATE_EPOCH as a time, or the zero time when it is not set.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: not a number of seconds", s)
	}
	return time.Unix(n, 0).UTC(), nil
}
