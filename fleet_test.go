package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingRegistry answers from a fixed list and counts the questions.
type countingRegistry struct {
	calls atomic.Int64
	rels  []release
	err   error
}

func (r *countingRegistry) releases(context.Context) ([]release, error) {
	r.calls.Add(1)
	return r.rels, r.err
}

var fleetReleases = []release{
	{Tag: "v1.2.0", ID: "12", Assets: []asset{{Name: "app_linux_amd64.tar.gz", URL: "https://example.test/a", Size: 10, SHA256: strings.Repeat("a", 64), SHA256From: "GitHub digest"}}},
	{Tag: "v1.1.0", ID: "11", Prerelease: true, Assets: []asset{{Name: "app.zip", URL: "https://example.test/b", Size: -1}}},
}

// fleetBackends are the shared caches the fleet tests run against.
var fleetBackends = []string{"redis", "consul"}

// fleetCacheURL returns a cache URL on backend with a prefix of its own
// plus query; every host of one test uses the same URL.
func fleetCacheURL(t *testing.T, backend, query string) string {
	t.Helper()
	prefix := "dewy-test-" + randomSuffix()
	switch backend {
	case "file": // one host's dewys sharing a directory
		return "file://" + t.TempDir() + "?" + query
	case "redis":
		return "redis://" + backendAddr(t, "redis", "DEWY_TEST_REDIS_ADDR") + "/0?prefix=" + prefix + "&" + query
	case "consul":
		return "consul://" + backendAddr(t, "consul", "DEWY_TEST_CONSUL_ADDR") + "/" + prefix + "?" + query
	}
	t.Fatalf("unknown backend %s", backend)
	return ""
}

// leaseBound is how long an unrenewed lease may outlive its holder.
func leaseBound(backend string) time.Duration {
	if backend == "consul" {
		return 2*consulMinTTL + 5*time.Second
	}
	return 3 * time.Second // lease-ttl=1s plus slack for -race
}

// windowRecorder is a clock that notes every registry-ttl window it is
// asked the time in.
type windowRecorder struct {
	clock
	ttl     time.Duration
	mu      sync.Mutex
	windows map[int64]bool
}

func (w *windowRecorder) now() time.Time {
	now := w.clock.now()
	w.mu.Lock()
	if w.windows == nil {
		w.windows = map[int64]bool{}
	}
	w.windows[now.UnixNano()/int64(w.ttl)] = true
	w.mu.Unlock()
	return now
}

func (w *windowRecorder) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.windows)
}

// (a) Three hosts polling every 50 ms for several windows ask the registry
// once per window between them, and all see its answer.
func TestFleetSharedRegistry(t *testing.T) {
	for _, backend := range append([]string{"file"}, fleetBackends...) {
		t.Run(backend, func(t *testing.T) {
			const ttl = time.Second
			raw := fleetCacheURL(t, backend, "registry-ttl=1s")
			reg := &countingRegistry{rels: fleetReleases}
			rec := &windowRecorder{clock: realClock{}, ttl: ttl}
			var wg sync.WaitGroup
			end := time.Now().Add(3200 * time.Millisecond)
			for h := range 3 {
				cs := testCacheSetup(t, raw)
				cs.clk = rec // the real clock, noting windows; the local caches read it unnoted
				shared := cs.wrapRegistry(reg, "ghr://owner/repo")
				wg.Go(func() {
					for time.Now().Before(end) {
						rels, err := shared.releases(context.Background())
						if err != nil {
							t.Errorf("host %d: releases: %v", h, err)
							return
						}
						if !reflect.DeepEqual(rels, fleetReleases) {
							t.Errorf("host %d: releases = %+v, want %+v", h, rels, fleetReleases)
							return
						}
						time.Sleep(50 * time.Millisecond) // the poll interval under test
					}
				})
			}
			wg.Wait()
			if got, want := reg.calls.Load(), int64(rec.count()); got != want {
				t.Errorf("registry asked %d times in %d windows, want once per window", got, want)
			}
		})
	}
}

// A registry error reaches every host of the window from one request, with
// its retry time, so a failing registry is not asked by every host.
func TestFleetSharedRegistryError(t *testing.T) {
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	reg := &countingRegistry{err: &retryAfterError{Err: errors.New("github: rate limited"), Until: until}}
	raw := fleetCacheURL(t, "file", "registry-ttl=1h")
	for h := range 3 {
		_, err := testCacheSetup(t, raw).wrapRegistry(reg, "r").releases(context.Background())
		var ra *retryAfterError
		if !errors.As(err, &ra) || !ra.Until.Equal(until) || !strings.Contains(err.Error(), "rate limited") {
			t.Errorf("host %d: err = %v, want the registry's retry-after error until %v", h, err, until)
		}
	}
	if got := reg.calls.Load(); got != 1 {
		t.Errorf("registry asked %d times, want 1", got)
	}
}

// An answer too large for Consul sends every host to the registry at once,
// with one warning, rather than making them wait for an answer that will
// not come.
func TestFleetSharedRegistryTooLarge(t *testing.T) {
	raw := fleetCacheURL(t, "consul", "registry-ttl=1h")
	var rels []release
	for i := range 3000 {
		rels = append(rels, release{Tag: fmt.Sprintf("v1.0.%d", i), Assets: []asset{{Name: "app_linux_amd64.tar.gz", URL: "https://example.test/" + strings.Repeat("x", 150), Size: 1}}})
	}
	reg := &countingRegistry{rels: rels}
	logs, log := newCacheLog(t)
	start := time.Now()
	for range 3 {
		cs, err := newCache(context.Background(), raw, t.TempDir(), func(string) string { return "" }, log)
		if err != nil {
			t.Fatal(err)
		}
		got, err := cs.wrapRegistry(reg, "r").releases(context.Background())
		if err != nil || len(got) != len(rels) {
			t.Fatalf("releases = %d, %v; want %d", len(got), err, len(rels))
		}
	}
	if got := reg.calls.Load(); got != 3 {
		t.Errorf("registry asked %d times, want 3 (once per host)", got)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("three hosts took %v; they waited for an answer that could not be stored", took)
	}
	if n := logs.count("level=WARN", "too large"); n != 1 {
		t.Errorf("%d too-large warnings, want 1", n)
	}
}

// Without registry-ttl the registry is not wrapped at all.
func TestFleetRegistryUnwrapped(t *testing.T) {
	cs := testCacheSetup(t, "memory://")
	reg := &countingRegistry{}
	if got := cs.wrapRegistry(reg, "x"); got != registry(reg) {
		t.Errorf("wrapRegistry without registry-ttl = %T, want the registry itself", got)
	}
}

type holdWindow struct {
	host       int
	start, end time.Time
}

// maxOverlap returns the most windows open at one instant.
func maxOverlap(ws []holdWindow) int {
	type ev struct {
		at    time.Time
		delta int
	}
	var evs []ev
	for _, w := range ws {
		evs = append(evs, ev{w.start, 1}, ev{w.end, -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at.Equal(evs[j].at) {
			return evs[i].delta < evs[j].delta // a slot freed and taken at one instant is no overlap
		}
		return evs[i].at.Before(evs[j].at)
	})
	n, most := 0, 0
	for _, e := range evs {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// (b) Four hosts deploying three times each with max-parallel=2: never more
// than two deploy at once, and two do.
func TestFleetRollingSlots(t *testing.T) {
	for _, backend := range append([]string{"file"}, fleetBackends...) {
		t.Run(backend, func(t *testing.T) {
			raw := fleetCacheURL(t, backend, "max-parallel=2&lease-ttl=1s")
			var mu sync.Mutex
			var windows []holdWindow
			var wg sync.WaitGroup
			for h := range 4 {
				cs := testCacheSetup(t, raw)
				cs.slotRetry = 30 * time.Millisecond
				wg.Go(func() {
					for range 3 {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						release, err := cs.acquireSlot(ctx, "app", fmt.Sprintf("host-%d", h))
						cancel()
						if err != nil {
							t.Errorf("host %d: acquireSlot: %v", h, err)
							return
						}
						w := holdWindow{host: h, start: time.Now()}
						time.Sleep(150 * time.Millisecond) // the deploy
						w.end = time.Now()
						release()
						mu.Lock()
						windows = append(windows, w)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(windows) != 12 {
				t.Fatalf("%d deploys done, want 12", len(windows))
			}
			if got := maxOverlap(windows); got != 2 {
				t.Errorf("at most %d hosts deployed at once, want exactly max-parallel 2", got)
			}
		})
	}
}

func TestFleetSlotUnlimited(t *testing.T) {
	cs := testCacheSetup(t, "memory://")
	for range 3 {
		release, err := cs.acquireSlot(context.Background(), "app", "h")
		if err != nil {
			t.Fatalf("acquireSlot without max-parallel: %v", err)
		}
		defer release()
	}
}

// TestFleetHostProcess is a dewy host in a child process when the fleet
// tests re-exec the test binary; otherwise it does nothing.
func TestFleetHostProcess(t *testing.T) {
	role := os.Getenv("DEWY_TEST_FLEET_ROLE")
	if role == "" {
		t.Skip("runs as a child of the fleet tests")
	}
	log := testCacheLogger(t)
	cs, err := newCache(context.Background(), os.Getenv("DEWY_TEST_FLEET_CACHE"), t.TempDir(), os.Getenv, log)
	if err != nil {
		t.Fatal(err)
	}
	switch role {
	case "hold":
		// Take the slot and keep renewing it until killed.
		release, err := cs.acquireSlot(context.Background(), "app", "child")
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		fmt.Println("held")
		select {}
	case "poll":
		rec := &windowRecorder{clock: realClock{}, ttl: cs.registryTTL}
		cs.clk = rec
		owner, repo, _ := strings.Cut(os.Getenv("DEWY_TEST_FLEET_REPO"), "/")
		gh, err := newGitHubRegistry(&url.URL{Scheme: "ghr", Host: owner, Path: "/" + repo}, os.Getenv, log)
		if err != nil {
			t.Fatal(err)
		}
		shared := cs.wrapRegistry(gh, "ghr://"+owner+"/"+repo)
		endNanos, _ := strconv.ParseInt(os.Getenv("DEWY_TEST_FLEET_END"), 10, 64)
		for time.Now().UnixNano() < endNanos {
			rels, err := shared.releases(context.Background())
			if err != nil || len(rels) != 1 || rels[0].Tag != "v1.0.0" {
				t.Fatalf("releases = %+v, %v; want v1.0.0", rels, err)
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
		rec.mu.Lock()
		var ws []string
		for w := range rec.windows {
			ws = append(ws, strconv.FormatInt(w, 10))
		}
		rec.mu.Unlock()
		fmt.Println("windows " + strings.Join(ws, ","))
	}
}

// fleetChild starts this test binary as a fleet host with env added.
// It returns the child and a channel of its stdout lines.
func fleetChild(t *testing.T, env ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFleetHostProcess$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start fleet child: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

// (a) across processes: three dewy processes polling one GitHub through the
// cache cost it one listing per window.
func TestFleetSharedRegistryProcesses(t *testing.T) {
	for _, backend := range fleetBackends {
		t.Run(backend, func(t *testing.T) {
			raw := fleetCacheURL(t, backend, "registry-ttl=1s")
			gh := newFakeGitHub(t, "tok")
			gh.addRelease("v1.0.0", false, false, map[string][]byte{"app_linux_amd64": []byte("bin")})
			end := time.Now().Add(4 * time.Second)
			var children []<-chan string
			for range 3 {
				_, lines := fleetChild(t, "DEWY_TEST_FLEET_ROLE=poll", "DEWY_TEST_FLEET_CACHE="+raw,
					"GITHUB_API_URL="+gh.env()("GITHUB_API_URL"), "GITHUB_TOKEN=tok",
					"DEWY_TEST_FLEET_REPO="+gh.Owner+"/"+gh.Repo, fmt.Sprintf("DEWY_TEST_FLEET_END=%d", end.UnixNano()))
				children = append(children, lines)
			}
			windows := map[string]bool{}
			for i, lines := range children {
				var got bool
				for line := range lines {
					if ws, ok := strings.CutPrefix(line, "windows "); ok {
						got = true
						for _, w := range strings.Split(ws, ",") {
							windows[w] = true
						}
					}
				}
				if !got {
					t.Fatalf("child %d ended without reporting its windows", i)
				}
			}
			if got, want := gh.Listings.Load()+gh.NotModified.Load(), int64(len(windows)); got != want {
				t.Errorf("GitHub listed releases %d times in %d windows, want once per window (API requests %d)", got, want, gh.APIRequests.Load())
			}
		})
	}
}

// (c) A host killed while holding its slot blocks the others no longer
// than its lease.
func TestFleetSlotHolderKilled(t *testing.T) {
	t.Parallel() // mostly waiting for leases to run out
	for _, backend := range fleetBackends {
		t.Run(backend, func(t *testing.T) {
			raw := fleetCacheURL(t, backend, "max-parallel=1&lease-ttl=1s")
			child, lines := fleetChild(t, "DEWY_TEST_FLEET_ROLE=hold", "DEWY_TEST_FLEET_CACHE="+raw)
			select {
			case line := <-lines:
				if line != "held" {
					t.Fatalf("child said %q, want held", line)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("child did not take the slot")
			}
			cs := testCacheSetup(t, raw)
			cs.slotRetry = 50 * time.Millisecond
			// Held past its lease ttl: the child renews it. (Consul's 10 s
			// floor makes that slow; its renewal is in the suite.)
			hold := cs.leaseTTL * 3 / 2
			if backend == "consul" {
				hold = time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), hold)
			_, err := cs.acquireSlot(ctx, "app", "parent")
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("acquireSlot while the child holds the only slot: err = %v, want DeadlineExceeded", err)
			}
			if err := child.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			ctx, cancel = context.WithTimeout(context.Background(), leaseBound(backend))
			defer cancel()
			release, err := cs.acquireSlot(ctx, "app", "parent")
			if err != nil {
				t.Fatalf("acquireSlot after the holder was killed: %v (waited %v)", err, time.Since(killed))
			}
			release()
			t.Logf("slot free %v after its holder was killed", time.Since(killed).Round(time.Millisecond))
		})
	}
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitDial waits until addr accepts connections.
func waitDial(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond) // a starting server gives no other signal
	}
}

// checkCacheDown runs the fleet calls of two hosts while the cache works,
// stops it with stop, and checks that everything still goes ahead: the
// registry answers directly, slots are granted, state falls back to the
// local file cache, and each failing operation warns once.
func checkCacheDown(t *testing.T, raw string, stop func()) {
	ctx := context.Background()
	reg := &countingRegistry{rels: fleetReleases}
	logs, log := newCacheLog(t)
	var hosts []*cacheSetup
	for range 2 {
		cs, err := newCache(ctx, raw, t.TempDir(), func(string) string { return "" }, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.close() })
		hosts = append(hosts, cs)
	}
	a, b := hosts[0].wrapRegistry(reg, "r"), hosts[1].wrapRegistry(reg, "r")
	for _, r := range []registry{a, b} {
		if _, err := r.releases(ctx); err != nil {
			t.Fatalf("releases with the cache up: %v", err)
		}
	}
	if got := reg.calls.Load(); got != 1 {
		t.Fatalf("registry asked %d times by two hosts in one window, want 1", got)
	}
	if err := hosts[0].saveState(ctx, "app", "a", &deployState{Current: "v1"}); err != nil {
		t.Fatal(err)
	}

	stop()

	for i := range 3 {
		start := time.Now()
		rels, err := a.releases(ctx)
		if err != nil || !reflect.DeepEqual(rels, fleetReleases) {
			t.Fatalf("releases %d with the cache down = %v, %v; want the registry's answer", i, rels, err)
		}
		if took := time.Since(start); took > 3*hosts[0].timeout+time.Second {
			t.Errorf("releases with the cache down took %v", took)
		}
	}
	if got := reg.calls.Load(); got != 4 {
		t.Errorf("registry asked %d times, want 1 + 3 direct", got)
	}
	start := time.Now()
	release, err := hosts[1].acquireSlot(ctx, "app", "b")
	if err != nil {
		t.Fatalf("acquireSlot with the cache down: %v", err)
	}
	release()
	if took := time.Since(start); took > hosts[1].timeout+time.Second {
		t.Errorf("acquireSlot with the cache down took %v, want about the call timeout %v", took, hosts[1].timeout)
	}
	if err := hosts[0].saveState(ctx, "app", "a", &deployState{Current: "v2"}); err != nil {
		t.Fatalf("saveState with the cache down: %v", err)
	}
	st, err := hosts[0].loadState(ctx, "app", "a")
	if err != nil || st.Current != "v2" {
		t.Errorf("loadState with the cache down = %+v, %v; want v2 from the local file cache", st, err)
	}
	if n := logs.count("level=WARN", `msg="cache unavailable; asking the registry directly"`, `op="registry answer"`); n != 1 {
		t.Errorf("%d warnings for the failing registry answer over three polls, want 1 per streak", n)
	}
	for _, op := range []string{"acquire slot", "save state", "load state"} {
		if n := logs.count("level=WARN", `msg="cache unavailable; `, `op="`+op+`"`); n != 1 {
			t.Errorf("%d warnings for %s with the cache down, want 1", n, op)
		}
	}
}

// (d) Redis stops mid-run: deploys go on without it.
func TestFleetRedisDown(t *testing.T) {
	server := backendAddr(t, "redis-server", "DEWY_TEST_REDIS_SERVER")
	port := strconv.Itoa(freePort(t))
	cmd := exec.Command(server, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", server, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + port
	waitDial(t, addr, 10*time.Second)
	checkCacheDown(t, "redis://"+addr+"/0?registry-ttl=1h&max-parallel=1&timeout=500ms", func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// (d) Consul stops mid-run: deploys go on without it.
func TestFleetConsulDown(t *testing.T) {
	bin := backendAddr(t, "consul", "DEWY_TEST_CONSUL_BIN")
	ports := make([]string, 4)
	for i := range ports {
		ports[i] = strconv.Itoa(freePort(t))
	}
	cmd := exec.Command(bin, "agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1",
		"-http-port="+ports[0], "-serf-lan-port="+ports[1], "-serf-wan-port="+ports[2], "-server-port="+ports[3],
		"-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1", "-node=dewy-test-"+randomSuffix())
	cmd.Stdout, cmd.Stderr = nil, nil // the agent is chatty; its state is checked through its API
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + ports[0]
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v1/status/leader")
		if err == nil {
			var b [64]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if resp.StatusCode == 200 && n > 2 && !slices.Contains([]string{`""`}, strings.TrimSpace(string(b[:n]))) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consul agent at %s elected no leader", addr)
		}
		time.Sleep(100 * time.Millisecond) // a starting agent gives no other signal
	}
	checkCacheDown(t, "consul://"+addr+"/dewy?registry-ttl=1h&max-parallel=1&timeout=500ms", func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// A cache server that accepts connections and never answers costs each
// call its timeout, never the deploy.
func TestFleetCacheHangs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	ctx := context.Background()
	reg := &countingRegistry{rels: fleetReleases}
	logs, log := newCacheLog(t)
	cs, err := newCache(ctx, "redis://"+l.Addr().String()+"/0?registry-ttl=10s&max-parallel=1&timeout=300ms", t.TempDir(), func(string) string { return "" }, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.close() })
	start := time.Now()
	rels, err := cs.wrapRegistry(reg, "r").releases(ctx)
	if err != nil || len(rels) != len(fleetReleases) {
		t.Fatalf("releases with a hanging cache = %v, %v", rels, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("releases with a hanging cache took %v, want about one call timeout", took)
	}
	start = time.Now()
	release, err := cs.acquireSlot(ctx, "app", "h")
	if err != nil {
		t.Fatalf("acquireSlot with a hanging cache: %v", err)
	}
	release()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("acquireSlot with a hanging cache took %v, want about one call timeout", took)
	}
	if logs.count("level=WARN") == 0 {
		t.Error("no warning logged for a hanging cache")
	}
}

// clockedHosts returns n hosts' cache setups on backend (memory or file)
// going by clk. memory:// is one process's, so its hosts share one setup
// and differ only by the host name they give.
func clockedHosts(t *testing.T, backend, query string, n int, clk clock) []*cacheSetup {
	t.Helper()
	raw := "memory://?" + query
	if backend == "file" {
		raw = fleetCacheURL(t, "file", query)
	}
	var hosts []*cacheSetup
	for i := range n {
		if backend == "memory" && i > 0 {
			hosts = append(hosts, hosts[0])
			continue
		}
		cs := testCacheSetup(t, raw)
		cs.useClock(clk)
		hosts = append(hosts, cs)
	}
	return hosts
}

type slotResult struct {
	release func()
	err     error
}

// acquireSlotAsync runs acquireSlot for host in the background.
func acquireSlotAsync(t *testing.T, cs *cacheSetup, host string) <-chan slotResult {
	res := make(chan slotResult, 1)
	go func() {
		r, err := cs.acquireSlot(t.Context(), "app", host)
		res <- slotResult{r, err}
	}()
	return res
}

// slotHolder returns the host holding slot-0 of app, "" when none does.
func slotHolder(t *testing.T, cs *cacheSetup) string {
	t.Helper()
	v, err := cs.c.get(t.Context(), appKey("app", "slots", "slot-0"))
	if errors.Is(err, errNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("get slot-0: %v", err)
	}
	host, _, _ := strings.Cut(string(v), " ")
	return host
}

// receive returns what c gives, failing the test after a generous minute.
func receive[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("no %s after a minute", what)
		panic("unreachable")
	}
}

// A host waiting for the only slot retries on its clock until the holder,
// who keeps renewing its lease, gives the slot back; then it takes it at
// its next attempt.
func TestFleetSlotRetry(t *testing.T) {
	for _, backend := range []string{"memory", "file"} {
		t.Run(backend, func(t *testing.T) {
			clk := newFakeClock()
			hosts := clockedHosts(t, backend, "max-parallel=1", 2, clk)
			a, b := hosts[0], hosts[1]
			releaseA, err := a.acquireSlot(t.Context(), "app", "a")
			if err != nil {
				t.Fatal(err)
			}
			bres := acquireSlotAsync(t, b, "b")
			// Each step fires b's next attempt (at most 1.5 slotRetry away).
			step := b.slotRetry * 3 / 2
			start := clk.now()
			for clk.now().Sub(start) < 2*a.leaseTTL {
				clk.blockUntil(t, 2) // a's renewal and b's next attempt
				clk.advance(step)
			}
			clk.blockUntil(t, 2)
			if got := slotHolder(t, a); got != "a" {
				t.Fatalf("slot held by %q after two lease ttls of renewals, want a", got)
			}
			releaseA()
			clk.advance(step)
			r := receive(t, bres, "slot for b")
			if r.err != nil {
				t.Fatalf("acquireSlot for b: %v", r.err)
			}
			if got := slotHolder(t, b); got != "b" {
				t.Errorf("slot held by %q once b has it, want b", got)
			}
			r.release()
		})
	}
}

// A host that died holding the only slot blocks the others until its
// lease runs out, and no longer than one more attempt.
func TestFleetSlotDeadHolder(t *testing.T) {
	for _, backend := range []string{"memory", "file"} {
		t.Run(backend, func(t *testing.T) {
			clk := newFakeClock()
			cs := clockedHosts(t, backend, "max-parallel=1", 1, clk)[0]
			if ok, err := cs.c.setNX(t.Context(), appKey("app", "slots", "slot-0"), []byte("dead 1"), cs.leaseTTL); err != nil || !ok {
				t.Fatalf("setNX for the dead holder = %v, %v", ok, err)
			}
			start := clk.now()
			res := acquireSlotAsync(t, cs, "b")
			const step = 100 * time.Millisecond
			for {
				clk.blockUntil(t, 1) // b's next attempt, or its renewal once it holds the slot
				if slotHolder(t, cs) == "b" {
					break
				}
				if clk.now().Sub(start) > 2*cs.leaseTTL {
					t.Fatalf("slot still held by %q two lease ttls after its holder died", slotHolder(t, cs))
				}
				clk.advance(step)
			}
			waited := clk.now().Sub(start)
			if most := cs.leaseTTL + cs.slotRetry*3/2 + step; waited < cs.leaseTTL || waited > most {
				t.Errorf("slot taken %v after its holder died, want between the lease ttl %v and %v", waited, cs.leaseTTL, most)
			}
			r := receive(t, res, "slot")
			if r.err != nil {
				t.Fatal(r.err)
			}
			r.release()
		})
	}
}

// gatedRegistry answers from a fixed list; its first answer waits until
// open is closed, as a slow registry would.
type gatedRegistry struct {
	rels  []release
	calls atomic.Int64
	asked chan struct{} // receives when the first call starts
	open  chan struct{}
}

func (r *gatedRegistry) releases(context.Context) ([]release, error) {
	if r.calls.Add(1) == 1 {
		r.asked <- struct{}{}
		<-r.open
	}
	return r.rels, nil
}

// A host that lost the registry lock of a window polls for the winner's
// answer for answer-wait, then asks the registry itself.
func TestFleetAnswerWait(t *testing.T) {
	for _, backend := range []string{"memory", "file"} {
		for _, answers := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/answers=%v", backend, answers), func(t *testing.T) {
				testFleetAnswerWait(t, backend, answers)
			})
		}
	}
}

func testFleetAnswerWait(t *testing.T, backend string, answers bool) {
	clk := newFakeClock()
	hosts := clockedHosts(t, backend, "registry-ttl=1h", 2, clk)
	logs, log := newCacheLog(t)
	hosts[1].log = log
	reg := &gatedRegistry{rels: fleetReleases, asked: make(chan struct{}, 1), open: make(chan struct{})}
	a, b := hosts[0].wrapRegistry(reg, "r"), hosts[1].wrapRegistry(reg, "r")
	type result struct {
		rels []release
		err  error
	}
	ares, bres := make(chan result, 1), make(chan result, 1)
	go func() { rels, err := a.releases(t.Context()); ares <- result{rels, err} }()
	receive(t, reg.asked, "registry request from the host holding the window")
	go func() { rels, err := b.releases(t.Context()); bres <- result{rels, err} }()

	// Each step fires b's next look for the answer (at most 150 ms away).
	const step = 150 * time.Millisecond
	steps := 3
	if !answers {
		steps = int((hosts[1].answerWait - 1) / step) // the last look before answer-wait is up
	}
	for range steps {
		clk.blockUntil(t, 1)
		clk.advance(step)
	}
	clk.blockUntil(t, 1)
	select {
	case r := <-bres:
		t.Fatalf("b done after %v without an answer: %v, %v", time.Duration(steps)*step, r.rels, r.err)
	default:
	}
	if answers {
		close(reg.open)
		if r := receive(t, ares, "answer from a"); r.err != nil {
			t.Fatal(r.err)
		}
	}
	clk.advance(step)
	r := receive(t, bres, "answer for b")
	if r.err != nil || !reflect.DeepEqual(r.rels, fleetReleases) {
		t.Errorf("b: releases = %v, %v; want the registry's", r.rels, r.err)
	}
	wantCalls, wantGaveUp := int64(1), 0
	if !answers {
		wantCalls, wantGaveUp = 2, 1
		close(reg.open)
		receive(t, ares, "answer from a")
	}
	if got := reg.calls.Load(); got != wantCalls {
		t.Errorf("registry asked %d times, want %d", got, wantCalls)
	}
	if got := logs.count("no shared registry answer in time"); got != wantGaveUp {
		t.Errorf("%d logs of b giving up on the answer, want %d", got, wantGaveUp)
	}
}
