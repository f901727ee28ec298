package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// appRelease packs a build of testdata/app (v1 or v2) as a release for this
// host; flags go into app.flags, which the app reads at start.
func appRelease(t *testing.T, tag, build string, flags ...string) map[string][]byte {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join(appBuildDir, build, "app"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"app": string(bin)}
	if len(flags) > 0 {
		files["app.flags"] = strings.Join(flags, " ")
	}
	art := e2eTarGz(t, files)
	name := "app_" + strings.TrimPrefix(tag, "v") + "_linux_amd64.tar.gz"
	return map[string][]byte{name: art, "checksums.txt": []byte(sha256Hex(art) + "  " + name + "\n")}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The whole product under load: dewy deploys from a registry, a release
// that never becomes healthy is rolled back with current pointing at the
// old one, and a good release after it goes live; no request fails.
func TestE2EServerRollbackUnderLoad(t *testing.T) {
	buildApps(t)
	reg, root := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: appRelease(t, "v1.0.0", "v1")}})

	cmd := exec.Command(dewyBinary(t), "server", "--registry", "file://"+reg, "--root", root,
		"-p", addr, "--health-path", "/healthz", "--health-timeout", "3s", "--drain-timeout", "5s", "-i", "1h",
		"--after-deploy-hook", `curl -sf http://`+addr+`/ >> after-hook.log; echo " $DEWY_VERSION" >> after-hook.log`,
		"--", filepath.Join(root, "current", "app"))
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, &out, "deployed v1.0.0")
	url := "http://" + addr + "/"
	if body, _ := get(t, url); !strings.Contains(body, "v1") {
		t.Fatalf("v1.0.0 live but answers %q", body)
	}
	l := startLoad(t, url, 4, 1, false)

	publishDir(t, reg, []suiteRelease{{Tag: "v2.0.0", Files: appRelease(t, "v2.0.0", "v2", "-never-healthy")}})
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, &out, "rolled back to v1.0.0")
	if target, _ := os.Readlink(filepath.Join(root, "current")); target != filepath.Join("releases", "v1.0.0") {
		t.Fatalf("after rollback current -> %q, want releases/v1.0.0", target)
	}
	if body, _ := get(t, url); !strings.Contains(body, "v1") {
		t.Fatalf("after rollback the service answers %q, want v1", body)
	}
	// The failed release is not tried again on the next poll.
	cmd.Process.Signal(syscall.SIGUSR1)
	publishDir(t, reg, []suiteRelease{{Tag: "v2.1.0", Files: appRelease(t, "v2.1.0", "v2")}})
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, &out, "deployed v2.1.0")
	if n := strings.Count(out.String(), "deploying v2.0.0"); n != 1 {
		t.Fatalf("v2.0.0 deployed %d times, want once", n)
	}
	if body, _ := get(t, url); !strings.Contains(body, "v2") {
		t.Fatalf("v2.1.0 live but answers %q", body)
	}
	l.check(t, 20)
	// The after-hook ran once the new child served: what it fetched is
	// the release it was told about, and never for the rolled-back one.
	hookLog, _ := os.ReadFile(filepath.Join(root, "after-hook.log"))
	lines := strings.Split(strings.TrimSpace(string(hookLog)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "v1") || !strings.HasSuffix(lines[0], " v1.0.0") ||
		!strings.Contains(lines[1], "v2") || !strings.HasSuffix(lines[1], " v2.1.0") {
		t.Fatalf("after-deploy hook log:\n%s", hookLog)
	}

	stopAndCheckHistory(t, cmd, &out, root, "rolled_back", "v2.0.0", "deployed", "v2.1.0", "stopped")
}

// stopAndCheckHistory stops dewy with SIGTERM, which it must exit 0 on,
// and checks that `dewy history` then names each of want.
func stopAndCheckHistory(t *testing.T, cmd *exec.Cmd, out *syncBuffer, root string, want ...string) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dewy exit after SIGTERM: %v\n%s", err, out.String())
	}
	hist := runDewy(t, nil, "history", "--root", root)
	for _, w := range want {
		if !strings.Contains(hist.out, w) {
			t.Errorf("dewy history lacks %q:\n%s", w, hist.out)
		}
	}
}

// A restarted dewy whose current release no longer starts (its directory
// was tampered with) deploys the registry's release afresh instead of
// calling it up to date and serving nothing.
func TestE2EServerRedeploysWhenCurrentWontStart(t *testing.T) {
	buildApps(t)
	reg, root := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: appRelease(t, "v1.0.0", "v1")}})
	start := func() (*exec.Cmd, *syncBuffer) { return startServer(t, reg, root, addr, "--health-timeout", "3s") }
	cmd, out := start()
	waitFor(t, out, "deployed v1.0.0")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "current", "app.flags"), []byte("-exit-at-once"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out = start()
	waitFor(t, out, "deploying afresh")
	waitFor(t, out, "deployed v1.0.0")
	if body, _ := get(t, "http://"+addr+"/"); !strings.Contains(body, "v1") {
		t.Fatalf("after redeploy the service answers %q", body)
	}
}

// A first release that does not start is retried with the crash backoff
// rather than abandoned; meanwhile the port refuses connections instead of
// leaving them unanswered, and a newer release goes live as soon as it
// appears.
func TestE2EServerFirstDeployFailsThenRecovers(t *testing.T) {
	buildApps(t)
	reg, root := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: appRelease(t, "v1.0.0", "v1", "-exit-at-once")}})
	cmd, out := startServer(t, reg, root, addr, "--health-timeout", "5s")
	waitFor(t, out, "nothing serves; refusing connections")
	// Each retry listens again while its process starts; between retries,
	// which back off, connections are refused.
	refused := false
	for deadline := time.Now().Add(3 * time.Minute); !refused && time.Now().Before(deadline); {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s while nothing serves: %v, want connection refused", addr, err)
		}
		refused = true
	}
	if !refused {
		t.Fatalf("dial %s: never refused while nothing served", addr)
	}
	// Tried again on its own, without waiting for the hour-long interval.
	waitForCount(t, out, "deploying v1.0.0", 2)
	if strings.Contains(out.String(), "current release keeps running") {
		t.Errorf("the log claims a current release where there is none:\n%s", out.String())
	}

	publishDir(t, reg, []suiteRelease{{Tag: "v1.1.0", Files: appRelease(t, "v1.1.0", "v2")}})
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, out, "deployed v1.1.0")
	if body, _ := get(t, "http://"+addr+"/"); !strings.Contains(body, "v2") {
		t.Fatalf("v1.1.0 live but answers %q", body)
	}
	stopAndCheckHistory(t, cmd, out, root, "down", "up")
}

// SIGTERM while a new release is gated stops dewy without holding it
// against the release: the next start tries it again.
func TestE2EServerStopDuringGate(t *testing.T) {
	buildApps(t)
	reg, root := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: appRelease(t, "v1.0.0", "v1")}})
	start := func() (*exec.Cmd, *syncBuffer) { return startServer(t, reg, root, addr, "--health-timeout", "10m") }
	cmd, out := start()
	waitFor(t, out, "deployed v1.0.0")
	// Never ready while the test runs: it listens only after an hour.
	publishDir(t, reg, []suiteRelease{{Tag: "v2.0.0", Files: appRelease(t, "v2.0.0", "v2", "-listen-after=1h")}})
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, out, "deploying v2.0.0")
	waitForCount(t, out, "child started", 2)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dewy exit after SIGTERM during the gate: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "rolled back") {
		t.Errorf("a stop during the gate was taken for a failed release:\n%s", out.String())
	}
	st, err := loadState(root)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := st.Failed["v2.0.0"]; ok {
		t.Errorf("state records v2.0.0 as failed (%s) after a stop during its gate", f.Reason)
	}
	if st.Current != "v1.0.0" {
		t.Errorf("state current = %q, want v1.0.0", st.Current)
	}
	cmd, out = start()
	waitFor(t, out, "deploying v2.0.0")
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// startServer runs `dewy server` from the file registry reg with a health
// path on addr, polling only when told; extra flags come before the command.
func startServer(t *testing.T, reg, root, addr string, extra ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	args := []string{"server", "--registry", "file://" + reg, "--root", root,
		"-p", addr, "--health-path", "/healthz", "-i", "1h"}
	args = append(append(args, extra...), "--", filepath.Join(root, "current", "app"))
	d := startDewy(t, nil, args...)
	return d.cmd, d.out
}
