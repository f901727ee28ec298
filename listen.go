package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// A listenSpec is one socket dewy binds for its children, parsed from a
// --port value.
type listenSpec struct {
	Network string // "tcp" or "unix"
	Addr    string // as net.Listen takes it: ":8000", "127.0.0.1:8000", "[::1]:8000", "/run/app.sock"
	Name    string // as SERVER_STARTER_PORT names it: "8000", "127.0.0.1:8000", "/run/app.sock"
}

// parsePorts validates --port values and expands port ranges. A bare port
// listens on every interface: Go's "tcp" listener on ":8000" is one
// dual-stack socket that takes IPv4 and IPv6 alike on Linux.
func parsePorts(values []string) ([]listenSpec, error) {
	var specs []listenSpec
	seen := map[string]bool{}
	for _, v := range values {
		got, err := parsePort(v)
		if err != nil {
			return nil, fmt.Errorf("port %q: %w", v, err)
		}
		for _, sp := range got {
			key := sp.Network + " " + sp.Addr
			if seen[key] {
				return nil, fmt.Errorf("port %q: %s listed twice", v, sp.Name)
			}
			seen[key] = true
		}
		specs = append(specs, got...)
	}
	return specs, nil
}

func parsePort(v string) ([]listenSpec, error) {
	if path, ok := strings.CutPrefix(v, "unix:"); ok {
		if path == "" {
			return nil, errors.New("missing socket path after unix:")
		}
		return []listenSpec{{Network: "unix", Addr: path, Name: path}}, nil
	}
	if v == "" {
		return nil, errors.New("empty")
	}
	host, ports := "", v
	if strings.Contains(v, ":") {
		var err error
		if host, ports, err = net.SplitHostPort(v); err != nil {
			return nil, errors.New("want PORT, PORT-PORT, HOST:PORT or unix:PATH")
		}
	}
	lo, hi, err := parsePortRange(ports)
	if err != nil {
		return nil, err
	}
	specs := make([]listenSpec, 0, hi-lo+1)
	for p := lo; p <= hi; p++ {
		port := strconv.Itoa(p)
		name := port
		if host != "" {
			name = net.JoinHostPort(host, port)
		}
		specs = append(specs, listenSpec{Network: "tcp", Addr: net.JoinHostPort(host, port), Name: name})
	}
	return specs, nil
}

func parsePortRange(s string) (lo, hi int, err error) {
	first, last, isRange := strings.Cut(s, "-")
	if lo, err = parsePortNumber(first); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parsePortNumber(last); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("range %d-%d runs backwards", lo, hi)
	}
	return lo, hi, nil
}

func parsePortNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if n < 1 || n > 65535 {
		return 0, errors.New("out of range 1-65535")
	}
	return n, nil
}

// A listener is one socket dewy holds open for its whole life. Every
// generation of the child gets a descriptor for it, so the kernel's accept
// queue outlives each child and no connection is refused during a swap.
type listener struct {
	ln      net.Listener // *net.TCPListener or *net.UnixListener
	starter string       // its name in SERVER_STARTER_PORT
	fdName  string       // its name in LISTEN_FDNAMES
}

// bindListeners binds specs, skipping addresses already held by inherited.
func bindListeners(specs []listenSpec, inherited []*listener) ([]*listener, error) {
	var out []*listener
	for _, sp := range specs {
		if heldBy(inherited, sp) {
			continue
		}
		ln, err := listen(sp)
		if err != nil {
			closeListeners(out)
			return nil, err
		}
		out = append(out, &listener{ln: ln, starter: sp.Name, fdName: fdName(sp.Name)})
	}
	return out, nil
}

func listen(sp listenSpec) (net.Listener, error) {
	ln, err := net.Listen(sp.Network, sp.Addr)
	if err != nil && sp.Network == "unix" && errors.Is(err, syscall.EADDRINUSE) {
		// A socket file left behind by a dewy that was killed: nobody
		// answers on it, so it is safe to replace.
		c, derr := net.Dial("unix", sp.Addr)
		if derr == nil {
			c.Close()
		} else if errors.Is(derr, syscall.ECONNREFUSED) && os.Remove(sp.Addr) == nil {
			ln, err = net.Listen(sp.Network, sp.Addr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", sp.Name, err)
	}
	return ln, nil
}

// heldBy reports whether an inherited socket already listens on sp's address.
func heldBy(inherited []*listener, sp listenSpec) bool {
	for _, l := range inherited {
		switch a := l.ln.Addr().(type) {
		case *net.UnixAddr:
			if sp.Network == "unix" && a.Name == sp.Addr {
				return true
			}
		case *net.TCPAddr:
			want, err := net.ResolveTCPAddr("tcp", sp.Addr)
			if sp.Network != "tcp" || err != nil || want.Port != a.Port {
				continue
			}
			if want.IP == nil || want.IP.IsUnspecified() {
				if a.IP.IsUnspecified() {
					return true
				}
			} else if want.IP.Equal(a.IP) {
				return true
			}
		}
	}
	return false
}

// inheritedListeners adopts the sockets systemd passed to dewy itself
// (LISTEN_FDS, addressed to this process by LISTEN_PID) so they can be handed
// on to the children. It returns nothing when dewy was not socket-activated.
func inheritedListeners(getenv func(string) string, pid int) ([]*listener, error) {
	if p, err := strconv.Atoi(getenv("LISTEN_PID")); err != nil || p != pid {
		return nil, nil
	}
	n, err := strconv.Atoi(getenv("LISTEN_FDS"))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("LISTEN_FDS %q: not a count", getenv("LISTEN_FDS"))
	}
	names := strings.Split(getenv("LISTEN_FDNAMES"), ":")
	const firstFD = 3 // SD_LISTEN_FDS_START
	var out []*listener
	for i := range n {
		fd := firstFD + i
		syscall.CloseOnExec(fd)
		name := ""
		if len(names) == n {
			name = names[i]
		}
		f := os.NewFile(uintptr(fd), name)
		// FileListener works on its own duplicate and puts it in
		// non-blocking mode, which dewy's children expect.
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			closeListeners(out)
			return nil, fmt.Errorf("LISTEN_FDS descriptor %d (%q): %w", fd, name, err)
		}
		l := &listener{ln: ln, starter: starterName(ln.Addr())}
		l.fdName = name
		if l.fdName == "" {
			l.fdName = fdName(l.starter)
		}
		out = append(out, l)
	}
	return out, nil
}

// starterName names an address the way Server::Starter does: the port alone
// for a wildcard address, host:port otherwise, the path for a unix socket.
func starterName(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		if a.IP == nil || a.IP.IsUnspecified() {
			return strconv.Itoa(a.Port)
		}
		return a.String()
	case *net.UnixAddr:
		return a.Name
	}
	return a.String()
}

// fdName makes a LISTEN_FDNAMES entry from a Server::Starter name:
// LISTEN_FDNAMES is colon-separated, so a name cannot hold a colon.
func fdName(starter string) string {
	return strings.ReplaceAll(starter, ":", "_")
}

// dupListener returns a new descriptor of ln's socket for a child's
// ExtraFiles; the caller closes it once the child has started.
//
// Why not (*net.TCPListener).File: O_NONBLOCK lives on the open file
// description that dewy, every generation of the child and every dup share.
// The File that net hands out switches that description to blocking mode when
// os/exec calls its Fd method, under the feet of the child still serving: its
// Go runtime then sits in a blocking accept(2), can take a connection after it
// began shutting down, and the connection is reset when it exits. A File
// made by os.NewFile from a non-blocking descriptor returns it from Fd
// untouched, so the mode is never changed.
func dupListener(ln net.Listener, name string) (*os.File, error) {
	fd := -1
	err := controlListener(ln, func(s int) error {
		// Under ForkLock, so that a process started meanwhile elsewhere
		// in dewy (a hook) cannot inherit the copy before it is
		// close-on-exec. os/exec clears the flag on the child's copy.
		syscall.ForkLock.RLock()
		defer syscall.ForkLock.RUnlock()
		var err error
		if fd, err = syscall.Dup(s); err == nil {
			syscall.CloseOnExec(fd)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("duplicate listener %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

func closeListeners(ls []*listener) {
	for _, l := range ls {
		l.ln.Close()
	}
}

// pauseListeners makes the TCP sockets refuse connections while keeping
// their ports: on Linux, shutdown(2) of a listening socket stops it
// listening and resets the connections in its queue, and listen(2) later
// starts it again on the same address, since the port was bound explicitly.
// Unix sockets cannot be started again once shut down, so they keep
// queueing.
func pauseListeners(ls []*listener, log *slog.Logger) {
	for _, l := range ls {
		if _, ok := l.ln.(*net.TCPListener); !ok {
			continue
		}
		if err := controlListener(l.ln, func(fd int) error { return syscall.Shutdown(fd, syscall.SHUT_RD) }); err != nil {
			log.Warn("could not make the socket refuse connections", "listener", l.starter, "err", err)
		}
	}
}

// resumeListeners undoes pauseListeners.
func resumeListeners(ls []*listener, log *slog.Logger) {
	for _, l := range ls {
		if _, ok := l.ln.(*net.TCPListener); !ok {
			continue
		}
		// The kernel caps the backlog at net.core.somaxconn, as Go's own
		// listeners ask for.
		if err := controlListener(l.ln, func(fd int) error { return syscall.Listen(fd, 65535) }); err != nil {
			log.Error("could not make the socket listen again", "listener", l.starter, "err", err)
		}
	}
}

func controlListener(ln net.Listener, f func(fd int) error) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return errors.ErrUnsupported
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
