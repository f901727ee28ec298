package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// An app that serves only its first inherited socket, as most apps written
// for Server::Starter or systemd do, is gated through that socket: a good
// release goes live, a bad one is refused within about a second of its
// first answer, and the old one keeps serving without a failed request.
func TestGateFirstListenerOnly(t *testing.T) {
	if !canTellAcceptor {
		t.Skip("needs /proc/net/tcp to tell which process accepted a probe")
	}
	e := newTestEnv(t)
	e.release(t, "v1", "v1", "-first-only")
	e.release(t, "v2", "v2", "-first-only")
	e.release(t, "v3", "v2", "-first-only", "-never-healthy", "-version=v3")
	addr := "127.0.0.1:" + freePortNumber(t)
	cfg := e.config(addr, "127.0.0.1:"+freePortNumber(t))
	e.use(t, "v1")
	s := startSupervisor(t, cfg, nil)
	s.activate(t, "v1")

	l := startLoad(t, "http://"+addr+"/", 6, 2, false)
	l.swapping()
	e.use(t, "v2")
	s.activate(t, "v2")
	l.expect("v2")
	if body, _ := get(t, "http://"+addr+"/"); body != "v2" {
		t.Fatalf("after activating v2: %q answers, want v2", body)
	}

	l.swapping() // v3 shares the socket while it is gated
	e.use(t, "v3")
	start := time.Now()
	err := s.supervisor.activate(context.Background(), "v3")
	took := time.Since(start)
	var ge *gateError
	if !errors.As(err, &ge) {
		t.Fatalf("activate v3: error = %v, want a gate verdict", err)
	}
	if !strings.Contains(err.Error(), "503 Service Unavailable") {
		t.Errorf("activate v3: error %q does not say what the probe got", err)
	}
	// HealthTimeout is 20s: the verdict must come from the answers.
	if took > 10*time.Second {
		t.Errorf("bad release refused after %s, want about a second after it answered", took)
	}
	e.use(t, "v2")
	l.expect("v2")
	if body, _ := get(t, "http://"+addr+"/"); body != "v2" {
		t.Errorf("after refusing v3: %q answers, want v2", body)
	}
	l.check(t, 100)
}

// The verdict is the new generation's own even when the old one answers
// the health path happily on the same socket.
func TestGateIgnoresOldGeneration(t *testing.T) {
	if !canTellAcceptor {
		t.Skip("needs /proc/net/tcp to tell which process accepted a probe")
	}
	e := newTestEnv(t)
	e.release(t, "v1", "v1", "-first-only")
	// Slow to start: for a while only v1 accepts on the shared socket.
	e.release(t, "v2", "v2", "-first-only", "-never-healthy", "-listen-after=1s")
	addr := "127.0.0.1:" + freePortNumber(t)
	cfg := e.config(addr)
	e.use(t, "v1")
	s := startSupervisor(t, cfg, nil)
	s.activate(t, "v1")
	e.use(t, "v2")
	var ge *gateError
	if err := s.supervisor.activate(context.Background(), "v2"); !errors.As(err, &ge) {
		t.Fatalf("activate v2: error = %v, want a gate verdict (v1's 200s must not count)", err)
	}
}

// A READY=1 that comes after ReadyDelay declared the child ready still
// teaches dewy that the app speaks sd_notify: the next generation must say it.
func TestLateReadyCounts(t *testing.T) {
	if !canCheckSender {
		t.Skip("no notify socket on this system")
	}
	e := newTestEnv(t)
	e.release(t, "v1", "v1", "-notify", "-notify-delay=1s")
	e.release(t, "v2", "v2") // says nothing
	addr := "127.0.0.1:" + freePortNumber(t)
	cfg := e.config(addr)
	cfg.HealthPath = ""
	cfg.HealthTimeout = 3 * time.Second
	e.use(t, "v1")
	s := startSupervisor(t, cfg, nil)
	s.activate(t, "v1")
	s.logs.wait(t, "child speaks sd_notify; later generations must send READY=1", 30*time.Second)
	e.use(t, "v2")
	err := s.supervisor.activate(context.Background(), "v2")
	if err == nil || !strings.Contains(err.Error(), "no READY=1") {
		t.Fatalf("activate v2 (no READY=1): error = %v, want a missing READY=1", err)
	}
}

// While nothing serves, the sockets refuse connections instead of queueing
// them, and accept again when a release starts.
func TestNothingServingRefuses(t *testing.T) {
	e := newTestEnv(t)
	e.release(t, "v1", "v1", "-exit-at-once")
	e.release(t, "v2", "v2")
	addr := "127.0.0.1:" + freePortNumber(t)
	cfg := e.config(addr)
	e.use(t, "v1")
	var mu sync.Mutex
	var downs []bool
	s := startSupervisor(t, cfg, func(s *supervisor) {
		s.onDown = func(down bool, version, why string) {
			mu.Lock()
			downs = append(downs, down)
			mu.Unlock()
		}
	})
	if err := s.supervisor.activate(context.Background(), "v1"); err == nil {
		t.Fatal("activate v1 (exits at once): no error")
	}
	s.logs.wait(t, "nothing serves; refusing connections until a release starts", 30*time.Second)
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s while nothing serves: connected, want refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
		t.Fatalf("dial %s while nothing serves: %v after %s, want refused at once", addr, err, time.Since(start))
	}
	e.use(t, "v2")
	s.activate(t, "v2")
	if body, _ := get(t, "http://"+addr+"/"); body != "v2" {
		t.Errorf("after v2 started: %q answers, want v2", body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(downs) != 2 || !downs[0] || downs[1] {
		t.Errorf("down reports = %v, want [true false]", downs)
	}
}

// A restart asked for while a deploy's activation is gated waits its turn
// instead of being refused, and the deploy still succeeds.
func TestRestartDuringActivationWaits(t *testing.T) {
	e, s, addr := liveThenSlow(t, "1s")
	act := make(chan error, 1)
	go func() { act <- s.supervisor.activate(context.Background(), "v2") }()
	waitStarted(t, s, "v2")
	restarts := make(chan error, 2)
	for range 2 {
		go func() { restarts <- s.supervisor.restart(context.Background()) }()
	}
	if err := <-act; err != nil {
		t.Fatalf("activate v2 with restarts waiting: %v", err)
	}
	for range 2 {
		if err := <-restarts; err != nil {
			t.Errorf("restart during an activation: %v", err)
		}
	}
	if got, want := e.starts(t, "v2"), 2; got != want {
		t.Errorf("v2 started %d times, want %d: the activation, then one restart for both requests", got, want)
	}
	if body, _ := get(t, "http://"+addr+"/"); body != "v2" {
		t.Errorf("after the restart: %q answers, want v2", body)
	}
}

// waitStarted waits for the log line of a child of version starting.
func waitStarted(t *testing.T, s *testSup, version string) {
	t.Helper()
	for {
		r := s.logs.wait(t, "child started", time.Minute)
		found := false
		r.Attrs(func(a slog.Attr) bool {
			found = found || a.Key == "version" && a.Value.String() == version
			return !found
		})
		if found {
			return
		}
	}
}

// liveThenSlow serves v1 and points current at v2, which starts listening
// only after listenAfter, so that its activation stays gated a while.
func liveThenSlow(t *testing.T, listenAfter string) (*testEnv, *testSup, string) {
	t.Helper()
	e := newTestEnv(t)
	e.release(t, "v1", "v1")
	e.release(t, "v2", "v2", "-listen-after="+listenAfter)
	addr := "127.0.0.1:" + freePortNumber(t)
	e.use(t, "v1")
	s := startSupervisor(t, e.config(addr), nil)
	s.activate(t, "v1")
	e.use(t, "v2")
	return e, s, addr
}

// Stopping dewy during a gate is not a verdict on the release.
func TestStopDuringGateIsNoVerdict(t *testing.T) {
	_, s, _ := liveThenSlow(t, "30s")
	ctx, cancel := context.WithCancel(context.Background())
	act := make(chan error, 1)
	go func() { act <- s.supervisor.activate(ctx, "v2") }()
	waitStarted(t, s, "v2")
	cancel()
	err := <-act
	if !isInterrupted(err) {
		t.Fatalf("activate v2, cancelled: error = %v, want one that is not a verdict", err)
	}
	var ge *gateError
	if errors.As(err, &ge) {
		t.Errorf("activate v2, cancelled: %v is a gate verdict", err)
	}
}

// BenchmarkBadReleaseExposure measures how much live traffic a release
// whose health path fails answers before the gate refuses it: keep-alive
// clients stay with the old process, so the exposure is what fresh
// connections land on the new one while it is gated.
func BenchmarkBadReleaseExposure(b *testing.B) {
	for _, app := range []struct{ name, flag string }{{"all-listeners", ""}, {"first-listener-only", "-first-only"}} {
		b.Run(app.name, func(b *testing.B) {
			e := newTestEnv(b)
			flags := []string{"-never-healthy", "-version=bad"}
			if app.flag != "" {
				flags = append(flags, app.flag)
				e.release(b, "good", "v1", app.flag)
			} else {
				e.release(b, "good", "v1")
			}
			e.release(b, "bad", "v2", flags...)
			addr := "127.0.0.1:" + freePortNumber(b)
			e.use(b, "good")
			s := startSupervisor(b, e.config(addr), func(s *supervisor) { s.probeEvery = 100 * time.Millisecond })
			s.activate(b, "good")
			var bad, total int64
			var gate time.Duration
			b.ResetTimer()
			for b.Loop() {
				l := startLoad(b, "http://"+addr+"/", 4, 4, false)
				l.expect("v1")
				e.use(b, "bad")
				start := time.Now()
				if err := s.supervisor.activate(context.Background(), "bad"); err == nil {
					b.Fatal("bad release went live")
				}
				gate += time.Since(start)
				e.use(b, "good")
				l.stop()
				bad += l.bad.Load()
				total += l.ok.Load() + l.failed.Load()
				if f := l.failed.Load(); f != 0 {
					b.Errorf("%d failed requests: %q", f, l.errs)
				}
			}
			b.ReportMetric(float64(bad)/float64(b.N), "bad-answers/op")
			b.ReportMetric(100*float64(bad)/float64(max(total, 1)), "bad-%")
			b.ReportMetric(gate.Seconds()/float64(b.N), "gate-s/op")
		})
	}
}
