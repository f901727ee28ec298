package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// A server that sends a little and then nothing must not hold a deploy
// (and so the poll loop) forever: the idle timeout cuts it, the download
// resumes, and in the end fails with a message saying why.
func TestDownloadIdleTimeout(t *testing.T) {
	old := downloadIdle
	downloadIdle = 200 * time.Millisecond
	t.Cleanup(func() { downloadIdle = old })
	release := make(chan struct{})
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Length", "1000")
		w.Write(make([]byte, 10))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	u, _ := url.Parse(srv.URL + "/app.tar.gz")
	dir := t.TempDir()
	start := time.Now()
	_, _, _, err := download(t.Context(), newHTTPStore(discardLogger()), u, dir, discardLogger())
	if !errors.Is(err, errDownloadIdle) {
		t.Fatalf("download from a stalled server: err = %v, want errDownloadIdle", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("download gave up after %s, want about %d idle periods", took, fetchResumes+1)
	}
	// Each resume may take two requests: this server ignores Range, so
	// the store's answer is refused and the download starts over.
	if n := requests.Load(); n < fetchResumes+1 || n > 2*fetchResumes+1 {
		t.Fatalf("server saw %d requests, want %d to %d (first try and %d resumes)", n, fetchResumes+1, 2*fetchResumes+1, fetchResumes)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("download left %d files behind", len(ents))
	}
}
