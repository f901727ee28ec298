package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// defaultAdminAddr is where `dewy status` looks when not told otherwise.
const defaultAdminAddr = "127.0.0.1:17539"

// adminActions are what the admin API may ask of dewy. A nil action is not
// served (404): `dewy assets` has nothing to restart.
type adminActions struct {
	deploy  func()                          // poll the registry now; must not block
	restart func(ctx context.Context) error // restart the application gracefully; returns once it serves again
	// control carries out an operator request (control.go) and says what it did.
	control func(ctx context.Context, req controlRequest) (string, error)
	fleet   func(ctx context.Context) (fleetJSON, error) // nil without a shared cache
	history func() ([]deployEvent, error)                // the audit log, for the page's timeline
}

// adminServer is the --admin HTTP endpoint: status, metrics and two actions.
type adminServer struct {
	addr  string
	ln    net.Listener
	srv   *http.Server
	log   *slog.Logger
	act   adminActions
	board *statusBoard
	ctx   context.Context // serve's: actions outlive the request that asked for them
}

// newAdminServer validates addr and binds it. addr is host:port or
// unix:/path. Anyone who can reach the endpoint can restart the
// application, so a TCP address must be loopback unless public is set.
func newAdminServer(addr string, public bool, b *statusBoard, m *metrics, act adminActions, log *slog.Logger) (*adminServer, error) {
	ln, err := listenAdmin(addr, public)
	if err != nil {
		return nil, err
	}
	a := &adminServer{addr: addr, ln: ln, log: log, act: act, board: b, ctx: context.Background()}
	mux := http.NewServeMux()
	// Method patterns make the mux answer 405 with an Allow header for
	// any other method.
	mux.HandleFunc("GET /status", a.status)
	if m != nil {
		mux.Handle("GET /metrics", m.handler())
	}
	// A web page the operator happens to open could make the browser post
	// to a loopback address; CrossOriginProtection turns such requests
	// away by their Sec-Fetch-Site and Origin headers.
	cop := http.NewCrossOriginProtection()
	if act.deploy != nil {
		mux.Handle("POST /deploy", cop.Handler(http.HandlerFunc(a.deploy)))
	}
	if act.restart != nil {
		mux.Handle("POST /restart", cop.Handler(http.HandlerFunc(a.restart)))
	}
	a.routeControls(mux, cop)
	var h http.Handler = mux
	if _, isTCP := ln.(*net.TCPListener); isTCP && !public {
		h = loopbackHostOnly(mux)
	}
	a.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext:       withPeer,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return a, nil
}

// listenAdmin binds addr after checking that it may be bound.
func listenAdmin(addr string, public bool) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return nil, fmt.Errorf("admin address %q: empty socket path", addr)
		}
		return listenAdminUnix(path)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: want host:port or unix:/path: %w", addr, err)
	}
	if !public && !isLoopbackHost(host) {
		return nil, fmt.Errorf("admin address %q is not a loopback address: POST /deploy and /restart would be open to the network (pass --admin-public to allow it)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %w", addr, err)
	}
	return ln, nil
}

// listenAdminUnix binds a unix socket, replacing one a dead dewy left
// behind but never one a live process answers on.
func listenAdminUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if errors.Is(err, syscall.EADDRINUSE) {
		if c, derr := net.Dial("unix", path); derr == nil {
			c.Close()
			return nil, fmt.Errorf("admin address %q: another process serves there", "unix:"+path)
		}
		if fi, serr := os.Lstat(path); serr == nil && fi.Mode().Type() == os.ModeSocket {
			os.Remove(path)
			ln, err = net.Listen("unix", path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %w", "unix:"+path, err)
	}
	// Whoever can connect can restart the application: owner and group
	// only, whatever the umask.
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin address %q: %w", "unix:"+path, err)
	}
	return ln, nil
}

// loopbackHostOnly refuses requests whose Host is not a loopback name:
// a DNS-rebinding page (evil.example resolving to 127.0.0.1) is
// same-origin to the browser and would otherwise read /status.
func loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !isLoopbackHost(strings.Trim(host, "[]")) {
			http.Error(w, "admin endpoint answers only to a loopback Host", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// addrString is where the server listens, for logs and tests.
func (a *adminServer) addrString() string {
	if a.ln.Addr().Network() == "unix" {
		return "unix:" + a.ln.Addr().String()
	}
	return a.ln.Addr().String()
}

// serve answers requests until ctx ends, then shuts down gracefully:
// a restart in flight is given a few seconds to reply.
func (a *adminServer) serve(ctx context.Context) error {
	a.ctx = ctx
	errC := make(chan error, 1)
	go func() { errC <- a.srv.Serve(a.ln) }()
	a.log.Info("admin endpoint listening", "addr", a.addrString())
	select {
	case err := <-errC:
		return fmt.Errorf("admin %s: %w", a.addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		a.srv.Close()
	}
	if err := <-errC; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin %s: %w", a.addr, err)
	}
	return nil
}

func (a *adminServer) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(a.board.snapshot())
}

func (a *adminServer) deploy(w http.ResponseWriter, r *http.Request) {
	a.log.Info("poll requested over the admin endpoint", "remote", remoteName(r))
	a.act.deploy()
	writeJSON(w, http.StatusAccepted, map[string]string{"result": "poll requested"})
}

func (a *adminServer) restart(w http.ResponseWriter, r *http.Request) {
	a.log.Info("restart requested over the admin endpoint", "remote", remoteName(r))
	// The restart must not be abandoned half-way because the client hung
	// up; only dewy stopping cancels it.
	if err := a.act.restart(a.ctx); err != nil {
		// Logged where the restart ran.
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"result": "restarted"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// remoteName is the peer for logs; a unix socket peer has no address.
func remoteName(r *http.Request) string {
	if r.RemoteAddr == "" || r.RemoteAddr == "@" {
		return "unix socket"
	}
	return r.RemoteAddr
}
