package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBucketLayoutGroupsKeys(t *testing.T) {
	locate := func(key string) string { return "x://b/" + key }
	o := newObjectReleases("app/", locate)
	for _, key := range []string{
		"app/",                           // marker of the prefix itself
		"app/notes.txt",                  // loose file beside the tags
		"app/v1.0.0/",                    // folder marker: an empty release
		"app/v1.1.0/a.tar.gz",            //
		"app/v1.1.0/deployed/host.json",  // deployment report
		"app/v1.1.0/deployed/",           // its folder marker
		"app/v1.1.0/sub/b.tar.gz",        // sub-folder
		"app/v1.1.0/deployed",            // a file, not the folder
		"app/v2.0.0/deployed/host.json",  // reports alone make no release
		"app2/v9.0.0/c.tar.gz",           // outside the prefix
		"other/app/v1.1.0/d.tar.gz",      // outside the prefix
		"app//e.tar.gz",                  // empty tag
		"app/v1.1.0/checksums.txt",       //
		"app/v1.0.0/../../evil/x.tar.gz", // sub-folder as far as a bucket knows
		"app/v1.1.0/..",                  // not a file name
		"app/../x.tar.gz",                // not a tag
	} {
		o.add(key, int64(len(key)))
	}
	got := map[string][]string{}
	for _, r := range o.releases() {
		names := []string{}
		for _, a := range r.Assets {
			names = append(names, a.Name)
			key := "app/" + r.Tag + "/" + a.Name
			if a.URL != locate(key) || a.Size != int64(len(key)) {
				t.Errorf("asset %s of %s: URL %q size %d, want %q size %d", a.Name, r.Tag, a.URL, a.Size, locate(key), len(key))
			}
		}
		got[r.Tag] = names
	}
	want := map[string][]string{
		"v1.0.0": {},
		"v1.1.0": {"a.tar.gz", "deployed", "checksums.txt"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("releases = %v, want %v", got, want)
	}
	if got, want := o.releases()[1].ID, "x://b/app/v1.1.0/"; got != want {
		t.Errorf("release ID = %q, want %q", got, want)
	}
	if rels := newObjectReleases("", locate).releases(); rels == nil || len(rels) != 0 {
		t.Errorf("releases of an empty listing = %#v, want an empty slice", rels)
	}
}

func TestBucketLayoutCleanPrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""}, {"/", ""}, {"app", "app/"}, {"/app/", "app/"}, {"//a/b//", "a/b/"},
	} {
		if got := cleanPrefix(tc.in); got != tc.want {
			t.Errorf("cleanPrefix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// bucketRegistry is what the S3 and GCS backends have in common.
type bucketRegistry interface {
	registry
	artifactStore
	objectURL(key string) string
}

// bucketFixture is one fresh bucket on a real object store, for the tests
// below that every object-store backend must pass.
type bucketFixture struct {
	bucket string
	put    func(t *testing.T, objects map[string][]byte)
	open   func(t *testing.T, bucket, prefix string) bucketRegistry
}

func testBucketManyReleases(t *testing.T, f bucketFixture, n int) {
	objects := map[string][]byte{}
	for i := range n {
		tag := fmt.Sprintf("v1.0.%d", i)
		objects["app/"+tag+"/app.tar.gz"] = []byte(tag)
	}
	for i := 0; i < n; i += 10 {
		objects[fmt.Sprintf("app/v1.0.%d/deployed/host-a.json", i)] = []byte("{}")
	}
	start := time.Now()
	f.put(t, objects)
	t.Logf("uploaded %d objects in %v", len(objects), time.Since(start).Round(time.Millisecond))

	start = time.Now()
	rels, err := f.open(t, f.bucket, "app").releases(t.Context())
	if err != nil {
		t.Fatalf("releases: %v", err)
	}
	t.Logf("listed %d releases in %v", len(rels), time.Since(start).Round(time.Millisecond))
	if len(rels) != n {
		t.Fatalf("releases returned %d releases, want %d", len(rels), n)
	}
	seen := map[string]bool{}
	for _, rel := range rels {
		seen[rel.Tag] = true
		if len(rel.Assets) != 1 || rel.Assets[0].Name != "app.tar.gz" || rel.Assets[0].Size != int64(len(rel.Tag)) {
			t.Fatalf("release %s assets = %+v, want one app.tar.gz of %d bytes", rel.Tag, rel.Assets, len(rel.Tag))
		}
	}
	for _, tag := range []string{"v1.0.0", "v1.0.999", "v1.0.1000", fmt.Sprintf("v1.0.%d", n-1)} {
		if !seen[tag] {
			t.Errorf("release %s missing from the listing", tag)
		}
	}
}

func testBucketPrefix(t *testing.T, f bucketFixture) {
	f.put(t, map[string][]byte{
		"v0.1.0/root.tar.gz":         []byte("root"),
		"README.md":                  []byte("loose file beside the tags"),
		"app/v1.0.0/app.tar.gz":      []byte("app"),
		"app/notes.txt":              []byte("loose file beside the tags"),
		"app2/v9.0.0/app2.tar.gz":    []byte("sibling whose name starts like the prefix"),
		"team/app/v2.0.0/app.tar.gz": []byte("nested"),
	})
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		// Only folders with files of their own are releases: app has
		// notes.txt; app2 and team hold nothing but sub-folders.
		{"", []string{"app", "v0.1.0"}},
		{"app", []string{"v1.0.0"}},
		{"app/", []string{"v1.0.0"}},
		{"/app//", []string{"v1.0.0"}},
		{"team/app", []string{"v2.0.0"}},
		{"nothing-here", []string{}},
	} {
		rels, err := f.open(t, f.bucket, tc.prefix).releases(t.Context())
		if err != nil {
			t.Fatalf("prefix %q: releases: %v", tc.prefix, err)
		}
		got := []string{}
		for _, r := range rels {
			got = append(got, r.Tag)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("prefix %q: tags = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

func testBucketDeployedReports(t *testing.T, f bucketFixture) {
	f.put(t, map[string][]byte{
		"app/v1.0.0/app.tar.gz":                []byte("artifact"),
		"app/v1.0.0/checksums.txt":             []byte("sums"),
		"app/v1.0.0/deployed/host-a.json":      []byte("{}"),
		"app/v1.0.0/deployed/2026/host-b.json": []byte("{}"),
		"app/v2.0.0/deployed/host-a.json":      []byte("a report left after the artifact was removed"),
		"app/v3.0.0/extra/not-an-asset.tar.gz": []byte("sub-folders are not assets"),
		"app/v3.0.0/app.tar.gz":                []byte("artifact"),
		"app/v3.0.0/deployed.txt":              []byte("a file named like the folder is an asset"),
		"app/v3.0.0/deployed/host-a.json":      []byte("{}"),
	})
	rels, err := f.open(t, f.bucket, "app").releases(t.Context())
	if err != nil {
		t.Fatalf("releases: %v", err)
	}
	got := map[string][]string{}
	for _, r := range rels {
		var names []string
		for _, a := range r.Assets {
			names = append(names, a.Name)
		}
		slices.Sort(names)
		got[r.Tag] = names
	}
	want := map[string][]string{
		"v1.0.0": {"app.tar.gz", "checksums.txt"},
		"v3.0.0": {"app.tar.gz", "deployed.txt"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("releases = %v, want %v", got, want)
	}
}

func testBucketNotFound(t *testing.T, f bucketFixture) {
	f.put(t, map[string][]byte{"app/v1.0.0/app.tar.gz": []byte("artifact")})
	r := f.open(t, f.bucket, "app")

	missing, _ := url.Parse(r.objectURL("app/v1.0.0/missing.tar.gz"))
	_, _, err := r.open(t.Context(), missing, 0)
	if want := f.bucket + "/app/v1.0.0/missing.tar.gz"; !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), want) {
		t.Errorf("open missing key: err = %v, want errNotFound naming %s", err, want)
	}

	gone := f.bucket + "-gone"
	_, err = f.open(t, gone, "app").releases(t.Context())
	if !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), gone) {
		t.Errorf("list missing bucket: err = %v, want errNotFound naming %s", err, gone)
	}
	_, _, err = f.open(t, gone, "app").open(t.Context(), missing, 0)
	if !errors.Is(err, errNotFound) {
		t.Errorf("open in missing bucket: err = %v, want errNotFound", err)
	}
}

func testBucketOpenRange(t *testing.T, f bucketFixture) {
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(i)
	}
	f.put(t, map[string][]byte{"app/v1.0.0/app.bin": data})
	r := f.open(t, f.bucket, "app")
	u, _ := url.Parse(r.objectURL("app/v1.0.0/app.bin"))
	for _, offset := range []int64{0, 1, 50, 99} {
		body, total, err := r.open(t.Context(), u, offset)
		if err != nil {
			t.Fatalf("open at %d: %v", offset, err)
		}
		got, err := io.ReadAll(body)
		body.Close()
		if err != nil || !bytes.Equal(got, data[offset:]) {
			t.Errorf("open at %d read %d bytes (%v), want %d bytes from offset %d", offset, len(got), err, len(data)-int(offset), offset)
		}
		if total != int64(len(data)) {
			t.Errorf("open at %d: total = %d, want %d", offset, total, len(data))
		}
	}
	if body, _, err := r.open(t.Context(), u, 101); err == nil {
		body.Close()
		t.Errorf("open beyond the end: err = nil, want an error")
	}
}

// bucketURLCase is one URL form a bucket registry takes or refuses.
type bucketURLCase struct {
	in      string
	wantErr string // "" for a good URL
	bucket  string
	prefix  string
	asset   string // the URL of "<prefix>x.tar.gz"
}

// checkBucketURLForms builds a registry from each case's URL with open,
// named name in messages, and checks what it made of it. A refusal must
// not repeat the secret "topsecret".
func checkBucketURLForms(t *testing.T, name string, cases []bucketURLCase, open func(*url.URL) (bucket, prefix, asset string, err error)) {
	t.Helper()
	for _, tc := range cases {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.in, err)
		}
		bucket, prefix, asset, err := open(u)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s(%q) err = %v, want one containing %q", name, tc.in, err, tc.wantErr)
		case tc.wantErr != "" && strings.Contains(err.Error(), "topsecret"):
			t.Errorf("%s(%q) err = %q repeats the secret", name, tc.in, err)
		case tc.wantErr != "":
		case err != nil:
			t.Errorf("%s(%q): %v", name, tc.in, err)
		case bucket != tc.bucket || prefix != tc.prefix:
			t.Errorf("%s(%q) bucket, prefix = %q, %q; want %q, %q", name, tc.in, bucket, prefix, tc.bucket, tc.prefix)
		case asset != tc.asset:
			t.Errorf("%s(%q) asset URL = %q, want %q", name, tc.in, asset, tc.asset)
		}
	}
}
