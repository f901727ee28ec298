package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// dewyProc is one running dewy whose output the test reads.
type dewyProc struct {
	cmd *exec.Cmd
	out *syncBuffer
}

func startDewy(t *testing.T, env []string, args ...string) *dewyProc {
	t.Helper()
	cmd := exec.Command(dewyBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	return &dewyProc{cmd, out}
}

// ctl runs a dewy client command and fails the test unless it exits 0.
func ctl(t *testing.T, args ...string) string {
	t.Helper()
	r := runDewy(t, nil, args...)
	if r.status != 0 {
		t.Fatalf("dewy %s: exit %d:\n%s", strings.Join(args, " "), r.status, r.out)
	}
	return r.out
}

func adminStatus(t *testing.T, admin string) statusJSON {
	t.Helper()
	r := runDewy(t, nil, "status", "--admin", admin, "--json")
	var s statusJSON
	if err := json.Unmarshal([]byte(r.out), &s); err != nil {
		t.Fatalf("dewy status --json: %v:\n%s", err, r.out)
	}
	return s
}

// Host controls on `dewy server` under keep-alive load: rollback to the
// previous release holds the one rolled back from, pin goes forward and
// pauses, a pause survives SIGKILL, resume deploys the newest. Not one
// request fails, and each action is in the audit log with the peer's uid.
func TestE2EControlServer(t *testing.T) {
	buildApps(t)
	reg, root := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	admin := "unix:" + filepath.Join(t.TempDir(), "admin.sock")
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: appRelease(t, "v1.0.0", "v1")}})
	args := []string{"server", "--registry", "file://" + reg, "--root", root, "--admin", admin,
		"-p", addr, "--health-path", "/healthz", "--health-timeout", "5s", "--drain-timeout", "5s", "-i", "1h",
		"--", filepath.Join(root, "current", "app")}
	d := startDewy(t, nil, args...)
	waitFor(t, d.out, "deployed v1.0.0")
	url := "http://" + addr + "/"
	l := startLoad(t, url, 4, 0, false)

	poll := func(p *dewyProc) { p.cmd.Process.Signal(syscall.SIGUSR1) }

	publishDir(t, reg, []suiteRelease{{Tag: "v2.0.0", Files: appRelease(t, "v2.0.0", "v2")}})
	poll(d)
	waitFor(t, d.out, "deployed v2.0.0")

	if out := ctl(t, "rollback", "--admin", admin); !strings.Contains(out, "rolled back to v1.0.0") {
		t.Fatalf("dewy rollback said %q", out)
	}
	if body, _ := get(t, url); !strings.Contains(body, "v1") {
		t.Fatalf("after rollback the service answers %q, want v1", body)
	}
	poll(d)
	waitFor(t, d.out, "not deploying v2.0.0")
	s := adminStatus(t, admin)
	if s.Current != "v1.0.0" || s.Pending != "v2.0.0" || !strings.Contains(s.PendingWhy, "rolled back") || len(s.Held) != 1 {
		t.Fatalf("after rollback status: current %q, pending %q (%q), held %q", s.Current, s.Pending, s.PendingWhy, s.Held)
	}

	if out := ctl(t, "pin", "v2.0.0", "--admin", admin); !strings.Contains(out, "pinned to v2.0.0") {
		t.Fatalf("dewy pin said %q", out)
	}
	if body, _ := get(t, url); !strings.Contains(body, "v2") {
		t.Fatalf("after pin the service answers %q, want v2", body)
	}
	ctl(t, "pause", "--admin", admin, "--reason", "incident 42")
	publishDir(t, reg, []suiteRelease{{Tag: "v3.0.0", Files: appRelease(t, "v3.0.0", "v1")}})
	poll(d)
	waitFor(t, d.out, "not deploying v3.0.0")
	l.check(t, 20)
	st := runDewy(t, nil, "status", "--admin", admin)
	for _, want := range []string{"paused by uid", "incident 42", "v3.0.0, held back"} {
		if !strings.Contains(st.out, want) {
			t.Errorf("dewy status lacks %q:\n%s", want, st.out)
		}
	}

	// SIGKILL: nothing gets to save anything; the pause was saved when asked.
	d.cmd.Process.Kill()
	d.cmd.Wait()
	d = startDewy(t, nil, args...)
	waitFor(t, d.out, "not deploying v3.0.0")
	if s := adminStatus(t, admin); s.Paused == nil || s.Paused.Reason != "incident 42" || s.Current != "v2.0.0" {
		t.Fatalf("after SIGKILL and restart: paused %v, current %q; want paused (incident 42) on v2.0.0", s.Paused, s.Current)
	}
	ctl(t, "resume", "--admin", admin)
	waitFor(t, d.out, "deployed v3.0.0")

	events, err := readAudit(filepath.Join(root, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range events {
		if e.By != "" {
			if !strings.HasPrefix(e.By, fmt.Sprintf("uid %d", os.Getuid())) {
				t.Errorf("%s by %q, want the client's uid %d", e.Kind, e.By, os.Getuid())
			}
			seen = append(seen, e.Kind+" "+e.Version)
		}
	}
	if want := "rollback v1.0.0,pinned v2.0.0,paused v2.0.0,resumed v2.0.0"; strings.Join(seen, ",") != want {
		t.Errorf("operator actions in the audit log: %q, want %q", strings.Join(seen, ","), want)
	}
}

// `assets --once` honours a pause from the state file, says so and exits 0.
func TestE2EControlOncePaused(t *testing.T) {
	reg, root := t.TempDir(), t.TempDir()
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: siteRelease(t, "v1.0.0")}})
	args := []string{"assets", "--once", "--registry", "file://" + reg, "--root", root}
	if r := runDewy(t, nil, args...); r.status != 0 {
		t.Fatalf("first --once: exit %d:\n%s", r.status, r.out)
	}
	s, err := loadState(root)
	if err != nil {
		t.Fatal(err)
	}
	s.Paused = &pauseInfo{Reason: "freeze", By: "uid 0"}
	if err := s.save(root); err != nil {
		t.Fatal(err)
	}
	publishDir(t, reg, []suiteRelease{{Tag: "v1.1.0", Files: siteRelease(t, "v1.1.0")}})
	r := runDewy(t, nil, args...)
	if r.status != 0 || !strings.Contains(r.out, "not deploying: deploys paused by uid 0: freeze") {
		t.Fatalf("--once while paused: exit %d, want 0 and the pause named:\n%s", r.status, r.out)
	}
	if got := readCurrent(t, root, "index.html"); got != "site v1.0.0" {
		t.Fatalf("--once while paused: current serves %q, want v1.0.0", got)
	}
}
