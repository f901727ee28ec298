// Command app is the application the supervisor tests run as dewy's child.
// It serves HTTP on every socket it inherits, in either convention, and
// misbehaves on request. The version it reports is compiled in:
//
//	go build -ldflags "-X main.version=v1.2.3" -o app ./testdata/app
//
// Flags come from the command line and then from a file named app.flags next
// to the executable, so one build can act as several releases.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}

type options struct {
	mode         string
	crashAfter   time.Duration
	exitAtOnce   bool
	neverHealthy bool
	firstOnly    bool
	listenAfter  time.Duration
	notify       bool
	notifyDelay  time.Duration
	notifyByKid  bool
	sendReady    bool
}

func run() error {
	var o options
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	fs.StringVar(&version, "version", version, "version to report")
	fs.StringVar(&o.mode, "mode", "auto", "where listeners come from: auto, starter (SERVER_STARTER_PORT) or systemd (LISTEN_FDS)")
	fs.DurationVar(&o.crashAfter, "crash-after", 0, "exit with status 3 this long after starting")
	fs.BoolVar(&o.exitAtOnce, "exit-at-once", false, "exit with status 2 before serving")
	fs.BoolVar(&o.neverHealthy, "never-healthy", false, "answer /healthz with 503")
	fs.DurationVar(&o.listenAfter, "listen-after", 0, "wait this long before serving, as a slow start does")
	fs.BoolVar(&o.firstOnly, "first-only", false, "serve only the first inherited listener, as many apps do")
	fs.BoolVar(&o.notify, "notify", false, "send READY=1 to NOTIFY_SOCKET once serving")
	fs.DurationVar(&o.notifyDelay, "notify-delay", 0, "wait this long before READY=1")
	fs.BoolVar(&o.notifyByKid, "notify-by-child", false, "send READY=1 from a child process instead")
	fs.BoolVar(&o.sendReady, "send-ready", false, "send READY=1 and exit (used by -notify-by-child)")
	args := os.Args[1:]
	if exe, err := os.Executable(); err == nil {
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(exe), "app.flags")); err == nil {
			args = append(args, strings.Fields(string(b))...)
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.sendReady {
		return notify("READY=1")
	}

	logEvent("start")
	// As the parent set them, before listeners() consumes LISTEN_*.
	var env strings.Builder
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "SERVER_STARTER_PORT", "SERVER_STARTER_GENERATION", "NOTIFY_SOCKET"} {
		fmt.Fprintf(&env, "%s=%s\n", k, os.Getenv(k))
	}
	if o.exitAtOnce {
		logEvent("exit-at-once")
		os.Exit(2)
	}
	if o.crashAfter > 0 {
		time.AfterFunc(o.crashAfter, func() {
			logEvent("crash")
			os.Exit(3)
		})
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)

	lns, err := listeners(o.mode)
	if err != nil {
		return err
	}
	time.Sleep(o.listenAfter)
	if o.firstOnly && len(lns) > 1 {
		lns = lns[:1]
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
		fmt.Fprint(w, version)
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
		fmt.Fprint(w, env.String())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if o.neverHealthy {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush() // the client knows the request is in flight
		time.Sleep(d)
		fmt.Fprint(w, version)
	})
	srv := &http.Server{Handler: mux}
	fresh := trackFresh(srv)
	var serving sync.WaitGroup
	for _, ln := range lns {
		serving.Go(func() { srv.Serve(ln) })
	}

	if o.notify {
		go func() {
			time.Sleep(o.notifyDelay)
			var err error
			if o.notifyByKid {
				err = notifyFromChild()
			} else {
				err = notify("READY=1")
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "app: notify:", err)
			}
		}()
	}

	<-term
	logEvent("stopping")
	// Shutdown alone can drop a connection: net/http closes, unanswered,
	// a connection whose first request it reads after Shutdown began, and
	// with sockets shared between generations there is always one being
	// accepted. So: stop accepting, let every connection already accepted
	// get its request read, then shut down, which waits for the answers.
	srv.SetKeepAlivesEnabled(false)
	for _, ln := range lns {
		ln.Close()
	}
	serving.Wait() // every accepted connection is now tracked
	fresh.wait(5 * time.Second)
	srv.Shutdown(context.Background())
	logEvent("exit")
	return nil
}

// freshConns tracks connections accepted whose first request has not been
// read yet.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func trackFresh(srv *http.Server) *freshConns {
	f := &freshConns{conns: map[net.Conn]bool{}}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if st == http.StateNew {
			f.conns[c] = true
		} else {
			delete(f.conns, c)
		}
	}
	return f
}

// wait returns once no connection is fresh, or after at most d: a client
// may connect and never send anything.
func (f *freshConns) wait(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		n := len(f.conns)
		f.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// listeners returns the sockets the parent passed, by mode.
func listeners(mode string) ([]net.Listener, error) {
	if mode == "auto" {
		switch {
		case os.Getenv("LISTEN_FDS") != "":
			mode = "systemd"
		case os.Getenv("SERVER_STARTER_PORT") != "":
			mode = "starter"
		default:
			return nil, nil
		}
	}
	var files []*os.File
	switch mode {
	case "systemd":
		// As go-systemd's activation.Files: descriptors addressed to
		// another process are not ours.
		pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
		if err != nil || pid != os.Getpid() {
			return nil, fmt.Errorf("LISTEN_PID=%q is not this process (%d)", os.Getenv("LISTEN_PID"), os.Getpid())
		}
		n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("LISTEN_FDS=%q", os.Getenv("LISTEN_FDS"))
		}
		names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
		if len(names) != n {
			return nil, fmt.Errorf("LISTEN_FDNAMES=%q does not name %d descriptors", os.Getenv("LISTEN_FDNAMES"), n)
		}
		for i := range n {
			syscall.CloseOnExec(3 + i)
			files = append(files, os.NewFile(uintptr(3+i), names[i]))
		}
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	case "starter":
		if os.Getenv("SERVER_STARTER_GENERATION") == "" {
			return nil, errors.New("SERVER_STARTER_GENERATION is not set")
		}
		for _, kv := range strings.Split(os.Getenv("SERVER_STARTER_PORT"), ";") {
			name, fd, ok := strings.Cut(kv, "=")
			n, err := strconv.Atoi(fd)
			if !ok || err != nil {
				return nil, fmt.Errorf("SERVER_STARTER_PORT entry %q", kv)
			}
			syscall.CloseOnExec(n)
			files = append(files, os.NewFile(uintptr(n), name))
		}
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	var lns []net.Listener
	for _, f := range files {
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", f.Name(), err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return errors.New("NOTIFY_SOCKET is not set")
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// notifyFromChild sends READY=1 from another process, which the
// supervisor must not believe.
func notifyFromChild() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "-send-ready")
	cmd.Stderr = os.Stderr
	return cmd.Run()
}

// logEvent appends "EVENT PID VERSION UNIXNANO" to $APP_START_LOG, so tests
// can count and order the processes that ran.
func logEvent(event string) {
	path := os.Getenv("APP_START_LOG")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		return
	}
	// One write with O_APPEND: lines from concurrent processes do not mix.
	fmt.Fprintf(f, "%s %d %s %d\n", event, os.Getpid(), version, time.Now().UnixNano())
	f.Close()
}
