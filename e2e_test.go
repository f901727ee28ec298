package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	dewyBinOnce sync.Once
	dewyBinDir  string
	dewyBinErr  error
)

// dewyAsName is the name under which this test binary runs as dewy itself
// (see TestMain), the way busybox picks its part by argv[0].
const dewyAsName = "dewy"

// dewyBinary is the dewy command for end-to-end tests: a symlink named
// dewy to this test binary. Going by name rather than an environment
// variable keeps the switch out of the environment of the apps and hooks
// dewy starts, works for tests that run it through a shell, and shows the
// process as dewy; the test binary saves a build of dewy and carries the
// test's own -race or -cover.
func dewyBinary(t *testing.T) string {
	t.Helper()
	dewyBinOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			dewyBinErr = err
			return
		}
		// Removed by TestMain.
		if dewyBinDir, dewyBinErr = sharedDirs.make("dewy-e2e-bin-"); dewyBinErr != nil {
			return
		}
		dewyBinErr = os.Symlink(self, filepath.Join(dewyBinDir, dewyAsName))
	})
	if dewyBinErr != nil {
		t.Fatal(dewyBinErr)
	}
	return filepath.Join(dewyBinDir, dewyAsName)
}

// e2eTarGz packs files (name → content) the way a release pipeline would.
func e2eTarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	return tarGzLevel(t, files, gzip.DefaultCompression)
}

// tarGzLevel is e2eTarGz at a gzip level: a test that packs executables
// of megabytes takes gzip.NoCompression, as deflating them under the race
// detector takes seconds on a busy machine.
func tarGzLevel(t *testing.T, files map[string]string, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(gz)
	for name, body := range files {
		mode := int64(0o644)
		if strings.HasSuffix(name, ".sh") || name == "app" {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// siteRelease is a release of a static site for this host, with checksums.
func siteRelease(t *testing.T, tag string) map[string][]byte {
	art := e2eTarGz(t, map[string]string{"index.html": "site " + tag, "bin/run.sh": "#!/bin/sh\necho " + tag})
	name := fmt.Sprintf("site_%s_linux_amd64.tar.gz", strings.TrimPrefix(tag, "v"))
	return map[string][]byte{
		name:            art,
		"checksums.txt": []byte(sha256Hex(art) + "  " + name + "\n"),
	}
}

type dewyRun struct {
	out    string
	status int
}

func runDewy(t *testing.T, env []string, args ...string) dewyRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dewyBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	status := 0
	if ee, ok := err.(*exec.ExitError); ok {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run dewy: %v", err)
	}
	return dewyRun{string(out), status}
}

func readCurrent(t *testing.T, root, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "current", file))
	if err != nil {
		t.Fatalf("read current/%s: %v", file, err)
	}
	return string(b)
}

// assertNoLeftovers checks that nothing half-made is visible under root.
func assertNoLeftovers(t *testing.T, root string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(root, "releases", "*"+tmpMarker+"*"))
	tmp, _ := filepath.Glob(filepath.Join(root, ".dewy", "tmp", "*"))
	if len(matches)+len(tmp) > 0 {
		t.Fatalf("leftovers: %v %v", matches, tmp)
	}
}

func TestE2EAssetsOnceFileRegistry(t *testing.T) {
	reg, root := t.TempDir(), t.TempDir()
	publish := func(tag string, files map[string][]byte) {
		publishDir(t, reg, []suiteRelease{{Tag: tag, Files: files}})
	}
	publish("v1.0.0", siteRelease(t, "v1.0.0"))
	args := []string{"assets", "--registry", "file://" + reg, "--root", root, "--once"}

	r := runDewy(t, nil, args...)
	if r.status != 0 || readCurrent(t, root, "index.html") != "site v1.0.0" {
		t.Fatalf("first --once: status %d, output:\n%s", r.status, r.out)
	}
	if !strings.Contains(r.out, "deployed v1.0.0 (sha256 ") {
		t.Errorf("log does not say what was deployed:\n%s", r.out)
	}
	if info, err := os.Stat(filepath.Join(root, "current", "bin", "run.sh")); err != nil || info.Mode().Perm()&0o100 == 0 {
		t.Errorf("exec bit lost: %v %v", info.Mode(), err)
	}

	// Nothing new: nothing downloaded, exit 0.
	r = runDewy(t, nil, args...)
	if r.status != 0 || strings.Contains(r.out, "deploying") {
		t.Fatalf("second --once redeployed (status %d):\n%s", r.status, r.out)
	}

	// A release whose artifact does not match its checksum is refused by
	// name and digests; the live release stays.
	bad := siteRelease(t, "v1.1.0")
	bad["checksums.txt"] = []byte(strings.Repeat("0", 64) + "  site_1.1.0_linux_amd64.tar.gz\n")
	publish("v1.1.0", bad)
	r = runDewy(t, nil, args...)
	if r.status != 1 || !strings.Contains(r.out, "checksum mismatch for site_1.1.0_linux_amd64.tar.gz") || !strings.Contains(r.out, strings.Repeat("0", 64)) {
		t.Fatalf("bad checksum: status %d, output:\n%s", r.status, r.out)
	}
	if got := readCurrent(t, root, "index.html"); got != "site v1.0.0" {
		t.Fatalf("current after refused release = %q", got)
	}
	assertNoLeftovers(t, root)
	// The refused release is not downloaded again on the next poll.
	r = runDewy(t, nil, args...)
	if r.status != 1 || strings.Contains(r.out, "deploying v1.1.0") {
		t.Fatalf("refused release retried at once (status %d):\n%s", r.status, r.out)
	}

	// Fixed in place by the maintainer: a new version replaces it.
	publish("v1.2.0", siteRelease(t, "v1.2.0"))
	r = runDewy(t, nil, args...)
	if r.status != 0 || readCurrent(t, root, "index.html") != "site v1.2.0" {
		t.Fatalf("v1.2.0: status %d:\n%s", r.status, r.out)
	}
	if target, _ := os.Readlink(filepath.Join(root, "current")); target != filepath.Join("releases", "v1.2.0") {
		t.Fatalf("current -> %q, want releases/v1.2.0", target)
	}
}

func TestE2EAssetsBareExecutable(t *testing.T) {
	const name = "tool_2.0.0_linux_amd64"
	bin := []byte("#!/bin/sh\necho hi\n")
	reg, root := t.TempDir(), t.TempDir()
	publishDir(t, reg, []suiteRelease{{Tag: "v2.0.0", Files: map[string][]byte{name: bin}}})

	// Without a digest the release is refused, by default and with the
	// flag older configs set; --allow-unverified deploys it, with a warning.
	for _, flags := range [][]string{nil, {"--require-checksum"}} {
		r := runDewy(t, nil, append([]string{"assets", "--registry", "file://" + reg, "--root", t.TempDir(), "--once"}, flags...)...)
		if r.status != 1 || !strings.Contains(r.out, "no digest published for "+name) || !strings.Contains(r.out, "sha256sum") {
			t.Fatalf("%v: a release without a digest: status %d, want 1 and a message saying how to publish one:\n%s", flags, r.status, r.out)
		}
	}
	r := runDewy(t, nil, "assets", "--registry", "file://"+reg, "--root", t.TempDir(), "--once", "--allow-unverified")
	if r.status != 0 || !strings.Contains(r.out, "level=WARN") || !strings.Contains(r.out, "deploying unverified") {
		t.Fatalf("--allow-unverified: status %d, want 0 and a warning:\n%s", r.status, r.out)
	}

	publishDir(t, reg, []suiteRelease{{Tag: "v2.0.0", Files: map[string][]byte{name + ".sha256": []byte(sha256Hex(bin) + "\n")}}})
	r = runDewy(t, nil, "assets", "--registry", "file://"+reg, "--root", root, "--once")
	if r.status != 0 {
		t.Fatalf("status %d:\n%s", r.status, r.out)
	}
	info, err := os.Stat(filepath.Join(root, "current", "tool"))
	if err != nil || info.Mode().Perm() != 0o755 {
		t.Fatalf("current/tool: %v, %v; want an executable named tool", info, err)
	}
	if !strings.Contains(r.out, `verified_by="checksums file `+name+`.sha256"`) {
		t.Errorf("the deploy line does not name the checksum file:\n%s", r.out)
	}
}

func TestE2EAssetsLongRunning(t *testing.T) {
	reg, root := t.TempDir(), t.TempDir()
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: siteRelease(t, "v1.0.0")}})
	d := startDewy(t, nil, "assets", "--registry", "file://"+reg, "--root", root, "-i", "1h", "-l", "debug")
	cmd, out := d.cmd, d.out
	waitFor(t, out, "deployed v1.0.0")
	if got := readCurrent(t, root, "index.html"); got != "site v1.0.0" {
		t.Fatalf("current = %q", got)
	}
	// SIGUSR1 polls now instead of waiting the hour.
	publishDir(t, reg, []suiteRelease{{Tag: "v1.1.0", Files: siteRelease(t, "v1.1.0")}})
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, out, "deployed v1.1.0")
	if got := readCurrent(t, root, "index.html"); got != "site v1.1.0" {
		t.Fatalf("current = %q", got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dewy did not exit cleanly on SIGTERM: %v\n%s", err, out.String())
	}
}

func TestE2EAssetsGitHub(t *testing.T) {
	const token = "ghp_e2eSecretToken0123456789"
	gh := newFakeGitHub(t, token)
	gh.addRelease("v1.0.0", false, false, siteRelease(t, "v1.0.0"))
	gh.addRelease("v1.1.0-rc.1", true, false, siteRelease(t, "v1.1.0-rc.1"))
	gh.addRelease("v1.2.0", false, true, siteRelease(t, "v1.2.0")) // a draft
	root := t.TempDir()
	env := []string{"GITHUB_API_URL=" + gh.env()("GITHUB_API_URL"), "GITHUB_TOKEN=" + token}
	r := runDewy(t, env, "assets", "--registry", "ghr://"+gh.Owner+"/"+gh.Repo, "--root", root, "--once", "-l", "debug")
	if r.status != 0 || readCurrent(t, root, "index.html") != "site v1.0.0" {
		t.Fatalf("status %d:\n%s", r.status, r.out)
	}
	if gh.AssetAuthorized.Load() != 0 {
		t.Fatalf("the token was sent to the asset host")
	}
	if strings.Contains(r.out, token) {
		t.Fatalf("token in dewy's output:\n%s", r.out)
	}
	r = runDewy(t, env, "assets", "--registry", "ghr://"+gh.Owner+"/"+gh.Repo+"?pre-release=true", "--root", root, "--once")
	if r.status != 0 || readCurrent(t, root, "index.html") != "site v1.1.0-rc.1" {
		t.Fatalf("pre-release: status %d:\n%s", r.status, r.out)
	}
	// A wrong token is an error that names the repository, not the token.
	bad := []string{"GITHUB_API_URL=" + gh.env()("GITHUB_API_URL"), "GITHUB_TOKEN=wrong-token-value"}
	r = runDewy(t, bad, "assets", "--registry", "ghr://"+gh.Owner+"/"+gh.Repo, "--root", t.TempDir(), "--once")
	if r.status != 1 || strings.Contains(r.out, "wrong-token-value") || !strings.Contains(r.out, gh.Repo) {
		t.Fatalf("wrong token: status %d:\n%s", r.status, r.out)
	}
}

// syncBuffer collects a child's output while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// changed returns a channel closed at the next write.
func (b *syncBuffer) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// waitFor blocks until the output contains s, woken by each write.
func waitFor(t *testing.T, b *syncBuffer, s string) {
	t.Helper()
	waitForCount(t, b, s, 1)
}

// waitForCount waits until s appears n times in b. The deadline is generous:
// a loaded machine is slow, and only a hang should fail the test.
func waitForCount(t *testing.T, b *syncBuffer, s string, n int) {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		ch := b.changed()
		if strings.Count(b.String(), s) >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %d × %q in output:\n%s", n, s, b.String())
		}
	}
}

// report=true uploads deployed_<host>.json to the release, replacing the
// host's previous report; without it nothing is written to the repository.
func TestE2EGitHubReport(t *testing.T) {
	const token = "ghp_reportToken0123456789"
	gh := newFakeGitHub(t, token)
	gh.addRelease("v1.0.0", false, false, siteRelease(t, "v1.0.0"))
	env := []string{"GITHUB_API_URL=" + gh.env()("GITHUB_API_URL"), "GITHUB_TOKEN=" + token}
	base := "ghr://" + gh.Owner + "/" + gh.Repo
	r := runDewy(t, env, "assets", "--registry", base, "--root", t.TempDir(), "--once", "--host-id", "web-1")
	if r.status != 0 || gh.Uploads.Load() != 0 {
		t.Fatalf("report off: status %d, %d uploads:\n%s", r.status, gh.Uploads.Load(), r.out)
	}
	for i := range 2 {
		r = runDewy(t, env, "assets", "--registry", base+"?report=true", "--root", t.TempDir(), "--once", "--host-id", "web-1")
		if r.status != 0 || strings.Contains(r.out, "could not report") {
			t.Fatalf("report on, run %d: status %d:\n%s", i, r.status, r.out)
		}
	}
	data, ok := gh.asset("v1.0.0", "deployed_web-1.json")
	var ev deployEvent
	if !ok || json.Unmarshal(data, &ev) != nil || ev.Kind != eventDeployed || ev.Host != "web-1" || ev.Version != "v1.0.0" {
		t.Fatalf("deployed_web-1.json = %q (present %v)", data, ok)
	}
	if n := gh.Uploads.Load(); n != 2 {
		t.Fatalf("%d uploads, want 2 (the second replaces the first)", n)
	}
	if strings.Contains(string(data), token) {
		t.Fatalf("report holds the token")
	}
}
