// Command gosystemd is a web app written as go-systemd's users write one
// for socket activation: it serves the first socket it is passed and, on
// SIGTERM, calls http.Server.Shutdown as net/http's documentation shows.
// With -drain it drains instead as dewy's README asks of applications.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"dewy/testdata/thirdparty/appkit"

	"github.com/coreos/go-systemd/v22/activation"
)

func main() {
	drain := flag.Bool("drain", false, "on SIGTERM, answer each open connection's next request before closing it")
	flag.Parse()

	listeners, err := activation.Listeners()
	if err != nil {
		log.Fatalf("cannot retrieve listeners: %s", err)
	}
	if len(listeners) == 0 {
		log.Fatal("no socket passed (LISTEN_FDS)")
	}
	srv := &http.Server{Handler: appkit.Handler()}

	if *drain {
		if err := appkit.ServeAndDrain(srv, listeners[0], 10*time.Second); err != nil {
			log.Fatal(err)
		}
		return
	}

	idleConnsClosed := make(chan struct{})
	go func() {
		sigterm := make(chan os.Signal, 1)
		signal.Notify(sigterm, os.Interrupt, syscall.SIGTERM)
		<-sigterm
		if err := srv.Shutdown(context.Background()); err != nil {
			log.Printf("HTTP server Shutdown: %v", err)
		}
		close(idleConnsClosed)
	}()
	if err := srv.Serve(listeners[0]); err != http.ErrServerClosed {
		log.Fatalf("HTTP server Serve: %v", err)
	}
	<-idleConnsClosed
}
