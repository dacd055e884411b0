package enginestore

import "testing"

// TestParseRef compares ParseRef with what the engine's reference library (distribution/reference
// v0.6.0: ParseNormalizedNamed, Name, FamiliarName, FamiliarString of TagNameOnly) gave for each input.
func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in       string
		want     Ref
		familiar string // String of OrLatest
		bad      bool
	}{
		{"busybox", Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "", Digest: ""}, "busybox:latest", false},
		{"busybox:latest", Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "latest", Digest: ""}, "busybox:latest", false},
		{"busybox:1.36", Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "1.36", Digest: ""}, "busybox:1.36", false},
		{"library/busybox", Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "", Digest: ""}, "busybox:latest", false},
		{"docker.io/library/busybox:latest", Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "latest", Digest: ""}, "busybox:latest", false},
		{"docker.io/busybox", Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "", Digest: ""}, "busybox:latest", false},
		{"index.docker.io/library/busybox:1", Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "1", Digest: ""}, "busybox:1", false},
		{"docker.io/foo/bar", Ref{Name: "docker.io/foo/bar", Repo: "foo/bar", Tag: "", Digest: ""}, "foo/bar:latest", false},
		{"foo/bar", Ref{Name: "docker.io/foo/bar", Repo: "foo/bar", Tag: "", Digest: ""}, "foo/bar:latest", false},
		{"foo/bar:v2", Ref{Name: "docker.io/foo/bar", Repo: "foo/bar", Tag: "v2", Digest: ""}, "foo/bar:v2", false},
		{"foo/bar/baz:1", Ref{Name: "docker.io/foo/bar/baz", Repo: "foo/bar/baz", Tag: "1", Digest: ""}, "foo/bar/baz:1", false},
		{"registry.example/app:1.0", Ref{Name: "registry.example/app", Repo: "registry.example/app", Tag: "1.0", Digest: ""}, "registry.example/app:1.0", false},
		{"registry.example:5000/app", Ref{Name: "registry.example:5000/app", Repo: "registry.example:5000/app", Tag: "", Digest: ""}, "registry.example:5000/app:latest", false},
		{"localhost/app", Ref{Name: "localhost/app", Repo: "localhost/app", Tag: "", Digest: ""}, "localhost/app:latest", false},
		{"localhost:5000/a/b:c", Ref{Name: "localhost:5000/a/b", Repo: "localhost:5000/a/b", Tag: "c", Digest: ""}, "localhost:5000/a/b:c", false},
		{"busybox@sha256:" + hex64, Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "", Digest: "sha256:" + hex64}, "busybox@sha256:" + hex64, false},
		{"busybox:1.36@sha256:" + hex64, Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "1.36", Digest: "sha256:" + hex64}, "busybox:1.36@sha256:" + hex64, false},
		{"docker.io/library/busybox@sha256:" + hex64, Ref{Name: "docker.io/library/busybox", Repo: "busybox", Tag: "", Digest: "sha256:" + hex64}, "busybox@sha256:" + hex64, false},
		{"registry.example/x/y@sha256:" + hex64, Ref{Name: "registry.example/x/y", Repo: "registry.example/x/y", Tag: "", Digest: "sha256:" + hex64}, "registry.example/x/y@sha256:" + hex64, false},
		{"balena/aarch64-supervisor:v14.11.3", Ref{Name: "docker.io/balena/aarch64-supervisor", Repo: "balena/aarch64-supervisor", Tag: "v14.11.3", Digest: ""}, "balena/aarch64-supervisor:v14.11.3", false},
		{"preloaded/main:latest", Ref{Name: "docker.io/preloaded/main", Repo: "preloaded/main", Tag: "latest", Digest: ""}, "preloaded/main:latest", false},
		{"a", Ref{Name: "docker.io/library/a", Repo: "a", Tag: "", Digest: ""}, "a:latest", false},
		{"a_b.c-d__e---f:T.a-g_", Ref{Name: "docker.io/library/a_b.c-d__e---f", Repo: "a_b.c-d__e---f", Tag: "T.a-g_", Digest: ""}, "a_b.c-d__e---f:T.a-g_", false},
		{"Busybox", Ref{}, "", true},
		{"busybox:", Ref{}, "", true},
		{":tag", Ref{}, "", true},
		{"", Ref{}, "", true},
		{"a..b", Ref{}, "", true},
		{"-a", Ref{}, "", true},
		{"a/", Ref{}, "", true},
		{"busybox@sha256:abc", Ref{}, "", true},
		{"busybox@md5:" + hex64, Ref{}, "", true},
		{hex64, Ref{}, "", true},
		{"busybox:.bad", Ref{}, "", true},
		{"busybox:x y", Ref{}, "", true},
		{"docker.io/library/library/x", Ref{Name: "docker.io/library/library/x", Repo: "library/library/x", Tag: "", Digest: ""}, "library/library/x:latest", false},
		{"docker.io/library", Ref{Name: "docker.io/library/library", Repo: "library", Tag: "", Digest: ""}, "library:latest", false},
		{"[::1]:5000/app:1", Ref{Name: "[::1]:5000/app", Repo: "[::1]:5000/app", Tag: "1", Digest: ""}, "[::1]:5000/app:1", false},
		{"reg.example/UPPER", Ref{}, "", true},
		{"busybox:-t", Ref{}, "", true},
	} {
		got, err := ParseRef(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error, got %+v", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
		}
		if f := got.OrLatest().String(); f != tc.familiar {
			t.Errorf("%q: familiar %q, want %q", tc.in, f, tc.familiar)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
