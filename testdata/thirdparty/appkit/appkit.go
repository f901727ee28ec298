// Package appkit holds what the Go apps in testdata/thirdparty share: the
// pages a release serves and a drain that loses no request.
//
// A release directory holds the executable, a VERSION file and, in a bad
// release, a file named UNHEALTHY: such a release serves / as usual but
// answers its health check with 500, as a release whose database
// migrations failed would.
package appkit

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler serves / with the release's version (in the body and in
// X-Version) and /healthz with 200, or 500 in a bad release.
func Handler() http.Handler {
	dir := "."
	if exe, err := os.Executable(); err == nil {
		// /proc/self/exe: the release directory, not the current symlink.
		dir = filepath.Dir(exe)
	}
	b, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	if err != nil {
		log.Fatal(err)
	}
	version := strings.TrimSpace(string(b))
	_, statErr := os.Stat(filepath.Join(dir, "UNHEALTHY"))
	unhealthy := statErr == nil

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", version)
		if unhealthy {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Version", version)
		fmt.Fprintf(w, "%s %s %d\n", version, r.Method, n)
	})
	return mux
}

// ServeAndDrain serves ln until SIGTERM or SIGINT, then drains without
// losing a request:
//
//   - it stops accepting; connections still queued on the socket are left
//     to the next process that shares it;
//   - every connection already accepted gets its next request answered,
//     with "Connection: close", before it is closed. Closing an idle
//     keep-alive connection instead races with a request the client may be
//     sending on it at that moment; clients resend only idempotent
//     requests, so a POST would be lost;
//   - after timeout, whatever is still open (a client that went quiet) is
//     shut down the usual way.
func ServeAndDrain(srv *http.Server, ln net.Listener, timeout time.Duration) error {
	var draining atomic.Bool
	next := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		empty = make(chan struct{})
		once  sync.Once
	)
	// Called with mu held.
	drained := func() {
		if len(conns) == 0 && draining.Load() {
			once.Do(func() { close(empty) })
		}
	}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			conns[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(conns, c)
		}
		drained()
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-sig:
	}

	draining.Store(true)
	ln.Close()
	<-served // from here on no connection is accepted, so conns only shrinks
	mu.Lock()
	drained()
	mu.Unlock()
	select {
	case <-empty:
	case <-time.After(timeout):
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return srv.Shutdown(ctx)
}
