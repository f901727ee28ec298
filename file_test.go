package main

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// publishDir writes rels into dir the way an operator lays out a file:// registry.
func publishDir(t *testing.T, dir string, rels []suiteRelease) {
	t.Helper()
	for _, r := range rels {
		for name, b := range r.Files {
			p := filepath.Join(dir, r.Tag, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// settledFileRegistry is a file:// registry that offers releases as soon
// as they are written, for tests about something other than settling.
func settledFileRegistry(t *testing.T, dir string) *fileRegistry {
	t.Helper()
	r, err := newFileRegistry(&url.URL{Scheme: "file", Path: dir, RawQuery: "settle=0s"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFileRegistrySuite(t *testing.T) {
	runRegistrySuite(t, func(t *testing.T, rels []suiteRelease) (registry, artifactStore) {
		dir := t.TempDir()
		publishDir(t, dir, rels)
		r := settledFileRegistry(t, dir)
		return r, r
	})
}

func TestFileRegistryErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"file://relative/dir", `host "relative" not supported`},
		{"file:///srv/rel?x=1", `unknown option "x"`},
		{"file:", "want an absolute path"},
		{"file:///srv/rel?settle=soon", `settle="soon": want a duration`},
		{"file:///srv/rel?settle=-1s", `settle="-1s": want a duration`},
	} {
		u, _ := url.Parse(tc.in)
		_, err := newFileRegistry(u)
		if err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("newFileRegistry(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
	r, _ := newFileRegistry(&url.URL{Scheme: "file", Path: "/nonexistent/dewy-test"})
	if _, err := r.releases(t.Context()); !errors.Is(err, errNotFound) {
		t.Errorf("releases on missing dir: %v, want errNotFound", err)
	}
}
