//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
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

func TestSupervisorBackoff(t *testing.T) {
	const lo, hi, reset = time.Second, time.Minute, 30 * time.Second
	tests := []struct {
		prev, uptime, want time.Duration
	}{
		{0, 0, time.Second},
		{time.Second, 0, 2 * time.Second},
		{2 * time.Second, 5 * time.Second, 4 * time.Second},
		{32 * time.Second, 0, time.Minute},
		{time.Minute, 0, time.Minute},
		{time.Minute, 29 * time.Second, time.Minute},
		{time.Minute, 30 * time.Second, time.Second},
	}
	for _, tt := range tests {
		if got := nextBackoff(tt.prev, tt.uptime, lo, hi, reset); got != tt.want {
			t.Errorf("nextBackoff(%s, up %s) = %s, want %s", tt.prev, tt.uptime, got, tt.want)
		}
	}
}

// Twenty swaps between two builds under load: no request fails, and once
// activate returns only the new version answers.
func TestSupervisorSwapUnderLoad(t *testing.T) {
	for _, mode := range []string{"starter", "systemd"} {
		t.Run(mode, func(t *testing.T) {
			e := newTestEnv(t)
			e.release(t, "v1", "v1", "-mode="+mode)
			e.release(t, "v2", "v2", "-mode="+mode)
			addr := "127.0.0.1:" + freePortNumber(t)
			e.use(t, "v1")
			s := startSupervisor(t, e.config(addr), nil)
			s.activate(t, "v1")

			l := startLoad(t, "http://"+addr+"/", 6, 2, false)
			l.expect("v1")
			const swaps = 20
			for i := range swaps {
				v := []string{"v2", "v1"}[i%2]
				e.use(t, v)
				l.swapping()
				d := s.activate(t, v)
				l.expect(v)
				t.Logf("swap %d to %s took %s", i+1, v, d.Round(time.Millisecond))
			}
			l.check(t, 1000)
			if got, want := e.starts(t, "v1")+e.starts(t, "v2"), swaps+1; got != want {
				t.Errorf("%d children started, want %d", got, want)
			}
			flags, err := fcntlGetfl(int(listenerFD(t, s.lns[0].ln)))
			if err != nil || flags&syscall.O_NONBLOCK == 0 {
				t.Errorf("after %d swaps the shared socket's flags are %#x, %v; want O_NONBLOCK", swaps, flags, err)
			}
		})
	}
}

// The child gets its sockets in both conventions, with the private health
// listener last, and LISTEN_PID is its own pid.
func TestSupervisorChildEnv(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1", "-mode=systemd")
	e.use(t, "v1")
	port := freePortNumber(t)
	s := startSupervisor(t, e.config("127.0.0.1:"+port), nil)
	s.activate(t, "v1")
	body, pid := get(t, "http://127.0.0.1:"+port+"/env")
	env := map[string]string{}
	for line := range strings.Lines(body) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		env[k] = v
	}
	if got, want := env["LISTEN_PID"], strconv.Itoa(pid); got != want {
		t.Errorf("LISTEN_PID = %q, want the child's pid %s", got, want)
	}
	if got, want := env["LISTEN_FDS"], "2"; got != want {
		t.Errorf("LISTEN_FDS = %q, want %q", got, want)
	}
	if got, want := env["LISTEN_FDNAMES"], "127.0.0.1_"+port+":dewy-health"; got != want {
		t.Errorf("LISTEN_FDNAMES = %q, want %q", got, want)
	}
	starter := strings.Split(env["SERVER_STARTER_PORT"], ";")
	if len(starter) != 2 || starter[0] != "127.0.0.1:"+port+"=3" || !strings.HasPrefix(starter[1], "127.0.0.1:") || !strings.HasSuffix(starter[1], "=4") {
		t.Errorf("SERVER_STARTER_PORT = %q, want \"127.0.0.1:%s=3;127.0.0.1:HEALTHPORT=4\"", env["SERVER_STARTER_PORT"], port)
	}
	if got, want := env["SERVER_STARTER_GENERATION"], "1"; got != want {
		t.Errorf("SERVER_STARTER_GENERATION = %q, want %q", got, want)
	}
	if !strings.HasPrefix(env["NOTIFY_SOCKET"], "@dewy-notify-") {
		t.Errorf("NOTIFY_SOCKET = %q, want an abstract socket of dewy's", env["NOTIFY_SOCKET"])
	}
}

// Unix sockets are passed on like TCP ones, and removed when dewy stops.
func TestSupervisorUnixSocket(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1")
	e.release(t, "v2", "v2")
	e.use(t, "v1")
	path := filepath.Join(e.root, "app.sock")
	s := startSupervisor(t, e.config("unix:"+path), nil)
	s.activate(t, "v1")
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	getUnix := func(p string) string {
		t.Helper()
		resp, err := client.Get("http://app" + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := getUnix("/"); got != "v1" {
		t.Errorf("GET / over %s = %q, want v1", path, got)
	}
	if env := getUnix("/env"); !strings.Contains(env, "SERVER_STARTER_PORT="+path+"=3;") {
		t.Errorf("the app's environment:\n%s\nwant SERVER_STARTER_PORT naming %s", env, path)
	}
	e.use(t, "v2")
	s.activate(t, "v2")
	if got := getUnix("/"); got != "v2" {
		t.Errorf("after the swap, GET / = %q, want v2", got)
	}
	client.CloseIdleConnections()
	if err := s.stop(t); err != nil {
		t.Errorf("run = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after stop: %v, want it removed", err)
	}
}

// A bad release never replaces a good one: the old generation serves
// throughout, and the bad one is started exactly once.
func TestSupervisorBadRelease(t *testing.T) {
	tests := []struct {
		name    string
		flags   []string
		cfg     func(*serverConfig)
		fresh   int    // clients opening a connection per request
		wantErr string // in activate's error
	}{
		{name: "exits at once", flags: []string{"-exit-at-once"}, fresh: 2,
			wantErr: "exited before it was ready: exit status 2"},
		// The old generation answers /healthz with 200 on the shared
		// port; only a probe of the new one's own socket sees the 503,
		// and a few of them in a row refuse it long before the timeout.
		{name: "never healthy", flags: []string{"-never-healthy"}, fresh: 2,
			wantErr: "GET /healthz: 503 Service Unavailable on "},
		// Without a health path it must stay up ReadyDelay (4s, leaving
		// room for a slow start). A crash drops the requests the
		// crashing process had accepted itself, which no supervisor can
		// save, so only keep-alive clients here: they stay with the old
		// generation.
		{name: "crashes after 2s", flags: []string{"-crash-after=2s"},
			cfg:     func(c *serverConfig) { c.HealthPath = ""; c.ReadyDelay = 4 * time.Second },
			wantErr: "exited before it was ready: exit status 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.release(t, "v1", "v1")
			e.release(t, "v2", "v2", tt.flags...)
			addr := "127.0.0.1:" + freePortNumber(t)
			cfg := e.config(addr)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			e.use(t, "v1")
			s := startSupervisor(t, cfg, nil)
			s.activate(t, "v1")
			_, v1pid := get(t, "http://"+addr+"/")

			l := startLoad(t, "http://"+addr+"/", 6, tt.fresh, false)
			e.use(t, "v2")
			err := s.supervisor.activate(context.Background(), "v2")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("activate v2: error = %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "activate v2: ") {
				t.Errorf("activate error %q does not name the release", err)
			}
			e.use(t, "v1") // as dewy does after a failed activation
			l.expect("v1")
			// Long enough for a crash restart to show, were one
			// wrongly scheduled.
			time.Sleep(5 * s.backoffMin)
			l.check(t, 100)
			if body, pid := get(t, "http://"+addr+"/"); body != "v1" || pid != v1pid {
				t.Errorf("after the failed activation: %s (pid %d) answers, want v1 (pid %d)", body, pid, v1pid)
			}
			if got, want := e.starts(t, "v2"), 1; got != want {
				t.Errorf("bad release started %d times, want %d", got, want)
			}
			if got, want := e.starts(t, "v1"), 1; got != want {
				t.Errorf("good release started %d times, want %d", got, want)
			}
		})
	}
}

func TestSupervisorRestartUnderLoad(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1")
	e.use(t, "v1")
	addr := "127.0.0.1:" + freePortNumber(t)
	s := startSupervisor(t, e.config(addr), nil)
	s.activate(t, "v1")
	_, pid := get(t, "http://"+addr+"/")

	l := startLoad(t, "http://"+addr+"/", 6, 2, false)
	l.expect("v1")
	for range 5 {
		if err := s.restart(context.Background()); err != nil {
			t.Fatalf("restart: %v", err)
		}
		_, newPID := get(t, "http://"+addr+"/")
		if newPID == pid {
			t.Fatalf("after restart pid %d still answers", pid)
		}
		pid = newPID
	}
	l.check(t, 500)
	if got, want := e.starts(t, "v1"), 6; got != want {
		t.Errorf("%d children started, want %d", got, want)
	}
}

// A child that keeps crashing is restarted with growing delays.
func TestSupervisorCrashBackoff(t *testing.T) {
	e := newTestEnv(t)
	const crashAfter = 150 * time.Millisecond
	e.release(t, "v1", "v1", "-crash-after="+crashAfter.String())
	e.use(t, "v1")
	cfg := e.config("127.0.0.1:" + freePortNumber(t))
	cfg.HealthPath = ""
	cfg.ReadyDelay = 0
	s := startSupervisor(t, cfg, func(s *supervisor) {
		s.backoffMin = 100 * time.Millisecond
		s.backoffMax = 400 * time.Millisecond
	})
	s.activate(t, "v1")
	starts := []time.Time{s.logs.wait(t, "child started", 10*time.Second).Time} // the activation's own
	for range 6 {
		starts = append(starts, s.logs.wait(t, "child started", 20*time.Second).Time)
	}
	for i := 1; i < len(starts); i++ {
		gap := starts[i].Sub(starts[i-1])
		backoff := min(s.backoffMin<<(i-1), s.backoffMax)
		if gap < crashAfter+backoff {
			t.Errorf("restart %d came %s after the previous start, want at least %s (uptime %s + backoff %s)",
				i, gap, crashAfter+backoff, crashAfter, backoff)
		}
		if i == len(starts)-1 && gap > 4*s.backoffMax {
			t.Errorf("restart %d came %s after the previous start; the backoff is not capped at %s", i, gap, s.backoffMax)
		}
	}
}

// Cancelling run lets an in-flight request finish before the child exits.
func TestSupervisorShutdownDrains(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1")
	e.use(t, "v1")
	addr := "127.0.0.1:" + freePortNumber(t)
	s := startSupervisor(t, e.config(addr), nil)
	s.activate(t, "v1")

	const d = 1500 * time.Millisecond
	start := time.Now()
	resp, err := http.Get("http://" + addr + "/slow?d=" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The headers are in: the request is in flight.
	if err := s.stop(t); err != nil {
		t.Errorf("run = %v", err)
	}
	stopped := time.Since(start)
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "v1" {
		t.Errorf("in-flight request: body %q, err %v; want v1 and no error", body, err)
	}
	if stopped < d {
		t.Errorf("run returned %s after the request began, before it could finish (%s)", stopped, d)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("the port still accepts after run returned")
	}
}

// kill does not wait for the drain.
func TestSupervisorKill(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1")
	e.use(t, "v1")
	addr := "127.0.0.1:" + freePortNumber(t)
	cfg := e.config(addr)
	cfg.DrainTimeout = time.Minute
	s := startSupervisor(t, cfg, nil)
	s.activate(t, "v1")
	resp, err := http.Get("http://" + addr + "/slow?d=1m")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pid, _ := strconv.Atoi(resp.Header.Get("X-Pid"))

	s.cancel()
	s.logs.wait(t, "stopping child", 10*time.Second)
	start := time.Now()
	s.kill()
	if err := s.stop(t); err != nil {
		t.Errorf("run = %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("run returned %s after kill, want well within the 1m drain", took)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("the in-flight request completed; the child was not killed")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("child %d still exists after kill: %v", pid, err)
	}
}

// Without sockets the old generation is gone before the new one starts.
func TestSupervisorNoPorts(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1", "-notify")
	e.release(t, "v2", "v2", "-notify")
	e.use(t, "v1")
	cfg := e.config()
	cfg.HealthPath = ""
	cfg.ReadyDelay = time.Hour // ready means READY=1: the app has started
	s := startSupervisor(t, cfg, nil)
	s.activate(t, "v1")
	e.use(t, "v2")
	s.activate(t, "v2")
	if err := s.restart(context.Background()); err != nil {
		t.Fatalf("restart: %v", err)
	}
	var got []string
	for _, ev := range e.events(t) {
		if ev.event == "start" || ev.event == "exit" {
			got = append(got, ev.event+" "+ev.version)
		}
	}
	want := []string{"start v1", "exit v1", "start v2", "exit v2", "start v2"}
	if !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

// READY=1 on NOTIFY_SOCKET counts only from the child itself, and once a
// generation has used it, the next ones must too.
func TestSupervisorNotify(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1", "-notify")
	e.release(t, "by-child", "v2", "-notify", "-notify-by-child")
	e.release(t, "silent", "v2")
	addr := "127.0.0.1:" + freePortNumber(t)
	cfg := e.config(addr)
	cfg.HealthPath = ""
	cfg.ReadyDelay = time.Hour // only READY=1 can make a child ready
	cfg.HealthTimeout = 3 * time.Second
	e.use(t, "v1")
	s := startSupervisor(t, cfg, nil)
	s.activate(t, "v1")
	_, v1pid := get(t, "http://"+addr+"/")

	e.use(t, "by-child")
	err := s.supervisor.activate(context.Background(), "by-child")
	if want := "not ready within 3s: no READY=1"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("READY=1 from the child's child: activate error = %v, want %q", err, want)
	}

	// ReadyDelay alone would now pass a child at once; this one never
	// says READY=1.
	s.cfg.ReadyDelay = 0 // read by the next activation, after the send below
	e.use(t, "silent")
	err = s.supervisor.activate(context.Background(), "silent")
	if want := "no READY=1"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("silent child after a notifying one: activate error = %v, want %q", err, want)
	}
	if body, pid := get(t, "http://"+addr+"/"); body != "v1" || pid != v1pid {
		t.Errorf("%s (pid %d) answers, want v1 (pid %d)", body, pid, v1pid)
	}
}

// A dewy that systemd socket-activates adopts LISTEN_FDS and hands them on,
// and its own READY=1 reaches the service manager. Here the service manager
// is a supervisor too: it starts the test binary as a dewy through the exec
// shim, so the socket and LISTEN_PID arrive exactly as systemd passes them.
func TestSupervisorSocketActivated(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1", "-mode=systemd")
	e.use(t, "v1")
	port := freePortNumber(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config("127.0.0.1:" + port)
	cfg.Command = []string{self}
	cfg.HealthPath = ""
	cfg.ReadyDelay = time.Hour // only the inner dewy's READY=1 can make it ready
	cfg.Env = append(cfg.Env,
		"DEWY_TEST_AS_SUPERVISOR=1",
		"DEWY_TEST_SUP_CMD="+filepath.Join(e.root, "current", "app"))
	s := startSupervisor(t, cfg, nil)
	s.activate(t, "dewy")

	body, pid := get(t, "http://127.0.0.1:"+port+"/env")
	if !strings.Contains(body, "LISTEN_FDNAMES=127.0.0.1_"+port+":dewy-health\n") {
		t.Errorf("the app's environment:\n%s\nwant LISTEN_FDNAMES naming the inherited socket, then dewy-health", body)
	}
	if v, _ := get(t, "http://127.0.0.1:"+port+"/"); v != "v1" {
		t.Errorf("GET / = %q, want v1", v)
	}
	if err := s.stop(t); err != nil {
		t.Errorf("run = %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the inner dewy's child %d outlived it: %v", pid, err)
	}
}

// A dewy killed with SIGKILL takes its child along, and the port is free.
func TestSupervisorSIGKILLLeavesNoOrphan(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1")
	e.use(t, "v1")
	addr := "127.0.0.1:" + freePortNumber(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(),
		"DEWY_TEST_AS_SUPERVISOR=1",
		"DEWY_TEST_SUP_PORTS="+addr,
		"DEWY_TEST_SUP_SAY_READY=1",
		"DEWY_TEST_SUP_CMD="+filepath.Join(e.root, "current", "app"),
		"APP_START_LOG="+e.eventLog)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("test supervisor said %q, %v; want ready", line, err)
	}
	body, pid := get(t, "http://"+addr+"/")
	if body != "v1" {
		t.Fatalf("GET / = %q, want v1", body)
	}
	pidfd := pidfdOpen(t, pid)

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The kernel kills the child at once; a loaded machine may still take
	// a while to tear it down, which is no orphan.
	if err := waitPidfd(pidfd, time.Minute); err != nil {
		t.Fatalf("child %d still running a minute after its dewy was SIGKILLed: %v", pid, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still held after the child died: %v", err)
	}
	ln.Close()
}

// pidfdOpen returns a pidfd for pid that becomes readable when it exits.
func pidfdOpen(t *testing.T, pid int) *os.File {
	t.Helper()
	const sysPidfdOpen = 434 // the same on every Linux architecture
	fd, _, e := syscall.Syscall(sysPidfdOpen, uintptr(pid), syscall.O_NONBLOCK, 0)
	if e != 0 {
		t.Fatalf("pidfd_open %d: %v", pid, e)
	}
	f := os.NewFile(fd, "pidfd")
	t.Cleanup(func() {
		// Should it have survived, it must not hold the port any longer.
		const sysPidfdSendSignal = 424
		if rc, err := f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				syscall.Syscall6(sysPidfdSendSignal, fd, uintptr(syscall.SIGKILL), 0, 0, 0, 0)
			})
		}
		f.Close()
	})
	return f
}

func waitPidfd(f *os.File, timeout time.Duration) error {
	if err := f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	polled := false
	return rc.Read(func(uintptr) bool {
		done := polled
		polled = true
		return done
	})
}

// BenchmarkSupervisorSwap swaps b.N times under load and reports failed
// requests, request latency in steady state and during swaps, and how long
// activate took. The lead's figure: go test -run '^$' -bench SupervisorSwap -benchtime 200x
func BenchmarkSupervisorSwap(b *testing.B) {
	e := newTestEnv(b)
	e.release(b, "v1", "v1")
	e.release(b, "v2", "v2")
	addr := "127.0.0.1:" + freePortNumber(b)
	e.use(b, "v1")
	cfg := e.config(addr)
	cfg.ReadyDelay = 0
	s := startSupervisor(b, cfg, nil)
	s.activate(b, "v1")
	l := startLoad(b, "http://"+addr+"/", 6, 2, true)

	steadyFrom := time.Now()
	time.Sleep(time.Second) // a steady-state sample to compare with
	steadyTo := time.Now()
	type window struct{ from, to time.Time }
	var swaps []window
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		v := []string{"v2", "v1"}[i%2]
		e.use(b, v)
		l.swapping()
		w := window{from: time.Now()}
		took = append(took, s.activate(b, v))
		w.to = time.Now()
		l.expect(v)
		swaps = append(swaps, w)
	}
	b.StopTimer()
	l.stop()

	var steady, swapping []time.Duration
	for _, sm := range l.samples {
		end := sm.start.Add(sm.dur)
		switch {
		case !sm.start.Before(steadyFrom) && end.Before(steadyTo):
			steady = append(steady, sm.dur)
		default:
			for _, w := range swaps {
				if sm.start.Before(w.to) && end.After(w.from) {
					swapping = append(swapping, sm.dur)
					break
				}
			}
		}
	}
	b.ReportMetric(float64(l.failed.Load()), "failed")
	b.ReportMetric(float64(l.bad.Load()), "wrong-version")
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"steady", steady}, {"swap", swapping}, {"activate", took}} {
		slices.Sort(m.ds)
		if len(m.ds) == 0 {
			continue
		}
		pct := func(p float64) float64 { return float64(m.ds[int(p*float64(len(m.ds)-1))].Microseconds()) / 1000 }
		b.ReportMetric(pct(0.5), m.name+"-p50-ms")
		b.ReportMetric(pct(0.99), m.name+"-p99-ms")
		b.ReportMetric(pct(1), m.name+"-max-ms")
	}
	if l.failed.Load() != 0 {
		b.Errorf("%d failed requests; first: %q", l.failed.Load(), l.errs)
	}
}
