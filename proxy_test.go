//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The proxy tests run real applications that bind their own port: a plain
// Node.js http server (testdata/proxyapp/app.js) and a Go one that stops with
// http.Server.Shutdown (testdata/portapp). A small harness plays the
// supervisor: it starts generations on ports from pickUpstreamAddr, probes
// them directly, and drives setLive, drain and gone.

type proxyApp struct {
	name string
	argv func(tb testing.TB) []string
}

var proxyApps = []proxyApp{
	{"node", func(tb testing.TB) []string {
		node, err := exec.LookPath("node")
		if err != nil {
			tb.Fatalf("node is needed for the proxy tests (scripts/test installs it): %v", err)
		}
		return []string{node, "testdata/proxyapp/app.js"}
	}},
	{"go", func(tb testing.TB) []string { return []string{buildPortApp(tb)} }},
}

var (
	portAppOnce sync.Once
	portAppPath string
	portAppErr  error
)

// buildPortApp builds testdata/portapp once per test run, next to the
// supervisor tests' builds, which TestMain removes.
func buildPortApp(tb testing.TB) string {
	tb.Helper()
	buildApps(tb)
	portAppOnce.Do(func() {
		portAppPath = filepath.Join(appBuildDir, "portapp")
		if out, err := exec.Command("go", "build", "-o", portAppPath, "./testdata/portapp").CombinedOutput(); err != nil {
			portAppErr = fmt.Errorf("build testdata/portapp: %v\n%s", err, out)
		}
	})
	if portAppErr != nil {
		tb.Fatal(portAppErr)
	}
	return portAppPath
}

// A testGen is one generation of an application, on its own port.
type testGen struct {
	n       int
	version string
	addr    string
	cmd     *exec.Cmd
	exited  chan struct{}
}

func startGen(tb testing.TB, argv []string, n int, version string, env ...string) *testGen {
	tb.Helper()
	addr, err := pickUpstreamAddr()
	if err != nil {
		tb.Fatal(err)
	}
	g := &testGen{n: n, version: version, addr: addr, exited: make(chan struct{})}
	g.cmd = exec.Command(argv[0], argv[1:]...)
	g.cmd.Env = append(append(os.Environ(), upstreamEnv(addr)...), append(env, "APP_VERSION="+version)...)
	g.cmd.Stderr = os.Stderr
	if err := g.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { g.cmd.Wait(); close(g.exited) }()
	tb.Cleanup(func() {
		g.cmd.Process.Kill()
		<-g.exited
	})
	return g
}

// probe GETs /healthz directly, as the supervisor's gate does, until the
// application answers, and returns the status.
func (g *testGen) probe(tb testing.TB) int {
	tb.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.exited:
			tb.Fatalf("generation %d exited before it answered: %v", g.n, g.cmd.ProcessState)
		default:
		}
		resp, err := client.Get("http://" + g.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("generation %d on %s never answered", g.n, g.addr)
	return 0
}

// hits asks the application directly how many requests it served.
func (g *testGen) hits(tb testing.TB) string {
	tb.Helper()
	body, _ := get(tb, "http://"+g.addr+"/hits")
	return body
}

func (g *testGen) stop(tb testing.TB) {
	tb.Helper()
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(30 * time.Second):
		tb.Fatalf("generation %d did not exit within 30s of SIGTERM", g.n)
	}
}

// startProxy serves a proxy on a fresh loopback port and returns its address.
func startProxy(tb testing.TB, mode string) (*switchProxy, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := newSwitchProxy(mode, []*listener{{ln: ln, starter: ln.Addr().String()}}, log)
	if err != nil {
		tb.Fatal(err)
	}
	p.start()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.shutdown(ctx)
	})
	return p, ln.Addr().String()
}

// startProxyWithGen starts a proxy and generation 1 ("g1") of argv, live.
func startProxyWithGen(tb testing.TB, argv []string, mode string) (*switchProxy, string, *testGen) {
	tb.Helper()
	p, addr := startProxy(tb, mode)
	g := startGen(tb, argv, 1, "g1")
	if st := g.probe(tb); st != http.StatusOK {
		tb.Fatalf("generation 1 /healthz = %d, want 200", st)
	}
	p.setLive(1, g.addr)
	return p, addr, g
}

// swapTo does what the supervisor is meant to do once next passed its
// gate: switch, let old finish what it has in flight, stop it. From the
// switch on, l (if any) holds new requests to next's version.
func swapTo(tb testing.TB, p *switchProxy, old, next *testGen, l *proxyLoad) {
	tb.Helper()
	if l != nil {
		l.exp.Store(nil) // either may answer a request that spans the switch
	}
	p.setLive(next.n, next.addr)
	if l != nil {
		l.expect(next.version)
	}
	select {
	case <-p.drain(old.n, 10*time.Second):
	case <-time.After(30 * time.Second):
		tb.Fatalf("drain of generation %d never ended", old.n)
	}
	old.stop(tb)
	p.gone(old.n)
}

// proxyLoad sends POSTs of random bodies (and some GETs) over keep-alive
// connections and checks every answer: status, body size and hash, and
// the version, which must be the live one for a request that began after a
// switch and ended before the next.
type proxyLoad struct {
	url           string
	stopC         chan struct{}
	wg            sync.WaitGroup
	ok, failed    atomic.Int64
	wrong, banned atomic.Int64
	exp           atomic.Pointer[string]
	bannedV       sync.Map // versions that must never answer
	mu            sync.Mutex
	errs          []string
}

func startProxyLoad(tb testing.TB, url string, workers int, keepAlive bool) *proxyLoad {
	l := &proxyLoad{url: url, stopC: make(chan struct{})}
	for i := range workers {
		l.wg.Go(func() { l.worker(i, keepAlive) })
	}
	tb.Cleanup(l.stop)
	return l
}

func (l *proxyLoad) expect(version string) { l.exp.Store(&version) }

func (l *proxyLoad) ban(version string) { l.bannedV.Store(version, true) }

func (l *proxyLoad) worker(i int, keepAlive bool) {
	tr := &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for n := 0; ; n++ {
		select {
		case <-l.stopC:
			return
		default:
		}
		exp := l.exp.Load()
		var body []byte
		var resp *http.Response
		var err error
		if i%4 == 3 && n%2 == 0 {
			resp, err = client.Get(l.url)
		} else {
			body = make([]byte, 1+(i*977+n*131)%16384)
			rand.Read(body)
			resp, err = client.Post(l.url, "application/octet-stream", strings.NewReader(string(body)))
		}
		var got []byte
		if err == nil {
			got, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s: %s", resp.Status, got)
			}
		}
		if err != nil {
			l.failed.Add(1)
			l.note(err.Error())
			continue
		}
		version, rest, _ := strings.Cut(string(got), " ")
		if body != nil {
			if want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body)); rest != want {
				l.failed.Add(1)
				l.note(fmt.Sprintf("POST of %d bytes answered %q", len(body), got))
				continue
			}
		}
		l.ok.Add(1)
		if _, bad := l.bannedV.Load(version); bad {
			l.banned.Add(1)
			l.note("answered by " + version)
		}
		if exp != nil && exp == l.exp.Load() && version != *exp {
			l.wrong.Add(1)
			l.note(fmt.Sprintf("answered by %s, want %s", version, *exp))
		}
	}
}

func (l *proxyLoad) note(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, s)
	}
}

func (l *proxyLoad) stop() {
	select {
	case <-l.stopC:
	default:
		close(l.stopC)
	}
	l.wg.Wait()
}

// check stops the load and fails on any lost or misdirected request.
func (l *proxyLoad) check(tb testing.TB, minOK int64) {
	tb.Helper()
	l.stop()
	tb.Logf("load: %d ok, %d failed, %d wrong generation, %d from never-live generations", l.ok.Load(), l.failed.Load(), l.wrong.Load(), l.banned.Load())
	for _, c := range []struct {
		n    *atomic.Int64
		what string
	}{
		{&l.failed, "failed requests"},
		{&l.wrong, "requests answered by a generation no longer live"},
		{&l.banned, "requests answered by a generation never set live"},
	} {
		if got := c.n.Load(); got != 0 {
			tb.Errorf("%d %s, want 0; first: %q", got, c.what, l.errs)
		}
	}
	if got := l.ok.Load(); got < minOK {
		tb.Errorf("%d successful requests, want at least %d", got, minOK)
	}
}

// waitOK waits until the load has had n more successful requests.
func (l *proxyLoad) waitOK(tb testing.TB, n int64) {
	tb.Helper()
	want := l.ok.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for l.ok.Load() < want {
		if time.Now().After(deadline) {
			tb.Fatalf("load made no progress: %d ok, %d failed; first: %q", l.ok.Load(), l.failed.Load(), l.errs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProxySwapUnderLoad swaps generations under keep-alive POST load, and
// starts releases that fail their gate in between: no request is lost, none
// is answered by a generation no longer live, and a generation never set
// live answers nothing.
func TestProxySwapUnderLoad(t *testing.T) {
	for _, app := range proxyApps {
		t.Run(app.name, func(t *testing.T) {
			argv := app.argv(t)
			p, addr, live := startProxyWithGen(t, argv, proxyHTTP)
			l := startProxyLoad(t, "http://"+addr+"/", 8, true)
			l.expect("g1")
			l.waitOK(t, 50)
			for n := 2; n <= 10; n++ {
				v := fmt.Sprintf("g%d", n)
				if n%3 == 0 {
					l.ban(v)
					bad := startGen(t, argv, n, v, "APP_UNHEALTHY=1")
					if st := bad.probe(t); st != http.StatusServiceUnavailable {
						t.Fatalf("bad generation %d /healthz = %d, want 503", n, st)
					}
					l.waitOK(t, 50) // live traffic while it runs
					if got := bad.hits(t); got != "0" {
						t.Errorf("generation %d, refused at its gate, served %s requests, want 0", n, got)
					}
					bad.stop(t)
					p.gone(n)
					continue
				}
				next := startGen(t, argv, n, v)
				if st := next.probe(t); st != http.StatusOK {
					t.Fatalf("generation %d /healthz = %d, want 200", n, st)
				}
				swapTo(t, p, live, next, l)
				live = next
				l.waitOK(t, 50)
			}
			l.check(t, 500)
		})
	}
}

// TestProxyResendsUnwritten stops the live application before its
// successor is live, as a crash does: POSTs sent meanwhile find its
// keep-alive connections closed or its port refusing, none of them is
// written, and each is sent, body and all, to the next generation.
func TestProxyResendsUnwritten(t *testing.T) {
	for _, app := range proxyApps {
		t.Run(app.name, func(t *testing.T) {
			argv := app.argv(t)
			p, addr, g1 := startProxyWithGen(t, argv, proxyHTTP)
			// Several keep-alive connections to g1 in the proxy's pool.
			l := startProxyLoad(t, "http://"+addr+"/", 4, true)
			l.waitOK(t, 40)
			l.check(t, 40)
			g1.stop(t)

			const n = 8
			type result struct {
				got string
				err error
			}
			results := make(chan result, n)
			want := make([]string, n)
			for i := range n {
				body := make([]byte, 100+i*3000)
				rand.Read(body)
				want[i] = fmt.Sprintf("g2 %d %x", len(body), sha256.Sum256(body))
				go func() {
					resp, err := http.Post("http://"+addr+"/", "application/octet-stream", strings.NewReader(string(body)))
					if err != nil {
						results <- result{err: err}
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s: %s", resp.Status, b)
					}
					results <- result{string(b), err}
				}()
			}
			g2 := startGen(t, argv, 2, "g2")
			g2.probe(t)
			p.setLive(2, g2.addr)
			p.gone(1)
			got := map[string]bool{}
			for range n {
				r := <-results
				if r.err != nil {
					t.Errorf("POST while no generation served: %v", r.err)
					continue
				}
				got[r.got] = true
			}
			for _, w := range want {
				if !got[w] {
					t.Errorf("no answer %q; got %v", w, got)
				}
			}
		})
	}
}

// TestProxyStreamSurvivesSwap keeps a server-sent event stream (and, with
// Node, a WebSocket) open across a swap: it stays on the generation that
// accepted it while new requests go to the next, until the drain timeout
// closes it.
func TestProxyStreamSurvivesSwap(t *testing.T) {
	for _, app := range proxyApps {
		t.Run(app.name, func(t *testing.T) {
			argv := app.argv(t)
			p, addr, g1 := startProxyWithGen(t, argv, proxyHTTP)

			resp, err := http.Get("http://" + addr + "/sse")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			events := bufio.NewReader(resp.Body)
			readEvent := func() (string, error) {
				line, err := events.ReadString('\n')
				if err != nil {
					return "", err
				}
				events.ReadString('\n') // the blank line after each event
				return strings.TrimSpace(strings.TrimPrefix(line, "data:")), nil
			}
			var ws *testWS
			if app.name == "node" {
				ws = dialWS(t, addr)
				if got := ws.roundTrip(t, "hello"); got != "g1: hello" {
					t.Fatalf("WebSocket answer = %q, want %q", got, "g1: hello")
				}
			}
			if ev, err := readEvent(); err != nil || !strings.HasPrefix(ev, "g1 ") {
				t.Fatalf("first event = %q, %v; want one from g1", ev, err)
			}

			g2 := startGen(t, argv, 2, "g2")
			g2.probe(t)
			p.setLive(2, g2.addr)
			drainTimeout := 3 * time.Second
			drained := p.drain(1, drainTimeout)
			drainFrom := time.Now()
			if got, _ := get(t, "http://"+addr+"/"); got != "g2" {
				t.Errorf("new request after the switch answered by %q, want g2", got)
			}
			for range 5 {
				if ev, err := readEvent(); err != nil || !strings.HasPrefix(ev, "g1 ") {
					t.Fatalf("event after the switch = %q, %v; want one from g1", ev, err)
				}
			}
			if ws != nil {
				if got := ws.roundTrip(t, "still there"); got != "g1: still there" {
					t.Fatalf("WebSocket answer after the switch = %q, want %q", got, "g1: still there")
				}
			}
			select {
			case <-drained:
				t.Fatalf("drain ended after %v with a stream open, want it to wait for the timeout", time.Since(drainFrom))
			default:
			}
			select {
			case <-drained:
			case <-time.After(30 * time.Second):
				t.Fatal("drain never ended")
			}
			if took := time.Since(drainFrom); took < drainTimeout {
				t.Errorf("drain ended after %v, before its timeout %v", took, drainTimeout)
			}
			for {
				if _, err := readEvent(); err != nil {
					break // closed by the drain timeout
				}
			}
			if ws != nil {
				if _, err := ws.read(); err == nil {
					t.Error("WebSocket still open after the drain timeout")
				}
			}
			g1.stop(t) // exits promptly: nothing is left open to it
			p.gone(1)
		})
	}
}

// testWS is the client end of a WebSocket carrying short text frames.
type testWS struct {
	c  net.Conn
	br *bufio.Reader
}

func dialWS(tb testing.TB, addr string) *testWS {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	key := make([]byte, 16)
	rand.Read(key)
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		addr, base64.StdEncoding.EncodeToString(key))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		tb.Fatalf("WebSocket handshake: %s", resp.Status)
	}
	return &testWS{c: c, br: br}
}

func (w *testWS) roundTrip(tb testing.TB, text string) string {
	tb.Helper()
	mask := []byte{1, 2, 3, 4}
	frame := append([]byte{0x81, 0x80 | byte(len(text))}, mask...)
	for i := range len(text) {
		frame = append(frame, text[i]^mask[i%4])
	}
	if _, err := w.c.Write(frame); err != nil {
		tb.Fatalf("WebSocket write: %v", err)
	}
	got, err := w.read()
	if err != nil {
		tb.Fatalf("WebSocket read: %v", err)
	}
	return got
}

func (w *testWS) read() (string, error) {
	w.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(w.br, hdr[:]); err != nil {
		return "", err
	}
	b := make([]byte, hdr[1]&0x7f)
	_, err := io.ReadFull(w.br, b)
	return string(b), err
}

// TestProxyTCP forwards raw TCP: a connection stays on the generation that
// accepted it, new ones go to the live one, and fresh-connection POSTs
// lose nothing across swaps.
func TestProxyTCP(t *testing.T) {
	argv := proxyApps[1].argv(t)
	p, addr, g1 := startProxyWithGen(t, argv, proxyTCP)

	// One keep-alive connection, opened while g1 is live.
	kept := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	t.Cleanup(kept.CloseIdleConnections)
	keptGet := func() (string, error) {
		resp, err := kept.Get("http://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := keptGet(); got != "g1" {
		t.Fatalf("kept connection answered %q, %v; want g1", got, err)
	}

	l := startProxyLoad(t, "http://"+addr+"/", 4, false)
	l.waitOK(t, 20)
	g2 := startGen(t, argv, 2, "g2")
	g2.probe(t)
	l.exp.Store(nil)
	p.setLive(2, g2.addr)
	l.expect("g2")
	if got, _ := get(t, "http://"+addr+"/"); got != "g2" {
		t.Errorf("new connection after the switch answered by %q, want g2", got)
	}
	if got, err := keptGet(); got != "g1" {
		t.Errorf("connection opened before the switch answered %q, %v; want g1 until drained", got, err)
	}
	l.waitOK(t, 20)
	drained := p.drain(1, 2*time.Second)
	select {
	case <-drained:
	case <-time.After(30 * time.Second):
		t.Fatal("drain never ended")
	}
	g1.stop(t)
	p.gone(1)
	if got, err := keptGet(); got != "g2" {
		// net/http redials once the drain closed the old connection.
		t.Errorf("kept connection after the drain answered %q, %v; want g2", got, err)
	}

	kept.CloseIdleConnections() // or g2's drain waits for it
	g3 := startGen(t, argv, 3, "g3")
	g3.probe(t)
	swapTo(t, p, g2, g3, l)
	l.waitOK(t, 20)
	l.check(t, 60)
}

// TestProxyNoLiveGeneration: with nothing live, a request waits for a
// generation up to hold and is then refused with 502.
func TestProxyNoLiveGeneration(t *testing.T) {
	p, addr := startProxy(t, proxyHTTP)
	p.hold = 100 * time.Millisecond
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status with no live generation = %d, want 502", resp.StatusCode)
	}
}

// BenchmarkProxy measures the HTTP proxy side by side with the same
// application (testdata/portapp) reached directly, in one run: added
// latency, throughput, memory per idle keep-alive connection, and b.N swaps
// under keep-alive POST load, with a release refused at its gate after
// every second swap. The figure in BENCHMARKS.md:
//
//	go test -run '^$' -bench BenchmarkProxy -benchtime 200x .
func BenchmarkProxy(b *testing.B) {
	argv := proxyApps[1].argv(b)
	p, addr, live := startProxyWithGen(b, argv, proxyHTTP)
	direct, proxied := "http://"+live.addr+"/", "http://"+addr+"/"

	// Reported at the end: ResetTimer drops what was reported before it.
	type metric struct {
		v    float64
		unit string
	}
	var metrics []metric
	report := func(v float64, unit string) { metrics = append(metrics, metric{v, unit}) }

	// Latency and throughput, with each application.
	for _, app := range proxyApps {
		measureOverhead(b, app, report)
	}

	// Memory: what 500 idle keep-alive client connections add to this
	// process through the proxy, less what they add as plain clients.
	const idle = 500
	perConn := idleConnBytes(b, proxied, idle) - idleConnBytes(b, direct, idle)
	report(float64(perConn)/idle/1024, "KiB/idle-conn")

	// Swaps under load.
	l := startProxyLoad(b, proxied, 8, true)
	l.expect("g1")
	n := 1
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 1 {
			n++
			v := fmt.Sprintf("g%d", n)
			l.ban(v)
			bad := startGen(b, argv, n, v, "APP_UNHEALTHY=1")
			if st := bad.probe(b); st != http.StatusServiceUnavailable {
				b.Fatalf("bad generation /healthz = %d, want 503", st)
			}
			bad.stop(b)
			p.gone(n)
		}
		n++
		v := fmt.Sprintf("g%d", n)
		next := startGen(b, argv, n, v)
		next.probe(b)
		swapTo(b, p, live, next, l)
		live = next
	}
	b.StopTimer()
	l.stop()
	for _, m := range metrics {
		b.ReportMetric(m.v, m.unit)
	}
	b.ReportMetric(float64(l.ok.Load()), "ok")
	b.ReportMetric(float64(l.failed.Load()), "failed")
	b.ReportMetric(float64(l.wrong.Load()), "wrong-generation")
	b.ReportMetric(float64(l.banned.Load()), "never-live-answers")
	if l.failed.Load()+l.wrong.Load()+l.banned.Load() != 0 {
		b.Errorf("%d failed, %d wrong generation, %d never-live; first: %q", l.failed.Load(), l.wrong.Load(), l.banned.Load(), l.errs)
	}
}

// measureOverhead reports what the proxy adds to app's latency and takes
// from its throughput, measured side by side with the app reached directly.
func measureOverhead(b *testing.B, app proxyApp, report func(float64, string)) {
	p, addr, g := startProxyWithGen(b, app.argv(b), proxyHTTP)
	defer func() {
		g.stop(b)
		p.gone(g.n)
	}()
	direct, proxied := "http://"+g.addr+"/", "http://"+addr+"/"
	// Latency: one keep-alive client each, in alternating rounds.
	var lat [2][]time.Duration
	for round := range 20 {
		for i, url := range []string{direct, proxied} {
			lat[i] = append(lat[i], sequentialGets(b, url, 250, round == 0)...)
		}
	}
	slices.Sort(lat[0])
	slices.Sort(lat[1])
	pct := func(ds []time.Duration, q float64) float64 {
		return float64(ds[int(q*float64(len(ds)-1))].Nanoseconds()) / 1e6
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p99", 0.99}} {
		d, pr := pct(lat[0], q.q), pct(lat[1], q.q)
		report(d, app.name+"-direct-"+q.name+"-ms")
		report(pr, app.name+"-proxy-"+q.name+"-ms")
		report(pr-d, app.name+"-added-"+q.name+"-ms")
	}

	// Throughput: 8 keep-alive clients for 2 s, twice each way.
	var reqs [2]int64
	for range 2 {
		for i, url := range []string{direct, proxied} {
			reqs[i] += throughput(b, url, 8, 2*time.Second)
		}
	}
	report(float64(reqs[0])/4, app.name+"-direct-req/s")
	report(float64(reqs[1])/4, app.name+"-proxy-req/s")
	report(100*float64(reqs[1])/float64(reqs[0]), app.name+"-throughput-%")
}

// sequentialGets times n GETs over one keep-alive connection.
func sequentialGets(tb testing.TB, url string, n int, warm bool) []time.Duration {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			tb.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, time.Since(start))
	}
	if warm {
		return nil
	}
	return out
}

// throughput counts the GETs workers keep-alive clients complete in d.
func throughput(tb testing.TB, url string, workers int, d time.Duration) int64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for range workers {
		wg.Go(func() {
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			for time.Now().Before(stop) {
				resp, err := client.Get(url)
				if err != nil {
					tb.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				total.Add(1)
			}
		})
	}
	wg.Wait()
	return total.Load()
}

// idleConnBytes opens n connections to url, sends one request on each and
// leaves them open, and returns how much this process's heap and stacks
// grew.
func idleConnBytes(tb testing.TB, url string, n int) int64 {
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	inUse := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse + m.StackInuse)
	}
	before := inUse()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", host)
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			tb.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(100 * time.Millisecond) // the servers go back to waiting for the next request
	return inUse() - before
}

// TestProxyShutdown: shutdown lets requests finish, stops accepting, and
// closes a stream still open when its context ends.
func TestProxyShutdown(t *testing.T) {
	p, addr, _ := startProxyWithGen(t, proxyApps[1].argv(t), proxyHTTP)
	resp, err := http.Get("http://" + addr + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	if line, err := events.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: g1") {
		t.Fatalf("first event = %q, %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("shutdown with a stream open = %v, want %v", err, context.DeadlineExceeded)
	}
	if _, err := io.Copy(io.Discard, events); err == nil {
		// Cut short: the chunked stream never got its end.
		t.Error("stream ended cleanly after shutdown, want it cut")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("proxy still accepts connections after shutdown")
	}
}
