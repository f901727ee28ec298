// Command starter is a web app written as upstream Dewy's example app is:
// it takes its sockets from SERVER_STARTER_PORT with server-starter's
// listener.ListenAll and serves only the first one, blocking. On SIGTERM it
// drains as dewy's README asks of applications.
package main

import (
	"log"
	"net/http"
	"time"

	"dewy/testdata/thirdparty/appkit"

	"github.com/lestrrat/go-server-starter/listener"
)

func main() {
	listeners, err := listener.ListenAll()
	if err != nil {
		log.Fatalf("failed to listen: %s", err)
	}
	srv := &http.Server{Handler: appkit.Handler()}
	if err := appkit.ServeAndDrain(srv, listeners[0], 10*time.Second); err != nil {
		log.Fatal(err)
	}
}
