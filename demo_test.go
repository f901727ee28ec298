package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestDemo runs scripts/demo as a new user would and holds it to what the
// README promises: both releases go live, no request fails, and dewy's
// log has no ERROR or WARN line.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dewy and the sample app; skipped with -short")
	}
	needTool(t, "curl")
	_, port, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "scripts/demo")
	cmd.Env = append(os.Environ(), "DEMO_PORT="+port, "TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/demo: %v\n%s", err, out)
	}
	assertQuiet(t, string(out))
}
