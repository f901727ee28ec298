// Command portapp is the Go application for the proxy tests, written the
// plain way: it binds $PORT itself and stops with http.Server.Shutdown on
// SIGTERM. APP_VERSION is what it answers; APP_UNHEALTHY fails /healthz.
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	version := os.Getenv("APP_VERSION")
	healthy := os.Getenv("APP_UNHEALTHY") == ""
	var hits atomic.Int64 // requests other than /healthz and /hits

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !healthy {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/hits", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, hits.Load())
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
			fmt.Fprintf(w, "data: %s %d\n\n", version, n)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Method == http.MethodPost {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%s %d %x", version, n, h.Sum(nil))
			return
		}
		fmt.Fprint(w, version)
	})

	srv := &http.Server{Addr: ":" + os.Getenv("PORT"), Handler: mux}
	stopped := make(chan struct{})
	go func() {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		<-term
		srv.Shutdown(context.Background())
		close(stopped)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "portapp:", err)
		os.Exit(1)
	}
	<-stopped
}
