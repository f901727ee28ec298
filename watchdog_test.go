package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeServiceManager listens where NOTIFY_SOCKET points for the rest of
// the test, as systemd would.
func fakeServiceManager(t *testing.T) *net.UnixConn {
	t.Helper()
	dir, err := os.MkdirTemp("", "dewy-sd") // t.TempDir can exceed the socket path limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// nextDatagram waits for the next notification; the deadline only turns a
// missing one into a failure instead of a hang.
func nextDatagram(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	return string(buf[:n])
}

func TestWatchdogSdNotifyMessages(t *testing.T) {
	c := fakeServiceManager(t)

	sdReady("serving v1.2.0")
	if got, want := nextDatagram(t, c), "READY=1\nSTATUS=serving v1.2.0"; got != want {
		t.Errorf("sdReady = %q, want %q", got, want)
	}

	before, _ := monotonicUsec()
	sdReloading()
	after, _ := monotonicUsec()
	got := nextDatagram(t, c)
	rest, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
	if !ok {
		t.Fatalf("sdReloading = %q, want RELOADING=1 then MONOTONIC_USEC=", got)
	}
	us, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || us < before || us > after {
		t.Errorf("MONOTONIC_USEC = %q, want a CLOCK_MONOTONIC time between %d and %d", rest, before, after)
	}

	sdReady("")
	if got := nextDatagram(t, c); got != "READY=1" {
		t.Errorf("sdReady after reload = %q, want READY=1", got)
	}

	// A tag is the registry's data: its newline must not smuggle in a state.
	sdStatus("deploying v1.3.0\nREADY=1")
	if got, want := nextDatagram(t, c), "STATUS=deploying v1.3.0 READY=1"; got != want {
		t.Errorf("sdStatus = %q, want %q", got, want)
	}

	sdStopping()
	if got := nextDatagram(t, c); got != "STOPPING=1" {
		t.Errorf("sdStopping = %q, want STOPPING=1", got)
	}
}

func TestWatchdogSdNotifyReload(t *testing.T) {
	c := fakeServiceManager(t)
	for _, restartErr := range []error{nil, errors.New("activate v1.2.0: not ready within 30s")} {
		restarted := false
		err := sdReload(context.Background(), func(context.Context) error {
			// The service manager must hear RELOADING=1 before the restart begins.
			if got := nextDatagram(t, c); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
				t.Errorf("before the restart: %q, want RELOADING=1 with MONOTONIC_USEC", got)
			}
			restarted = true
			return restartErr
		}, func() string { return "serving v1.2.0" })
		if !restarted || err != restartErr {
			t.Errorf("sdReload = %v (restarted %v), want %v from the restart", err, restarted, restartErr)
		}
		if got, want := nextDatagram(t, c), "READY=1\nSTATUS=serving v1.2.0"; got != want {
			t.Errorf("after a restart returning %v: %q, want %q", restartErr, got, want)
		}
	}
}

func TestWatchdogPings(t *testing.T) {
	c := fakeServiceManager(t)
	env := map[string]string{
		"NOTIFY_SOCKET": os.Getenv("NOTIFY_SOCKET"),
		"WATCHDOG_USEC": "100000",
		"WATCHDOG_PID":  strconv.Itoa(os.Getpid()),
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	startWatchdog(ctx, func(k string) string { return env[k] }, discardLogger())

	var first time.Time
	for i := range 3 {
		if got := nextDatagram(t, c); got != "WATCHDOG=1" {
			t.Fatalf("ping %d = %q, want WATCHDOG=1", i, got)
		}
		if i == 0 {
			first = time.Now()
		}
	}
	// Pings come every WATCHDOG_USEC/2 = 50ms: two intervals lie between
	// the first and the third. A ticker never fires early.
	if d := time.Since(first); d < 90*time.Millisecond {
		t.Errorf("3 pings within %v, want them 50ms apart", d)
	}
}

func TestWatchdogInterval(t *testing.T) {
	const pid = 4242
	tests := []struct {
		name    string
		env     map[string]string
		want    time.Duration
		wantErr string
	}{
		{"not asked", map[string]string{}, 0, ""},
		{"for us", map[string]string{"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "4242"}, 50 * time.Millisecond, ""},
		{"no pid given", map[string]string{"WATCHDOG_USEC": "30000000"}, 15 * time.Second, ""},
		{"inherited from a parent", map[string]string{"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}, 0, ""},
		{"bad usec", map[string]string{"WATCHDOG_USEC": "soon"}, 0, `WATCHDOG_USEC "soon"`},
		{"zero usec", map[string]string{"WATCHDOG_USEC": "0"}, 0, `WATCHDOG_USEC "0"`},
		{"bad pid", map[string]string{"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "me"}, 0, `WATCHDOG_PID "me"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := watchdogInterval(func(k string) string { return tt.env[k] }, pid)
			if got != tt.want {
				t.Errorf("watchdogInterval = %v, want %v", got, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("watchdogInterval error = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("watchdogInterval error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
