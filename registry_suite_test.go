package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"
)

// suiteRelease is one release a backend under test must hold.
type suiteRelease struct {
	Tag        string
	Prerelease bool
	Files      map[string][]byte
}

// suiteCase is one selection and the tag it must pick ("" for none).
type suiteCase struct {
	name string
	opt  selectOptions
	want string
}

// suitePublish creates exactly rels in a fresh, empty backend and returns a
// registry over it and the artifact store that opens its asset URLs.
type suitePublish func(t *testing.T, rels []suiteRelease) (registry, artifactStore)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// suiteList publishes rels into a fresh backend and returns what it lists,
// which must be every release.
func suiteList(ctx context.Context, t *testing.T, publish suitePublish, rels []suiteRelease) ([]release, artifactStore) {
	t.Helper()
	reg, store := publish(t, rels)
	got, err := reg.releases(ctx)
	if err != nil {
		t.Fatalf("releases: %v", err)
	}
	if len(got) != len(rels) {
		t.Fatalf("releases returned %d releases, want %d", len(got), len(rels))
	}
	return got, store
}

// runRegistrySuite is the behaviour every registry and artifact store must
// show. Selection happens in the core; the suite checks that what a backend
// reports lets the core choose right.
func runRegistrySuite(t *testing.T, publish suitePublish) {
	linux := []byte("linux amd64 artifact bytes")
	darwin := []byte("darwin arm64 artifact bytes")
	site := []byte("static site: the same bytes for every host")
	files := func(tag string) map[string][]byte {
		l := append([]byte(tag+" "), linux...)
		// goreleaser leaves build metadata (the slot) out of asset names.
		v, _, _ := strings.Cut(strings.TrimPrefix(tag, "v"), "+")
		return map[string][]byte{
			"app_" + v + "_linux_amd64.tar.gz":  l,
			"app_" + v + "_darwin_arm64.tar.gz": darwin,
			"checksums.txt": []byte(fmt.Sprintf("%s  app_%s_linux_amd64.tar.gz\n%s  app_%s_darwin_arm64.tar.gz\n",
				sha256Hex(l), v, sha256Hex(darwin), v)),
		}
	}
	rels := []suiteRelease{
		{Tag: "v1.0.0", Files: files("v1.0.0")},
		{Tag: "v1.2.0", Files: files("v1.2.0")},
		{Tag: "1.9.0", Files: files("1.9.0")},
		{Tag: "v1.10.0", Files: files("v1.10.0")},
		{Tag: "v2.0.0-rc.1", Prerelease: true, Files: files("v2.0.0-rc.1")},
		{Tag: "latest", Files: map[string][]byte{"notes.md": []byte("junk tag")}},
		{Tag: "v0.9.0", Files: map[string][]byte{"site.tar.gz": site, "checksums.txt": []byte(sha256Hex(site) + "  site.tar.gz\n")}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, store := suiteList(ctx, t, publish, rels)
	byTag := map[string]release{}
	for _, r := range got {
		byTag[r.Tag] = r
	}

	t.Run("newest", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			opt  selectOptions
			want string
		}{
			{"stable", selectOptions{}, "v1.10.0"},
			{"pre-release", selectOptions{PreRelease: true}, "v2.0.0-rc.1"},
			{"track v1", selectOptions{Track: "v1"}, "v1.10.0"},
			{"track v1.2", selectOptions{Track: "v1.2"}, "v1.2.0"},
			{"track without v prefix in tag", selectOptions{Track: "v1.9"}, "1.9.0"},
		} {
			rel, _, ok := newest(got, tc.opt, discardLogger())
			if !ok || rel.Tag != tc.want {
				t.Errorf("%s: newest = %q (ok=%v), want %q", tc.name, rel.Tag, ok, tc.want)
			}
		}
	})

	t.Run("artifact and checksum", func(t *testing.T) {
		rel := byTag["v1.10.0"]
		if len(rel.Assets) != 3 {
			t.Fatalf("v1.10.0 has %d assets (%s), want 3", len(rel.Assets), assetNames(rel.Assets))
		}
		a, err := pickAsset(rel, selectOptions{GOOS: "linux", GOARCH: "amd64"})
		if err != nil {
			t.Fatalf("pickAsset: %v", err)
		}
		if a.Name != "app_1.10.0_linux_amd64.tar.gz" {
			t.Fatalf("pickAsset = %q, want app_1.10.0_linux_amd64.tar.gz", a.Name)
		}
		want := files("v1.10.0")[a.Name]
		u, err := url.Parse(a.URL)
		if err != nil {
			t.Fatalf("asset URL %q: %v", a.URL, err)
		}
		p, sum, size, err := download(ctx, store, u, t.TempDir(), discardLogger())
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if size != int64(len(want)) || sum != sha256Hex(want) {
			t.Fatalf("download = %d bytes sha256 %s, want %d bytes sha256 %s", size, sum, len(want), sha256Hex(want))
		}
		// A digest the registry keeps itself must be the one of the bytes it serves.
		if a.SHA256 != "" && a.SHA256 != sum {
			t.Fatalf("asset digest from %s = %s, want %s", a.SHA256From, a.SHA256, sum)
		}
		if cs, ok := store.(checksummer); ok {
			oc, err := cs.checksum(ctx, u)
			if err != nil {
				t.Fatalf("checksum: %v", err)
			}
			if oc.SHA256 != "" && oc.SHA256 != sum {
				t.Fatalf("checksum from %s = %s, want %s", oc.From, oc.SHA256, sum)
			}
			if oc.Algo != "" {
				if err := oc.check(p, a.Name); err != nil {
					t.Fatal(err)
				}
			}
		}
		storeFor := func(*url.URL) (artifactStore, error) { return store, nil }
		digest, from, err := expectedDigest(ctx, storeFor, checksumAssets(rel, a.Name), a.Name)
		if err != nil || digest != sum || from != "checksums.txt" {
			t.Fatalf("expectedDigest = %q from %q, %v; want %q from checksums.txt", digest, from, err, sum)
		}
	})

	t.Run("platform-neutral artifact", func(t *testing.T) {
		rel := byTag["v0.9.0"]
		for _, host := range []selectOptions{{GOOS: "linux", GOARCH: "amd64"}, {GOOS: "darwin", GOARCH: "arm64"}, {GOOS: "windows", GOARCH: "386"}} {
			a, err := pickAsset(rel, host)
			if err != nil || a.Name != "site.tar.gz" {
				t.Fatalf("pickAsset on %s/%s = %q, %v; want site.tar.gz", host.GOOS, host.GOARCH, a.Name, err)
			}
		}
		a, _ := pickAsset(rel, selectOptions{GOOS: "linux", GOARCH: "amd64"})
		u, err := url.Parse(a.URL)
		if err != nil {
			t.Fatalf("asset URL %q: %v", a.URL, err)
		}
		_, sum, _, err := download(ctx, store, u, t.TempDir(), discardLogger())
		if err != nil || sum != sha256Hex(site) {
			t.Fatalf("download = sha256 %s, %v; want %s", sum, err, sha256Hex(site))
		}
	})

	t.Run("open from offset", func(t *testing.T) {
		a, _ := pickAsset(byTag["v1.0.0"], selectOptions{GOOS: "linux", GOARCH: "amd64"})
		u, _ := url.Parse(a.URL)
		body, total, err := store.open(ctx, u, 7)
		if err != nil {
			t.Fatalf("open at offset: %v", err)
		}
		defer body.Close()
		b, err := io.ReadAll(body)
		want := files("v1.0.0")[a.Name]
		if err != nil || string(b) != string(want[7:]) {
			t.Fatalf("open at 7 read %q, %v; want %q", b, err, want[7:])
		}
		if total != -1 && total != int64(len(want)) {
			t.Fatalf("open total = %d, want %d", total, len(want))
		}
	})

	t.Run("missing object", func(t *testing.T) {
		a, _ := pickAsset(byTag["v1.0.0"], selectOptions{GOOS: "linux", GOARCH: "amd64"})
		u, _ := url.Parse(a.URL)
		u.Path = path.Join(path.Dir(u.Path), "missing-"+path.Base(u.Path))
		u.RawPath = ""
		q := u.Query()
		q.Del("id")
		u.RawQuery = q.Encode()
		_, _, err := store.open(ctx, u, 0)
		if !errors.Is(err, errNotFound) {
			t.Fatalf("open missing object: err = %v, want errNotFound", err)
		}
		if !strings.Contains(err.Error(), "missing-") {
			t.Fatalf("open missing object: error %q does not name the object", err)
		}
	})

	// newestOf publishes tags into a fresh backend and checks what each
	// selection picks from what the backend lists; "" means nothing.
	newestOf := func(t *testing.T, published []suiteRelease, cases []suiteCase) ([]release, artifactStore) {
		t.Helper()
		got, store := suiteList(ctx, t, publish, published)
		for _, tc := range cases {
			rel, _, ok := newest(got, tc.opt, discardLogger())
			if !ok {
				rel.Tag = ""
			}
			if rel.Tag != tc.want {
				t.Errorf("%s: newest = %q, want %q", tc.name, rel.Tag, tc.want)
			}
		}
		return got, store
	}

	t.Run("slots", func(t *testing.T) {
		slotted := []suiteRelease{
			{Tag: "v1.0.0+blue", Files: files("v1.0.0+blue")},
			{Tag: "v1.1.0+green", Files: files("v1.1.0+green")},
			{Tag: "v1.1.0", Files: files("v1.1.0")},
			{Tag: "v1.2.0-rc.1+blue", Prerelease: true, Files: files("v1.2.0-rc.1+blue")},
			{Tag: "v2.0.0+green", Files: files("v2.0.0+green")},
		}
		got, store := newestOf(t, slotted, []suiteCase{
			{"no slot", selectOptions{}, "v2.0.0+green"},
			{"blue", selectOptions{Slot: "blue"}, "v1.0.0+blue"},
			{"blue with pre-releases", selectOptions{Slot: "blue", PreRelease: true}, "v1.2.0-rc.1+blue"},
			{"green", selectOptions{Slot: "green"}, "v2.0.0+green"},
			{"green on track v1", selectOptions{Slot: "green", Track: "v1"}, "v1.1.0+green"},
			{"a slot nobody publishes", selectOptions{Slot: "red"}, ""},
		})
		// A '+' in the tag must survive the backend's paths and URLs.
		for _, r := range got {
			if r.Tag != "v1.0.0+blue" {
				continue
			}
			a, err := pickAsset(r, selectOptions{GOOS: "linux", GOARCH: "amd64"})
			if err != nil {
				t.Fatalf("pickAsset: %v", err)
			}
			u, err := url.Parse(a.URL)
			if err != nil {
				t.Fatalf("asset URL %q: %v", a.URL, err)
			}
			_, sum, _, err := download(ctx, store, u, t.TempDir(), discardLogger())
			if want := sha256Hex(files("v1.0.0+blue")[a.Name]); err != nil || sum != want {
				t.Fatalf("download %s = sha256 %s, %v; want %s", a.URL, sum, err, want)
			}
		}
	})

	t.Run("calver", func(t *testing.T) {
		f, err := parseCalverFormat("YYYY.0M.0D.MICRO")
		if err != nil {
			t.Fatal(err)
		}
		dated := []suiteRelease{
			{Tag: "2024.01.15.0", Files: files("2024.01.15.0")},
			{Tag: "2024.01.15.1", Files: files("2024.01.15.1")},
			{Tag: "v2024.02.01.0", Files: files("v2024.02.01.0")},
			{Tag: "2024.09.30.2+blue", Files: files("2024.09.30.2+blue")},
			{Tag: "2024.10.01.0-rc.1", Prerelease: true, Files: files("2024.10.01.0-rc.1")},
			{Tag: "v9.9.9", Files: files("v9.9.9")},
			{Tag: "2024.1.5.0", Files: files("2024.1.5.0")},
		}
		newestOf(t, dated, []suiteCase{
			{"stable", selectOptions{CalVer: f}, "2024.09.30.2+blue"},
			{"pre-release", selectOptions{CalVer: f, PreRelease: true}, "2024.10.01.0-rc.1"},
			{"slot", selectOptions{CalVer: f, Slot: "blue"}, "2024.09.30.2+blue"},
			{"track of a month", selectOptions{CalVer: f, Track: "v2024.1"}, "2024.01.15.1"},
			{"track with v prefix in tag", selectOptions{CalVer: f, Track: "v2024.2"}, "v2024.02.01.0"},
			{"semver without --calver", selectOptions{}, "v9.9.9"},
		})
	})

	t.Run("empty registry", func(t *testing.T) {
		reg, _ := publish(t, nil)
		got, err := reg.releases(ctx)
		if err != nil || len(got) != 0 {
			t.Fatalf("releases on empty registry = %d releases, %v; want none, no error", len(got), err)
		}
	})
}
