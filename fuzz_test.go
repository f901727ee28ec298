package main

import (
	"errors"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"aead.dev/minisign"
	"golang.org/x/mod/semver"
)

// Seed corpora live in testdata/fuzz/<Target>/; the f.Add calls below are
// the cases every plain `go test` run checks as well.

// fuzzOneLine fails the test when an error message spans several lines:
// dewy prints errors as one log line or one line of stderr.
func fuzzOneLine(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
		t.Fatalf("%s: error spans lines: %q", what, err.Error())
	}
}

// FuzzParseArgs feeds a command line (arguments separated by single spaces)
// to parseArgs. It must not panic; a refusal is one line, usually a
// usageError (exit 2); an accepted config is complete and valid.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"assets --registry file:///srv/rel --root /tmp/x --once",
		"server --registry ghr://o/r -p 8000 -- /bin/app --flag",
		"server --registry ghr://o/r?pre-release=true&track=v1 -p 127.0.0.1:8000,unix:/run/a.sock --health-path /h -- app",
		"assets --registry s3://eu-west-1/bucket/prefix?artifact=site.tar.gz -i 5m --keep 0",
		"assets --registry gs://b/p --notifier slack://chan --notifier https://hooks.example.com/x --cache redis://127.0.0.1:6379/0",
		"assets --registry file:///r --max-unpack-size 1GiB --max-unpack-entries 10 -l debug -f json",
		"assets --registry file:///r --interval 0",
		"assets --registry file:///r --interval -1s",
		"assets --registry file:///r --keep x",
		"server --registry file:///r -p 99999 -- app",
		"server --registry file:///r --stop-signal KILL -- app",
		"assets --registry file:///r --once=maybe",
		"assets --registry file:///r -- app",
		"version",
		"version extra",
		"help",
		"bogus",
		"",
		"--registry",
		"assets --registry ://x",
		"assets --registry file:///r --host-id a/b",
		"assets --registry https://user:pa55word@host/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, " ")
		if s == "" {
			args = nil
		}
		for _, a := range args {
			// -c would read whatever file the fuzzer names (/dev/zero
			// never ends); loading TOML is covered by the bad-input suite.
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if strings.HasPrefix(a, "-") && (name == "c" || name == "config") {
				t.Skip()
			}
		}
		cfg, err := parseArgs(args, noEnv)
		if errors.Is(err, errHelp) {
			return
		}
		fuzzOneLine(t, "parseArgs", err)
		if err != nil {
			if cfg != nil && cfg.Command != "server" && cfg.Command != "assets" {
				t.Fatalf("parseArgs returned a %q config with error %v", cfg.Command, err)
			}
			return
		}
		switch cfg.Command {
		case "version":
			return
		case "server":
			if len(cfg.Server.Command) == 0 {
				t.Fatalf("server config without a command from %q", args)
			}
			if _, err := parsePorts(cfg.Server.Ports); err != nil {
				t.Fatalf("accepted ports %q that parsePorts refuses: %v", cfg.Server.Ports, err)
			}
		case "assets":
			if len(cfg.Server.Command) != 0 {
				t.Fatalf("assets config with a command %q", cfg.Server.Command)
			}
		default:
			t.Fatalf("accepted unknown command %q", cfg.Command)
		}
		if cfg.Registry == nil || !knownScheme(registrySchemes, cfg.Registry.Scheme) {
			t.Fatalf("accepted registry %v", cfg.Registry)
		}
		if !filepath.IsAbs(cfg.Root) || cfg.Interval <= 0 || cfg.Keep < 0 || cfg.HostID == "" {
			t.Fatalf("accepted config root=%q interval=%v keep=%d host=%q", cfg.Root, cfg.Interval, cfg.Keep, cfg.HostID)
		}
		if cfg.Limits.MaxBytes <= 0 || cfg.Limits.MaxEntries <= 0 || cfg.HookTimeout <= 0 {
			t.Fatalf("accepted limits %+v hook timeout %v", cfg.Limits, cfg.HookTimeout)
		}
	})
}

func knownScheme[R schemeRow](rows []R, scheme string) bool {
	_, err := lookupScheme(rows, scheme)
	return err == nil
}

// FuzzParseRegistryURL checks the shared registry URL options. A refusal is
// one line and never echoes a password; an accepted URL has a known scheme,
// its shared options taken off, and canonical selection values.
func FuzzParseRegistryURL(f *testing.F) {
	for _, s := range []string{
		"file:///srv/releases",
		"ghr://owner/repo?pre-release=true&track=v1.4&artifact=app_linux_amd64.tar.gz",
		"s3://us-east-1/bucket/prefix?endpoint=http://127.0.0.1:7070",
		"gs://bucket/prefix?track=2",
		"grpc://127.0.0.1:9000?artifact=a",
		"ghr://o/r?pre-release=yes",
		"ghr://o/r?track=v1.2.3",
		"ghr://o/r?track=01",
		"ghr://o/r?artifact=../x",
		"ghr://o/r?artifact=",
		"ghr://o/r?%zz",
		"ftp://host/x",
		"no-scheme",
		"://",
		"s3://user:secretpw@region/bucket",
		"ghr://o/r?pre-release=true&pre-release=false",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, sel, err := parseRegistryURL(raw)
		fuzzOneLine(t, "parseRegistryURL", err)
		if err != nil {
			if pu, perr := url.Parse(raw); perr == nil && pu.User != nil {
				if pw, ok := pu.User.Password(); ok && len(pw) >= 4 && !strings.Contains(raw[:strings.Index(raw, pw)], "?") && strings.Contains(err.Error(), pw) {
					t.Fatalf("error %q reveals the password %q", err, pw)
				}
			}
			return
		}
		if !knownScheme(registrySchemes, u.Scheme) {
			t.Fatalf("accepted scheme %q", u.Scheme)
		}
		q := u.Query()
		for _, k := range []string{"pre-release", "artifact", "track"} {
			if q.Has(k) {
				t.Fatalf("option %s left on the backend's URL %q", k, u)
			}
		}
		if sel.Track != "" && (!strings.HasPrefix(sel.Track, "v") || !trackRe.MatchString(sel.Track)) {
			t.Fatalf("track %q is not canonical", sel.Track)
		}
		if sel.Track != "" && !semver.IsValid(sel.Track) {
			t.Fatalf("track %q is not a semver prefix", sel.Track)
		}
		if strings.ContainsAny(sel.Artifact, `/\`) {
			t.Fatalf("artifact %q holds a path separator", sel.Artifact)
		}
	})
}

// FuzzSelect builds releases from fuzzed tags (one per line) that all carry
// the fuzzed asset names (one per line), then selects as the core does.
// The chosen release must be the newest allowed one and the chosen asset
// one of its own.
func FuzzSelect(f *testing.F) {
	f.Add("v1.0.0\nv1.10.0\n1.9.0\nlatest\nv2.0.0-rc.1", "app_linux_amd64.tar.gz\napp_darwin_arm64.tar.gz\nchecksums.txt", "", "", false)
	f.Add("v1.2.3+build.1\nv1.2.3+build.2\nv1.2.3", "app_Linux_x86_64.tar.gz\napp_linux_x86_64.tar.gz.sig", "", "", false)
	f.Add("v0.0.1\nv1\nv1.2\n01.2.3\nv1.2.3-01", "tool_linux_arm64\ntool_linux_arm\ntool_linux_armv7", "", "", true)
	f.Add("v3.0.0\nv2.5.0\nv2.4.9", "site.tar.gz\nSHA256SUMS\nsite.tar.gz.sha256", "site.tar.gz", "v2", false)
	f.Add("1.0.0\nv1.0.0", "app_windows_amd64.exe\napp_linux_amd64.deb\napp_linux_amd64.rpm\napp_linux_amd64.zip", "", "v1.0", false)
	f.Add("v9.9.9", "", "", "", false)
	f.Fuzz(func(t *testing.T, tags, names, artifact, track string, pre bool) {
		var assets []asset
		for i, n := range strings.Split(names, "\n") {
			if n != "" {
				assets = append(assets, asset{Name: n, URL: "file:///r/" + n, Size: int64(i)})
			}
		}
		var rels []release
		for i, tag := range strings.Split(tags, "\n") {
			rels = append(rels, release{Tag: tag, ID: tag, Prerelease: pre && i%2 == 1, Assets: assets})
		}
		opt := selectOptions{PreRelease: pre, Artifact: artifact, GOOS: "linux", GOARCH: "amd64"}
		if track != "" {
			tr, err := parseTrack(track)
			if err != nil {
				return
			}
			opt.Track = tr
		}
		rel, v, ok := newest(rels, opt, discardLogger())
		if !ok {
			for _, r := range rels {
				if v, ok := opt.parseTag(r.Tag); ok && opt.wants(r, v) {
					t.Fatalf("newest found nothing, but %q qualifies", r.Tag)
				}
			}
			return
		}
		if !slices.ContainsFunc(rels, func(r release) bool { return r.Tag == rel.Tag }) {
			t.Fatalf("newest = %q, not among the input tags", rel.Tag)
		}
		if bv, bok := opt.parseTag(rel.Tag); !bok || v == "" || bv.name != v || !opt.wants(rel, bv) {
			t.Fatalf("newest = %q version %q: not a version the options allow", rel.Tag, v)
		}
		for _, r := range rels {
			if rv, rok := opt.parseTag(r.Tag); rok && opt.wants(r, rv) && semver.Compare(rv.name, v) > 0 {
				t.Fatalf("newest = %q, but %q is newer", rel.Tag, r.Tag)
			}
		}
		a, err := pickAsset(rel, opt)
		fuzzOneLine(t, "pickAsset", err)
		if err != nil {
			if !strings.Contains(err.Error(), rel.Tag) {
				t.Fatalf("pickAsset error %q does not name the release %q", err, rel.Tag)
			}
			return
		}
		if !slices.Contains(rel.Assets, a) {
			t.Fatalf("pickAsset = %q, not an asset of the release", a.Name)
		}
		if artifact != "" && a.Name != artifact {
			t.Fatalf("pickAsset = %q, want the artifact= name %q", a.Name, artifact)
		}
		if !isPlainFileName(a.Name) {
			t.Fatalf("pickAsset chose %q, which is not a plain file name", a.Name)
		}
		if artifact == "" && !isArtifactName(a.Name) {
			t.Fatalf("pickAsset chose %q, a checksum/signature/package file", a.Name)
		}
		if b := bareName(a.Name); b == "" || (strings.Contains(b, "/") && !strings.Contains(a.Name, "/")) {
			t.Fatalf("bareName(%q) = %q", a.Name, b)
		}
		for _, c := range checksumAssets(rel, a.Name) {
			if !isChecksumName(c.Name) || !slices.Contains(rel.Assets, c) {
				t.Fatalf("checksumAssets returned %q, not a checksum file of the release", c.Name)
			}
		}
	})
}

// FuzzParseChecksums feeds fuzzed checksum files. A digest it returns is
// 64 lowercase hex digits that the file really holds; errors are one line.
func FuzzParseChecksums(f *testing.F) {
	sum := strings.Repeat("ab", 32)
	f.Add([]byte(sum+"  app.tar.gz\n"), "app.tar.gz", false)
	f.Add([]byte(strings.ToUpper(sum)+" *./app.tar.gz\r\n"), "app.tar.gz", false)
	f.Add([]byte("# comment\n\n"+sum+"  other\n"+sum+"  app with space.tar.gz\n"), "app with space.tar.gz", false)
	f.Add([]byte(sum+"\n"), "app.tar.gz", true)
	f.Add([]byte(sum), "app.tar.gz", false)
	f.Add([]byte("md5sum 0123  app.tar.gz\n"), "app.tar.gz", false)
	f.Add([]byte(sum[:63]+"g  app.tar.gz\n"), "app.tar.gz", false)
	f.Add([]byte("\x00\xff\n"+sum+"  app\n"), "app", false)
	f.Fuzz(func(t *testing.T, data []byte, name string, single bool) {
		got, ok, err := parseChecksums(data, name, single)
		fuzzOneLine(t, "parseChecksums", err)
		if err != nil && ok {
			t.Fatalf("parseChecksums = %q, ok and error %v", got, err)
		}
		if !ok {
			if got != "" {
				t.Fatalf("parseChecksums = %q without ok", got)
			}
			return
		}
		if len(got) != 64 || strings.Trim(got, "0123456789abcdef") != "" {
			t.Fatalf("parseChecksums = %q, want 64 lowercase hex digits", got)
		}
		if !strings.Contains(strings.ToLower(string(data)), got) {
			t.Fatalf("parseChecksums = %q, which the file does not hold", got)
		}
		if !single && !strings.Contains(string(data), name) {
			t.Fatalf("parseChecksums found %q in a list that never names it", name)
		}
	})
}

// FuzzVerifySignature hands fuzzed signature files to both verifiers with
// keys whose private halves the fuzzer never sees: nothing may verify,
// nothing may panic, and refusals are one line naming the file.
func FuzzVerifySignature(f *testing.F) {
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		f.Fatal(err)
	}
	mv, err := parseVerifyKey("minisign:" + pub.String())
	if err != nil {
		f.Fatal(err)
	}
	cv := &sigVerifier{kind: "cosign", spec: "cosign:fuzz"}
	if cv.ecdsa, err = parseCosignKey([]byte(fuzzCosignPub)); err != nil {
		f.Fatal(err)
	}
	msg := []byte("checksums")
	f.Add([]byte(nil))
	// A real signature over other bytes, so mutations start near valid ones.
	f.Add(minisign.Sign(priv, []byte("other message")))
	f.Add(minisign.NewReader(strings.NewReader("other")).Sign(priv))
	f.Add([]byte("MEUCIQDx2HfJ8r1wbn2yoHuNpKnQo3y0xVQCiH5t8y1OVzsNrgIgWzJ5FdsnE0QY4y0Kq8aXkF2kR6C8oNnGp9E1Zy3xAbc=\n"))
	f.Add([]byte("untrusted comment: x\nRUQAAAAAAAAAAA==\ntrusted comment: y\nAAAA\n"))
	f.Fuzz(func(t *testing.T, sig []byte) {
		for _, v := range []*sigVerifier{mv, cv} {
			err := v.verifyReader(strings.NewReader(string(msg)), "checksums.txt", sig)
			if err == nil {
				t.Fatalf("%s: fuzzed signature %q verified", v.kind, sig)
			}
			fuzzOneLine(t, v.kind, err)
			if !strings.Contains(err.Error(), "checksums.txt") {
				t.Fatalf("%s: error %q does not name the file", v.kind, err)
			}
		}
	})
}

// fuzzCosignPub is a P-256 public key whose private key was discarded.
const fuzzCosignPub = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELVKXrv2vLRsSgZ1AC0MH/UrLq4pK
PimAV+YpIlKyRoCZnxSuG2c9xMAfwnXSE/hqfZA0qohvDjzqFlnE5QzHJw==
-----END PUBLIC KEY-----
`
