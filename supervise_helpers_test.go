package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play three more parts: dewy's exec shim
// (the supervisor runs os.Executable(), which under test is this binary);
// dewy itself when run as dewyBinary's symlink, for the end-to-end tests;
// and, with DEWY_TEST_AS_SUPERVISOR set, a small dewy of its own, for the
// tests that kill dewy or hand it sockets the way systemd does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "__exec" {
		err := execShim(os.Args[2:])
		fmt.Fprintln(os.Stderr, "test shim:", err)
		os.Exit(127)
	}
	if filepath.Base(os.Args[0]) == dewyAsName {
		main()
		os.Exit(0)
	}
	if os.Getenv("DEWY_TEST_AS_SUPERVISOR") != "" {
		os.Exit(runAsSupervisor())
	}
	code := m.Run()
	for _, dir := range sharedDirs.all() {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// runAsSupervisor is a minimal `dewy server`: it supervises
// $DEWY_TEST_SUP_CMD on $DEWY_TEST_SUP_PORTS (or on the sockets systemd's
// convention hands it), says READY=1 (and "ready" on stdout when asked)
// once the first generation serves, and stops on SIGTERM.
func runAsSupervisor() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("as", "test-supervisor")
	var ports []string
	if p := os.Getenv("DEWY_TEST_SUP_PORTS"); p != "" {
		ports = strings.Split(p, ",")
	}
	cfg := serverConfig{
		Ports:         ports,
		Command:       strings.Fields(os.Getenv("DEWY_TEST_SUP_CMD")),
		HealthPath:    "/healthz",
		HealthTimeout: 20 * time.Second,
		DrainTimeout:  10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s, err := newSupervisor(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	if err := s.activate(ctx, "v1"); err != nil {
		log.Error("activate", "err", err)
		stop()
		<-done
		return 1
	}
	if err := sdNotify("READY=1"); err != nil {
		log.Error("sd_notify", "err", err)
	}
	if os.Getenv("DEWY_TEST_SUP_SAY_READY") != "" {
		fmt.Println("ready")
	}
	if err := <-done; err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

var (
	appBuildDir string
	buildOnce   sync.Once
	buildErr    error
)

// buildApps builds testdata/app once per test run, as v1 and v2.
func buildApps(tb testing.TB) {
	tb.Helper()
	buildOnce.Do(func() {
		// Removed by TestMain; made here so that test processes that
		// build nothing leave nothing behind.
		appBuildDir, buildErr = sharedDirs.make("dewy-test-apps-")
		if buildErr != nil {
			return
		}
		for _, v := range []string{"v1", "v2"} {
			out := filepath.Join(appBuildDir, v, "app")
			cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", out, "./testdata/app")
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build test app %s: %v\n%s", v, err, b)
				return
			}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
}

// A testEnv is a deployment root: releases/NAME/app with optional
// app.flags, and current pointing at one of them, as dewy lays it out.
type testEnv struct {
	root     string
	eventLog string // APP_START_LOG
}

func newTestEnv(tb testing.TB) *testEnv {
	tb.Helper()
	buildApps(tb)
	root := tb.TempDir()
	return &testEnv{root: root, eventLog: filepath.Join(root, "events.log")}
}

// release makes releases/name from the build of version build, run with flags.
func (e *testEnv) release(tb testing.TB, name, build string, flags ...string) {
	tb.Helper()
	dir := filepath.Join(e.root, "releases", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	// A hard link, so that os.Executable in the app names this directory.
	if err := os.Link(filepath.Join(appBuildDir, build, "app"), filepath.Join(dir, "app")); err != nil {
		tb.Fatal(err)
	}
	if len(flags) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "app.flags"), []byte(strings.Join(flags, " ")), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// use points current at releases/name, atomically.
func (e *testEnv) use(tb testing.TB, name string) {
	tb.Helper()
	tmp := filepath.Join(e.root, "current.tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Join("releases", name), tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.root, "current")); err != nil {
		tb.Fatal(err)
	}
}

func (e *testEnv) config(ports ...string) serverConfig {
	return serverConfig{
		Ports:         ports,
		Command:       []string{filepath.Join(e.root, "current", "app")},
		Dir:           e.root,
		HealthPath:    "/healthz",
		HealthTimeout: 20 * time.Second,
		ReadyDelay:    100 * time.Millisecond,
		DrainTimeout:  20 * time.Second,
		StopSignal:    syscall.SIGTERM,
		Env:           []string{"APP_START_LOG=" + e.eventLog},
	}
}

type appEvent struct {
	event, version string
	pid            int
	at             time.Time
}

func (e *testEnv) events(tb testing.TB) []appEvent {
	tb.Helper()
	b, err := os.ReadFile(e.eventLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	var evs []appEvent
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) != 4 {
			tb.Fatalf("bad event line %q", line)
		}
		pid, _ := strconv.Atoi(f[1])
		ns, _ := strconv.ParseInt(f[3], 10, 64)
		evs = append(evs, appEvent{event: f[0], pid: pid, version: f[2], at: time.Unix(0, ns)})
	}
	return evs
}

// starts counts the processes of version that started.
func (e *testEnv) starts(tb testing.TB, version string) int {
	n := 0
	for _, ev := range e.events(tb) {
		if ev.event == "start" && ev.version == version {
			n++
		}
	}
	return n
}

// logWatch passes the supervisor's log to the test output and lets the test
// wait for a message.
type logWatch struct {
	slog.Handler
	ch chan slog.Record
}

func (w *logWatch) Handle(ctx context.Context, r slog.Record) error {
	select {
	case w.ch <- r.Clone():
	default:
	}
	return w.Handler.Handle(ctx, r)
}

func (w *logWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &logWatch{w.Handler.WithAttrs(as), w.ch}
}

func (w *logWatch) WithGroup(name string) slog.Handler {
	return &logWatch{w.Handler.WithGroup(name), w.ch}
}

// wait returns the next record with message msg.
func (w *logWatch) wait(tb testing.TB, msg string, timeout time.Duration) slog.Record {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case r := <-w.ch:
			if r.Message == msg {
				return r
			}
		case <-deadline:
			tb.Fatalf("no %q logged within %s", msg, timeout)
		}
	}
}

type testSup struct {
	*supervisor
	logs   *logWatch
	cancel context.CancelFunc
	done   chan error
}

// startSupervisor runs a supervisor until the test ends.
func startSupervisor(tb testing.TB, cfg serverConfig, tune func(*supervisor)) *testSup {
	tb.Helper()
	w := &logWatch{Handler: slog.NewTextHandler(tb.Output(), nil), ch: make(chan slog.Record, 10000)}
	s, err := newSupervisor(cfg, slog.New(w))
	if err != nil {
		tb.Fatal(err)
	}
	s.backoffMin = 100 * time.Millisecond
	s.probeEvery = 20 * time.Millisecond
	if tune != nil {
		tune(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testSup{supervisor: s, logs: w, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.run(ctx) }()
	tb.Cleanup(func() {
		if err := ts.stop(tb); err != nil {
			tb.Errorf("run = %v", err)
		}
	})
	return ts
}

// stop cancels run and waits for it; it may be called more than once.
func (ts *testSup) stop(tb testing.TB) error {
	ts.cancel()
	select {
	case err, ok := <-ts.done:
		if ok {
			close(ts.done)
		}
		return err
	case <-time.After(time.Minute):
		ts.kill()
		tb.Errorf("run did not return within a minute of cancel")
		return <-ts.done
	}
}

func (ts *testSup) activate(tb testing.TB, version string) time.Duration {
	tb.Helper()
	start := time.Now()
	if err := ts.supervisor.activate(context.Background(), version); err != nil {
		tb.Fatalf("activate %s: %v", version, err)
	}
	return time.Since(start)
}

// A load is a set of HTTP clients hammering one URL. Most keep their
// connection alive; a few open a fresh one per request, which spreads them
// over every generation that accepts.
type load struct {
	url             string
	stopC           chan struct{}
	wg              sync.WaitGroup
	ok, failed, bad atomic.Int64
	exp             atomic.Pointer[expectation]
	mu              sync.Mutex
	errs            []string
	record          bool
	samples         []sample
}

type expectation struct{ version string }

type sample struct {
	start time.Time
	dur   time.Duration
}

func startLoad(tb testing.TB, url string, keepAlive, fresh int, record bool) *load {
	l := &load{url: url, stopC: make(chan struct{}), record: record}
	for i := range keepAlive + fresh {
		l.wg.Go(func() { l.worker(i >= keepAlive) })
	}
	tb.Cleanup(l.stop)
	return l
}

func (l *load) worker(fresh bool) {
	tr := &http.Transport{DisableKeepAlives: fresh, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for {
		select {
		case <-l.stopC:
			return
		default:
		}
		start := time.Now()
		exp := l.exp.Load()
		resp, err := client.Get(l.url)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		dur := time.Since(start)
		if err != nil {
			l.failed.Add(1)
			l.note(fmt.Sprintf("%s: %v", start.Format("15:04:05.000"), err))
			continue
		}
		l.ok.Add(1)
		// Held to a version only if no swap began while it was in flight.
		if exp != nil && exp == l.exp.Load() && string(body) != exp.version {
			l.bad.Add(1)
			l.note(fmt.Sprintf("%s: answered by %s, want %s", start.Format("15:04:05.000"), body, exp.version))
		}
		if l.record {
			l.mu.Lock()
			l.samples = append(l.samples, sample{start, dur})
			l.mu.Unlock()
		}
		if fresh {
			// Paced so that closed connections do not use up the
			// ephemeral ports.
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func (l *load) note(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, s)
	}
}

// expect says every request that starts from now on, until the next call
// to swapping, must be answered by version.
func (l *load) expect(version string) { l.exp.Store(&expectation{version: version}) }

// swapping says a swap begins: either version may answer until expect.
func (l *load) swapping() { l.exp.Store(nil) }

func (l *load) stop() {
	select {
	case <-l.stopC:
	default:
		close(l.stopC)
	}
	l.wg.Wait()
}

// check stops the load and fails the test on any failed or misdirected request.
func (l *load) check(tb testing.TB, minOK int64) {
	tb.Helper()
	l.stop()
	if got := l.failed.Load(); got != 0 {
		tb.Errorf("%d failed requests, want 0; first: %q", got, l.errs)
	}
	if got := l.bad.Load(); got != 0 {
		tb.Errorf("%d requests answered by the wrong version, want 0; first: %q", got, l.errs)
	}
	if got := l.ok.Load(); got < minOK {
		tb.Errorf("%d successful requests, want at least %d", got, minOK)
	}
	tb.Logf("load: %d ok, %d failed, %d wrong version", l.ok.Load(), l.failed.Load(), l.bad.Load())
}

// get fetches path and returns the body and the answering pid.
func get(tb testing.TB, url string) (string, int) {
	tb.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s", url, resp.Status)
	}
	pid, _ := strconv.Atoi(resp.Header.Get("X-Pid"))
	return string(b), pid
}

// sharedDirs holds the build directories that tests share for the whole
// run; TestMain removes them once every test has ended.
var sharedDirs tempDirs

type tempDirs struct {
	mu   sync.Mutex
	dirs []string
}

func (d *tempDirs) make(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.dirs = append(d.dirs, dir)
	}
	return dir, err
}

func (d *tempDirs) all() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dirs...)
}
