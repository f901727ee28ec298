//go:build linux

package main

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	// The Go apps in testdata/thirdparty use these; go mod tidy does not
	// look into testdata and would drop them from go.mod without this.
	_ "github.com/coreos/go-systemd/v22/activation"
	_ "github.com/lestrrat/go-server-starter/listener"
)

// A thirdParty is a server nobody here wrote, run by dewy server the way
// its users run it: its release files, and the command line under dewy.
type thirdParty struct {
	name string
	need func(t *testing.T)
	// files are a release's files besides VERSION and UNHEALTHY.
	files   func(t *testing.T) map[string]string
	command func(root string) []string
	// closeRace: the app closes idle keep-alive connections when it stops
	// (http.Server.Shutdown), so a POST sent on one at that moment is lost
	// inside the app. Those are counted apart; see tpLoad.
	closeRace bool
}

var (
	tpBuildOnce sync.Once
	tpBuildDir  string
	tpBuildErr  error
)

// tpGoApp returns the build of testdata/thirdparty/name, built once per run.
func tpGoApp(t *testing.T, name string) string {
	t.Helper()
	tpBuildOnce.Do(func() {
		// Removed by TestMain.
		tpBuildDir, tpBuildErr = sharedDirs.make("dewy-test-thirdparty-")
		if tpBuildErr != nil {
			return
		}
		for _, app := range []string{"gosystemd", "starter"} {
			out, err := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(tpBuildDir, app), "./testdata/thirdparty/"+app).CombinedOutput()
			if err != nil {
				tpBuildErr = fmt.Errorf("build testdata/thirdparty/%s: %v\n%s", app, err, out)
				return
			}
		}
	})
	if tpBuildErr != nil {
		t.Fatal(tpBuildErr)
	}
	b, err := os.ReadFile(filepath.Join(tpBuildDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tpNeed skips, or under scripts/test fails, when a third-party server is
// not installed.
func tpNeed(what string, probe ...string) func(t *testing.T) {
	return func(t *testing.T) {
		t.Helper()
		out, err := exec.Command(probe[0], probe[1:]...).CombinedOutput()
		if err == nil {
			return
		}
		msg := fmt.Sprintf("backend %s not installed (scripts/test installs it): %s: %v %s",
			what, strings.Join(probe, " "), err, strings.TrimSpace(string(out)))
		if os.Getenv("DEWY_TEST_REQUIRE_BACKENDS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func thirdParties() []thirdParty {
	goApp := func(name string) func(t *testing.T) map[string]string {
		return func(t *testing.T) map[string]string { return map[string]string{"app": tpGoApp(t, name)} }
	}
	current := func(root, file string) string { return filepath.Join(root, "current", file) }
	return []thirdParty{{
		name:      "go-systemd-shutdown",
		need:      func(*testing.T) {},
		files:     goApp("gosystemd"),
		command:   func(root string) []string { return []string{current(root, "app")} },
		closeRace: true,
	}, {
		name:    "go-systemd-drain",
		need:    func(*testing.T) {},
		files:   goApp("gosystemd"),
		command: func(root string) []string { return []string{current(root, "app"), "-drain"} },
	}, {
		name:    "server-starter-first-port",
		need:    func(*testing.T) {},
		files:   goApp("starter"),
		command: func(root string) []string { return []string{current(root, "app")} },
	}, {
		name: "starlet",
		need: tpNeed("starlet", "perl", "-MPlack::Handler::Starlet", "-e", "1"),
		files: func(t *testing.T) map[string]string {
			return map[string]string{"app.psgi": readTestdata(t, "thirdparty/starlet/app.psgi")}
		},
		command: func(root string) []string {
			return []string{"plackup", "-s", "Starlet", "-E", "deployment", "--max-workers", "4", current(root, "app.psgi")}
		},
	}, {
		name: "gunicorn",
		need: tpNeed("gunicorn", "gunicorn", "--version"),
		files: func(t *testing.T) map[string]string {
			return map[string]string{"wsgi.py": readTestdata(t, "thirdparty/gunicorn/wsgi.py")}
		},
		command: func(root string) []string {
			return []string{"gunicorn", "--chdir", filepath.Join(root, "current"), "--worker-class", "sync",
				"--workers", "2", "wsgi:application"}
		},
	}}
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// release packs a release of tp for this host, with its checksums; a bad
// one answers its health path with 500 but serves everything else.
func (tp thirdParty) release(t *testing.T, tag string, bad bool) map[string][]byte {
	t.Helper()
	files := tp.files(t)
	files["VERSION"] = tag + "\n"
	if bad {
		files["UNHEALTHY"] = ""
	}
	art := tarGzLevel(t, files, gzip.NoCompression)
	name := fmt.Sprintf("app_%s_linux_%s.tar.gz", strings.TrimPrefix(tag, "v"), runtime.GOARCH)
	return map[string][]byte{name: art, "checksums.txt": []byte(sha256Hex(art) + "  " + name + "\n")}
}

// tpDewy is a running dewy server over a file:// registry.
type tpDewy struct {
	tp  thirdParty
	reg string
	url string
	cmd *exec.Cmd
	out *syncBuffer
}

func startTPDewy(t *testing.T, tp thirdParty, extra ...string) *tpDewy {
	t.Helper()
	reg, root := t.TempDir(), t.TempDir()
	addr := freeAddr(t)
	d := &tpDewy{tp: tp, reg: reg, url: "http://" + addr + "/", out: &syncBuffer{}}
	d.publish(t, "v1.0.0", false)
	args := append([]string{"server", "--registry", "file://" + reg, "--root", root, "-p", addr, "-i", "1h"}, extra...)
	d.cmd = exec.Command(dewyBinary(t), append(append(args, "--"), tp.command(root)...)...)
	// Neither gunicorn nor a test run wants bytecode written into a release.
	d.cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		d.cmd.Wait()
		if t.Failed() {
			t.Logf("dewy output:\n%s", d.out.String())
		}
	})
	return d
}

func (d *tpDewy) publish(t *testing.T, tag string, bad bool) {
	t.Helper()
	publishDir(t, d.reg, []suiteRelease{{Tag: tag, Files: d.tp.release(t, tag, bad)}})
}

// deploy publishes tag, has dewy poll, and waits until the log says it is
// deployed and a fresh connection is answered by it.
func (d *tpDewy) deploy(t *testing.T, tag string) {
	t.Helper()
	start := time.Now()
	d.publish(t, tag, false)
	d.cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, d.out, "deployed "+tag)
	d.waitAnswer(t, tag)
	t.Logf("%s answers %s after publishing", tag, time.Since(start).Round(time.Millisecond))
}

// waitAnswer polls with fresh connections until tag answers: dewy logs
// "deployed" once the new process is ready, which for an app that starts
// worker processes may be a moment before all of them accept.
func (d *tpDewy) waitAnswer(t *testing.T, tag string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get(d.url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			last = resp.Header.Get("X-Version")
			if last == tag {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s is not answering %s 60s after it was deployed; last answer: %s", tag, d.url, last)
}

// stop sends SIGTERM and expects a clean exit.
func (d *tpDewy) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("dewy exit after SIGTERM: %v", err)
	}
}

// A tpLoad keeps GETs and POSTs going: most clients over keep-alive
// connections, one opening a connection per request so that every process
// accepting on the shared socket gets some.
//
// A request that gets no 200 is a failure, with two exceptions counted
// apart and allowed only from an app that calls http.Server.Shutdown: a
// request on a fresh connection that the app closed before answering
// (Shutdown closes a connection whose first request it has not read yet),
// and the close race: a POST sent on a reused connection that failed with
// EOF or a reset before a single byte of response arrived. That is an idle
// keep-alive connection the server closed as the request went out, which
// HTTP/1.1 cannot tell from a lost request; a client resends GETs in that
// case on its own (and so must the load: GETs never count as close races),
// never a POST. An app that closes idle connections when it stops, as
// http.Server.Shutdown does, loses such POSTs by itself; dewy passes the
// connection no more.
type tpLoad struct {
	url   string
	stopC chan struct{}
	wg    sync.WaitGroup

	mu        sync.Mutex
	ok        int
	failed    int
	raced     int
	unread    int // requests on a fresh connection closed before any answer
	errs      []string
	byVersion map[string]*versionAnswers
}

// versionAnswers are the requests one release answered.
type versionAnswers struct {
	n           int
	first, last time.Time
}

func startTPLoad(t *testing.T, url string) *tpLoad {
	l := &tpLoad{url: url, stopC: make(chan struct{}), byVersion: map[string]*versionAnswers{}}
	const keepAlive, fresh = 4, 1
	for i := range keepAlive + fresh {
		l.wg.Go(func() { l.worker(i >= keepAlive) })
	}
	t.Cleanup(l.stop)
	return l
}

func (l *tpLoad) worker(fresh bool) {
	tr := &http.Transport{DisableKeepAlives: fresh, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	for i := 0; ; i++ {
		select {
		case <-l.stopC:
			return
		default:
		}
		l.one(client, i%2 == 1)
		// Paced so that the load leaves the servers under test some of
		// a small machine, and so that closed connections do not use up
		// the ephemeral ports.
		time.Sleep(time.Millisecond)
	}
}

func (l *tpLoad) one(client *http.Client, post bool) {
	var reused, answered bool
	trace := &httptrace.ClientTrace{
		GotConn:              func(c httptrace.GotConnInfo) { reused = c.Reused },
		GotFirstResponseByte: func() { answered = true },
	}
	method, body := http.MethodGet, ""
	if post {
		method, body = http.MethodPost, "order=42&item=tea"
	}
	req, err := http.NewRequest(method, l.url, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	start := time.Now()
	resp, err := client.Do(req)
	var version string
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		version = resp.Header.Get("X-Version")
		want := fmt.Sprintf("%s %s %d\n", version, method, len(body))
		switch {
		case err != nil:
		case resp.StatusCode != http.StatusOK:
			err = fmt.Errorf("status %s", resp.Status)
		case string(b) != want:
			err = fmt.Errorf("body %q, want %q", b, want)
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		l.ok++
		a := l.byVersion[version]
		if a == nil {
			a = &versionAnswers{first: start}
			l.byVersion[version] = a
		}
		a.n++
		a.last = start
		return
	case post && reused && !answered && isCloseRace(err):
		l.raced++
	case !reused && !answered && isCloseRace(err):
		// net/http's Shutdown closes, unanswered, a connection it
		// accepted but whose first request it had not read yet.
		l.unread++
	default:
		l.failed++
	}
	if len(l.errs) < 10 {
		l.errs = append(l.errs, fmt.Sprintf("%s %s (reused %v, answered %v): %v",
			start.Format("15:04:05.000"), method, reused, answered, err))
	}
}

// isCloseRace reports whether err is what a client sees when the server
// closed the connection under its request.
func isCloseRace(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "server closed idle connection")
}

func (l *tpLoad) stop() {
	select {
	case <-l.stopC:
	default:
		close(l.stopC)
	}
	l.wg.Wait()
}

// answers returns what version answered, as counted so far.
func (l *tpLoad) answers(version string) versionAnswers {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.byVersion[version]; a != nil {
		return *a
	}
	return versionAnswers{}
}

// check stops the load and fails the test on any failed request; close
// races fail it unless the app is known to cause them.
func (l *tpLoad) check(t *testing.T, tp thirdParty) {
	t.Helper()
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	var versions []string
	for v, a := range l.byVersion {
		versions = append(versions, fmt.Sprintf("%s %d", v, a.n))
	}
	t.Logf("load: %d ok (%s), %d failed, %d POSTs lost to the keep-alive close race, %d fresh connections closed unread by the app",
		l.ok, strings.Join(versions, ", "), l.failed, l.raced, l.unread)
	if l.failed != 0 {
		t.Errorf("%d failed requests, want 0; first: %q", l.failed, l.errs)
	}
	if l.unread != 0 && !tp.closeRace {
		t.Errorf("%d fresh connections closed unread, want 0 from an app that drains; first: %q", l.unread, l.errs)
	}
	if l.raced != 0 && !tp.closeRace {
		t.Errorf("%d POSTs lost to the keep-alive close race, want 0 from an app that drains; first: %q", l.raced, l.errs)
	}
	if l.ok < 50 {
		t.Errorf("%d requests answered, want at least 50", l.ok)
	}
}

// Without a health path, swapping releases of each third-party server
// under keep-alive load with POSTs fails no request.
func TestThirdPartySwaps(t *testing.T) {
	for _, tp := range thirdParties() {
		t.Run(tp.name, func(t *testing.T) {
			tp.need(t)
			d := startTPDewy(t, tp)
			waitFor(t, d.out, "deployed v1.0.0")
			d.waitAnswer(t, "v1.0.0")
			l := startTPLoad(t, d.url)
			for _, tag := range []string{"v1.1.0", "v1.2.0", "v1.3.0"} {
				d.deploy(t, tag)
			}
			l.check(t, tp)
			d.stop(t)
		})
	}
}

// maxBadExposure bounds how long a release whose health path fails may
// answer live requests before it is refused. It takes about a second at
// rest (BENCHMARKS.md measures it); the bound leaves room for a machine
// loaded by the rest of the suite while staying far below the gate's
// --health-timeout (badGateTimeout), which is what a gate that waited it
// out would take.
const (
	maxBadExposure = 15 * time.Second
	badGateTimeout = "60s"
)

// With --health-path, each third-party server's good releases go live, a
// bad one is refused while the previous release keeps serving, and the
// bad release's share of live requests during its gate is small.
func TestThirdPartyHealthGate(t *testing.T) {
	for _, tp := range thirdParties() {
		t.Run(tp.name, func(t *testing.T) {
			tp.need(t)
			d := startTPDewy(t, tp, "--health-path", "/healthz", "--health-timeout", badGateTimeout)
			waitFor(t, d.out, "deployed v1.0.0")
			d.waitAnswer(t, "v1.0.0")
			l := startTPLoad(t, d.url)
			d.deploy(t, "v1.1.0")

			d.publish(t, "v1.2.0", true)
			d.cmd.Process.Signal(syscall.SIGUSR1)
			waitFor(t, d.out, "rolled back to v1.1.0")
			// The previous release kept serving and serves on.
			d.waitAnswer(t, "v1.1.0")
			d.deploy(t, "v1.3.0")
			l.check(t, tp)

			bad := l.answers("v1.2.0")
			exposure := bad.last.Sub(bad.first)
			t.Logf("bad release v1.2.0 answered %d live requests over %s", bad.n, exposure.Round(time.Millisecond))
			if exposure > maxBadExposure {
				t.Errorf("bad release answered live requests for %s, want at most %s", exposure.Round(time.Millisecond), maxBadExposure)
			}
			d.stop(t)
		})
	}
}
