package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// badInputCase is one malformed input and the culprit its error must name.
type badInputCase struct {
	args []string
	want string
}

// checkUsageError asserts the bad-input contract for a refused setting:
// a usageError (exit status 2), one line, naming the culprit.
func checkUsageError(t *testing.T, what string, err error, want string) {
	t.Helper()
	var ue *usageError
	switch {
	case err == nil:
		t.Errorf("%s: accepted, want an error naming %q", what, want)
	case !errors.As(err, &ue):
		t.Errorf("%s: error %q is not a usage error (exit status 2)", what, err)
	case strings.ContainsAny(err.Error(), "\n\r"):
		t.Errorf("%s: error spans lines: %q", what, err)
	case !strings.Contains(err.Error(), want):
		t.Errorf("%s: error %q does not name %q", what, err, want)
	}
}

func TestBadInputFlags(t *testing.T) {
	reg := []string{"--registry", "file:///srv/releases"}
	a := func(extra ...string) []string { return append(append([]string{"assets"}, reg...), extra...) }
	s := func(extra ...string) []string {
		return append(append(append([]string{"server"}, reg...), extra...), "--", "/srv/app/current/app")
	}
	cases := []badInputCase{
		{[]string{"deploy"}, `"deploy"`},
		{[]string{"Assets"}, `"Assets"`},
		{[]string{"version", "now"}, `"now"`},
		{[]string{"assets"}, "--registry is required"},
		{[]string{"assets", "--registry"}, "registry"},
		{[]string{"assets", "--registry", ""}, "--registry is required"},
		{a("--bogus"), "bogus"},
		{a("-x"), "-x"},
		{a("--Registry", "file:///x"), "Registry"},
		{a("stray"), `"stray"`},
		{a("--interval", "soon"), `"soon"`},
		{a("--interval", "0"), "--interval"},
		{a("--interval", "-3s"), `"-3s"`},
		{a("-i", "1e12"), `-i "1e12"`},
		{a("-i", "NaN"), `"NaN"`},
		{a("-i", "5 m"), `"5 m"`},
		{a("--interval", ""), "--interval"},
		{a("--keep", "-1"), `"-1"`},
		{a("--keep", "two"), `"two"`},
		{a("--keep", "1.5"), `"1.5"`},
		{a("--keep", "99999999999999999999"), "--keep"},
		{a("--root", ""), "--root"},
		{a("-l", "trace"), `"trace"`},
		{a("--log-level", ""), "--log-level"},
		{a("-f", "xml"), `"xml"`},
		{a("--host-id", "web 1"), `"web 1"`},
		{a("--host-id", "a/b"), `"a/b"`},
		{a("--hook-timeout", "0s"), "--hook-timeout"},
		{a("--hook-timeout", "forever"), `"forever"`},
		{a("--before-deploy-hook", "echo \x00"), "--before-deploy-hook"},
		{a("--require-checksum=maybe"), "require-checksum"},
		{a("--retry-failed=2"), "retry-failed"},
		{a("--once=yes please"), "once"},
		{a("-c", "file:///var/cache/dewy"), "--cache"},
		{a("--calver", "YYYY.MM.QQ"), `"QQ"`},
		{a("--calver", "YYYY.0Y.MICRO"), `--calver "YYYY.0Y.MICRO"`},
		{a("--calver", "YYYY-0M"), `"YYYY-0M"`},
		{a("--calver", "yyyy.mm"), `"yyyy"`},
		{a("--slot", "blue green"), `"blue green"`},
		{a("-s", "a+b"), `-s "a+b"`},
		{a("--max-unpack-size", "lots"), `"lots"`},
		{a("--max-unpack-size", "0"), "--max-unpack-size"},
		{a("--max-unpack-size", "-1GiB"), `"-1GiB"`},
		{a("--max-unpack-size", "99999999TiB"), `"99999999TiB"`},
		{a("--max-unpack-size", "1.5GiB"), `"1.5GiB"`},
		{a("--max-unpack-entries", "0"), "--max-unpack-entries"},
		{a("--max-unpack-entries", "many"), `"many"`},
		{a("-c", "/nonexistent/dewy.toml"), "/nonexistent/dewy.toml"},
		{a("-c", "/"), "config file /"},
		{a("--port", "8000"), "-port"},
		{a("--health-path", "/h"), "health-path"},
		{a("--", "app"), "app"},
		{[]string{"server", "--registry", "file:///x", "--once", "--", "app"}, "-once"},
		{s("--port", "http"), "--port"},
		{s("--port", "70000"), "--port"},
		{s("--port", "9000-8000"), "--port"},
		{s("--port", "unix:"), "--port"},
		{s("--port", "[::1"), "--port"},
		{s("--health-path", "healthz"), `"healthz"`},
		{s("--health-timeout", "0"), "--health-timeout"},
		{s("--ready-delay", "-1s"), `"-1s"`},
		{s("--drain-timeout", "never"), `"never"`},
		{s("--stop-signal", "SIGKILL"), `"SIGKILL"`},
		{s("--stop-signal", "9"), `"9"`},
		{[]string{"server", "--registry", "file:///x", "-p", "8000"}, "needs the application's command"},
	}
	for _, tc := range cases {
		_, err := parseArgs(tc.args, noEnv)
		checkUsageError(t, fmt.Sprintf("%q", tc.args), err, tc.want)
	}

	// The same checks reach DEWY_* variables, named as such.
	envCases := map[string]string{
		"DEWY_INTERVAL": "often", "DEWY_KEEP": "-2", "DEWY_LOG_FORMAT": "yaml", "DEWY_MAX_UNPACK_SIZE": "big",
		"DEWY_REQUIRE_CHECKSUM": "sure", "DEWY_HOST_ID": "a b", "DEWY_REGISTRY": "ftp://x",
	}
	for k, v := range envCases {
		getenv := func(key string) string {
			if key == k {
				return v
			}
			return ""
		}
		args := []string{"assets"}
		if k != "DEWY_REGISTRY" {
			args = append(args, reg...)
		}
		_, err := parseArgs(args, getenv)
		want := k
		if k == "DEWY_REGISTRY" {
			// validate() reports the registry as --registry wherever it
			// came from; the value names the culprit.
			want = `"ftp"`
		}
		checkUsageError(t, k+"="+v, err, want)
	}
	t.Logf("bad input: %d flags, %d variables", len(cases), len(envCases))
}

// TestBadInputTOML loads each file in testdata/badinput/toml; its first
// line, "# want: ...", is what the error must say.
func TestBadInputTOML(t *testing.T) {
	files, err := filepath.Glob("testdata/badinput/toml/*.toml")
	if err != nil || len(files) < 20 {
		t.Fatalf("fixtures: %d files, %v", len(files), err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		want, ok := strings.CutPrefix(first, "# want: ")
		if !ok {
			t.Fatalf("%s: first line must be # want: ...", f)
		}
		_, err = parseArgs([]string{"-c", f}, noEnv)
		if err != nil && strings.Contains(err.Error(), "no command") {
			_, err = parseArgs([]string{"assets", "-c", f}, noEnv)
		}
		checkUsageError(t, f, err, want)
	}
	t.Logf("bad input: %d TOML files", len(files))
}

func TestBadInputURLs(t *testing.T) {
	var n int
	for _, tc := range []struct{ registry, want string }{
		{"file", "not a URL"},
		{"/srv/releases", "not a URL"},
		{"ftp://host/x", `"ftp"`},
		{"https://github.com/o/r", `"https"`},
		{"GHR//o/r", "not a URL"},
		{"ghr://o/r?pre-release=sometimes", "pre-release"},
		{"ghr://o/r?track=latest", `"latest"`},
		{"ghr://o/r?track=v1.2.3", `"v1.2.3"`},
		{"ghr://o/r?track=v01", `"v01"`},
		{"ghr://o/r?artifact=../etc/passwd", "artifact"},
		{"ghr://o/r?artifact=a%5Cb", "artifact"},
		{"ghr://o/r?artifact=", "artifact"},
		{"ghr://o/r?a=%zz", "bad query"},
		{"s3://%zz", "not a URL"},
		{"file:///srv/rel\x7f", "not a URL"},
	} {
		n++
		_, err := parseArgs([]string{"assets", "--registry", tc.registry}, noEnv)
		checkUsageError(t, "--registry "+tc.registry, err, tc.want)
	}
	for _, tc := range []struct{ flag, val, want string }{
		{"--cache", "redis", "--cache"},
		{"--cache", "/var/cache/dewy", "--cache"},
		{"--cache", "redis://%zz", "--cache"},
		{"--cache", "redis://user:hunter22@%zz", "xxxxx"},
		{"--notifier", "slack", "--notifier"},
		{"--notifier", "#ops", "--notifier"},
		{"--notifier", "https://%zz/hook", "--notifier"},
		{"--notifier", "https://user:hunter22@%zz", "xxxxx"},
	} {
		n++
		_, err := parseArgs([]string{"assets", "--registry", "file:///x", tc.flag, tc.val}, noEnv)
		checkUsageError(t, tc.flag+" "+tc.val, err, tc.want)
		if err != nil && strings.Contains(err.Error(), "hunter22") {
			t.Errorf("%s: error %q shows the password", tc.flag, err)
		}
	}
	// URLs the shared parser lets through but their backend refuses.
	for _, tc := range []struct{ registry, want string }{
		{"file://relative/dir", `host "relative"`},
		{"file:///srv/rel?x=1", `unknown option "x"`},
		{"file:", "absolute path"},
		{"ghr://owner", "ghr://owner/repo"},
		{"ghr://owner/repo/extra", "ghr://owner/repo"},
		{"ghr://user:pw@owner/repo", "credentials"},
		{"ghr://owner/repo?report=maybe", "report"},
		{"ghr://owner/repo?colour=blue", `"colour"`},
		{"ghr://own er/repo", "not a URL"},
		{"ghr:opaque", "ghr://owner/repo"},
	} {
		n++
		u, sel, err := parseRegistryURL(tc.registry)
		if err == nil {
			_, err = newRegistry(t.Context(), u, sel, noEnv, discardLogger())
		}
		if err == nil || strings.ContainsAny(err.Error(), "\n\r") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("registry %q: error %v, want one line containing %q", tc.registry, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), ":pw@") {
			t.Errorf("registry %q: error %q shows the password", tc.registry, err)
		}
	}
	bad := func(k, v string) func(string) string {
		return func(key string) string {
			if key == k {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct{ env, val, want string }{
		{"GITHUB_API_URL", "ftp://ghe.example.com", "GITHUB_API_URL"},
		{"GITHUB_API_URL", "ghe.example.com/api/v3", "GITHUB_API_URL"},
		{"GITHUB_API_URL", "https://user:secret99@ghe.example.com", "GITHUB_API_URL"},
		{"GITHUB_API_URL", "https://", "GITHUB_API_URL"},
	} {
		n++
		_, err := newRegistry(t.Context(), &url.URL{Scheme: "ghr", Host: "o", Path: "/r"}, selectOptions{}, bad(tc.env, tc.val), discardLogger())
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret99") {
			t.Errorf("%s=%s: error %v, want one line naming %s and no password", tc.env, tc.val, err, tc.want)
		}
	}
	t.Logf("bad input: %d URLs", n)
}

// A bad cache, notifier or registry URL is refused when the configuration
// is checked: exit status 2, one line naming it, and nothing made on disk.
func TestBadInputURLsBeforeDisk(t *testing.T) {
	cases := []struct {
		flag, val, want string
	}{
		{"--cache", "bogus://x", `--cache "bogus://x": unknown scheme "bogus"`},
		{"--cache", "redis://", "want redis://host:port/db"},
		{"--cache", "redis://u:hunter22@/0", "xxxxx"},
		{"--cache", "memory://?colour=blue", `unknown option "colour"`},
		{"--cache", "consul://127.0.0.1:8500/p?artifact-max=1MiB", "artifact-max"},
		{"--notifier", "slack:", `--notifier "slack:": not a URL`},
		{"--notifier", "ftp://x", `--notifier "ftp://x": unknown scheme "ftp"`},
		{"--notifier", "slack://deploys?quiet=maybe", `quiet="maybe"`},
		{"--notifier", "smtp://mail.example:587/?from=dewy@example.com", "no recipient"},
		{"--registry", "grpc://registry.example:9000?no-tls=maybe", "no-tls"},
		{"--registry", "s3://eu-west-1/bucket/prefix?colour=blue", `"colour"`},
		{"--registry", "gs://bucket/prefix?colour=blue", `"colour"`},
	}
	for _, tc := range cases {
		root := filepath.Join(t.TempDir(), "root")
		args := []string{"assets", "--root", root, "--registry", "file:///srv/releases", tc.flag, tc.val}
		r := runDewy(t, []string{"GORACE=atexit_sleep_ms=0", "SLACK_TOKEN=xoxb-test"}, args...)
		out := strings.TrimRight(r.out, "\n")
		if r.status != 2 || strings.Contains(out, "\n") || !strings.Contains(out, tc.want) || strings.Contains(out, "hunter22") {
			t.Errorf("dewy %s %q: status %d, output %q; want status 2 and one line naming %q", tc.flag, tc.val, r.status, r.out, tc.want)
		}
		if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dewy %s %q: root %s exists after the refusal (stat: %v)", tc.flag, tc.val, root, err)
		}
	}
}

// seedServing deploys v1.0.0 into a fresh root from a file registry and
// returns the root: the release that must keep serving.
func seedServing(t *testing.T) string {
	t.Helper()
	root, dir := t.TempDir(), t.TempDir()
	publishDir(t, dir, []suiteRelease{{Tag: "v1.0.0", Files: siteRelease(t, "v1.0.0")}})
	reg := settledFileRegistry(t, dir)
	if _, err := newTestDeployer(t, reg, root).check(t.Context()); err != nil {
		t.Fatalf("deploy v1.0.0: %v", err)
	}
	assertServing(t, root, "v1.0.0")
	return root
}

// TestBadInputRegistryAnswers points the GitHub backend at a server that
// answers the release listing with junk. Each poll fails with one line
// naming the repository; v1.0.0 keeps serving and nothing is written.
func TestBadInputRegistryAnswers(t *testing.T) {
	big := "[" + strings.Repeat(" ", githubMaxListing) + "]"
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	huge := fmt.Sprintf(`[{"id":1,"tag_name":"v2.0.0","assets":[{"id":2,"name":"%s","size":1}]}]`, strings.Repeat("a", 1<<20))
	type answer struct {
		name   string
		status int
		header map[string]string
		body   string
		want   string
	}
	answers := []answer{
		{name: "HTML", body: "<html><body>Service unavailable</body></html>", want: "not the JSON"},
		{name: "empty body", body: "", want: "not the JSON"},
		{name: "object, not list", body: `{"message":"hi"}`, want: "not the JSON"},
		{name: "tag_name is a number", body: `[{"id":1,"tag_name":5}]`, want: "not the JSON"},
		{name: "id is a string", body: `[{"id":"one","tag_name":"v2.0.0"}]`, want: "not the JSON"},
		{name: "assets is a string", body: `[{"id":1,"tag_name":"v2.0.0","assets":"none"}]`, want: "not the JSON"},
		{name: "size is a string", body: `[{"id":1,"tag_name":"v2.0.0","assets":[{"id":2,"name":"a","size":"big"}]}]`, want: "not the JSON"},
		{name: "null release", body: `[null]`, want: "no tag_name"},
		{name: "release without tag", body: `[{"id":1,"assets":[]}]`, want: "no tag_name"},
		{name: "truncated JSON", body: `[{"id":1,"tag_name":"v2`, want: "not the JSON"},
		{name: "trailing garbage", body: `[]xyz`, want: "not the JSON"},
		{name: "deeply nested", body: deep, want: "not the JSON"},
		{name: "invalid UTF-8 and NULs", body: "[\"\xff\xfe\x00\"]", want: "not the JSON"},
		{name: "larger than the cap", body: big, want: "larger than"},
		{name: "1 MiB asset name", body: huge, want: "no asset for"},
		{name: "no usable asset", body: `[{"id":1,"tag_name":"v2.0.0","assets":[{"id":2,"name":"","size":-5},{"id":3,"name":"../../x","size":0}]}]`, want: "no asset for"},
		{name: "only junk tags", body: `[{"id":1,"tag_name":"latest"},{"id":2,"tag_name":"v2"},{"id":3,"tag_name":"../../v9.9.9"},{"id":4,"tag_name":"v1.0.0\n"}]`, want: "no release that matches"},
		{name: "500", status: 500, body: "<h1>oops</h1>", want: "500"},
		{name: "502 with JSON", status: 502, body: `{"message":"Server Error"}`, want: "502"},
		{name: "404", status: 404, body: `{"message":"Not Found"}`, want: "dewy-test/app"},
		{name: "401", status: 401, body: `{"message":"Bad credentials"}`, want: "dewy-test/app"},
		{name: "Link to another host", header: map[string]string{"Link": `<https://evil.example/x?page=2>; rel="next"`}, body: `[]`, want: "not on the API host"},
		{name: "malformed Link", header: map[string]string{"Link": `https://x; rel="next"`}, body: `[]`, want: "malformed Link"},
		{name: "text/plain content", header: map[string]string{"Content-Type": "text/plain"}, body: "hello", want: "not the JSON"},
	}
	var current atomic.Pointer[answer]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := current.Load()
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		if a.status != 0 {
			w.WriteHeader(a.status)
		}
		w.Write([]byte(a.body))
	}))
	t.Cleanup(srv.Close)
	root := seedServing(t)
	getenv := func(k string) string {
		if k == "GITHUB_API_URL" {
			return srv.URL
		}
		return ""
	}
	for i := range answers {
		a := &answers[i]
		current.Store(a)
		// A fresh registry per answer, so no ETag cache carries over.
		reg, err := newGitHubRegistry(&url.URL{Scheme: "ghr", Host: "dewy-test", Path: "/app"}, getenv, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		d := newTestDeployer(t, reg, root)
		_, err = d.check(t.Context())
		if err == nil || strings.ContainsAny(err.Error(), "\n\r") || !strings.Contains(err.Error(), a.want) {
			t.Errorf("%s: check = %v; want one line containing %q", a.name, err, a.want)
		}
		if err != nil && len(err.Error()) > 8<<10 {
			t.Errorf("%s: error is %d bytes; a hostile answer must not flood the log (select.go assetNames does not shorten names)", a.name, len(err.Error()))
		}
		assertServing(t, root, "v1.0.0")
		assertNoLeftovers(t, root)
	}
	t.Logf("bad input: %d registry answers", len(answers))
}

// TestBadInputHostileAssetNames serves a release whose only asset for this
// host has a name that is a path. Whatever dewy does with it, nothing may
// be written outside the release directory.
func TestBadInputHostileAssetNames(t *testing.T) {
	names := []string{"../../../../escape_linux_amd64", "../../inroot_linux_amd64", "sub/dir/tool_linux_amd64", "./dot_linux_amd64", "..\\..\\win_linux_amd64"}
	for i, name := range names {
		gh := newFakeGitHub(t, "")
		gh.addRelease("v2.0.0", false, false, map[string][]byte{name: []byte("#!/bin/sh\necho pwned\n")})
		root := filepath.Join(t.TempDir(), "a", "b", "root")
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		reg := gh.newRegistry(t)
		d := newTestDeployer(t, reg, root)
		_, err := d.check(t.Context())
		if gh.AssetRequests.Load() == 0 {
			// Refused before download: the name is not a plain file name.
			if err == nil || strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("asset %q: not downloaded, yet no one-line error: %v", name, err)
			}
			assertNoLeftovers(t, root)
			continue
		}
		// Everything dewy wrote must be under root/releases or root/.dewy.
		top := filepath.Dir(filepath.Dir(filepath.Dir(root)))
		filepath.WalkDir(top, func(p string, de os.DirEntry, err error) error {
			if err != nil || de.IsDir() || p == filepath.Join(root, currentLink) {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			if top, _, _ := strings.Cut(rel, string(filepath.Separator)); top != releasesDir && top != dewyDir {
				t.Errorf("asset %q: dewy wrote %s, outside the release directory (deploy.go unpack joins the registry's asset name into a path)", name, p)
			}
			return nil
		})
		if err == nil {
			dir, _ := currentDir(root)
			ents, _ := os.ReadDir(filepath.Join(root, releasesDir, dir))
			for _, e := range ents {
				if strings.Contains(e.Name(), "/") || e.Name() == ".." {
					t.Errorf("asset %q: release holds %q", name, e.Name())
				}
			}
			t.Logf("asset %q: deployed as %d file(s) in releases/%s", name, len(ents), dir)
		} else if strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("asset %q: error spans lines: %q", name, err)
		}
		assertNoLeftovers(t, root)
		_ = i
	}
	t.Logf("bad input: %d hostile asset names", len(names))
}

// TestBadInputTags: a registry of tags that are not releases offers
// nothing, and a release tagged twice (with and without v) is chosen the
// same way every time.
func TestBadInputTags(t *testing.T) {
	junk := []string{"latest", "v1", "v1.2", "1.2.3.4", "v01.2.3", "v1.2.3-", "v1.2.3+", "vv1.2.3", "V1.2.3",
		"v1.2.3-rc..1", "-1.2.3", "v1.2.3 ", "v" + strings.Repeat("9", 200) + ".0.0x", "v١.٢.٣", "nightly-2024-01-01"}
	dir := t.TempDir()
	var rels []suiteRelease
	for _, tag := range junk {
		rels = append(rels, suiteRelease{Tag: tag, Files: siteRelease(t, "v9.0.0")})
	}
	publishDir(t, dir, rels)
	root := seedServing(t)
	reg := settledFileRegistry(t, dir)
	d := newTestDeployer(t, reg, root)
	_, err := d.check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "no release that matches") || !strings.Contains(err.Error(), fmt.Sprintf("of %d tags", len(junk))) {
		t.Fatalf("check over junk tags = %v; want no release that matches (of %d tags)", err, len(junk))
	}
	assertServing(t, root, "v1.0.0")
	assertNoLeftovers(t, root)
	t.Logf("bad input: %d tags", len(junk))
}

// TestBadInputArchives deploys every hostile archive of the extract corpus
// as a release: each is refused before current moves, nothing of it stays
// on disk, and v1.0.0 keeps serving.
func TestBadInputArchives(t *testing.T) {
	root := seedServing(t)
	dir := t.TempDir()
	reg := settledFileRegistry(t, dir)
	d := newTestDeployer(t, reg, root)
	for i, tc := range extractHostileCases {
		data, err := os.ReadFile(filepath.Join(extractCorpus, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		tag := fmt.Sprintf("v2.0.%d", i)
		ext := strings.TrimPrefix(tc.file[strings.Index(tc.file, "."):], ".")
		name := fmt.Sprintf("app_%s_linux_amd64.%s", tag, ext)
		publishDir(t, dir, []suiteRelease{{Tag: tag, Files: map[string][]byte{name: data, "checksums.txt": []byte(sha256Hex(data) + "  " + name + "\n")}}})
		d.cfg.Limits = tc.lim
		_, err = d.check(t.Context())
		if err == nil || !errors.Is(err, errVerify) || strings.ContainsAny(err.Error(), "\n\r") || !strings.Contains(err.Error(), tag) {
			t.Errorf("%s: check = %v; want a one-line verification failure naming %s", tc.file, err, tag)
		}
		if _, ok := d.state.Failed[tag]; !ok {
			t.Errorf("%s: refusal not remembered; it would be downloaded on every poll", tc.file)
		}
		if _, err := os.Stat(filepath.Join(root, releasesDir, tag)); err == nil {
			t.Errorf("%s: releases/%s exists", tc.file, tag)
		}
		assertServing(t, root, "v1.0.0")
		assertNoLeftovers(t, root)
	}
	t.Logf("bad input: %d archives", len(extractHostileCases))
}

// TestBadInputBinary runs the real binary on a few bad command lines: exit
// status 2 and one line on stderr naming the culprit, never a panic.
func TestBadInputBinary(t *testing.T) {
	toml := filepath.Join("testdata", "badinput", "toml", "unknown-key.toml")
	cases := []badInputCase{
		{[]string{"assets", "--registry", "file:///x", "--interval", "soon"}, `"soon"`},
		{[]string{"assets", "--registry", "ftp://x"}, `"ftp"`},
		{[]string{"assets", "--registry", "file:///x", "--bogus"}, "bogus"},
		{[]string{"deploy"}, `"deploy"`},
		{[]string{"assets", "-c", toml}, "regsitry"},
		{[]string{"assets", "--registry", "file:///x", "--notifier", "slack"}, "--notifier"},
		{[]string{"server", "--registry", "file:///x", "-p", "8000"}, "command"},
		{[]string{"assets", "--registry", "ghr://owner"}, "ghr://owner"},
		{[]string{"assets", "--registry", "file://relative/x", "--root", "ROOT"}, "relative"},
	}
	for _, tc := range cases {
		for i, a := range tc.args {
			if a == "ROOT" {
				tc.args[i] = t.TempDir()
			}
		}
		r := runDewy(t, []string{"GORACE=atexit_sleep_ms=0"}, tc.args...)
		out := strings.TrimRight(r.out, "\n")
		if r.status != 2 || strings.Contains(out, "\n") || !strings.Contains(out, tc.want) ||
			strings.Contains(out, "panic") || strings.Contains(out, "goroutine") {
			t.Errorf("dewy %q: status %d, output %q; want status 2 and one line naming %q", tc.args, r.status, r.out, tc.want)
		}
	}
	t.Logf("bad input: %d command lines through the binary", len(cases))
}
