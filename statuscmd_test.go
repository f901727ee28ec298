package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// statusT0 is the board's clock in these tests, so ages in the table are fixed.
var statusT0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func fixedBoard(command string) *statusBoard {
	b := newStatusBoard(command, "ghr://acme/app", "redis", []string{"tcp 0.0.0.0:8000", "unix:/run/app.sock"})
	b.now = func() time.Time { return statusT0 }
	return b
}

func TestStatusCmdTable(t *testing.T) {
	b := fixedBoard("server")
	b.deployed("v1.2.0", "0123456789abcdef"+strings.Repeat("0", 48), "GitHub digest", statusT0.Add(-2*time.Hour-5*time.Minute))
	b.failed("v1.3.0", "deploy v1.3.0: release failed to start: not ready within 30s")
	b.editForTest(func(s *statusJSON) { s.LastErrorAt = statusT0.Add(-90 * time.Minute) })
	b.pollDone(statusT0.Add(-12*time.Second), nil, statusT0.Add(48*time.Second))
	b.child(4242, 3, 1)
	b.lease("host-b slot-0")
	b.deploySlot("blue")
	a := startAdmin(t, "127.0.0.1:0", b, nil, adminActions{})

	var out bytes.Buffer
	healthy, err := statusCommand(context.Background(), a.addrString(), false, &out)
	if err != nil {
		t.Fatalf("statusCommand: %v", err)
	}
	if !healthy {
		t.Errorf("healthy = false, want true")
	}
	want := "dewy        " + version + ` server
registry    ghr://acme/app
slot        blue
current     v1.2.0 since 2026-11-25 09:55:00 +0000 (2h05m ago)
sha256      0123456789ab…
verified    by GitHub digest
last poll   ok, 12s ago
next poll   in 48s
last error  deploy v1.3.0: release failed to start: not ready within 30s (1h30m ago)
failed      v1.3.0: deploy v1.3.0: release failed to start: not ready within 30s
child       pid 4242, generation 3, 1 restart
listeners   tcp 0.0.0.0:8000, unix:/run/app.sock
cache       redis
lease       host-b slot-0
health      ok
`
	if got := out.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// editForTest lets a test set a field the board's methods set from the clock.
func (b *statusBoard) editForTest(f func(*statusJSON)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.s)
}

func TestStatusCmdHealth(t *testing.T) {
	pollErr := errors.New("list releases from ghr://acme/app: 502 Bad Gateway")
	tests := []struct {
		name    string
		command string
		setup   func(b *statusBoard)
		healthy bool
		health  string // the table's last row
	}{
		{"serving", "server", func(b *statusBoard) {
			b.deployed("v1", "", "", statusT0)
			b.child(10, 1, 0)
		}, true, "health      ok\n"},
		{"assets up to date", "assets", func(b *statusBoard) {
			b.deployed("v1", "", "", statusT0)
			b.pollDone(statusT0, nil, statusT0.Add(time.Minute))
		}, true, "health      ok\n"},
		{"short error streak", "assets", func(b *statusBoard) {
			b.deployed("v1", "", "", statusT0)
			for range maxHealthyPollErrors - 1 {
				b.pollDone(statusT0, pollErr, statusT0.Add(time.Minute))
			}
		}, true, "health      ok\n"},
		{"long error streak", "assets", func(b *statusBoard) {
			b.deployed("v1", "", "", statusT0)
			for range maxHealthyPollErrors {
				b.pollDone(statusT0, pollErr, statusT0.Add(time.Minute))
			}
		}, false, "health      UNHEALTHY: 3 failed polls in a row\n"},
		{"nothing deployed", "assets", func(b *statusBoard) {
			b.pollDone(statusT0, nil, statusT0.Add(time.Minute))
		}, false, "health      UNHEALTHY: no current version\n"},
		{"child gone", "server", func(b *statusBoard) {
			b.deployed("v1", "", "", statusT0)
			b.child(10, 1, 0)
			b.child(0, 1, 4)
		}, false, "health      UNHEALTHY: application not running\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fixedBoard(tt.command)
			tt.setup(b)
			a := startAdmin(t, "127.0.0.1:0", b, nil, adminActions{})
			var out bytes.Buffer
			healthy, err := statusCommand(context.Background(), a.addrString(), false, &out)
			if err != nil {
				t.Fatalf("statusCommand: %v", err)
			}
			if healthy != tt.healthy {
				t.Errorf("healthy = %v, want %v; table:\n%s", healthy, tt.healthy, out.String())
			}
			if got := out.String(); !strings.HasSuffix(got, tt.health) {
				t.Errorf("table ends %q, want %q", got[strings.LastIndex(got[:len(got)-1], "\n")+1:], tt.health)
			}
		})
	}
}

func TestStatusCmdJSON(t *testing.T) {
	b := fixedBoard("assets")
	b.deployed("v2.0.0", strings.Repeat("f", 64), "", statusT0)
	dir, err := os.MkdirTemp("", "dewy-status") // short enough for a socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := startAdmin(t, "unix:"+filepath.Join(dir, "a.sock"), b, nil, adminActions{})

	var out bytes.Buffer
	healthy, err := statusCommand(context.Background(), a.addrString(), true, &out)
	if err != nil {
		t.Fatalf("statusCommand --json: %v", err)
	}
	if !healthy {
		t.Error("healthy = false, want true")
	}
	var got statusJSON
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out.String())
	}
	if got.Current != "v2.0.0" || got.Command != "assets" || !got.Time.Equal(statusT0) {
		t.Errorf("--json = current %q command %q time %v, want v2.0.0 assets %v", got.Current, got.Command, got.Time, statusT0)
	}
}

func TestStatusCmdUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	notDewy := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notDewy.Close)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>hello</html>"))
	}))
	t.Cleanup(garbage.Close)

	tests := []struct {
		addr string
		want string
	}{
		{closed, "connection refused"},
		{"unix:" + filepath.Join(t.TempDir(), "none.sock"), "no such file"},
		{strings.TrimPrefix(notDewy.URL, "http://"), "404 Not Found"},
		{strings.TrimPrefix(garbage.URL, "http://"), "not dewy's status"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		healthy, err := statusCommand(context.Background(), tt.addr, false, &out)
		if err == nil {
			t.Errorf("statusCommand(%q) = healthy %v, nil error; want an error", tt.addr, healthy)
			continue
		}
		msg := err.Error()
		if healthy || !strings.Contains(msg, tt.addr) || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
			t.Errorf("statusCommand(%q) = %v, %q; want false and one line naming the address and %q", tt.addr, healthy, msg, tt.want)
		}
		if out.Len() != 0 {
			t.Errorf("statusCommand(%q) printed %q on failure, want nothing", tt.addr, out.String())
		}
	}
}

func TestStatusCmdAge(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{59*time.Second + 900*time.Millisecond, "59s"},
		{time.Minute, "1m00s"},
		{3*time.Hour + 7*time.Minute + 30*time.Second, "3h07m"},
		{50 * time.Hour, "2d02h"},
	}
	for _, tt := range tests {
		if got := age(tt.d); got != tt.want {
			t.Errorf("age(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
