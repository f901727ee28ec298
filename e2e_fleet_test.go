//go:build !noredis && !noconsul

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Three dewy processes, one Redis or Consul: the registry is asked about
// once per registry-ttl window however many hosts poll, and with
// max-parallel=1 no two hosts are inside a deploy (before-hook to
// after-hook) at once.
func TestE2EFleet(t *testing.T) {
	prefix := "dewy-e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Run("redis", func(t *testing.T) {
		addr := backendAddr(t, "redis", "DEWY_TEST_REDIS_ADDR")
		testE2EFleet(t, fmt.Sprintf("redis://%s/0?prefix=%s&registry-ttl=2s&max-parallel=1", addr, prefix))
	})
	t.Run("consul", func(t *testing.T) {
		addr := backendAddr(t, "consul", "DEWY_TEST_CONSUL_ADDR")
		testE2EFleet(t, fmt.Sprintf("consul://%s/%s?registry-ttl=2s&max-parallel=1", addr, prefix))
	})
}

func testE2EFleet(t *testing.T, cache string) {
	gh := newFakeGitHub(t, "")
	gh.addRelease("v1.0.0", false, false, siteRelease(t, "v1.0.0"))
	dir := t.TempDir()
	windows := filepath.Join(dir, "windows.log")
	hook := func(what string) string {
		// One short line per write, appended: whole lines even with three writers.
		return `echo "` + what + ` $DEWY_HOST $(date +%s%N)" >> ` + windows + `; sleep 0.3`
	}
	var outs []*syncBuffer
	for i := range 3 {
		host := fmt.Sprintf("host-%d", i)
		cmd := exec.Command(dewyBinary(t), "assets", "--registry", "ghr://"+gh.Owner+"/"+gh.Repo,
			"--root", filepath.Join(dir, host), "--host-id", host, "--cache", cache, "-i", "1s",
			"--before-deploy-hook", hook("start"), "--after-deploy-hook", hook("end"))
		cmd.Env = append(os.Environ(), "GITHUB_API_URL="+gh.env()("GITHUB_API_URL"))
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
		outs = append(outs, out)
	}
	for _, out := range outs {
		waitFor(t, out, "deployed v1.0.0")
	}
	// Idle polling for a while: 3 hosts × 1 poll/s.
	before := gh.Listings.Load() + gh.NotModified.Load()
	idle := 8 * time.Second
	time.Sleep(idle) // a measurement window, not synchronisation
	listings := gh.Listings.Load() + gh.NotModified.Load() - before
	// One per 2 s window (8 s touch at most 5 windows), plus slack for a
	// host on a loaded machine that gave up waiting for the answer and
	// asked itself; unshared, 3 hosts would list 24 times.
	if most := int64(idle/(2*time.Second)) + 3; listings > most {
		t.Fatalf("%d registry listings in %s from 3 hosts, want at most %d (one per registry-ttl window)", listings, idle, most)
	}
	t.Logf("3 hosts polling every 1s for %s: %d registry listings", idle, listings)

	gh.addRelease("v1.1.0", false, false, siteRelease(t, "v1.1.0"))
	for _, out := range outs {
		waitFor(t, out, "deployed v1.1.0")
	}
	// Each host's deploy window [start, end] must not overlap another's.
	data, err := os.ReadFile(windows)
	if err != nil {
		t.Fatal(err)
	}
	type span struct {
		host       string
		start, end int64
	}
	open := map[string]int64{}
	var spans []span
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("windows.log line %q", line)
		}
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		if f[0] == "start" {
			open[f[1]] = ns
		} else {
			spans = append(spans, span{f[1], open[f[1]], ns})
		}
	}
	if len(spans) != 6 {
		t.Fatalf("%d deploy windows, want 6 (3 hosts × 2 releases):\n%s", len(spans), data)
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.start - b.start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			t.Fatalf("%s deployed while %s was deploying (max-parallel=1):\n%s", spans[i].host, spans[i-1].host, data)
		}
	}
}
