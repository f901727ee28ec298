package main

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
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
			// As if copied in a while ago: the registry waits for fresh files to settle.
			old := time.Now().Add(-time.Minute)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestFileRegistrySuite(t *testing.T) {
	runRegistrySuite(t, func(t *testing.T, rels []suiteRelease) (registry, artifactStore) {
		dir := t.TempDir()
		publishDir(t, dir, rels)
		r, err := newFileRegistry(&url.URL{Scheme: "file", Path: dir})
		if err != nil {
			t.Fatal(err)
		}
		return r, r
	})
}

func TestFileRegistryErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"file://relative/dir", `host "relative" not supported`},
		{"file:///srv/rel?x=1", `unknown option "x"`},
		{"file:", "want an absolute path"},
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

func TestFileRegistrySkipsReleasesBeingCopied(t *testing.T) {
	dir := t.TempDir()
	publishDir(t, dir, []suiteRelease{{Tag: "v1.0.0", Files: map[string][]byte{"a_linux_amd64": []byte("x")}}})
	if err := os.MkdirAll(filepath.Join(dir, "v2.0.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "v2.0.0", "a_linux_amd64"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	publishDir(t, dir, []suiteRelease{{Tag: ".v3.0.0.partial", Files: map[string][]byte{"a_linux_amd64": []byte("x")}}})
	r, _ := newFileRegistry(&url.URL{Scheme: "file", Path: dir})
	got, err := r.releases(t.Context())
	if err != nil || len(got) != 1 || got[0].Tag != "v1.0.0" {
		t.Fatalf("releases = %v, %v; want only v1.0.0 (v2.0.0 is still being written, .v3.0.0.partial is hidden)", got, err)
	}
	r.now = func() time.Time { return time.Now().Add(time.Minute) }
	if got, _ := r.releases(t.Context()); len(got) != 2 {
		t.Fatalf("after settling: %d releases, want 2", len(got))
	}
}
