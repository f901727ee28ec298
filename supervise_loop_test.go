//go:build linux

package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// These tests drive the supervisor's loop with fake processes that exit
// when the test says so: no child runs, so each step of a swap, a crash or
// a shutdown can be taken in a chosen order.

// A fakeProc is a child that exits when the test tells it to. Its pid is
// the test's own, so that a READY=1 the test sends to the generation's
// NOTIFY_SOCKET passes the sender check.
type fakeProc struct {
	spec      procSpec
	signals   chan os.Signal // every signal the loop sent
	signalled atomic.Bool
	kills     atomic.Int32
	exitC     chan error
	once      sync.Once
	status    error // set by wait, read by reap after it
	auto      *atomic.Bool
}

func (p *fakeProc) pid() int { return os.Getpid() }

func (p *fakeProc) signal(sig os.Signal) error {
	p.signals <- sig
	p.signalled.Store(true)
	if p.auto.Load() {
		p.exit(nil)
	}
	return nil
}

func (p *fakeProc) kill() {
	p.kills.Add(1)
	p.exit(errors.New("signal: killed"))
}

func (p *fakeProc) wait() { p.status = <-p.exitC }

func (p *fakeProc) reap() error { return p.status }

// exit ends the process with status; only the first exit counts.
func (p *fakeProc) exit(status error) {
	p.once.Do(func() { p.exitC <- status })
}

// sayReady sends READY=1 to the generation's notify socket.
func (p *fakeProc) sayReady(t *testing.T) {
	t.Helper()
	addr := p.env("NOTIFY_SOCKET")
	if addr == "" {
		t.Fatal("the generation has no NOTIFY_SOCKET")
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		t.Fatal(err)
	}
}

func (p *fakeProc) env(key string) string {
	for _, kv := range p.spec.env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// awaitSignal returns the next signal the loop sends p.
func (p *fakeProc) awaitSignal(t *testing.T) os.Signal {
	t.Helper()
	select {
	case sig := <-p.signals:
		return sig
	case <-time.After(time.Minute):
		t.Fatalf("generation %s got no signal within a minute", p.env("SERVER_STARTER_GENERATION"))
		return nil
	}
}

// fakeProcs is the supervisor's newProc in these tests.
type fakeProcs struct {
	started chan *fakeProc
	auto    atomic.Bool // from the test's end on, a signal ends a fake at once
	mu      sync.Mutex
	all     []*fakeProc
}

func (f *fakeProcs) newProc(sp procSpec) (process, error) {
	p := &fakeProc{spec: sp, signals: make(chan os.Signal, 16), exitC: make(chan error, 1), auto: &f.auto}
	f.mu.Lock()
	f.all = append(f.all, p)
	f.mu.Unlock()
	f.started <- p
	return p, nil
}

// next returns the next child the loop starts.
func (f *fakeProcs) next(t *testing.T) *fakeProc {
	t.Helper()
	select {
	case p := <-f.started:
		return p
	case <-time.After(time.Minute):
		t.Fatal("no child started within a minute")
		return nil
	}
}

// noMore fails the test if the loop started a child that next did not
// return. Call it when the loop has answered every request.
func (f *fakeProcs) noMore(t *testing.T) {
	t.Helper()
	if n := len(f.started); n != 0 {
		t.Errorf("%d more children started than expected", n)
	}
}

// loopSup is a supervisor on one real socket whose children are fakes: no
// health path, and a ReadyDelay so long that a generation is ready only
// when it says READY=1.
type loopSup struct {
	*testSup
	procs *fakeProcs
	gens  chan int // what onChild reported, in order
	rs    atomic.Int32
}

func startLoopSup(t *testing.T, tune func(*supervisor)) *loopSup {
	t.Helper()
	cfg := serverConfig{
		Ports:         []string{"127.0.0.1:" + freePortNumber(t)},
		Command:       []string{"app-that-never-runs"},
		HealthTimeout: time.Minute,
		ReadyDelay:    time.Hour,
		DrainTimeout:  time.Hour,
		StopSignal:    syscall.SIGUSR2, // not the default, so that the test sees it is the configured one
	}
	f := &fakeProcs{started: make(chan *fakeProc, 64)}
	ls := &loopSup{procs: f, gens: make(chan int, 256)}
	ls.testSup = startSupervisor(t, cfg, func(s *supervisor) {
		s.newProc = f.newProc
		s.onChild = func(pid, gen, restarts int) {
			select {
			case ls.gens <- gen:
			default: // a test that does not look
			}
		}
		s.onRestart = func() { ls.rs.Add(1) }
		if tune != nil {
			tune(s)
		}
	})
	// Cleanups run last first: this one, before the supervisor's stop,
	// lets the fakes still running exit when signalled.
	t.Cleanup(func() {
		f.auto.Store(true)
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, p := range f.all {
			if p.signalled.Load() {
				p.exit(nil)
			}
		}
	})
	return ls
}

// request hands run a request and returns once run has taken it, so that
// the test knows it is queued before anything that follows.
func (ls *loopSup) request(ctx context.Context, version string, restart bool) chan error {
	r := request{ctx: ctx, version: version, restart: restart, reply: make(chan error, 1)}
	ls.reqC <- r
	return r.reply
}

// activateFake activates version and makes its new generation ready,
// stopping old, if any, when the loop signals it. It returns the new one.
func (ls *loopSup) activateFake(t *testing.T, version string, old *fakeProc) *fakeProc {
	t.Helper()
	reply := ls.request(context.Background(), version, false)
	p := ls.procs.next(t)
	if err := swap(t, p, old, reply); err != nil {
		t.Fatalf("activate %s: %v", version, err)
	}
	return p
}

// swap makes p ready, lets old exit when the loop stops it, and returns
// the answer to the request p was started for.
func swap(t *testing.T, p, old *fakeProc, reply chan error) error {
	t.Helper()
	p.sayReady(t)
	if old != nil {
		if sig := old.awaitSignal(t); sig != syscall.SIGUSR2 {
			t.Errorf("old generation got %v, want the stop signal SIGUSR2", sig)
		}
		old.exit(nil)
	}
	return awaitReply(t, reply)
}

func awaitReply(t *testing.T, reply chan error) error {
	t.Helper()
	select {
	case err := <-reply:
		return err
	case <-time.After(time.Minute):
		t.Fatal("no answer within a minute")
		return nil
	}
}

// startedVersion returns the version the loop logged for generation gen
// as it started.
func (ls *loopSup) startedVersion(t *testing.T, gen int) string {
	t.Helper()
	for {
		r := ls.logs.wait(t, "child started", time.Minute)
		if logAttr(r, "gen").Int64() == int64(gen) {
			return logAttr(r, "version").String()
		}
	}
}

// logAttr returns the value of key in r.
func logAttr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

// A child that keeps crashing is started again at once after a backoff
// that doubles up to backoffMax.
func TestLoopCrashRestartsWithBackoff(t *testing.T) {
	const lo, hi = 20 * time.Millisecond, 80 * time.Millisecond
	ls := startLoopSup(t, func(s *supervisor) {
		s.backoffMin, s.backoffMax, s.backoffReset = lo, hi, time.Hour
	})
	p := ls.activateFake(t, "v1", nil)
	for i, want := range []time.Duration{lo, 2 * lo, hi, hi} {
		crashed := time.Now()
		p.exit(errors.New("exit status 1"))
		r := ls.logs.wait(t, "restarting child after backoff", time.Minute)
		if got := logAttr(r, "in").Duration(); got != want {
			t.Errorf("crash %d: backoff %s, want %s", i+1, got, want)
		}
		p = ls.procs.next(t)
		if since := time.Since(crashed); since < want {
			t.Errorf("crash %d: restarted %s after it, before the backoff of %s", i+1, since, want)
		}
		if got := ls.startedVersion(t, i+2); got != "v1" {
			t.Errorf("crash %d: restarted %s, want v1", i+1, got)
		}
	}
	// Each crash reports nothing serving, then the restarted generation.
	want := []int{1, 1, 2, 2, 3, 3, 4, 4, 5}
	var gens []int
	for range want {
		select {
		case g := <-ls.gens:
			gens = append(gens, g)
		case <-time.After(time.Minute):
			t.Fatalf("onChild generations = %v, want %v", gens, want)
		}
	}
	if !slices.Equal(gens, want) {
		t.Errorf("onChild generations = %v, want %v", gens, want)
	}
	// onRestart comes before onChild reports the restarted generation.
	if got := ls.rs.Load(); got != 4 {
		t.Errorf("onRestart called %d times, want 4", got)
	}
}

// Restarts that arrive while a restart's generation is starting wait, and
// one new generation answers them all.
func TestLoopRestartsMerge(t *testing.T) {
	ls := startLoopSup(t, nil)
	p1 := ls.activateFake(t, "v1", nil)
	first := ls.request(context.Background(), "", true)
	p2 := ls.procs.next(t)
	second := ls.request(context.Background(), "", true)
	third := ls.request(context.Background(), "", true)

	if err := swap(t, p2, p1, first); err != nil {
		t.Fatalf("first restart: %v", err)
	}
	p3 := ls.procs.next(t)
	if err := swap(t, p3, p2, second); err != nil {
		t.Errorf("second restart, sent while the first was starting: %v", err)
	}
	if err := awaitReply(t, third); err != nil {
		t.Errorf("third restart, sent while the first was starting: %v", err)
	}
	ls.procs.noMore(t)
	if got := ls.rs.Load(); got != 2 {
		t.Errorf("onRestart called %d times, want 2: one per generation", got)
	}
	if got := p3.env("SERVER_STARTER_GENERATION"); got != "3" {
		t.Errorf("the merged restart's generation is %s, want 3", got)
	}
}

// A restart asked for during an activation waits its turn, then runs the
// release that activation brought.
func TestLoopRestartDuringActivationQueued(t *testing.T) {
	ls := startLoopSup(t, nil)
	p1 := ls.activateFake(t, "v1", nil)
	act := ls.request(context.Background(), "v2", false)
	p2 := ls.procs.next(t)
	restart := ls.request(context.Background(), "", true)
	select {
	case err := <-restart:
		t.Fatalf("restart during an activation answered at once: %v", err)
	default:
	}
	if err := swap(t, p2, p1, act); err != nil {
		t.Fatalf("activate v2: %v", err)
	}
	p3 := ls.procs.next(t)
	if got := ls.startedVersion(t, 3); got != "v2" {
		t.Errorf("the restart started %s, want v2", got)
	}
	if err := swap(t, p3, p2, restart); err != nil {
		t.Errorf("restart queued behind an activation: %v", err)
	}
	ls.procs.noMore(t)
}

// Shutdown stops the live child with the stop signal, not a kill, and run
// returns only once it has exited.
func TestLoopShutdownStopsLiveChild(t *testing.T) {
	ls := startLoopSup(t, nil)
	p := ls.activateFake(t, "v1", nil)
	ls.cancel()
	if sig := p.awaitSignal(t); sig != syscall.SIGUSR2 {
		t.Errorf("shutdown sent %v, want the stop signal SIGUSR2", sig)
	}
	select {
	case err := <-ls.done:
		t.Fatalf("run returned (%v) while its child still ran", err)
	default:
	}
	if n := p.kills.Load(); n != 0 {
		t.Errorf("the child was killed %d times before it could drain", n)
	}
	p.exit(nil)
	if err := ls.stop(t); err != nil {
		t.Errorf("run = %v, want nil", err)
	}
}

// A new generation that exits before it is ready fails the activation
// with a verdict on the release, and the live one keeps serving.
func TestLoopExitDuringGateFails(t *testing.T) {
	ls := startLoopSup(t, nil)
	p1 := ls.activateFake(t, "v1", nil)
	act := ls.request(context.Background(), "v2", false)
	p2 := ls.procs.next(t)
	p2.exit(errors.New("exit status 3"))
	err := awaitReply(t, act)
	if err == nil {
		t.Fatal("activate v2 succeeded, though v2 exited before it was ready")
	}
	if isInterrupted(err) {
		t.Errorf("activate v2 = %v, an interruption, want a verdict on v2", err)
	}
	if !strings.Contains(err.Error(), "exited before it was ready: exit status 3") || !strings.Contains(err.Error(), "v2") {
		t.Errorf("activate v2 = %q, want it to name v2 and its exit status", err)
	}
	if len(p1.signals) != 0 {
		t.Errorf("the live generation was signalled when its successor failed")
	}
	ls.procs.noMore(t)
}

// Giving up on an activation, or stopping dewy, during its gate is no
// verdict on the release: the new generation is stopped, not judged.
func TestLoopInterruptedGate(t *testing.T) {
	t.Run("cancelled", func(t *testing.T) {
		ls := startLoopSup(t, nil)
		p1 := ls.activateFake(t, "v1", nil)
		ctx, cancel := context.WithCancel(context.Background())
		act := make(chan error, 1)
		go func() { act <- ls.supervisor.activate(ctx, "v2") }()
		p2 := ls.procs.next(t)
		cancel()
		if err := awaitReply(t, act); !isInterrupted(err) {
			t.Errorf("activate v2, cancelled: %v, want an interruption", err)
		}
		if sig := p2.awaitSignal(t); sig != syscall.SIGUSR2 {
			t.Errorf("the abandoned generation got %v, want the stop signal SIGUSR2", sig)
		}
		p2.exit(nil)
		// The loop is free again, and v1 served throughout.
		ls.activateFake(t, "v3", p1)
	})
	t.Run("stopped", func(t *testing.T) {
		ls := startLoopSup(t, nil)
		p1 := ls.activateFake(t, "v1", nil)
		act := ls.request(context.Background(), "v2", false)
		p2 := ls.procs.next(t)
		ls.cancel()
		for _, p := range []*fakeProc{p1, p2} {
			p.awaitSignal(t)
			p.exit(nil)
		}
		err := awaitReply(t, act)
		if !isInterrupted(err) {
			t.Errorf("activate v2, stopped: %v, want an interruption", err)
		}
		var ge *gateError
		if errors.As(err, &ge) {
			t.Errorf("activate v2, stopped: %v is a gate verdict", err)
		}
		if err := ls.stop(t); err != nil {
			t.Errorf("run = %v, want nil", err)
		}
	})
}
