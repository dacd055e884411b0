package config

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultAPIEndpoint is balenaCloud's API.
const DefaultAPIEndpoint = "https://api.balena-cloud.com"

// Default ports config.json carries.
const (
	DefaultListenPort = 48484 // the supervisor's API
	DefaultVPNPort    = 443
)

// Provisioning is what joins a device to a fleet on first boot.
type Provisioning struct {
	APIKey            string    // provisioning key; a secret
	FleetID           int64     // applicationId
	APIEndpoint       string    // DefaultAPIEndpoint when empty; must be http(s)://api.<domain>
	DeviceType        string    // device-type slug; when empty the present deviceType stays (one is required)
	InitialDeviceName string    // optional
	UUID              string    // "" keeps the present uuid or generates one
	RegisteredAt      int64     // Unix seconds; the current time when 0
	Rand              io.Reader // source of a generated uuid; crypto/rand when nil
}

// Provision writes p into c: apiKey, applicationId (a number), deviceType, apiEndpoint and the
// endpoints derived from its host (api.X gives deltaEndpoint https://delta.X, vpnEndpoint vpn.X and
// registryEndpoint registry2.X, as balena's SDK derives them), listenPort and vpnPort when absent,
// registered_at, uuid (p.UUID, else the present one, else a new one) and initialDeviceName when
// given. registered_at is kept when apiKey, applicationId and apiEndpoint are unchanged, so running
// Provision twice with the same p leaves c as the first run left it. Other keys stay.
//
// Everything is checked before c is touched; on error c is unchanged. Errors never hold the key.
func (c *Config) Provision(p Provisioning) error {
	if _, err := checkAPIKey(p.APIKey); err != nil {
		return err
	}
	if p.FleetID <= 0 {
		return fmt.Errorf("fleet id %d: a positive number is required", p.FleetID)
	}
	endpoint := p.APIEndpoint
	if endpoint == "" {
		endpoint = DefaultAPIEndpoint
	}
	endpoint, domain, err := parseAPIEndpoint(endpoint)
	if err != nil {
		return err
	}
	deviceType := p.DeviceType
	if deviceType == "" {
		deviceType, _ = c.String("deviceType")
		if deviceType == "" {
			return errors.New("device type is required: config.json has none")
		}
	}
	if _, err := checkDeviceName(p.InitialDeviceName); err != nil {
		return err
	}
	uuid := p.UUID
	if uuid != "" {
		if err := ValidateUUID(uuid); err != nil {
			return err
		}
	} else if v, ok := c.Get("uuid"); ok {
		s, isString := v.(string)
		if !isString {
			return fmt.Errorf("config.json uuid is %s, not a string; give a uuid to replace it", jsonKind(v))
		}
		if err := ValidateUUID(s); err != nil {
			return fmt.Errorf("config.json %w; give a uuid to replace it", err)
		}
		uuid = s
	} else {
		r := p.Rand
		if r == nil {
			r = rand.Reader
		}
		if uuid, err = NewDeviceUUID(r); err != nil {
			return err
		}
	}

	registeredAt := json.Number(strconv.FormatInt(p.RegisteredAt, 10))
	if p.RegisteredAt == 0 {
		registeredAt = json.Number(strconv.FormatInt(time.Now().Unix(), 10))
	}
	if old, ok := c.Get("registered_at"); ok && sameProvisioning(*c, p.APIKey, p.FleetID, endpoint) {
		if n, isNum := old.(json.Number); isNum {
			registeredAt = n
		}
	}

	out := c.Clone()
	set := func(key string, v any) {
		if err == nil {
			err = out.SetPath(v, key)
		}
	}
	set("apiKey", p.APIKey)
	set("applicationId", json.Number(strconv.FormatInt(p.FleetID, 10)))
	set("deviceType", deviceType)
	set("apiEndpoint", endpoint)
	set("deltaEndpoint", "https://delta."+domain)
	set("vpnEndpoint", "vpn."+domain)
	set("registryEndpoint", "registry2."+domain)
	if _, ok := out.Get("listenPort"); !ok {
		set("listenPort", json.Number(strconv.Itoa(DefaultListenPort)))
	}
	if _, ok := out.Get("vpnPort"); !ok {
		set("vpnPort", json.Number(strconv.Itoa(DefaultVPNPort)))
	}
	set("registered_at", registeredAt)
	set("uuid", uuid)
	if p.InitialDeviceName != "" {
		set("initialDeviceName", p.InitialDeviceName)
	}
	if err != nil {
		return err
	}
	*c = out
	return nil
}

// sameProvisioning reports whether c already holds this key, fleet and endpoint.
func sameProvisioning(c Config, apiKey string, fleetID int64, endpoint string) bool {
	key, _ := c.String("apiKey")
	ep, _ := c.String("apiEndpoint")
	id, _ := c.Get("applicationId")
	n, isNum := id.(json.Number)
	if !isNum {
		return false
	}
	got, err := strconv.ParseInt(n.String(), 10, 64)
	return err == nil && key == apiKey && got == fleetID && ep == endpoint
}

// parseAPIEndpoint checks an API endpoint URL, http or https with a host api.<domain> and nothing
// after it but an optional "/", and returns it without the trailing "/" and the domain.
func parseAPIEndpoint(s string) (endpoint, domain string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("api endpoint %q is not a URL", s)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", "", fmt.Errorf("api endpoint %q: an https:// (or http://) URL is required", s)
	}
	if u.User != nil || u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return "", "", fmt.Errorf("api endpoint %q: give the bare %s://api.<domain>, without port, path or query", s, u.Scheme)
	}
	host := strings.ToLower(u.Hostname())
	domain, ok := strings.CutPrefix(host, "api.")
	if !ok || domain == "" || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", "", fmt.Errorf("api endpoint %q: a standard api.<domain> endpoint is required (vpn, delta and registry endpoints are derived from the domain)", s)
	}
	return u.Scheme + "://" + host, domain, nil
}
