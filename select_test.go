package main

import (
	"log/slog"
	"strings"
	"testing"
)

func rels(tags ...string) []release {
	out := make([]release, len(tags))
	for i, t := range tags {
		out[i] = release{Tag: t}
	}
	return out
}

func TestNewest(t *testing.T) {
	for _, tc := range []struct {
		name string
		tags []string
		opt  selectOptions
		want string // "" = none
	}{
		{"numeric order, not string order", []string{"v1.9.0", "v1.10.0", "v1.2.0"}, selectOptions{}, "v1.10.0"},
		{"with and without v", []string{"1.3.0", "v1.2.0"}, selectOptions{}, "1.3.0"},
		{"junk tags ignored", []string{"latest", "nightly", "v1.0.0", "release-2"}, selectOptions{}, "v1.0.0"},
		{"only junk", []string{"latest", "x"}, selectOptions{}, ""},
		{"pre-release skipped", []string{"v1.0.0", "v1.1.0-rc.1"}, selectOptions{}, "v1.0.0"},
		{"pre-release allowed", []string{"v1.0.0", "v1.1.0-rc.1"}, selectOptions{PreRelease: true}, "v1.1.0-rc.1"},
		{"release beats its pre-release", []string{"v1.1.0-rc.2", "v1.1.0"}, selectOptions{PreRelease: true}, "v1.1.0"},
		{"pre-release ordering", []string{"v1.1.0-rc.2", "v1.1.0-rc.10", "v1.1.0-beta"}, selectOptions{PreRelease: true}, "v1.1.0-rc.10"},
		{"track major", []string{"v1.4.0", "v2.0.0", "v1.5.1"}, selectOptions{Track: "v1"}, "v1.5.1"},
		{"track minor", []string{"v1.4.0", "v1.4.7", "v1.5.1"}, selectOptions{Track: "v1.4"}, "v1.4.7"},
		{"track with nothing", []string{"v2.0.0"}, selectOptions{Track: "v1"}, ""},
		{"build metadata does not order", []string{"v1.0.0+b", "v1.0.0+a"}, selectOptions{}, "v1.0.0+b"},
		{"build metadata loses to newer", []string{"v1.0.0+zzz", "v1.0.1"}, selectOptions{}, "v1.0.1"},
		{"empty", nil, selectOptions{}, ""},
		{"short forms ignored", []string{"v1", "v1.2", "v1.0.0"}, selectOptions{}, "v1.0.0"},
		{"slot", []string{"v1.0.0+blue", "v1.1.0+green", "v1.2.0"}, selectOptions{Slot: "blue"}, "v1.0.0+blue"},
		{"slot is exact", []string{"v1.0.0+blue.1", "v1.0.0+Blue"}, selectOptions{Slot: "blue"}, ""},
		{"slot skips its pre-releases", []string{"v1.0.0+blue", "v1.1.0-rc.1+blue"}, selectOptions{Slot: "blue"}, "v1.0.0+blue"},
		{"slot with pre-releases", []string{"v1.0.0+blue", "v1.1.0-rc.1+blue", "v1.2.0-rc.1+green"}, selectOptions{Slot: "blue", PreRelease: true}, "v1.1.0-rc.1+blue"},
		{"slot within a track", []string{"v1.4.0+blue", "v2.0.0+blue", "v1.9.0+green"}, selectOptions{Slot: "blue", Track: "v1"}, "v1.4.0+blue"},
		{"calver", []string{"2024.01.15.1", "2024.01.15.0", "v1.2.3", "2023.12.31.7"}, selectOptions{CalVer: mustCalver("YYYY.0M.0D.MICRO")}, "2024.01.15.1"},
		{"calver ignores semver", []string{"v9.9.9"}, selectOptions{CalVer: mustCalver("YYYY.0M.0D.MICRO")}, ""},
		{"calver pre-release skipped", []string{"2024.01.15.1", "2024.02.01.0-rc.1"}, selectOptions{CalVer: mustCalver("YYYY.0M.0D.MICRO")}, "2024.01.15.1"},
		{"calver pre-release allowed", []string{"2024.01.15.1", "2024.02.01.0-rc.1"}, selectOptions{CalVer: mustCalver("YYYY.0M.0D.MICRO"), PreRelease: true}, "2024.02.01.0-rc.1"},
		{"calver slot", []string{"2024.06.0+blue", "2024.07.0+green"}, selectOptions{CalVer: mustCalver("YYYY.0M.MICRO"), Slot: "blue"}, "2024.06.0+blue"},
		{"calver track", []string{"2024.06.3", "2024.07.0", "2025.01.0"}, selectOptions{CalVer: mustCalver("YYYY.0M.MICRO"), Track: "v2024"}, "2024.07.0"},
		{"calver track month", []string{"2024.06.3", "2024.07.0"}, selectOptions{CalVer: mustCalver("YYYY.0M.MICRO"), Track: "v2024.6"}, "2024.06.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel, _, ok := newest(rels(tc.tags...), tc.opt, discardLogger())
			got := ""
			if ok {
				got = rel.Tag
			}
			if got != tc.want {
				t.Fatalf("newest(%v) = %q, want %q", tc.tags, got, tc.want)
			}
		})
	}
	// The registry's own pre-release flag counts too (GitHub marks them).
	r := []release{{Tag: "v1.0.0"}, {Tag: "v1.1.0", Prerelease: true}}
	if rel, _, _ := newest(r, selectOptions{}, discardLogger()); rel.Tag != "v1.0.0" {
		t.Fatalf("flagged pre-release chosen: %q", rel.Tag)
	}
}

func mustCalver(s string) *calverFormat {
	f, err := parseCalverFormat(s)
	if err != nil {
		panic(err)
	}
	return f
}

// A tag that does not fit --calver is ignored with one debug line naming it.
func TestNewestLogsIgnoredCalverTag(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, _, ok := newest(rels("2024.01.15.0", "v1.2.3"), selectOptions{CalVer: mustCalver("YYYY.0M.0D.MICRO")}, log)
	if !ok {
		t.Fatal("newest found nothing, want 2024.01.15.0")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=DEBUG") || !strings.Contains(lines[0], "tag=v1.2.3") ||
		!strings.Contains(lines[0], "YYYY.0M.0D.MICRO") {
		t.Fatalf("log = %q, want one debug line naming tag v1.2.3 and the format", buf.String())
	}
}

func TestParseTrack(t *testing.T) {
	for in, want := range map[string]string{"v1": "v1", "1": "v1", "v1.4": "v1.4", "0.3": "v0.3"} {
		if got, err := parseTrack(in); err != nil || got != want {
			t.Errorf("parseTrack(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "v1.2.3", "latest", "v01", "1.x"} {
		if _, err := parseTrack(in); err == nil {
			t.Errorf("parseTrack(%q) succeeded, want error", in)
		}
	}
}

// goreleaser's default names for a matrix of platforms.
var goreleaserAssets = []string{
	"app_1.2.0_linux_amd64.tar.gz", "app_1.2.0_linux_arm64.tar.gz", "app_1.2.0_linux_armv6.tar.gz",
	"app_1.2.0_darwin_amd64.tar.gz", "app_1.2.0_darwin_arm64.tar.gz",
	"app_1.2.0_windows_amd64.zip", "app_1.2.0_windows_arm64.zip", "app_1.2.0_linux_386.tar.gz",
	"checksums.txt", "app_1.2.0_linux_amd64.tar.gz.sig", "app_1.2.0_linux_amd64.deb", "app_1.2.0_linux_amd64.sbom.json",
}

func TestPickAsset(t *testing.T) {
	mk := func(names ...string) release {
		r := release{Tag: "v1.2.0"}
		for _, n := range names {
			r.Assets = append(r.Assets, asset{Name: n})
		}
		return r
	}
	for _, tc := range []struct {
		assets     []string
		goos, arch string
		want       string // or "error: <substring>"
	}{
		{goreleaserAssets, "linux", "amd64", "app_1.2.0_linux_amd64.tar.gz"},
		{goreleaserAssets, "linux", "arm64", "app_1.2.0_linux_arm64.tar.gz"},
		{goreleaserAssets, "linux", "arm", "app_1.2.0_linux_armv6.tar.gz"},
		{goreleaserAssets, "linux", "386", "app_1.2.0_linux_386.tar.gz"},
		{goreleaserAssets, "darwin", "amd64", "app_1.2.0_darwin_amd64.tar.gz"},
		{goreleaserAssets, "darwin", "arm64", "app_1.2.0_darwin_arm64.tar.gz"},
		{goreleaserAssets, "windows", "amd64", "app_1.2.0_windows_amd64.zip"},
		{goreleaserAssets, "windows", "arm64", "app_1.2.0_windows_arm64.zip"},
		{[]string{"app_Linux_x86_64.tar.gz", "app_Linux_arm64.tar.gz", "app_Darwin_x86_64.tar.gz"}, "linux", "amd64", "app_Linux_x86_64.tar.gz"},
		{[]string{"app-macos-aarch64.zip", "app-linux-aarch64.zip"}, "darwin", "arm64", "app-macos-aarch64.zip"},
		{[]string{"app_linux_x64"}, "linux", "amd64", "app_linux_x64"},
		{[]string{"app_linux_i386.tgz"}, "linux", "386", "app_linux_i386.tgz"},
		{[]string{"app_linux_arm64.tar.gz"}, "linux", "arm", "error: no asset for linux/arm"},
		{[]string{"app_linux_arm.tar.gz"}, "linux", "arm64", "error: no asset for linux/arm64"},
		{[]string{"app_linux_amd64.tar.gz", "app_linux_amd64.zip"}, "linux", "amd64", "error: several assets"},
		{[]string{"checksums.txt"}, "linux", "amd64", "error: no asset"},
		{nil, "linux", "amd64", "error: (assets: none)"},
		// One candidate that names no platform runs anywhere.
		{[]string{"site.tar.gz", "checksums.txt", "site.tar.gz.minisig"}, "linux", "amd64", "site.tar.gz"},
		{[]string{"site.tar.gz", "checksums.txt"}, "darwin", "arm64", "site.tar.gz"},
		{[]string{"app-1.2.0.jar", "app-1.2.0.jar.sha256"}, "windows", "amd64", "app-1.2.0.jar"},
		{[]string{"bundle.sh"}, "freebsd", "riscv64", "bundle.sh"},
		// Named for this host beats platform-neutral.
		{[]string{"site.tar.gz", "app_linux_amd64.tar.gz"}, "linux", "amd64", "app_linux_amd64.tar.gz"},
		// Several candidates, none for this host: the error lists them.
		{[]string{"site.tar.gz", "docs.zip", "checksums.txt"}, "linux", "amd64", `error: (candidates: "site.tar.gz", "docs.zip")`},
		{[]string{"site.tar.gz", "app_darwin_arm64.tar.gz"}, "linux", "amd64", `error: (candidates: "site.tar.gz", "app_darwin_arm64.tar.gz")`},
		// A lone candidate for another platform is not taken.
		{[]string{"app_linux_arm64.tar.gz", "checksums.txt"}, "linux", "amd64", `error: (candidates: "app_linux_arm64.tar.gz")`},
		{[]string{"app_riscv64.tar.gz"}, "linux", "amd64", "error: no asset for linux/amd64"},
		{[]string{"app-windows.zip"}, "linux", "amd64", "error: no asset for linux/amd64"},
	} {
		a, err := pickAsset(mk(tc.assets...), selectOptions{GOOS: tc.goos, GOARCH: tc.arch})
		if want, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("pickAsset(%s/%s, %v) = %q, %v; want error containing %q", tc.goos, tc.arch, tc.assets, a.Name, err, want)
			}
			continue
		}
		if err != nil || a.Name != tc.want {
			t.Errorf("pickAsset(%s/%s) = %q, %v; want %q", tc.goos, tc.arch, a.Name, err, tc.want)
		}
	}
	a, err := pickAsset(mk(goreleaserAssets...), selectOptions{Artifact: "app_1.2.0_linux_386.tar.gz", GOOS: "linux", GOARCH: "amd64"})
	if err != nil || a.Name != "app_1.2.0_linux_386.tar.gz" {
		t.Errorf("artifact= pick = %q, %v", a.Name, err)
	}
	if _, err := pickAsset(mk(goreleaserAssets...), selectOptions{Artifact: "nope.zip"}); err == nil || !strings.Contains(err.Error(), `"nope.zip"`) {
		t.Errorf("missing artifact= error = %v", err)
	}
}

func TestBareName(t *testing.T) {
	for in, want := range map[string]string{
		"myapp_1.2.0_linux_amd64":      "myapp",
		"myapp-v1.2.0-linux-amd64":     "myapp",
		"my-app_linux_x86_64":          "my-app",
		"myapp_windows_amd64.exe":      "myapp.exe",
		"myapp":                        "myapp",
		"server-linux-arm64":           "server",
		"linux_amd64":                  "linux_amd64",
		"tool_2.0.0-rc.1_darwin_arm64": "tool",
	} {
		if got := bareName(in); got != want {
			t.Errorf("bareName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseChecksums(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	other := strings.Repeat("cd", 32)
	list := other + "  other.tar.gz\n" + sum + " *app.tar.gz\n\n# comment\n"
	for _, tc := range []struct {
		data   string
		single bool
		want   string
		ok     bool
		err    string
	}{
		{list, false, sum, true, ""},
		{other + "  ./app.tar.gz\n", false, other, true, ""},
		{other + "  other.tar.gz\n", false, "", false, ""},
		{sum + "\n", true, sum, true, ""},
		{sum + "\n", false, "", false, ""},
		{strings.ToUpper(sum) + "  app.tar.gz\n", false, sum, true, ""},
		{"nothex  app.tar.gz\n", false, "", false, "line 1"},
		{"abcd  app.tar.gz\n", false, "", false, "not a sha256 digest"},
	} {
		got, ok, err := parseChecksums([]byte(tc.data), "app.tar.gz", tc.single)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseChecksums(%q) err = %v, want %q", tc.data, err, tc.err)
			}
			continue
		}
		if err != nil || ok != tc.ok || got != tc.want {
			t.Errorf("parseChecksums(%q) = %q, %v, %v; want %q, %v", tc.data, got, ok, err, tc.want, tc.ok)
		}
	}
}
