//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nodeRelease packs testdata/proxyapp/app.js as a release whose run.sh
// starts it as version, unhealthy when asked: a Node app that binds $PORT
// itself, as Node apps do.
func nodeRelease(t *testing.T, tag, version string, unhealthy bool) map[string][]byte {
	t.Helper()
	js, err := os.ReadFile("testdata/proxyapp/app.js")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed (scripts/test installs it): %v", err)
	}
	env := "APP_VERSION=" + version
	if unhealthy {
		env += " APP_UNHEALTHY=1"
	}
	run := "#!/bin/sh\nexport " + env + "\nexec " + node + ` "$(dirname "$0")/app.js"` + "\n"
	art := e2eTarGz(t, map[string]string{"app.js": string(js), "run.sh": run})
	name := "app_" + strings.TrimPrefix(tag, "v") + "_linux_amd64.tar.gz"
	return map[string][]byte{name: art, "checksums.txt": []byte(sha256Hex(art) + "  " + name + "\n")}
}

// dewy server --proxy with a plain Node server: swaps under keep-alive POST
// load lose nothing, and a release that fails its gate answers no live
// request at all.
func TestE2EServerProxyNode(t *testing.T) {
	reg, root := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: nodeRelease(t, "v1.0.0", "v1", false)}})
	d := startDewy(t, nil, "server", "--proxy", "--registry", "file://"+reg, "--root", root,
		"-p", addr, "--health-path", "/healthz", "--drain-timeout", "10s", "-i", "1h",
		"--", filepath.Join(root, "current", "run.sh"))
	cmd, out := d.cmd, d.out
	waitFor(t, out, "deployed v1.0.0")

	l := startProxyLoad(t, "http://"+addr+"/", 6, true)
	l.waitOK(t, 50)
	publishDir(t, reg, []suiteRelease{{Tag: "v2.0.0", Files: nodeRelease(t, "v2.0.0", "v2", false)}})
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, out, "deployed v2.0.0")
	l.waitOK(t, 50)

	l.ban("v3")
	publishDir(t, reg, []suiteRelease{{Tag: "v3.0.0", Files: nodeRelease(t, "v3.0.0", "v3", true)}})
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, out, "rolled back to v2.0.0")
	l.waitOK(t, 50)
	l.check(t, 150)

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dewy exit after SIGTERM: %v\n%s", err, out.String())
	}
}
