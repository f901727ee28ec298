package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// listRegistry answers with whatever list the test set last.
type listRegistry struct {
	mu   sync.Mutex
	rels []release
	err  error
}

var _ registry = (*listRegistry)(nil)

func (r *listRegistry) releases(context.Context) ([]release, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]release(nil), r.rels...), r.err
}

func (r *listRegistry) set(rels []release, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rels, r.err = rels, err
}

// testLogger writes dewy's log into the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newTestDeployer is the core as `dewy assets` runs it, in-process, over
// reg, with artifact stores chosen by URL scheme as in run().
func newTestDeployer(t *testing.T, reg registry, root string) *deployer {
	t.Helper()
	for _, dir := range []string{filepath.Join(root, releasesDir), filepath.Join(root, dewyDir, "tmp")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := defaultConfig()
	cfg.Command, cfg.Root, cfg.RegistryRaw = "assets", root, "test://registry"
	cfg.Select = selectOptions{GOOS: "linux", GOARCH: "amd64"}
	state, err := loadState(root)
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t)
	scheme := "test"
	switch reg.(type) {
	case *fileRegistry:
		scheme = "file"
	case *githubRegistry:
		scheme = "ghr"
	}
	stores := &storeSet{reg: reg, regScheme: scheme, getenv: noEnv, log: log, ctx: t.Context()}
	return &deployer{cfg: cfg, log: log, reg: reg, act: noActivation{}, state: state, storeFor: stores.storeFor, now: time.Now}
}

// assertServing checks that current points at tag and serves its files.
func assertServing(t *testing.T, root, tag string) {
	t.Helper()
	dir, err := currentDir(root)
	if err != nil || tagOfDir(dir) != tag {
		t.Fatalf("current -> %q (%v), want %s", dir, err, tag)
	}
	if got := readCurrent(t, root, "index.html"); got != "site "+tag {
		t.Fatalf("current/index.html = %q, want %q", got, "site "+tag)
	}
	if got := readCurrent(t, root, "bin/run.sh"); got != "#!/bin/sh\necho "+tag {
		t.Fatalf("current/bin/run.sh = %q", got)
	}
}

// fault is what the fault server does to one artifact request.
type fault int

const (
	faultStatus500   fault = iota + 1 // 500 Internal Server Error
	faultStatus503                    // 503 without Retry-After
	faultReset                        // half the body, then a TCP reset
	faultTruncate                     // half the body, then the handler returns
	faultShortLength                  // Content-Length and body cut to half: a "complete" short file
	faultLongLength                   // Content-Length larger than the object, then close
	faultCorrupt                      // full length, one byte flipped
	faultTrickle                      // a few bytes every 50 ms until the client leaves
	faultIgnoreRange                  // answers a Range request with 200 and the whole object
)

var faultNames = map[fault]string{
	faultStatus500: "500", faultStatus503: "503", faultReset: "reset", faultTruncate: "truncate",
	faultShortLength: "short Content-Length", faultLongLength: "long Content-Length",
	faultCorrupt: "corrupt", faultTrickle: "trickle", faultIgnoreRange: "ignore Range",
}

// faultServer serves release files over plain HTTP on loopback (which the
// http artifact store accepts), failing requests as it is told.
type faultServer struct {
	srv *httptest.Server

	mu     sync.Mutex
	files  map[string][]byte // by URL path
	faults map[string][]fault

	requests atomic.Int64 // artifact requests, faulty or not
	ranged   atomic.Int64 // artifact requests with a Range header
}

func newFaultServer(t *testing.T) *faultServer {
	fs := &faultServer{files: map[string][]byte{}, faults: map[string][]fault{}}
	fs.srv = httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(fs.srv.Close)
	return fs
}

// publish adds tag's files and returns the release as a registry lists it.
func (fs *faultServer) publish(tag string, files map[string][]byte) release {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	rel := release{Tag: tag, ID: tag}
	for name, data := range files {
		p := "/" + tag + "/" + name
		fs.files[p] = data
		rel.Assets = append(rel.Assets, asset{Name: name, URL: fs.srv.URL + p, Size: int64(len(data))})
	}
	return rel
}

// inject queues faults for the next requests of the named file.
func (fs *faultServer) inject(tag, name string, f ...fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := "/" + tag + "/" + name
	fs.faults[p] = append(fs.faults[p], f...)
}

func (fs *faultServer) pending(tag, name string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.faults["/"+tag+"/"+name])
}

func (fs *faultServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	data, ok := fs.files[r.URL.Path]
	var f fault
	if q := fs.faults[r.URL.Path]; len(q) > 0 {
		f, fs.faults[r.URL.Path] = q[0], q[1:]
	}
	fs.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if !strings.HasSuffix(r.URL.Path, ".txt") {
		fs.requests.Add(1)
		if r.Header.Get("Range") != "" {
			fs.ranged.Add(1)
		}
	}
	start := int64(0)
	if v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
		start, _ = strconv.ParseInt(strings.TrimSuffix(v, "-"), 10, 64)
	}
	// body is what a correct answer would carry, for the faults that
	// answer with a body of their own.
	body := data
	status := http.StatusOK
	if start > 0 && start < int64(len(data)) && f != faultIgnoreRange {
		body, status = data[start:], http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
	}
	switch f {
	case faultStatus500:
		http.Error(w, "internal error", http.StatusInternalServerError)
	case faultStatus503:
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	case faultReset, faultTruncate, faultLongLength:
		n, cl := len(body)/2, len(body)
		if f == faultLongLength {
			n, cl = len(body), len(body)+100
		}
		w.Header().Set("Content-Length", strconv.Itoa(cl))
		w.WriteHeader(status)
		w.Write(body[:n])
		w.(http.Flusher).Flush()
		if f == faultTruncate {
			return // net/http closes a connection whose body fell short
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST rather than FIN
		}
		conn.Close()
	case faultShortLength:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)/2))
		w.WriteHeader(status)
		w.Write(body[:len(body)/2])
	case faultCorrupt:
		bad := bytes.Clone(data)
		bad[len(bad)/2] ^= 0xff
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(bad))
	case faultTrickle:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for off := 0; off < len(body); off += 64 {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			if _, err := w.Write(body[off:min(off+64, len(body))]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	case faultIgnoreRange:
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data)
	default:
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}
}

// bigSiteRelease is siteRelease plus an incompressible file, so that the
// artifact is large enough for a connection to break in the middle.
func bigSiteRelease(t *testing.T, tag string, size int) map[string][]byte {
	t.Helper()
	noise := make([]byte, size)
	rand.Read(noise)
	art := e2eTarGz(t, map[string]string{"index.html": "site " + tag, "bin/run.sh": "#!/bin/sh\necho " + tag, "blob.bin": string(noise)})
	name := fmt.Sprintf("site_%s_linux_amd64.tar.gz", strings.TrimPrefix(tag, "v"))
	return map[string][]byte{name: art, "checksums.txt": []byte(sha256Hex(art) + "  " + name + "\n")}
}

// TestFaultDownload deploys v2.0.0 through each network fault. Whatever
// happens, current keeps serving v1.0.0 until a complete, verified v2.0.0
// is unpacked, and nothing half-made is left behind. Faults a download can
// ride out (resume, retry) deploy in the same poll; the rest fail that poll
// and deploy on a later one once the fault clears.
func TestFaultDownload(t *testing.T) {
	const art = "site_2.0.0_linux_amd64.tar.gz"
	v1files, v2files := siteRelease(t, "v1.0.0"), bigSiteRelease(t, "v2.0.0", 512<<10)
	for _, tc := range []struct {
		name       string
		faults     []fault
		firstOK    bool // the first poll rides the faults out
		refused    bool // the first poll refuses the release as unverifiable
		wantRanged bool // the download resumed with a Range request
	}{
		{name: "one 503", faults: []fault{faultStatus503}, firstOK: true},
		{name: "500 on every attempt", faults: []fault{faultStatus500, faultStatus500, faultStatus500, faultStatus500}},
		{name: "reset mid-body", faults: []fault{faultReset}, firstOK: true, wantRanged: true},
		{name: "reset twice, resumed both times", faults: []fault{faultReset, faultReset}, firstOK: true, wantRanged: true},
		{name: "reset on every attempt", faults: []fault{faultReset, faultReset, faultReset, faultReset}, wantRanged: true},
		{name: "truncated body", faults: []fault{faultTruncate}, firstOK: true, wantRanged: true},
		{name: "Content-Length too large", faults: []fault{faultLongLength}, firstOK: true, wantRanged: true},
		{name: "server ignores Range after a reset", faults: []fault{faultReset, faultIgnoreRange}, firstOK: true, wantRanged: true},
		{name: "Content-Length too small", faults: []fault{faultShortLength}, refused: true},
		{name: "corrupted bytes", faults: []fault{faultCorrupt}, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFaultServer(t)
			reg := &listRegistry{}
			root := t.TempDir()
			d := newTestDeployer(t, reg, root)
			now := time.Now()
			d.now = func() time.Time { return now }
			v1 := fs.publish("v1.0.0", v1files)
			reg.set([]release{v1}, nil)
			if _, err := d.check(t.Context()); err != nil {
				t.Fatalf("deploy v1.0.0: %v", err)
			}
			v2 := fs.publish("v2.0.0", v2files)
			reg.set([]release{v1, v2}, nil)
			fs.inject("v2.0.0", art, tc.faults...)

			res, err := d.check(t.Context())
			if tc.firstOK {
				if err != nil || !res.UpToDate {
					t.Fatalf("check = %v, %v; want the download to ride out %d fault(s)", res.UpToDate, err, len(tc.faults))
				}
				assertServing(t, root, "v2.0.0")
			} else {
				if err == nil {
					t.Fatalf("check succeeded through %v", tc.faults)
				}
				if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "v2.0.0") {
					t.Fatalf("error %q: want one line naming v2.0.0", msg)
				}
				assertServing(t, root, "v1.0.0")
				if _, err := os.Stat(filepath.Join(root, releasesDir, "v2.0.0")); err == nil {
					t.Fatalf("releases/v2.0.0 exists after a failed download")
				}
			}
			assertNoLeftovers(t, root)
			if got := fs.ranged.Load() > 0; got != tc.wantRanged {
				t.Errorf("resumed with Range = %v, want %v", got, tc.wantRanged)
			}
			if n := fs.pending("v2.0.0", art); n != 0 {
				t.Errorf("%d fault(s) never reached: dewy gave up early", n)
			}
			if tc.firstOK {
				return
			}

			if tc.refused {
				var cm *checksumMismatchError
				if !errors.Is(err, errVerify) || !errors.As(err, &cm) {
					t.Fatalf("err = %v, want a checksum mismatch", err)
				}
				// Refused releases wait for their retry time: no request.
				before := fs.requests.Load()
				if _, err := d.check(t.Context()); err != nil {
					t.Fatalf("check during backoff: %v", err)
				}
				if fs.requests.Load() != before {
					t.Fatalf("refused release downloaded again before its retry time")
				}
				now = now.Add(verifyBackoffMin + time.Second)
			}
			// The fault has cleared: the next poll deploys.
			if _, err := d.check(t.Context()); err != nil {
				t.Fatalf("check after the fault cleared: %v", err)
			}
			assertServing(t, root, "v2.0.0")
			assertNoLeftovers(t, root)
		})
	}
	t.Logf("network faults: 10 scenarios")
}

// TestFaultSlowTrickle: a server that sends a few bytes at a time cannot
// hold a deploy longer than the caller's deadline; nothing is swapped in.
func TestFaultSlowTrickle(t *testing.T) {
	const art = "site_2.0.0_linux_amd64.tar.gz"
	fs := newFaultServer(t)
	reg := &listRegistry{}
	root := t.TempDir()
	d := newTestDeployer(t, reg, root)
	v1 := fs.publish("v1.0.0", siteRelease(t, "v1.0.0"))
	v2 := fs.publish("v2.0.0", bigSiteRelease(t, "v2.0.0", 256<<10))
	reg.set([]release{v1}, nil)
	if _, err := d.check(t.Context()); err != nil {
		t.Fatal(err)
	}
	reg.set([]release{v1, v2}, nil)
	fs.inject("v2.0.0", art, faultTrickle)

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := d.check(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("check = %v, want the deadline to end the download", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("trickling download took %v past a 1s deadline", took)
	}
	assertServing(t, root, "v1.0.0")
	assertNoLeftovers(t, root)
	if _, ok := d.state.Failed["v2.0.0"]; ok {
		t.Fatalf("a timed-out download was recorded as a bad release: %+v", d.state.Failed)
	}
	if _, err := d.check(t.Context()); err != nil {
		t.Fatalf("check after the trickle: %v", err)
	}
	assertServing(t, root, "v2.0.0")
}

// TestFaultChecksumFileUnavailable: without its checksum list a release is
// not downloaded at all; the poll fails as transient and the next deploys.
func TestFaultChecksumFileUnavailable(t *testing.T) {
	fs := newFaultServer(t)
	reg := &listRegistry{}
	root := t.TempDir()
	d := newTestDeployer(t, reg, root)
	v1 := fs.publish("v1.0.0", siteRelease(t, "v1.0.0"))
	v2 := fs.publish("v2.0.0", siteRelease(t, "v2.0.0"))
	reg.set([]release{v1}, nil)
	if _, err := d.check(t.Context()); err != nil {
		t.Fatal(err)
	}
	reg.set([]release{v1, v2}, nil)
	for _, f := range []fault{faultStatus503, faultReset} {
		fs.inject("v2.0.0", "checksums.txt", f)
		before := fs.requests.Load()
		_, err := d.check(t.Context())
		if err == nil || !strings.Contains(err.Error(), "checksums.txt") {
			t.Fatalf("%s on checksums.txt: check = %v, want an error naming it", faultNames[f], err)
		}
		if fs.requests.Load() != before {
			t.Fatalf("%s on checksums.txt: artifact downloaded without a checksum", faultNames[f])
		}
		if _, ok := d.state.Failed["v2.0.0"]; ok {
			t.Fatalf("%s on checksums.txt: recorded as a bad release", faultNames[f])
		}
		assertServing(t, root, "v1.0.0")
	}
	if _, err := d.check(t.Context()); err != nil {
		t.Fatal(err)
	}
	assertServing(t, root, "v2.0.0")
}

// TestFaultPollLoopBacksOff runs the real poll loop against a store that
// fails more often than one download retries: the loop backs off, polls
// again and deploys once the store answers.
func TestFaultPollLoopBacksOff(t *testing.T) {
	const art = "site_2.0.0_linux_amd64.tar.gz"
	fs := newFaultServer(t)
	reg := &listRegistry{}
	root := t.TempDir()
	d := newTestDeployer(t, reg, root)
	v2 := fs.publish("v2.0.0", siteRelease(t, "v2.0.0"))
	reg.set([]release{v2}, nil)
	fs.inject("v2.0.0", art, faultStatus500, faultStatus500, faultStatus500, faultStatus500, faultStatus503, faultReset)
	live := make(chan string, 1)
	d.act = activatorFunc(func(_ context.Context, v string) error { live <- v; return nil })

	stop := startPollLoop(t, d, 50*time.Millisecond)
	select {
	case v := <-live:
		if v != "v2.0.0" {
			t.Fatalf("activated %q, want v2.0.0", v)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no deploy 30s after the faults; %d pending", fs.pending("v2.0.0", art))
	}
	stop()
	assertServing(t, root, "v2.0.0")
	// Once deployed, later polls find nothing new and download nothing.
	if got := fs.requests.Load(); got != 7 {
		t.Errorf("artifact requests = %d, want 7 (4 failed, 3 in the poll that succeeded)", got)
	}
	if e := errorBackoff(time.Second, 1); e != time.Second {
		t.Errorf("errorBackoff(1s, 1) = %v, want 1s", e)
	}
	if a, b := errorBackoff(time.Second, 3), errorBackoff(time.Second, 30); a != 4*time.Second || b != maxErrorBackoff {
		t.Errorf("errorBackoff = %v, %v; want 4s and %v", a, b, maxErrorBackoff)
	}
}

// startPollLoop runs d's poll loop until the test ends, or until the
// returned stop is called.
func startPollLoop(t *testing.T, d *deployer, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); d.pollLoop(ctx, interval, nil) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// activatorFunc adapts a function to the activator interface.
type activatorFunc func(context.Context, string) error

func (f activatorFunc) activate(ctx context.Context, v string) error { return f(ctx, v) }
