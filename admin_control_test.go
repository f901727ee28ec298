package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Controls are served only to requests that pass the same protection as
// /deploy, and each carries who asked: the peer's uid on a unix socket.
func TestAdminControlsWhoAndProtection(t *testing.T) {
	dir, err := os.MkdirTemp("", "dewy-admin") // t.TempDir can exceed the 108-byte socket path limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	reqs := make(chan controlRequest, 8)
	act := adminActions{control: func(_ context.Context, r controlRequest) (string, error) {
		reqs <- r
		return "done " + r.Action, nil
	}}
	b := newStatusBoard("assets", "file:///r", "", nil)
	b.control(&pauseInfo{Reason: "<script>alert(1)</script>", By: "uid 0"}, nil)
	unix := startAdmin(t, "unix:"+filepath.Join(dir, "a.sock"), b, nil, act)
	tcp := startAdmin(t, "127.0.0.1:0", b, nil, act)

	for _, path := range []string{"/rollback", "/pause", "/resume", "/pin"} {
		code, _, body := adminDo(t, unix, http.MethodPost, path, nil)
		if code != http.StatusOK || !strings.Contains(string(body), "done") {
			t.Fatalf("POST %s = %d %s, want 200", path, code, body)
		}
		if r := <-reqs; r.By != fmt.Sprintf("uid %d", os.Getuid()) && !strings.HasPrefix(r.By, fmt.Sprintf("uid %d (", os.Getuid())) {
			t.Errorf("POST %s over the unix socket: by = %q, want uid %d", path, r.By, os.Getuid())
		}
		if code, _, _ := adminDo(t, tcp, http.MethodPost, path, map[string]string{"Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
			t.Errorf("cross-site POST %s = %d, want 403", path, code)
		}
		if code, _, _ := adminDo(t, tcp, http.MethodPost, path, map[string]string{"Host": "evil.example"}); code != http.StatusMisdirectedRequest {
			t.Errorf("POST %s with a foreign Host = %d, want 421", path, code)
		}
	}
	code, _, _ := adminDo(t, tcp, http.MethodPost, "/pause", nil)
	if r := <-reqs; code != http.StatusOK || !strings.HasPrefix(r.By, "127.0.0.1:") {
		t.Errorf("POST /pause over TCP = %d, by = %q; want the remote address", code, r.By)
	}
	if len(reqs) != 0 {
		t.Errorf("%d refused requests reached the deployer, want 0", len(reqs))
	}

	code, hdr, body := adminDo(t, tcp, http.MethodGet, "/", nil)
	if code != http.StatusOK || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("GET / = %d, CSP %q", code, hdr.Get("Content-Security-Policy"))
	}
	if strings.Contains(string(body), "<script>") || !strings.Contains(string(body), "&lt;script&gt;") {
		t.Errorf("GET / does not escape the pause reason:\n%s", body)
	}
	if len(body) > 12<<10 {
		t.Errorf("GET / is %d bytes, want a few KB", len(body))
	}
}

func TestParseControlArgs(t *testing.T) {
	env := func(string) string { return "" }
	tests := []struct {
		args []string
		want controlRequest
		err  string
	}{
		{[]string{"rollback"}, controlRequest{Action: "rollback"}, ""},
		{[]string{"rollback", "--to", "v1.2.0"}, controlRequest{Action: "rollback", To: "v1.2.0"}, ""},
		{[]string{"pause", "--reason", "incident 7", "--fleet"}, controlRequest{Action: "pause", Reason: "incident 7", Fleet: true}, ""},
		{[]string{"resume", "--fleet"}, controlRequest{Action: "resume", Fleet: true}, ""},
		{[]string{"pin", "v1.0.0", "--admin", "unix:/run/d.sock"}, controlRequest{Action: "pin", To: "v1.0.0"}, ""},
		{[]string{"pin", "--admin", "unix:/run/d.sock", "v1.0.0"}, controlRequest{Action: "pin", To: "v1.0.0"}, ""},
		{[]string{"pin"}, controlRequest{}, "name the release"},
		{[]string{"rollback", "--fleet"}, controlRequest{}, "fleet"},
		{[]string{"resume", "extra"}, controlRequest{}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		c, err := parseArgs(tt.args, env)
		if tt.err != "" {
			var ue *usageError
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.As(err, &ue) {
				t.Errorf("parseArgs(%q) = %v, want a usage error containing %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || c.Control != tt.want {
			t.Errorf("parseArgs(%q) = %+v, %v; want %+v", tt.args, c.Control, err, tt.want)
		}
	}
}
