// Command demoapp is the sample application of dewy's demo: an HTTP server
// that says which version it is. It serves on the sockets dewy hands it
// (LISTEN_FDS, as systemd does), or on :8000 when started by hand.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

var version = "dev" // set with -ldflags "-X main.version=v1.0.0"

func main() {
	ln, err := listener()
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s (pid %d)\n", version, os.Getpid())
	})}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		// Finish the requests in flight, then exit: dewy has already
		// handed the socket to the next version.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	log.Printf("demoapp %s serving on %s", version, ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

func listener() (net.Listener, error) {
	if n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS")); n > 0 && os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		return net.FileListener(os.NewFile(3, "listener"))
	}
	return net.Listen("tcp", ":8000")
}
