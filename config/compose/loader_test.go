package compose

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// loaderCases are compose files that exercise every field balena reads, in short and long syntax, and
// mistakes compose-go's schema and consistency rules refused.
var loaderCases = []string{
	// scalars and casts
	"services:\n  a:\n    image: x\n    privileged: 'yes'\n    read_only: false\n    tty: 'on'\n    init: false\n",
	"services:\n  a:\n    image: x\n    cpu_shares: 512\n    cpu_quota: '50000'\n    cpus: 1.5\n    cpuset: 0-1\n    oom_score_adj: 0\n    pids_limit: 100\n",
	"services:\n  a:\n    image: x\n    cpus: '0.1'\n    mem_limit: 1g\n    mem_reservation: 512m\n    shm_size: 67108864\n",
	"services:\n  a:\n    image: x\n    mem_limit: 1.5\n    shm_size: '64M'\n",
	"services:\n  a:\n    image: x\n    stop_grace_period: 1m30s\n    stop_signal: SIGTERM\n",
	"services:\n  a:\n    image: x\n    stop_grace_period: 90s\n",
	"services:\n  a:\n    image: x\n    hostname: h\n    domainname: d\n    mac_address: 02:42:ac:11:00:02\n    user: root\n    working_dir: /w\n    ipc: host\n    pid: host\n    userns_mode: host\n    cgroup_parent: /p\n",
	"services:\n  a:\n    image: x\n    pid: null\n",
	// commands
	"services:\n  a:\n    image: x\n    command: echo 'a b' \"c d\" e\\ f\n    entrypoint: [\"/bin/sh\", \"-c\"]\n",
	"services:\n  a:\n    image: x\n    command: []\n",
	"services:\n  a:\n    image: x\n    command: null\n",
	// environment and labels
	"services:\n  a:\n    image: x\n    environment:\n      A: 1\n      B: true\n      C:\n      D: ''\n      E: 1.5\n",
	"services:\n  a:\n    image: x\n    environment: [A=1, B, C=, D=x=y, A=2]\n",
	"services:\n  a:\n    image: x\n    environment: [HOME, GOPATH]\n",
	"services:\n  a:\n    image: x\n    environment: {HOME: null}\n",
	"services:\n  a:\n    image: x\n    labels: [a=b, c, d=]\n",
	"services:\n  a:\n    image: x\n    labels:\n      a: 1\n      b: null\n      c: false\n",
	"services:\n  a:\n    image: x\n    sysctls: [net.core.somaxconn=1024, a]\n",
	"services:\n  a:\n    image: x\n    sysctls:\n      net.core.somaxconn: 1024\n      b: null\n",
	// lists
	"services:\n  a:\n    image: x\n    cap_add: [SYS_ADMIN, SYS_ADMIN, NET_ADMIN]\n    cap_drop: []\n    security_opt: [no-new-privileges]\n",
	"services:\n  a:\n    image: x\n    dns: 8.8.8.8\n    dns_search: [a.example, b.example]\n    dns_opt: [use-vc]\n",
	"services:\n  a:\n    image: x\n    dns: ['', 1.1.1.1]\n",
	"services:\n  a:\n    image: x\n    tmpfs: [/run, /tmp, /run]\n",
	"services:\n  a:\n    image: x\n    group_add: [audio, 44]\n",
	"services:\n  a:\n    image: x\n    extra_hosts: ['a:1.2.3.4', 'b=5.6.7.8', 'c=::1', 'd:[::2]', 'a=9.9.9.9']\n",
	"services:\n  a:\n    image: x\n    extra_hosts:\n      a: 1.2.3.4\n      b: [5.6.7.8, '[::1]']\n",
	"services:\n  a:\n    image: x\n    expose: [80, '443']\n    container_name: c\n",
	// ulimits
	"services:\n  a:\n    image: x\n    ulimits:\n      nproc: 65535\n      nofile:\n        soft: 20000\n        hard: '40000'\n      core: 0\n      memlock: {soft: -1}\n",
	"services:\n  a:\n    image: x\n    ulimits:\n      nproc: '10'\n",
	// healthcheck
	"services:\n  a:\n    image: x\n    healthcheck:\n      test: curl -f http://localhost\n      interval: 1m30s\n      timeout: 10s\n      retries: 3\n      start_period: 40s\n",
	"services:\n  a:\n    image: x\n    healthcheck:\n      test: [CMD, curl, -f, http://localhost]\n      disable: false\n      retries: 0\n",
	"services:\n  a:\n    image: x\n    healthcheck:\n      disable: true\n",
	"services:\n  a:\n    image: x\n    healthcheck:\n      test: [NONE]\n",
	// networks
	"networks:\n  n1: {}\n  n2:\n    driver: bridge\n    internal: true\n    ipam:\n      driver: default\n      config:\n        - subnet: 172.28.0.0/16\n          gateway: 172.28.0.1\n          ip_range: 172.28.5.0/24\n    labels: [a=b]\n    driver_opts:\n      com.docker.network.bridge.enable_icc: 'true'\n      mtu: 1500\nservices:\n  a:\n    image: x\n    networks:\n      n1:\n        aliases: [x, y, x]\n        ipv4_address: 172.28.0.5\n      n2:\n",
	"networks:\n  n1:\nservices:\n  a:\n    image: x\n    networks: [n1]\n  b:\n    image: y\n    networks: {}\n  c:\n    image: z\n    network_mode: host\n",
	"networks:\n  n:\n    attachable: false\n    enable_ipv6: false\n    internal: 'false'\nservices:\n  a:\n    image: x\n",
	"networks:\n  default:\n    driver: bridge\nservices:\n  a:\n    image: x\n",
	"services:\n  a:\n    image: x\n    network_mode: service:b\n  b:\n    image: y\n",
	"services:\n  a:\n    image: x\n    ipc: service:b\n    pid: service:b\n  b:\n    image: y\n",
	// ports
	"services:\n  a:\n    image: x\n    ports: [80, '8080:80', '127.0.0.1:53:53/udp', '9000-9002:9000-9002', '6000-6001:7000', '[::1]:5000:5000', '1234/tcp', 80]\n",
	"services:\n  a:\n    image: x\n    ports:\n      - target: 80\n        published: 8080\n      - target: '81'\n        host_ip: 10.0.0.1\n        protocol: udp\n        mode: host\n      - target: 82\n        published: '8000-8001'\n",
	// volumes
	"volumes:\n  v: {}\n  w:\n    driver: local\n    driver_opts: {type: tmpfs, o: 'size=100m', uid: 1000}\n    labels: {a: b}\nservices:\n  a:\n    image: x\n    volumes: ['v:/data', 'w:/w:ro', 'v:/data/', 'v:/x:rw', {type: tmpfs, target: /t}, {type: volume, source: w, target: /y, read_only: 'true'}]\n    tmpfs: /run\n",
	"volumes:\n  v:\nservices:\n  a:\n    image: x\n    volumes: ['v:/data:nocopy']\n",
	"volumes:\n  v:\n    name: other\nservices:\n  a:\n    image: x\n    volumes: ['v:/data//sub/../x']\n",
	"services:\n  a:\n    image: x\n    volumes: [/var/run/balena-engine.sock:/var/run/balena-engine.sock, /sys:/sys, /proc:/proc, /lib/firmware:/lib/firmware]\n",
	// devices and depends_on
	"services:\n  a:\n    image: x\n    devices: [/dev/a, '/dev/b:/dev/c', '/dev/d:/dev/e:r', {source: /dev/f, target: /dev/g}, {source: /dev/h, target: /dev/i, permissions: rw}]\n",
	"services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: y\n    depends_on:\n      c:\n        condition: service_started\n        required: 'true'\n        restart: true\n  c:\n    image: z\n",
	// build
	"services:\n  a:\n    build: ./a\n  b:\n    build:\n      context: b\n      dockerfile: Dockerfile.b\n      target: prod\n      args: [A=1, B, C=]\n  c:\n    build:\n      args:\n        A: 1\n        B:\n    image: c\n",
	"services:\n  a:\n    image: x\n    build:\n      context: .\n      cache_from: [x]\n      labels: [a=b]\n      shm_size: 1g\n      extra_hosts: ['a:1.2.3.4']\n",
	// extends within the file
	"services:\n  base:\n    image: x\n    environment: [A=1, B=2]\n    labels: {l: '1'}\n    cap_add: [A]\n    ports: ['80:80']\n    command: a b\n    volumes: ['v:/v']\n    ulimits: {nofile: {soft: 1, hard: 2}}\n    depends_on: [c]\n  c:\n    image: z\n  a:\n    extends: base\n    environment: {B: 3, C: 4}\n    labels: [m=2]\n    cap_add: [B, A]\n    ports: ['81:81']\n    command: [c]\n    volumes: ['w:/v', 'w:/w']\n    ulimits: {nofile: {hard: 3}}\n    depends_on:\n      base:\n        condition: service_started\nvolumes:\n  v: {}\n  w: {}\n",
	"services:\n  a:\n    extends:\n      service: b\n    privileged: true\n  b:\n    extends: c\n    image: y\n  c:\n    image: z\n    restart: always\n    build: ./c\n",
	// profiles and extensions
	"x-common: &c\n  image: x\nservices:\n  a:\n    <<: *c\n    profiles: [debug, test]\n    x-note: hello\n",
	// interpolation
	"services:\n  a:\n    image: reg/${NAME:-app}:${TAG}\n    environment:\n      A: ${UNSET_A}\n      B: $${LITERAL}\n      C: ${NAME:+set}\n    privileged: ${PRIV:-false}\n    cpu_shares: ${SHARES:-10}\n",
	// warned fields
	"services:\n  a:\n    image: x\n    annotations: {a: b}\n    device_cgroup_rules: ['c 1:3 mr']\n    uts: host\n    volumes_from: [b]\n  b:\n    image: y\n",
	"services:\n  a:\n    image: x\n    restart: on-failure:3\n",
	"services:\n  a:\n    image: x\n    annotations: [a=b, c]\n    attach: false\n    cgroup: host\n    cpu_rt_period: 0\n    cpu_rt_runtime: '100'\n    device_cgroup_rules: []\n    use_api_socket: false\n    pull_refresh_after: ''\n",
	"services:\n  a:\n    image: x\n    attach: 'yes'\n    use_api_socket: true\n    uts: host\n    volumes_from: [b, 'container:c:ro']\n  b:\n    image: y\n",
	// mistakes
	"services:\n  a:\n    image: 1\n",
	"services:\n  a:\n    image: x\n    user: 1000\n",
	"services:\n  a:\n    image: x\n    cap_add: SYS_ADMIN\n",
	"services:\n  a:\n    image: x\n    cpu_shares: lots\n",
	"services:\n  a:\n    image: x\n    mem_limit: lots\n",
	"services:\n  a:\n    image: x\n    stop_grace_period: soon\n",
	"services:\n  a:\n    image: x\n    ports: ['a:b']\n",
	"services:\n  a:\n    image: x\n    ports: [{published: 80}]\n",
	"services:\n  a:\n    image: x\n    volumes: ['a:b:c:d']\n",
	"services:\n  a:\n    image: x\n    environment: 5\n",
	"services:\n  a:\n    image: x\n    environment: [1]\n",
	"services:\n  a:\n    image: x\n    depends_on: [nope]\n",
	"services:\n  a:\n    image: x\n    networks: [nope]\n",
	"networks:\n  n: {}\nservices:\n  a:\n    image: x\n    network_mode: host\n    networks: [n]\n",
	"services:\n  a:\n    image: x\n    network_mode: service:nope\n",
	"services:\n  a:\n    image: x\n    healthcheck:\n      test: [curl]\n",
	"services:\n  a:\n    image: x\n    healthcheck:\n      bogus: 1\n",
	"services:\n  a:\n    image: x\n    ulimits:\n      NOFILE: 1\n",
	"services:\n  a:\n    image: x\n    extends: nope\n",
	"services:\n  a:\n    extends: b\n    image: x\n  b:\n    extends: a\n    image: y\n",
	"services:\n  a:\n    image: x\n    devices: ['a:b:c:d']\n",
	"services:\n  a:\n    image: x\n    extra_hosts: [nohost]\n",
	"services:\n  a:\n    image: x\n    running: true\n",
	"services:\n  a:\n    image: x\n    net: host\n",
	"services:\n  a:\n    image: x\n    x-develop: {}\n",
	"services:\n  a:\n    image: x\n    build:\n      bogus: 1\n",
	"volumes:\n  v:\n    bogus: 1\nservices:\n  a:\n    image: x\n",
	"networks:\n  n:\n    bogus: 1\nservices:\n  a:\n    image: x\n",
	"networks:\n  n:\n    attachable: true\nservices:\n  a:\n    image: x\n",
	"networks:\n  n:\n    enable_ipv4: true\nservices:\n  a:\n    image: x\n",
	"networks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/8\n          aux_addresses: {a: 10.0.0.5}\nservices:\n  a:\n    image: x\n",
	"services:\n  a:\n    image: x\n    privileged: maybe\n",
	"services:\n  a: null\n",
	"services:\n  a: 5\n",
	"services: []\n",
	"services:\n  a:\n    image: x\nvolumes: 5\n",
	"services:\n  a:\n    image: x\n    depends_on:\n      b:\n        condition: service_healthy\n  b:\n    image: y\n",
	"services:\n  a:\n    image: x\n    depends_on:\n      b:\n        required: false\n  b:\n    image: y\n",
	"services:\n  a:\n    image: x\n    volumes: ['/data']\n",
	"services:\n  a:\n    image: x\n    volumes: [{type: volume, target: /x}]\n",
	"services:\n  a:\n    image: x\n    volumes: [{type: bind, source: ./a, target: /x}]\n",
	"services:\n  a:\n    image: x\n    volumes: [{type: npipe, source: a, target: /x}]\n",
	"services:\n  a:\n    image: x\n    profiles: [-bad]\n",
	"services:\n  a:\n    image: x\n    pids_limit: -1\n",
	"services:\n  a:\n    image: x\n    oom_score_adj: -1000\n",
	"services:\n  a:\n    image: x\n    security_opt: ['seccomp:unconfined', 'apparmor=unconfined', 'no-new-privileges:true']\n",
	// extra_hosts naming hosts without addresses (found by FuzzMatchesComposeGo)
	"services:\n  a:\n    image: x\n    extra_hosts: {h: []}\n",
	"services:\n  a:\n    image: x\n    extra_hosts: {h: [], g: 1.2.3.4}\n",
	"services:\n  a:\n    image: x\n    extra_hosts: {}\n",
	"services:\n  a:\n    image: x\n    extra_hosts: []\n",
}

// TestMatchesComposeGo compares Parse with compose-go's loader on every case: the same project and
// warnings, or an error from both.
func TestMatchesComposeGo(t *testing.T) {
	env := map[string]string{"TAG": "1", "HOME": "/root", "PRIV": "on"}
	for i, doc := range loaderCases {
		compareWithLoader(t, i, []byte(doc), WithEnv(env), AllowBuild())
	}
}

func compareWithLoader(t *testing.T, i int, doc []byte, opts ...Option) {
	t.Helper()
	got, gotWarnings, gotErr := Parse(doc, opts...)
	want, wantWarnings, wantErr, panicked := parseWithLoaderRecovered(doc, opts...)
	if panicked != nil {
		t.Logf("case %d: compose-go panicked (%v); Parse: %v", i, panicked, gotErr)
		return
	}
	if (gotErr == nil) != (wantErr == nil) {
		t.Errorf("case %d:\n%s\nParse: %v\ncompose-go: %v", i, doc, gotErr, wantErr)
		return
	}
	if gotErr != nil {
		t.Logf("case %d: %v\n  compose-go: %v", i, gotErr, wantErr)
		return
	}
	g, _ := json.MarshalIndent(struct {
		P *Project
		W []string
	}{got, gotWarnings}, "", " ")
	w, _ := json.MarshalIndent(struct {
		P *Project
		W []string
	}{want, wantWarnings}, "", " ")
	if string(g) != string(w) {
		var gv, wv any
		_ = json.Unmarshal(g, &gv)
		_ = json.Unmarshal(w, &wv)
		gf, wf := map[string]any{}, map[string]any{}
		flatten("", gv, gf)
		flatten("", wv, wf)
		var diff []string
		for k, v := range gf {
			if fmt.Sprint(wf[k]) != fmt.Sprint(v) {
				diff = append(diff, fmt.Sprintf("%s: Parse %v, compose-go %v", k, v, wf[k]))
			}
		}
		for k, v := range wf {
			if _, ok := gf[k]; !ok {
				diff = append(diff, fmt.Sprintf("%s: Parse -, compose-go %v", k, v))
			}
		}
		sort.Strings(diff)
		t.Errorf("case %d:\n%s\n%s", i, doc, strings.Join(diff, "\n"))
	}
}

// TestMatchesComposeGoWithDir: env_file, label_file, extends.file and include, read from a directory.
func TestMatchesComposeGoWithDir(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.env":          "A=1\nB=${TAG}\n# comment\nC=\"quoted value\"\nD=${A}x\n",
		"b.env":          "A=2\nE\n",
		"a.labels":       "com.example.a=1\ncom.example.b=two\n",
		"base.yml":       "services:\n  base:\n    image: base\n    build: ./ctx\n    env_file: a.env\n    labels: [from=base]\n",
		"inc/inc.yml":    "services:\n  inc:\n    image: inc\n    build: .\n    volumes: ['iv:/iv']\nvolumes:\n  iv: {}\n",
		"bad/bad.yml":    "services:\n  bad:\n    image: 1\n",
		"dup.yml":        "services:\n  a:\n    image: dup\n",
		"ctx/Dockerfile": "FROM scratch\n",
	}
	for name, body := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"TAG": "1"}
	for i, doc := range []string{
		"services:\n  a:\n    image: x\n    env_file: [a.env, b.env]\n    environment: [E=5, F]\n",
		"services:\n  a:\n    image: x\n    env_file:\n      - path: a.env\n      - path: missing.env\n        required: false\n",
		"services:\n  a:\n    image: x\n    env_file: missing.env\n",
		"services:\n  a:\n    image: x\n    label_file: a.labels\n    labels: {com.example.b: three}\n",
		"services:\n  a:\n    extends:\n      file: base.yml\n      service: base\n    environment: [A=9]\n    labels: [mine=1]\n",
		"services:\n  a:\n    build: ./ctx\n  b:\n    build:\n      context: ctx\n      dockerfile: Other\n",
		"include:\n  - inc/inc.yml\nservices:\n  a:\n    image: x\n",
		"include:\n  - path: inc/inc.yml\nservices:\n  a:\n    image: x\n",
		"include:\n  - bad/bad.yml\nservices:\n  a:\n    image: x\n",
		"include:\n  - dup.yml\nservices:\n  a:\n    image: x\n",
		"services:\n  a:\n    extends:\n      file: missing.yml\n      service: base\n",
	} {
		compareWithLoader(t, i, []byte(doc), WithEnv(env), AllowBuild(), WithDir(dir))
	}
}

func parseWithLoaderRecovered(doc []byte, opts ...Option) (p *Project, w []string, err error, panicked any) {
	defer func() { panicked = recover() }()
	p, w, err = parseWithLoader(doc, opts...)
	return p, w, err, nil
}

// FuzzMatchesComposeGo: whatever compose-go's loader accepts, Parse accepts too, and reads the same
// project with the same warnings (the order of the unset-variable warnings aside: compose-go's is random).
func FuzzMatchesComposeGo(f *testing.F) {
	for _, doc := range loaderCases {
		f.Add([]byte(doc))
	}
	env := map[string]string{"TAG": "1", "HOME": "/root", "PRIV": "on"}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, gotWarnings, err := Parse(doc, WithEnv(env), AllowBuild())
		want, wantWarnings, wantErr, panicked := parseWithLoaderRecovered(doc, WithEnv(env), AllowBuild())
		if wantErr != nil || panicked != nil {
			return
		}
		if err != nil {
			t.Fatalf("Parse refuses what compose-go accepts: %v", err)
		}
		sort.Strings(gotWarnings)
		sort.Strings(wantWarnings)
		g, _ := json.Marshal(struct {
			P *Project
			W []string
		}{got, gotWarnings})
		w, _ := json.Marshal(struct {
			P *Project
			W []string
		}{want, wantWarnings})
		if string(g) != string(w) {
			t.Errorf("Parse:\n%s\ncompose-go:\n%s", g, w)
		}
	})
}

// TestFieldErrors: a field of the wrong type or a key Compose does not know is refused in one line naming
// the file, the line, the service and the field.
func TestFieldErrors(t *testing.T) {
	svc := func(body string) string { return "services:\n  app:\n    image: x\n" + body }
	for _, tc := range []struct{ doc, want string }{
		{svc("    user: 1000\n"), "docker-compose.yml:4: service app: user: a number is not a string"},
		{svc("    privileged: maybe\n"), `docker-compose.yml:4: service app: privileged: "maybe" is not a boolean`},
		{svc("    cpu_shares: lots\n"), `docker-compose.yml:4: service app: cpu_shares: "lots" is not an integer`},
		{svc("    mem_limit: lots\n"), `docker-compose.yml:4: service app: mem_limit: "lots" is not a byte size`},
		{svc("    stop_grace_period: soon\n"), `docker-compose.yml:4: service app: stop_grace_period: "soon" is not a duration`},
		{svc("    cap_add: SYS_ADMIN\n"), "docker-compose.yml:4: service app: cap_add: a string is not a list of strings"},
		{svc("    environment: [1]\n"), "docker-compose.yml:4: service app: environment: entry 1 is not a string"},
		{svc("    ports: ['a:b']\n"), `docker-compose.yml:4: service app: ports: "a:b": invalid containerPort: b`},
		{svc("    healthcheck:\n      bogus: 1\n"), "docker-compose.yml:4: service app: healthcheck: bogus is not a healthcheck field"},
		{svc("    ulimits:\n      nofile: {soft: 1}\n"), "docker-compose.yml:4: service app: ulimits: nofile: a limit as a mapping needs both soft and hard"},
		{svc("    running: true\n"), "docker-compose.yml:4: service app: running is not a Compose service field"},
		{svc("    container_name: _x\n"), `docker-compose.yml:4: service app: container_name: "_x" is not a container name`},
		{svc("    build:\n      bogus: 1\n"), "docker-compose.yml:4: service app: build: bogus is not a field of build"},
		{svc("    depends_on: [nope]\n"), "docker-compose.yml:4: service app depends on undefined service nope"},
		{svc("    networks: [nope]\n"), "docker-compose.yml:4: service app refers to undefined network nope"},
		{svc("    extends: nope\n"), "docker-compose.yml:4: service app: extends: no service nope in docker-compose.yml"},
		{"services:\n  a:\n    extends: b\n  b:\n    extends: a\n", "service a: extends: a cycle"},
		{"volumes:\n  v:\n    bogus: 1\n" + svc(""), "docker-compose.yml:3: volume v: bogus is not a field of a volume"},
		{"networks:\n  n:\n    internal: maybe\n" + svc(""), `docker-compose.yml:3: network n: internal: "maybe" is not a boolean`},
	} {
		_, _, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// TestIncludeAndExtendsFiles: a mistake in an included file names that file and its line; include and
// extends.file need the directory; a chain of files is bounded.
func TestIncludeAndExtendsFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bad.yml", "services:\n  bad:\n    image: x\n    privileged: maybe\n")
	write("loop.yml", "include:\n  - loop.yml\nservices:\n  l:\n    image: x\n")
	write("base.yml", "services:\n  base:\n    image: base\n    cap_add: [NET_ADMIN]\n")
	write("leaf.yml", "services:\n  leaf:\n    image: x\n")
	_, _, err := Parse([]byte("include:\n  - bad.yml\nservices:\n  a:\n    image: x\n"), WithDir(dir))
	if err == nil || !strings.Contains(err.Error(), "bad.yml:4: service bad: privileged") {
		t.Errorf("included mistake: %v", err)
	}
	_, _, err = Parse([]byte("include:\n  - loop.yml\nservices:\n  a:\n    image: x\n"), WithDir(dir))
	if err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Errorf("include loop: %v", err)
	}
	_, _, err = Parse([]byte("include:\n"+strings.Repeat("  - leaf.yml\n", 70)+"services:\n  a:\n    image: x\n"), WithDir(dir))
	if err == nil || !strings.Contains(err.Error(), "more than 64 files") {
		t.Errorf("include fan-out: %v", err)
	}
	doc := []byte("services:\n  a:\n    extends:\n      file: base.yml\n      service: base\n    cap_add: [SYS_TIME]\n")
	if _, _, err := Parse(doc); err == nil || !strings.Contains(err.Error(), "extends.file: reads other files") {
		t.Errorf("extends.file without a directory: %v", err)
	}
	p, _, err := Parse(doc, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if a := p.Services[0]; a.Image != "base" || strings.Join(a.CapAdd, ",") != "NET_ADMIN,SYS_TIME" {
		t.Errorf("extended service %+v", a)
	}
}

// TestLongListsMerge: extending services with lists of many thousand entries stays quick.
func TestLongListsMerge(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n")
	prev := ""
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "  s%d:\n    image: x\n", i)
		if prev != "" {
			fmt.Fprintf(&b, "    extends: %s\n", prev)
		}
		b.WriteString("    dns_search:\n")
		for j := 0; j < 15000; j++ {
			fmt.Fprintf(&b, "      - d%d.%d\n", i, j)
		}
		prev = fmt.Sprintf("s%d", i)
	}
	start := time.Now()
	p, _, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := p.Service("s3"); len(list(s.Composition["dns_search"])) != 60000 {
		t.Errorf("s3 has %d dns_search entries, want 60000", len(list(s.Composition["dns_search"])))
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Parse took %v", d)
	}
}
