package main

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFileStillSince(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	sum := func(b byte) [32]byte { return [32]byte{b} }
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name string
		prev fileLook
		scan releaseScan
		now  time.Time
		want time.Time
	}{
		{"first look trusts the change time", fileLook{}, releaseScan{sum: sum(1), changed: at(-5)}, at(0), at(-5)},
		{"unchanged keeps its time", fileLook{sum: sum(1), since: at(-9), at: at(-1)}, releaseScan{sum: sum(1), changed: at(-5)}, at(0), at(-9)},
		{"changed after the last look", fileLook{sum: sum(1), since: at(-9), at: at(-3)}, releaseScan{sum: sum(2), changed: at(-2)}, at(0), at(-2)},
		{"changed but no change time says so", fileLook{sum: sum(1), since: at(-9), at: at(-3)}, releaseScan{sum: sum(2), changed: at(-9)}, at(0), at(0)},
		{"change time ahead of this clock", fileLook{}, releaseScan{sum: sum(1), changed: at(60)}, at(0), at(0)},
		{"a file vanished during the walk", fileLook{sum: sum(1), since: at(-9), at: at(-1)}, releaseScan{sum: sum(1), changed: at(-9), vanished: true}, at(0), at(0)},
	} {
		got := (&fileRegistry{}).stillSince(tc.prev, tc.scan, tc.now)
		if !got.since.Equal(tc.want) || got.sum != tc.scan.sum || !got.at.Equal(tc.now) {
			t.Errorf("%s: since = %v, want %v", tc.name, got.since.Format(time.TimeOnly), tc.want.Format(time.TimeOnly))
		}
	}
}

// settleClock is a file:// registry with a settle window of an hour and a
// clock the test sets, so that no result depends on how fast the machine is.
type settleClock struct {
	r   *fileRegistry
	now time.Time
}

func newSettleClock(t *testing.T, dir string) *settleClock {
	t.Helper()
	r, err := newFileRegistry(&url.URL{Scheme: "file", Path: dir, RawQuery: "settle=1h"})
	if err != nil {
		t.Fatal(err)
	}
	c := &settleClock{r: r}
	r.now = func() time.Time { return c.now }
	return c
}

// look lists the registry at time now and returns the release tag, if any.
func (c *settleClock) look(t *testing.T, now time.Time, tag string) (release, bool) {
	t.Helper()
	c.now = now
	rels, err := c.r.releases(t.Context())
	if err != nil {
		t.Fatalf("releases: %v", err)
	}
	for _, r := range rels {
		if r.Tag == tag {
			return r, true
		}
	}
	return release{}, false
}

// settling asserts that tag is listed and still settling at now, and
// returns when it will have settled.
func (c *settleClock) settling(t *testing.T, now time.Time, tag, when string) time.Time {
	t.Helper()
	rel, ok := c.look(t, now, tag)
	if !ok {
		t.Fatalf("%s: %s not listed", when, tag)
	}
	if !rel.SettlingUntil.After(now) {
		t.Fatalf("%s: %s offered (SettlingUntil %v at %v), want it settling", when, tag, rel.SettlingUntil, now)
	}
	return rel.SettlingUntil
}

// settled asserts that tag is offered at now and returns it.
func (c *settleClock) settled(t *testing.T, now time.Time, tag, when string) release {
	t.Helper()
	rel, ok := c.look(t, now, tag)
	if !ok || !rel.SettlingUntil.IsZero() {
		t.Fatalf("%s: %s listed=%v SettlingUntil=%v at %v; want it offered", when, tag, ok, rel.SettlingUntil, now)
	}
	return rel
}

// needTool skips a test whose copy tool is missing, except under
// scripts/test, which installs it.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("DEWY_TEST_REQUIRE_BACKENDS") == "1" {
			t.Fatalf("%s not installed (scripts/test installs it)", name)
		}
		t.Skipf("%s not installed (scripts/test installs it)", name)
	}
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// staticSite writes a release as a build would leave it a day before it
// is published: a platform-neutral artifact with subdirectories beside
// it, and, in a second directory, its checksum file. The old times, far
// outside the settle window, are what cp -a, rsync -a and scp -p carry
// into the registry.
func staticSite(t *testing.T, tag string) (art, sums string) {
	t.Helper()
	art, sums = t.TempDir(), t.TempDir()
	tgz := e2eTarGz(t, map[string]string{"index.html": "site " + tag})
	files := map[string][]byte{
		filepath.Join(art, "site.tar.gz"):          tgz,
		filepath.Join(art, "docs", "notes.html"):   []byte("release notes"),
		filepath.Join(art, "docs", "old", "x.txt"): []byte("older notes"),
		filepath.Join(sums, "checksums.txt"):       []byte(sha256Hex(tgz) + "  site.tar.gz\n"),
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-24 * time.Hour)
	for _, dir := range []string{art, sums} {
		// Deepest first, so setting a file's times leaves its directory's alone.
		var paths []string
		filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
			paths = append(paths, p)
			return err
		})
		for i := len(paths) - 1; i >= 0; i-- {
			if err := os.Chtimes(paths[i], old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	return art, sums
}

// TestFilePublishingMethods copies a release into a file:// registry with
// each tool people publish with, artifact first and checksum file a moment
// later, and asserts that the release is not offered until its directory
// has been still for the whole settle window, and is offered right then.
func TestFilePublishingMethods(t *testing.T) {
	for _, m := range []struct {
		name       string
		tool       string
		keepsTimes bool
		// copy publishes directory art as reg/tag, then sums/checksums.txt into it.
		art, sums func(art, sums, dst string) []string
	}{
		{"cp -r", "cp", false,
			func(art, _, dst string) []string { return []string{"-r", art, dst} },
			func(_, sums, dst string) []string { return []string{"-r", filepath.Join(sums, "checksums.txt"), dst} }},
		{"cp -a", "cp", true,
			func(art, _, dst string) []string { return []string{"-a", art, dst} },
			func(_, sums, dst string) []string { return []string{"-a", filepath.Join(sums, "checksums.txt"), dst} }},
		{"rsync -a", "rsync", true,
			func(art, _, dst string) []string { return []string{"-a", art + "/", dst + "/"} },
			func(_, sums, dst string) []string { return []string{"-a", sums + "/", dst + "/"} }},
		// scp between two local paths, which it copies itself, with -p
		// keeping times as it does to a remote host.
		{"scp -rp", "scp", true,
			func(art, _, dst string) []string { return []string{"-rp", art, dst} },
			func(_, sums, dst string) []string { return []string{"-p", filepath.Join(sums, "checksums.txt"), dst} }},
	} {
		t.Run(m.name, func(t *testing.T) {
			needTool(t, m.tool)
			art, sums := staticSite(t, "v2.0.0")
			reg := t.TempDir()
			dst := filepath.Join(reg, "v2.0.0")
			c := newSettleClock(t, reg)

			runTool(t, m.tool, m.art(art, sums, dst)...)
			info, err := os.Stat(filepath.Join(dst, "site.tar.gz"))
			if err != nil {
				t.Fatal(err)
			}
			if kept := time.Since(info.ModTime()) > 12*time.Hour; kept != m.keepsTimes {
				t.Fatalf("%s kept the source's times: %v, want %v", m.name, kept, m.keepsTimes)
			}
			first := c.settling(t, time.Now(), "v2.0.0", "just copied")

			// The checksum file arrives late; the first window is over
			// by the clock, yet the directory has just changed.
			runTool(t, m.tool, m.sums(art, sums, dst)...)
			second := c.settling(t, first, "v2.0.0", "checksums just arrived")
			if !second.After(first) {
				t.Fatalf("settle time after a change = %v, want after %v", second, first)
			}

			rel := c.settled(t, second, "v2.0.0", "still for the window")
			a, err := pickAsset(rel, selectOptions{GOOS: "linux", GOARCH: "amd64"})
			if err != nil || a.Name != "site.tar.gz" || len(rel.Assets) != 2 {
				t.Fatalf("pickAsset = %q, %v (assets %s); want site.tar.gz of 2", a.Name, err, assetNames(rel.Assets))
			}
		})
	}
}

func TestFilePublishingDotDirectoryAndRename(t *testing.T) {
	art, sums := staticSite(t, "v2.0.0")
	reg := t.TempDir()
	hidden, dst := filepath.Join(reg, ".v2.0.0.partial"), filepath.Join(reg, "v2.0.0")
	c := newSettleClock(t, reg)
	runTool(t, "cp", "-r", art, hidden)
	runTool(t, "cp", filepath.Join(sums, "checksums.txt"), hidden)
	if rels, err := c.r.releases(t.Context()); err != nil || len(rels) != 0 {
		t.Fatalf("while in the dot-directory: releases = %v, %v; want none", rels, err)
	}
	runTool(t, "mv", hidden, dst)
	// The rename is the latest change: it changes the directory's own
	// inode, though none of the files inside.
	until := c.settling(t, time.Now(), "v2.0.0", "just renamed into place")
	c.settled(t, until, "v2.0.0", "still for the window")
}

func TestFileSettlingSeesDeepChanges(t *testing.T) {
	art, sums := staticSite(t, "v2.0.0")
	reg := t.TempDir()
	dst := filepath.Join(reg, "v2.0.0")
	c := newSettleClock(t, reg)
	runTool(t, "cp", "-a", art, dst)
	runTool(t, "cp", "-a", filepath.Join(sums, "checksums.txt"), dst)
	until := c.settling(t, time.Now(), "v2.0.0", "just copied")
	c.settled(t, until, "v2.0.0", "still for the window")
	for _, change := range []func() error{
		func() error {
			return os.WriteFile(filepath.Join(dst, "docs", "old", "x.txt"), []byte("rewritten"), 0o644)
		},
		func() error { return os.Chmod(filepath.Join(dst, "docs", "old"), 0o700) },
		func() error { return os.Remove(filepath.Join(dst, "docs", "notes.html")) },
	} {
		if err := change(); err != nil {
			t.Fatal(err)
		}
		next := c.settling(t, until, "v2.0.0", "changed deep inside")
		if !next.After(until) {
			t.Fatalf("settle time after a change = %v, want after %v", next, until)
		}
		until = next
		c.settled(t, until, "v2.0.0", "still again")
	}
}

// e2eStaticSite copies a platform-neutral release into reg/tag with cp -r
// and returns when the copy finished.
func e2eStaticSite(t *testing.T, reg, tag string) time.Time {
	t.Helper()
	art, sums := staticSite(t, tag)
	runTool(t, "cp", filepath.Join(sums, "checksums.txt"), art)
	runTool(t, "cp", "-r", art, filepath.Join(reg, tag))
	return time.Now()
}

func assertQuiet(t *testing.T, out string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			t.Fatalf("unexpected line %q in:\n%s", l, out)
		}
	}
}

// The window is long enough that dewy's first look always comes while
// the release is settling, however loaded the machine.
const e2eSettle = "settle=8s"

func TestE2EFileOnceWaitsForSettling(t *testing.T) {
	t.Parallel()
	reg, root := t.TempDir(), t.TempDir()
	copied := e2eStaticSite(t, reg, "v1.0.0")
	r := runDewy(t, nil, "assets", "--registry", "file://"+reg+"?"+e2eSettle, "--root", root, "--once")
	if r.status != 0 || readCurrent(t, root, "index.html") != "site v1.0.0" {
		t.Fatalf("--once right after cp -r: status %d, output:\n%s", r.status, r.out)
	}
	if !strings.Contains(r.out, "release v1.0.0 is still arriving; looking again at") {
		t.Fatalf("no settling line:\n%s", r.out)
	}
	assertQuiet(t, r.out)
	st, err := loadState(root)
	if err != nil {
		t.Fatal(err)
	}
	// cp returned a moment after the kernel stamped its last change.
	if early := copied.Add(7 * time.Second).Sub(st.DeployedAt); early > 0 {
		t.Fatalf("deployed %v before the release had been still for 8s", early+time.Second)
	}
}

func TestE2EFileOnceGivesUpOnALongSettle(t *testing.T) {
	t.Parallel()
	reg, root := t.TempDir(), t.TempDir()
	e2eStaticSite(t, reg, "v1.0.0")
	r := runDewy(t, nil, "assets", "--registry", "file://"+reg+"?settle=10m", "--root", root, "--once")
	if r.status != 1 || !strings.Contains(r.out, "release v1.0.0 is still arriving and will not have settled before") {
		t.Fatalf("--once with a 10m settle: status %d, output:\n%s", r.status, r.out)
	}
	if _, err := os.Lstat(filepath.Join(root, "current")); err == nil {
		t.Fatalf("current exists; nothing should have been deployed")
	}
}

func TestE2EFileIntervalLooksAgainAfterSettling(t *testing.T) {
	t.Parallel()
	reg, root := t.TempDir(), t.TempDir()
	e2eStaticSite(t, reg, "v1.0.0")
	d := startDewy(t, nil, "assets", "--registry", "file://"+reg+"?"+e2eSettle, "--root", root, "-i", "1h")
	cmd, out := d.cmd, d.out
	waitFor(t, out, "release v1.0.0 is still arriving; looking again at")
	// waitFor gives up long before the hour the interval would take.
	waitFor(t, out, "deployed v1.0.0")
	if got := readCurrent(t, root, "index.html"); got != "site v1.0.0" {
		t.Fatalf("current = %q", got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dewy did not exit cleanly on SIGTERM: %v\n%s", err, out.String())
	}
	assertQuiet(t, out.String())
}

func TestCheckWaitsForSettlingRelease(t *testing.T) {
	reg, root := t.TempDir(), t.TempDir()
	c := newSettleClock(t, reg)
	d := newTestDeployer(t, c.r, root)
	var logs syncBuffer
	d.log = slog.New(slog.NewTextHandler(&logs, nil))
	d.now = func() time.Time { return c.now }

	c.now = time.Now()
	_, err := d.check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "holds no releases") {
		t.Fatalf("check on an empty registry = %v, want \"holds no releases\"", err)
	}

	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: siteRelease(t, "v1.0.0")}})
	c.now = time.Now()
	res, err := d.check(t.Context())
	if err != nil || res.UpToDate || res.Settling != "v1.0.0" || !res.LookAgain.After(c.now) {
		t.Fatalf("check while settling = %+v, %v; want v1.0.0 settling, no error", res, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "current")); err == nil {
		t.Fatal("a settling release was deployed")
	}
	want := "level=INFO msg=\"release v1.0.0 is still arriving; looking again at " + res.LookAgain.Format("15:04:05.000") + "\""
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %s:\n%s", want, logs.String())
	}

	c.now = res.LookAgain
	res, err = d.check(t.Context())
	if err != nil || !res.UpToDate || !res.LookAgain.IsZero() {
		t.Fatalf("check once settled = %+v, %v; want deployed", res, err)
	}
	assertServing(t, root, "v1.0.0")
}

// TestPollLoopLooksAgainWhenSettled runs the poll loop with an hour's
// interval: the release copied in is deployed once it has settled, not an
// hour later.
func TestPollLoopLooksAgainWhenSettled(t *testing.T) {
	reg, root := t.TempDir(), t.TempDir()
	r, err := newFileRegistry(&url.URL{Scheme: "file", Path: reg, RawQuery: "settle=300ms"})
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDeployer(t, r, root)
	live := make(chan string, 1)
	d.act = activatorFunc(func(_ context.Context, v string) error { live <- v; return nil })
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: siteRelease(t, "v1.0.0")}})

	startPollLoop(t, d, time.Hour)
	select {
	case v := <-live:
		if v != "v1.0.0" {
			t.Fatalf("activated %q, want v1.0.0", v)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("not deployed a minute after the copy; the poll loop waits its interval")
	}
}

func TestFileRegistrySkipsVanishedRelease(t *testing.T) {
	reg := t.TempDir()
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: map[string][]byte{"site.tar.gz": []byte("x")}}})
	rel, scan, err := scanRelease(filepath.Join(reg, "v2.0.0"))
	if !errors.Is(err, errNotFound) || len(rel.Assets) != 0 || !scan.changed.IsZero() {
		t.Fatalf("scanRelease of a missing directory = %v, %v; want errNotFound", rel, err)
	}
	rels, err := settledFileRegistry(t, reg).releases(t.Context())
	if err != nil || len(rels) != 1 {
		t.Fatalf("releases = %v, %v; want v1.0.0", rels, err)
	}
}
