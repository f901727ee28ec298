//go:build !noredis && !noconsul

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Three `dewy server` hosts sharing one Redis or Consul, deploying one at a
// time (max-parallel=1) with a bake time: a release that fails its health
// gate on the first host is never started on the other two; a fleet pause
// stops a rollout after its first host; after resume each next host starts
// only once the previous one ran the release for the bake time.
func TestE2EFleetControl(t *testing.T) {
	buildApps(t)
	prefix := "dewy-e2e-ctl-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const bake = 3 * time.Second
	t.Run("redis", func(t *testing.T) {
		addr := backendAddr(t, "redis", "DEWY_TEST_REDIS_ADDR")
		testE2EFleetControl(t, fmt.Sprintf("redis://%s/0?prefix=%s&max-parallel=1&bake=%s", addr, prefix, bake), bake)
	})
	t.Run("consul", func(t *testing.T) {
		addr := backendAddr(t, "consul", "DEWY_TEST_CONSUL_ADDR")
		testE2EFleetControl(t, fmt.Sprintf("consul://%s/%s?max-parallel=1&bake=%s", addr, prefix, bake), bake)
	})
}

func testE2EFleetControl(t *testing.T, cache string, bake time.Duration) {
	reg, dir := t.TempDir(), t.TempDir()
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: appRelease(t, "v1.0.0", "v1")}})
	windows := filepath.Join(dir, "windows.log")
	hook := func(what string) string {
		return `echo "` + what + ` $DEWY_HOST $DEWY_VERSION $(date +%s%N)" >> ` + windows
	}
	var hosts []*dewyProc
	var admins []string
	for i := range 3 {
		host := fmt.Sprintf("host-%d", i)
		admin := "unix:" + filepath.Join(dir, host+".sock")
		root := filepath.Join(dir, host)
		hosts = append(hosts, startDewy(t, nil, "server", "--registry", "file://"+reg, "--root", root,
			"--host-id", host, "--cache", cache, "-i", "1s", "--admin", admin,
			"-p", freeAddr(t), "--health-path", "/healthz", "--health-timeout", "3s",
			"--before-deploy-hook", hook("start"), "--after-deploy-hook", hook("end"),
			"--", filepath.Join(root, "current", "app")))
		admins = append(admins, admin)
	}
	for _, h := range hosts {
		waitFor(t, h.out, "deployed v1.0.0")
	}

	// A release that fails its health gate: quarantined by the host that
	// tried it, never started by the others.
	publishDir(t, reg, []suiteRelease{{Tag: "v2.0.0", Files: appRelease(t, "v2.0.0", "v2", "-never-healthy")}})
	failed := waitAny(t, hosts, "quarantined v2.0.0 fleet-wide")
	for i, h := range hosts {
		if i == failed {
			continue
		}
		waitFor(t, h.out, "v2.0.0 quarantined fleet-wide")
	}
	for i, h := range hosts {
		if i != failed && startedVersion(h.out.String(), "v2.0.0") {
			t.Errorf("host-%d started v2.0.0 after host-%d quarantined it:\n%s", i, failed, h.out.String())
		}
	}
	if st := ctl(t, "status", "--fleet", "--admin", admins[0]); !strings.Contains(st, "quarantined v2.0.0") {
		t.Errorf("dewy status --fleet does not show the quarantine:\n%s", st)
	}

	// A fleet pause while the first host bakes v3 stops the rollout there.
	publishDir(t, reg, []suiteRelease{{Tag: "v3.0.0", Files: appRelease(t, "v3.0.0", "v1")}})
	first := waitAny(t, hosts, "deployed v3.0.0")
	ctl(t, "pause", "--fleet", "--reason", "watching v3", "--admin", admins[first])
	for i, h := range hosts {
		if i != first {
			waitFor(t, h.out, "fleet paused by uid")
		}
	}
	for i, h := range hosts {
		if i != first && strings.Contains(h.out.String(), "deployed v3.0.0") {
			t.Fatalf("host-%d deployed v3.0.0 while the fleet was paused", i)
		}
	}
	st := ctl(t, "status", "--fleet", "--admin", admins[first])
	if strings.Count(st, "v3.0.0") < 1 || !strings.Contains(st, "fleet paused") {
		t.Errorf("dewy status --fleet during the pause:\n%s", st)
	}

	ctl(t, "resume", "--fleet", "--admin", admins[first])
	for _, h := range hosts {
		waitFor(t, h.out, "deployed v3.0.0")
	}
	// Bake: each host's v3 deploy starts only once the one before it ended
	// its deploy and then ran the release for the bake time.
	data, err := os.ReadFile(windows)
	if err != nil {
		t.Fatal(err)
	}
	var starts, ends []int64
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[2] != "v3.0.0" {
			continue
		}
		ns, _ := strconv.ParseInt(f[3], 10, 64)
		if f[0] == "start" {
			starts = append(starts, ns)
		} else {
			ends = append(ends, ns)
		}
	}
	if len(starts) != 3 || len(ends) != 3 {
		t.Fatalf("v3.0.0 deploy windows: %d starts, %d ends; want 3 each:\n%s", len(starts), len(ends), data)
	}
	for i := 1; i < 3; i++ {
		if gap := time.Duration(starts[i] - ends[i-1]); gap < bake-100*time.Millisecond {
			t.Errorf("deploy %d of v3.0.0 started %v after the one before ended, want at least the bake time %v:\n%s", i+1, gap, bake, data)
		}
	}
	st = ctl(t, "status", "--fleet", "--admin", admins[0])
	if n := strings.Count(st, "v3.0.0"); n < 3 {
		t.Errorf("dewy status --fleet after the rollout shows v3.0.0 %d times, want every host:\n%s", n, st)
	}
}

// waitAny waits until one host's output holds s and returns its index.
func waitAny(t *testing.T, hosts []*dewyProc, s string) int {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		for i, h := range hosts {
			if strings.Contains(h.out.String(), s) {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond) // three outputs: no single signal to wait on
	}
	t.Fatalf("no host logged %q", s)
	return -1
}

// startedVersion reports whether a dewy log shows a child of version started.
func startedVersion(log, version string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="child started"`) && strings.Contains(line, "version="+version) {
			return true
		}
	}
	return false
}
