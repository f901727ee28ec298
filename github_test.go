package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestGitHubRegistrySuite(t *testing.T) {
	runRegistrySuite(t, func(t *testing.T, rels []suiteRelease) (registry, artifactStore) {
		f := newFakeGitHub(t, "suite-token-1234")
		for _, r := range rels {
			f.addRelease(r.Tag, r.Prerelease, false, r.Files)
		}
		g := f.newRegistry(t)
		return g, g
	})
}

func TestGitHubReleasesPaginates(t *testing.T) {
	f := newFakeGitHub(t, "tok-paginate")
	drafts, pre := map[string]bool{}, map[string]bool{}
	for i := 1; i <= 250; i++ {
		tag := fmt.Sprintf("v1.0.%d", i)
		draft, prerelease := i%50 == 0, i%7 == 0
		if draft {
			drafts[tag] = true
		}
		if prerelease {
			pre[tag] = true
		}
		f.addRelease(tag, prerelease, draft, map[string][]byte{"app_linux_amd64.tar.gz": []byte(tag)})
	}
	got, err := f.newRegistry(t).releases(t.Context())
	if err != nil {
		t.Fatalf("releases: %v", err)
	}
	if want := 250 - len(drafts); len(got) != want {
		t.Fatalf("releases returned %d releases, want %d", len(got), want)
	}
	if n := f.Listings.Load(); n != 3 {
		t.Errorf("listing pages fetched = %d, want 3", n)
	}
	seen := map[string]bool{}
	for _, r := range got {
		if drafts[r.Tag] {
			t.Errorf("draft %s listed", r.Tag)
		}
		if seen[r.Tag] {
			t.Errorf("%s listed twice", r.Tag)
		}
		seen[r.Tag] = true
		if r.Prerelease != pre[r.Tag] {
			t.Errorf("%s Prerelease = %v, want %v", r.Tag, r.Prerelease, pre[r.Tag])
		}
		if r.ID == "" {
			t.Errorf("%s has no ID", r.Tag)
		}
		if len(r.Assets) != 1 {
			t.Fatalf("%s has %d assets, want 1", r.Tag, len(r.Assets))
		}
		a := r.Assets[0]
		prefix := "ghr://dewy-test/app/tag/" + r.Tag + "/app_linux_amd64.tar.gz?id="
		if a.Name != "app_linux_amd64.tar.gz" || !strings.HasPrefix(a.URL, prefix) || a.Size != int64(len(r.Tag)) {
			t.Errorf("%s asset = %+v, want name app_linux_amd64.tar.gz, URL %s..., size %d", r.Tag, a, prefix, len(r.Tag))
		}
	}
	h := f.lastAPIHeader()
	for k, want := range map[string]string{
		"Accept":               "application/vnd.github+json",
		"X-Github-Api-Version": "2022-11-28",
		"User-Agent":           "dewy",
		"Authorization":        "Bearer tok-paginate",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("request header %s = %q, want %q", k, got, want)
		}
	}
}

func TestGitHubReleasesEmptyPublicRepo(t *testing.T) {
	f := newFakeGitHub(t, "")
	got, err := f.newRegistry(t).releases(t.Context())
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("releases = %#v, %v; want empty non-nil slice, no error", got, err)
	}
	if h := f.lastAPIHeader().Get("Authorization"); h != "" {
		t.Errorf("Authorization = %q without a token, want none", h)
	}
}

func TestGitHubDownloadKeepsTokenOffAssetHost(t *testing.T) {
	const token = "tok-download-5678"
	f := newFakeGitHub(t, token)
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	f.addRelease("v1.2.3+build.7", false, false, map[string][]byte{"my app.tar.gz": data})
	var logs bytes.Buffer
	g, err := newGitHubRegistry(f.ghrURL(), f.env(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	rels, err := g.releases(t.Context())
	if err != nil || len(rels) != 1 || len(rels[0].Assets) != 1 {
		t.Fatalf("releases = %+v, %v; want one release with one asset", rels, err)
	}
	withID, err := url.Parse(rels[0].Assets[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	withoutID, err := url.Parse("ghr://dewy-test/app/tag/" + url.PathEscape("v1.2.3+build.7") + "/my%20app.tar.gz")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		u         *url.URL
		offset    int64
		wantTotal int64
	}{
		{"by id", withID, 0, int64(len(data))},
		{"by tag and name", withoutID, 0, int64(len(data))},
		{"resume", withID, 40000, int64(len(data))},
		{"resume at end", withID, int64(len(data)), int64(len(data))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, total, err := g.open(t.Context(), tc.u, tc.offset)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, data[tc.offset:]) {
				t.Errorf("read %d bytes, want the %d bytes from offset %d", len(got), len(data)-int(tc.offset), tc.offset)
			}
			if total != tc.wantTotal {
				t.Errorf("total = %d, want %d", total, tc.wantTotal)
			}
		})
	}
	if n := f.AssetRequests.Load(); n < 3 {
		t.Errorf("asset host requests = %d, want at least 3 (downloads must come from the storage host)", n)
	}
	if n := f.AssetAuthorized.Load(); n != 0 {
		t.Errorf("asset host saw Authorization on %d requests, want 0", n)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("log contains the token:\n%s", logs.String())
	}

	missing, _ := url.Parse("ghr://dewy-test/app/tag/v1.2.3%2Bbuild.7/other.tar.gz")
	_, _, err = g.open(t.Context(), missing, 0)
	if !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), "v1.2.3+build.7") || !strings.Contains(err.Error(), "other.tar.gz") {
		t.Errorf("open missing asset: err = %v, want errNotFound naming tag and asset", err)
	}
	noTag, _ := url.Parse("ghr://dewy-test/app/tag/v9.9.9/my%20app.tar.gz")
	if _, _, err = g.open(t.Context(), noTag, 0); !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), "v9.9.9") {
		t.Errorf("open asset of missing release: err = %v, want errNotFound naming the tag", err)
	}
	staleID, _ := url.Parse("ghr://dewy-test/app/tag/v1.2.3/gone.tar.gz?id=999999")
	if _, _, err = g.open(t.Context(), staleID, 0); !errors.Is(err, errNotFound) {
		t.Errorf("open unknown asset id: err = %v, want errNotFound", err)
	}
}

// A storage host that ignores Range still yields the bytes from the offset.
func TestGitHubDownloadServerIgnoresRange(t *testing.T) {
	data := []byte("the whole object, every time")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	g := newGitHubTestRegistry(t, srv.URL, "")
	u, _ := url.Parse("ghr://o/r/tag/v1/a.bin?id=5")
	body, total, err := g.open(t.Context(), u, 4)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer body.Close()
	got, _ := io.ReadAll(body)
	if string(got) != string(data[4:]) || total != int64(len(data)) {
		t.Errorf("open at 4 = %q, total %d; want %q, total %d", got, total, data[4:], len(data))
	}
}

func TestGitHubIdleReleasesUseETag(t *testing.T) {
	f := newFakeGitHub(t, "tok-idle")
	f.addRelease("v1.0.0", false, false, map[string][]byte{"a.tar.gz": []byte("a")})
	g := f.newRegistry(t)
	for i := range 100 {
		got, err := g.releases(t.Context())
		if err != nil || len(got) != 1 || got[0].Tag != "v1.0.0" {
			t.Fatalf("call %d: releases = %+v, %v; want v1.0.0", i, got, err)
		}
		got[0].Assets[0].Name = "mutated by caller"
	}
	if n := f.Listings.Load(); n > 1 {
		t.Errorf("full listings = %d after 100 idle calls, want at most 1", n)
	}
	if n := f.NotModified.Load(); n != 99 {
		t.Errorf("304 answers = %d, want 99", n)
	}

	f.addRelease("v1.1.0", false, false, nil)
	got, err := g.releases(t.Context())
	if err != nil || len(got) != 2 {
		t.Fatalf("after publishing v1.1.0: releases = %+v, %v; want 2 releases", got, err)
	}
	for _, r := range got {
		if r.Tag == "v1.0.0" && r.Assets[0].Name != "a.tar.gz" {
			t.Errorf("cached asset name = %q, want a.tar.gz (callers must not alter the cache)", r.Assets[0].Name)
		}
	}
	if n := f.Listings.Load(); n != 2 {
		t.Errorf("full listings = %d after a new release, want 2", n)
	}
}

func TestGitHubRateLimit(t *testing.T) {
	reset := time.Now().Add(17 * time.Minute).Truncate(time.Second)
	for _, tc := range []struct {
		name         string
		fail         func(f *fakeGitHub)
		wantMin      time.Time
		wantMax      time.Time
		wantInErrMsg string
	}{
		{"primary 403", func(f *fakeGitHub) { f.rateLimitNext(1, reset) }, reset, reset, "HTTP 403"},
		{"secondary 429", func(f *fakeGitHub) { f.throttleNext(1, 90*time.Second) }, time.Now().Add(90 * time.Second), time.Now().Add(91 * time.Second), "HTTP 429"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGitHub(t, "tok-rate")
			f.addRelease("v1.0.0", false, false, nil)
			g := f.newRegistry(t)
			tc.fail(f)
			_, err := g.releases(t.Context())
			var ra *retryAfterError
			if !errors.As(err, &ra) {
				t.Fatalf("releases: err = %v, want *retryAfterError", err)
			}
			if ra.Until.Before(tc.wantMin) || ra.Until.After(tc.wantMax) {
				t.Errorf("Until = %v, want between %v and %v", ra.Until, tc.wantMin, tc.wantMax)
			}
			if !strings.Contains(err.Error(), tc.wantInErrMsg) || !strings.Contains(err.Error(), "dewy-test/app") {
				t.Errorf("error %q does not name the repository and %s", err, tc.wantInErrMsg)
			}
			if n := f.APIRequests.Load(); n != 1 {
				t.Errorf("API requests = %d, want 1 (the core owns retries)", n)
			}
			if got, err := g.releases(t.Context()); err != nil || len(got) != 1 {
				t.Errorf("releases after the limit lifted = %+v, %v; want v1.0.0", got, err)
			}
		})
	}
}

// Once the anonymous hourly limit is gone, GitHub answers 403 with
// X-RateLimit-Remaining: 0; that is a wait, not a denied credential.
func TestGitHubAnonymousLimitExhausted(t *testing.T) {
	f := newFakeGitHub(t, "")
	g := f.newRegistry(t)
	var err error
	for i := 0; i < 61 && err == nil; i++ {
		_, err = g.releases(t.Context())
	}
	var ra *retryAfterError
	if !errors.As(err, &ra) || errors.Is(err, errAccessDenied) {
		t.Fatalf("61st anonymous call: err = %v, want *retryAfterError", err)
	}
	if n := f.APIRequests.Load(); n != 61 {
		t.Errorf("API requests = %d, want 61", n)
	}
}

func TestGitHubAccessErrors(t *testing.T) {
	const token = "ghp_correctTokenValue"
	for _, tc := range []struct {
		name    string
		token   string // what dewy sends
		repo    string
		want    error
		wantMsg string
	}{
		{"wrong token", "ghp_wrongTokenValue", "app", errAccessDenied, "HTTP 401: Bad credentials"},
		{"missing repo", token, "nope", errNotFound, "dewy-test/nope"},
		{"private repo without token", "", "app", errNotFound, "GITHUB_TOKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGitHub(t, token)
			f.addRelease("v1.0.0", false, false, map[string][]byte{"a": []byte("a")})
			env := func(k string) string {
				if k == "GITHUB_TOKEN" {
					return tc.token
				}
				return f.env()(k)
			}
			g, err := newGitHubRegistry(&url.URL{Scheme: "ghr", Host: "dewy-test", Path: "/" + tc.repo}, env, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = g.releases(t.Context())
			if !errors.Is(err, tc.want) {
				t.Fatalf("releases: err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
			u, _ := url.Parse("ghr://dewy-test/" + tc.repo + "/tag/v1.0.0/a")
			_, _, openErr := g.open(t.Context(), u, 0)
			if !errors.Is(openErr, tc.want) {
				t.Errorf("open: err = %v, want %v", openErr, tc.want)
			}
			for _, e := range []error{err, openErr} {
				if e != nil && (strings.Contains(e.Error(), token) || tc.token != "" && strings.Contains(e.Error(), tc.token)) {
					t.Errorf("error %q contains a token", e)
				}
			}
		})
	}
}

// newGitHubTestRegistry points a registry for o/r at a hand-written API server.
func newGitHubTestRegistry(t *testing.T, api, token string) *githubRegistry {
	t.Helper()
	env := map[string]string{"GITHUB_API_URL": api, "GITHUB_TOKEN": token}
	g, err := newGitHubRegistry(&url.URL{Scheme: "ghr", Host: "o", Path: "/r"}, func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGitHubBadResponses(t *testing.T) {
	otherHost := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request reached a foreign host: %s (Authorization %q)", r.URL, r.Header.Get("Authorization"))
	}))
	t.Cleanup(otherHost.Close)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		wantMsg string
	}{
		{"junk JSON", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html>proxy login</html>")
		}, "not the JSON GitHub sends"},
		{"object instead of list", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"message":"hello"}`)
		}, "not the JSON GitHub sends"},
		{"release without tag", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `[{"id":7}]`)
		}, "release 7 has no tag_name"},
		{"huge body", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "[")
			chunk := bytes.Repeat([]byte(" "), 1<<20)
			for range 40 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			io.WriteString(w, "]")
		}, "larger than 32 MiB"},
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, `{"message":"Server Error"}`)
		}, "HTTP 502: Server Error"},
		{"next page on another host", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "<"+otherHost.URL+`/page2>; rel="next"`)
			io.WriteString(w, "[]")
		}, "not on the API host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			g := newGitHubTestRegistry(t, srv.URL, "tok-bad-responses")
			_, err := g.releases(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), "o/r") {
				t.Fatalf("releases: err = %v, want an error naming o/r containing %q", err, tc.wantMsg)
			}
			if strings.Contains(err.Error(), "tok-bad-responses") {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestGitHubNewRegistry(t *testing.T) {
	for _, tc := range []struct {
		in         string
		env        map[string]string
		wantErr    string
		wantAPI    string
		wantToken  string
		wantReport bool
	}{
		{in: "ghr://owner/repo", wantAPI: "https://api.github.com"},
		{in: "ghr://owner/repo/", env: map[string]string{"GH_TOKEN": "b"}, wantAPI: "https://api.github.com", wantToken: "b"},
		{in: "ghr://owner/repo", env: map[string]string{"GITHUB_TOKEN": "a", "GH_TOKEN": "b"}, wantAPI: "https://api.github.com", wantToken: "a"},
		{in: "ghr://owner/repo", env: map[string]string{"GITHUB_API_URL": "https://ghe.example.com/api/v3/"}, wantAPI: "https://ghe.example.com/api/v3"},
		{in: "ghr://owner/repo?report=true", wantAPI: "https://api.github.com", wantReport: true},
		{in: "ghr://owner/repo?report=false", wantAPI: "https://api.github.com"},
		{in: "ghr://owner/repo?report=yes", wantErr: "report must be true or false"},
		{in: "ghr://owner/repo?colour=blue", wantErr: `unknown option "colour"`},
		{in: "ghr://owner", wantErr: "want ghr://owner/repo"},
		{in: "ghr://owner/repo/extra", wantErr: "want ghr://owner/repo"},
		{in: "ghr:owner/repo", wantErr: "want ghr://owner/repo"},
		{in: "ghr://user:ghp_secret@owner/repo", wantErr: "credentials in the URL"},
		{in: "ghr://owner/repo", env: map[string]string{"GITHUB_API_URL": "ftp://x"}, wantErr: "GITHUB_API_URL"},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		g, err := newGitHubRegistry(u, func(k string) string { return tc.env[k] }, nil)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "ghp_secret") {
				t.Errorf("newGitHubRegistry(%q) = %v, want error containing %q without secrets", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("newGitHubRegistry(%q): %v", tc.in, err)
			continue
		}
		if g.api.String() != tc.wantAPI || g.token != tc.wantToken || g.reportOn != tc.wantReport || g.owner != "owner" || g.repo != "repo" {
			t.Errorf("newGitHubRegistry(%q) = api %q token %q report %v %s/%s, want api %q token %q report %v owner/repo",
				tc.in, g.api, g.token, g.reportOn, g.owner, g.repo, tc.wantAPI, tc.wantToken, tc.wantReport)
		}
	}
}

func TestGitHubParseAssetURL(t *testing.T) {
	for _, tc := range []struct {
		in                     string
		owner, repo, tag, name string
		id                     int64
		wantErr                string
	}{
		{in: "ghr://o/r/tag/v1.0.0/app.tar.gz?id=12", owner: "o", repo: "r", tag: "v1.0.0", name: "app.tar.gz", id: 12},
		{in: "ghr://o/r/tag/release%2F2024/my%20app", owner: "o", repo: "r", tag: "release/2024", name: "my app"},
		{in: "ghr://o/r/tag/release/2024/app", owner: "o", repo: "r", tag: "release/2024", name: "app"},
		{in: "ghr://o/r/tag/v1/app?id=x", wantErr: `bad id "x"`},
		{in: "ghr://o/r/tag/v1/app?size=3", wantErr: `unknown option "size"`},
		{in: "ghr://o/r/v1/app", wantErr: "malformed path"},
		{in: "ghr://o/r/tag/v1/", wantErr: "bad asset name"},
		{in: "s3://o/r/tag/v1/app", wantErr: "not a GitHub asset URL"},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		owner, repo, tag, name, id, err := githubParseAssetURL(u)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("githubParseAssetURL(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || owner != tc.owner || repo != tc.repo || tag != tc.tag || name != tc.name || id != tc.id {
			t.Errorf("githubParseAssetURL(%q) = %q %q %q %q %d, %v; want %q %q %q %q %d",
				tc.in, owner, repo, tag, name, id, err, tc.owner, tc.repo, tc.tag, tc.name, tc.id)
		}
	}
	// The URL the registry writes must read back to the same parts.
	u, _ := url.Parse(githubAssetURL("o", "r", "rel/1 +x", "a b%.zip", 9))
	if _, _, tag, name, id, err := githubParseAssetURL(u); err != nil || tag != "rel/1 +x" || name != "a b%.zip" || id != 9 {
		t.Errorf("round trip = %q %q %d, %v; want rel/1 +x, a b%%.zip, 9", tag, name, id, err)
	}
}

// A cancelled context ends a call promptly and says so.
func TestGitHubContextCancel(t *testing.T) {
	f := newFakeGitHub(t, "tok-ctx")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.newRegistry(t).releases(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("releases with cancelled ctx: err = %v, want context.Canceled", err)
	}
}

// Without Retry-After or an exhausted X-RateLimit-Remaining, GitHub's advice
// for a rate-limit answer is to wait a minute; a plain 403 is a refusal.
func TestGitHubForbiddenWithoutHeaders(t *testing.T) {
	for _, tc := range []struct {
		name      string
		msg       string
		wantRetry bool
	}{
		{"secondary limit", "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", true},
		{"no permission", "Resource not accessible by personal access token", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprintf(w, `{"message":%q}`, tc.msg)
			}))
			t.Cleanup(srv.Close)
			before := time.Now()
			_, err := newGitHubTestRegistry(t, srv.URL, "tok").releases(t.Context())
			var ra *retryAfterError
			if got := errors.As(err, &ra); got != tc.wantRetry {
				t.Fatalf("releases: err = %v, retryAfterError = %v, want %v", err, got, tc.wantRetry)
			}
			if tc.wantRetry && ra.Until.Before(before.Add(time.Minute)) {
				t.Errorf("Until = %v, want at least a minute after %v", ra.Until, before)
			}
			if !tc.wantRetry && !errors.Is(err, errAccessDenied) {
				t.Errorf("releases: err = %v, want errAccessDenied", err)
			}
		})
	}
}
