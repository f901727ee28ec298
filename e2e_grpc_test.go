//go:build !nogrpc

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The example registry server in examples/ and the dewy binary, over real
// gRPC: dewy asks what to run, fetches the file:// artifact the server
// names (checked against the digest in its answer) and reports back.
func TestE2EGRPCExampleServer(t *testing.T) {
	dir := t.TempDir()
	server := filepath.Join(dir, "registry-server")
	if out, err := exec.Command("go", "build", "-o", server, "./examples/registry-server").CombinedOutput(); err != nil {
		t.Fatalf("build example server: %v\n%s", err, out)
	}
	reg := filepath.Join(dir, "releases")
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: siteRelease(t, "v1.0.0")}, {Tag: "v1.1.0", Files: siteRelease(t, "v1.1.0")}})
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, server, "-dir", reg, "-addr", addr)
	srv.Env = append(os.Environ(), "REGISTRY_TOKEN=grpc-e2e-secret-token")
	var srvOut syncBuffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); srv.Wait() })

	root := t.TempDir()
	env := []string{"DEWY_GRPC_TOKEN=grpc-e2e-secret-token"}
	var r dewyRun
	// The server may still be binding; dewy's first poll then fails and --once says so.
	for deadline := time.Now().Add(30 * time.Second); ; {
		r = runDewy(t, env, "assets", "--registry", "grpc://"+addr+"?no-tls=true", "--root", root, "--once")
		if r.status == 0 || time.Now().After(deadline) || !strings.Contains(r.out, "unavailable") {
			break
		}
	}
	if r.status != 0 || readCurrent(t, root, "index.html") != "site v1.1.0" {
		t.Fatalf("status %d:\n%s\nserver:\n%s", r.status, r.out, srvOut.String())
	}
	// The release has a checksums file, but the server names only the
	// artifact: the digest in its answer is what verifies it.
	if !strings.Contains(r.out, `verified_by="gRPC registry digest"`) {
		t.Errorf("deploy not verified by the server's digest:\n%s", r.out)
	}
	waitFor(t, &srvOut, "deployed")
	if !strings.Contains(srvOut.String(), "tag=v1.1.0") || !strings.Contains(srvOut.String(), "command=assets") {
		t.Fatalf("server did not log the report:\n%s", srvOut.String())
	}
	if strings.Contains(r.out, "grpc-e2e-secret-token") {
		t.Fatalf("token in dewy's output:\n%s", r.out)
	}
	// Plaintext server, default TLS: refused with a hint, not a hang.
	r = runDewy(t, env, "assets", "--registry", "grpc://"+addr, "--root", t.TempDir(), "--once")
	if r.status != 1 || !strings.Contains(r.out, "no-tls") {
		t.Fatalf("TLS client against plaintext server: status %d:\n%s", r.status, r.out)
	}
}
