package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// startAdmin binds addr and serves until the test ends; serve must then
// return nil.
func startAdmin(t *testing.T, addr string, b *statusBoard, m *metrics, act adminActions) *adminServer {
	t.Helper()
	a, err := newAdminServer(addr, false, b, m, act, discardLogger())
	if err != nil {
		t.Fatalf("newAdminServer(%q): %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v, want nil after its context ended", err)
		}
	})
	return a
}

// adminDo sends one request to a over whatever it listens on.
func adminDo(t *testing.T, a *adminServer, method, path string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	client, base := adminClient(a.addrString())
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, body
}

func getAdminStatus(t *testing.T, a *adminServer) statusJSON {
	t.Helper()
	code, hdr, body := adminDo(t, a, http.MethodGet, "/status", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /status = %d %s, want 200", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /status Content-Type = %q, want application/json", ct)
	}
	var s statusJSON
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("GET /status: %v in %s", err, body)
	}
	return s
}

func TestAdminStatusAcrossDeploy(t *testing.T) {
	b := newStatusBoard("server", "ghr://acme/app", "redis", []string{"tcp 0.0.0.0:8000"})
	a := startAdmin(t, "127.0.0.1:0", b, newMetrics("v0.9.0"), adminActions{})

	s := getAdminStatus(t, a)
	if s.Current != "" || s.ChildPID != 0 || !s.LastPoll.IsZero() {
		t.Errorf("before any deploy: current=%q child_pid=%d last_poll=%v, want all empty", s.Current, s.ChildPID, s.LastPoll)
	}
	if s.Command != "server" || s.Registry != "ghr://acme/app" || s.Cache != "redis" || s.DewyVersion != version {
		t.Errorf("identity = %q %q %q %q, want server ghr://acme/app redis %q", s.Command, s.Registry, s.Cache, s.DewyVersion, version)
	}

	// A poll that deploys v1.2.0 and starts its child.
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	sum := strings.Repeat("ab", 32)
	b.deployed("v1.2.0", sum, "checksums file checksums.txt", t0)
	b.child(4242, 1, 0)
	b.pollDone(t0, nil, t0.Add(time.Minute))
	// The next poll finds v1.3.0, which fails to start, then the registry fails.
	b.failed("v1.3.0", "release failed to start:\nexit status 1")
	b.pollDone(t0.Add(time.Minute), errors.New("list releases: 503"), t0.Add(3*time.Minute))
	b.lease("host-b")

	s = getAdminStatus(t, a)
	if s.Current != "v1.2.0" || s.SHA256 != sum || !s.CurrentSince.Equal(t0) {
		t.Errorf("current = %q %q since %v, want v1.2.0 %q since %v", s.Current, s.SHA256, s.CurrentSince, sum, t0)
	}
	if s.LastPollResult != "error" || s.PollErrorStreak != 1 || !s.LastPoll.Equal(t0.Add(time.Minute)) || !s.NextPoll.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("poll = %q streak %d at %v next %v, want error streak 1 at %v next %v",
			s.LastPollResult, s.PollErrorStreak, s.LastPoll, s.NextPoll, t0.Add(time.Minute), t0.Add(3*time.Minute))
	}
	if s.LastError != "list releases: 503" {
		t.Errorf("last_error = %q, want the poll error", s.LastError)
	}
	wantFailed := []failedStatus{{Version: "v1.3.0", Reason: "release failed to start: exit status 1"}}
	if !reflect.DeepEqual(s.Failed, wantFailed) {
		t.Errorf("failed = %+v, want %+v", s.Failed, wantFailed)
	}
	if s.ChildPID != 4242 || s.Generation != 1 || s.Restarts != 0 {
		t.Errorf("child = pid %d gen %d restarts %d, want 4242 1 0", s.ChildPID, s.Generation, s.Restarts)
	}
	if s.LeaseHolder != "host-b" || !reflect.DeepEqual(s.Listeners, []string{"tcp 0.0.0.0:8000"}) {
		t.Errorf("lease %q listeners %q, want host-b [tcp 0.0.0.0:8000]", s.LeaseHolder, s.Listeners)
	}

	// v1.3.0 is fixed in place and deploys; it is no longer failed.
	b.deployed("v1.3.0", sum, "", t0.Add(5*time.Minute))
	b.child(4343, 2, 0)
	b.pollDone(t0.Add(5*time.Minute), nil, t0.Add(6*time.Minute))
	s = getAdminStatus(t, a)
	if s.Current != "v1.3.0" || len(s.Failed) != 0 || s.PollErrorStreak != 0 || s.LastPollResult != "ok" || s.ChildPID != 4343 {
		t.Errorf("after the fix: current %q failed %+v streak %d result %q pid %d, want v1.3.0, none, 0, ok, 4343",
			s.Current, s.Failed, s.PollErrorStreak, s.LastPollResult, s.ChildPID)
	}
}

func TestAdminBoardSnapshotIsACopy(t *testing.T) {
	b := newStatusBoard("assets", "file:///srv/rel", "", []string{"a"})
	b.failed("v1", "bad")
	s := b.snapshot()
	s.Listeners[0] = "changed"
	s.Failed[0].Reason = "changed"
	got := b.snapshot()
	if got.Listeners[0] != "a" || got.Failed[0].Reason != "bad" {
		t.Errorf("snapshot shares memory with the board: listeners %q failed %+v", got.Listeners, got.Failed)
	}
	var nilBoard *statusBoard
	nilBoard.deployed("v1", "", "", time.Now()) // must not panic: --admin off
}

func TestAdminActions(t *testing.T) {
	polls := make(chan struct{}, 1)
	restartErr := make(chan error, 1)
	act := adminActions{
		deploy: func() { polls <- struct{}{} },
		restart: func(ctx context.Context) error {
			return <-restartErr
		},
	}
	a := startAdmin(t, "127.0.0.1:0", newStatusBoard("server", "file:///r", "", nil), newMetrics("dev"), act)

	if code, _, body := adminDo(t, a, http.MethodPost, "/deploy", nil); code != http.StatusAccepted {
		t.Fatalf("POST /deploy = %d %s, want 202", code, body)
	}
	select {
	case <-polls:
	default:
		t.Fatal("POST /deploy answered without asking for a poll")
	}

	restartErr <- nil
	if code, _, body := adminDo(t, a, http.MethodPost, "/restart", nil); code != http.StatusOK {
		t.Errorf("POST /restart = %d %s, want 200", code, body)
	}
	restartErr <- errors.New("activate v1.2.0: not ready within 30s")
	code, _, body := adminDo(t, a, http.MethodPost, "/restart", nil)
	if code != http.StatusInternalServerError || !strings.Contains(string(body), "not ready within 30s") {
		t.Errorf("POST /restart (failing) = %d %s, want 500 naming the error", code, body)
	}

	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/deploy", http.StatusMethodNotAllowed},
		{http.MethodPut, "/deploy", http.StatusMethodNotAllowed},
		{http.MethodGet, "/restart", http.StatusMethodNotAllowed},
		{http.MethodPost, "/status", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodGet, "/nothing", http.StatusNotFound},
	}
	for _, tt := range tests {
		if code, _, _ := adminDo(t, a, tt.method, tt.path, nil); code != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, code, tt.want)
		}
	}
	select {
	case <-polls:
		t.Error("a refused request asked for a poll")
	default:
	}
}

func TestAdminRefusesBrowsersAndForeignHosts(t *testing.T) {
	polls := make(chan struct{}, 4)
	a := startAdmin(t, "127.0.0.1:0", newStatusBoard("assets", "file:///r", "", nil), nil,
		adminActions{deploy: func() { polls <- struct{}{} }})
	tests := []struct {
		name string
		hdr  map[string]string
		path string
		want int
	}{
		{"cross-site form post", map[string]string{"Sec-Fetch-Site": "cross-site"}, "/deploy", http.StatusForbidden},
		{"foreign origin", map[string]string{"Origin": "https://evil.example"}, "/deploy", http.StatusForbidden},
		{"rebound DNS name", map[string]string{"Host": "evil.example:17539"}, "/status", http.StatusMisdirectedRequest},
		{"localhost by name", map[string]string{"Host": "localhost:17539"}, "/status", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodPost
			if tt.path == "/status" {
				method = http.MethodGet
			}
			if code, _, body := adminDo(t, a, method, tt.path, tt.hdr); code != tt.want {
				t.Errorf("%s %s with %v = %d %s, want %d", method, tt.path, tt.hdr, code, body, tt.want)
			}
		})
	}
	if len(polls) != 0 {
		t.Errorf("%d refused requests asked for a poll, want 0", len(polls))
	}
	// Without metrics or a restart action those routes do not exist.
	for _, p := range []string{"/metrics", "/restart"} {
		if code, _, _ := adminDo(t, a, http.MethodGet, p, nil); code != http.StatusNotFound {
			t.Errorf("GET %s without it = %d, want 404", p, code)
		}
	}
}

func TestAdminAddressPolicy(t *testing.T) {
	tests := []struct {
		addr    string
		public  bool
		wantErr string // "" = accepted
	}{
		{"127.0.0.1:0", false, ""},
		{"localhost:0", false, ""},
		{"0.0.0.0:0", false, `"0.0.0.0:0" is not a loopback address`},
		{":0", false, `":0" is not a loopback address`},
		{"192.0.2.1:0", false, `"192.0.2.1:0" is not a loopback address`},
		{"admin.example:0", false, `"admin.example:0" is not a loopback address`},
		{"0.0.0.0:0", true, ""},
		{"127.0.0.1", false, `admin address "127.0.0.1": want host:port`},
		{"unix:", false, `admin address "unix:": empty socket path`},
	}
	for _, tt := range tests {
		a, err := newAdminServer(tt.addr, tt.public, newStatusBoard("assets", "", "", nil), nil, adminActions{}, discardLogger())
		if a != nil {
			a.ln.Close()
		}
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("newAdminServer(%q, public=%v) = %v, want accepted", tt.addr, tt.public, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("newAdminServer(%q, public=%v) accepted, want error %q", tt.addr, tt.public, tt.wantErr)
		case err != nil && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("newAdminServer(%q, public=%v) = %q, want it to contain %q", tt.addr, tt.public, err, tt.wantErr)
		}
	}
	_, err := newAdminServer("0.0.0.0:0", false, newStatusBoard("assets", "", "", nil), nil, adminActions{}, discardLogger())
	if err == nil || !strings.Contains(err.Error(), "--admin-public") {
		t.Errorf("public address error = %v, want it to name --admin-public", err)
	}
}

func TestAdminUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "dewy-admin") // t.TempDir can exceed the 108-byte socket path limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "admin.sock")

	// A socket left behind by a dewy that was killed is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	b := newStatusBoard("assets", "file:///srv/releases", "", nil)
	b.deployed("v2.0.0", strings.Repeat("0", 64), "", time.Now())
	a := startAdmin(t, "unix:"+path, b, newMetrics("dev"), adminActions{})
	if s := getAdminStatus(t, a); s.Current != "v2.0.0" {
		t.Errorf("status over the unix socket: current = %q, want v2.0.0", s.Current)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode = %v, want 0660", perm)
	}

	// A live one is not taken over.
	_, err = newAdminServer("unix:"+path, false, b, nil, adminActions{}, discardLogger())
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("second server on a live socket: err = %v, want an error naming %s", err, path)
	}
}
