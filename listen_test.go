package main

import (
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestListenParsePorts(t *testing.T) {
	tests := []struct {
		in      []string
		want    []listenSpec
		wantErr string
	}{
		{in: nil, want: nil},
		{in: []string{"8000"}, want: []listenSpec{{"tcp", ":8000", "8000"}}},
		{in: []string{":8000"}, want: []listenSpec{{"tcp", ":8000", "8000"}}},
		{in: []string{"127.0.0.1:8001"}, want: []listenSpec{{"tcp", "127.0.0.1:8001", "127.0.0.1:8001"}}},
		{in: []string{"[::1]:8000"}, want: []listenSpec{{"tcp", "[::1]:8000", "[::1]:8000"}}},
		{in: []string{"localhost:8000"}, want: []listenSpec{{"tcp", "localhost:8000", "localhost:8000"}}},
		{in: []string{"unix:/run/app.sock"}, want: []listenSpec{{"unix", "/run/app.sock", "/run/app.sock"}}},
		{in: []string{"8000-8002"}, want: []listenSpec{
			{"tcp", ":8000", "8000"}, {"tcp", ":8001", "8001"}, {"tcp", ":8002", "8002"}}},
		{in: []string{"127.0.0.1:9000-9001", "1", "65535"}, want: []listenSpec{
			{"tcp", "127.0.0.1:9000", "127.0.0.1:9000"}, {"tcp", "127.0.0.1:9001", "127.0.0.1:9001"},
			{"tcp", ":1", "1"}, {"tcp", ":65535", "65535"}}},
		{in: []string{"8000-8000"}, want: []listenSpec{{"tcp", ":8000", "8000"}}},

		{in: []string{"70000"}, wantErr: `port "70000": out of range 1-65535`},
		{in: []string{"0"}, wantErr: `port "0": out of range 1-65535`},
		{in: []string{"8000-70000"}, wantErr: `port "8000-70000": out of range 1-65535`},
		{in: []string{"127.0.0.1:0"}, wantErr: `port "127.0.0.1:0": out of range 1-65535`},
		{in: []string{"http"}, wantErr: `port "http": "http" is not a port number`},
		{in: []string{"+80"}, wantErr: `port "+80": "+80" is not a port number`},
		{in: []string{"-80"}, wantErr: `port "-80": "" is not a port number`},
		{in: []string{"8003-8000"}, wantErr: `port "8003-8000": range 8003-8000 runs backwards`},
		{in: []string{"8000-"}, wantErr: `port "8000-": "" is not a port number`},
		{in: []string{""}, wantErr: `port "": empty`},
		{in: []string{"unix:"}, wantErr: `port "unix:": missing socket path after unix:`},
		{in: []string{"::1"}, wantErr: `port "::1": want PORT, PORT-PORT, HOST:PORT or unix:PATH`},
		{in: []string{"127.0.0.1:"}, wantErr: `port "127.0.0.1:": "" is not a port number`},
		{in: []string{"8000", ":8000"}, wantErr: `port ":8000": 8000 listed twice`},
		{in: []string{"8000-8003", "8002"}, wantErr: `port "8002": 8002 listed twice`},
	}
	for _, tt := range tests {
		got, err := parsePorts(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("parsePorts(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePorts(%q) error = %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePorts(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestListenNames(t *testing.T) {
	tests := []struct {
		addr        net.Addr
		wantStarter string
		wantFD      string
	}{
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8000}, "8000", "8000"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8000}, "8000", "8000"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8001}, "127.0.0.1:8001", "127.0.0.1_8001"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8002}, "[::1]:8002", "[__1]_8002"},
		{&net.UnixAddr{Name: "/run/app.sock", Net: "unix"}, "/run/app.sock", "/run/app.sock"},
	}
	for _, tt := range tests {
		if got := starterName(tt.addr); got != tt.wantStarter {
			t.Errorf("starterName(%v) = %q, want %q", tt.addr, got, tt.wantStarter)
		}
		if got := fdName(tt.wantStarter); got != tt.wantFD {
			t.Errorf("fdName(%q) = %q, want %q", tt.wantStarter, got, tt.wantFD)
		}
	}
}

// The descriptor handed to a child must leave the shared socket in
// non-blocking mode, even after os/exec has called Fd on it.
func TestListenDupKeepsNonblocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := dupListener(ln, "test")
	if err != nil {
		t.Fatal(err)
	}
	fd := f.Fd() // what os/exec does with ExtraFiles
	flags, err := fcntlGetfl(int(fd))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if flags&syscall.O_NONBLOCK == 0 {
		t.Errorf("after Fd, the shared socket is blocking; want O_NONBLOCK kept")
	}
	cloexec, err := fcntl(int(listenerFD(t, ln)), syscall.F_GETFD)
	if err != nil {
		t.Fatal(err)
	}
	if cloexec&syscall.FD_CLOEXEC == 0 {
		t.Errorf("dewy's own descriptor lost FD_CLOEXEC")
	}
}

func TestListenBindAndStaleUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.sock")
	// A socket file whose listener is gone, as a killed dewy leaves it.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()

	specs, err := parsePorts([]string{"127.0.0.1:" + freePortNumber(t), "unix:" + path})
	if err != nil {
		t.Fatal(err)
	}
	lns, err := bindListeners(specs, nil)
	if err != nil {
		t.Fatalf("bindListeners over a stale socket file: %v", err)
	}
	defer closeListeners(lns)
	if got, want := len(lns), 2; got != want {
		t.Fatalf("got %d listeners, want %d", got, want)
	}
	if got, want := lns[1].starter, path; got != want {
		t.Errorf("unix listener starter name = %q, want %q", got, want)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new unix socket: %v", err)
	}
	c.Close()

	// A live socket is not taken over.
	_, err = bindListeners(specs[1:], nil)
	if err == nil || !strings.Contains(err.Error(), "listen "+path) {
		t.Errorf("binding a socket in use: error = %v, want one naming %s", err, path)
	}
}

func TestListenHeldByInherited(t *testing.T) {
	any6, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer any6.Close()
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	inherited := []*listener{{ln: any6}, {ln: lo}}
	anyPort := any6.Addr().(*net.TCPAddr).Port
	loPort := lo.Addr().(*net.TCPAddr).Port
	tests := []struct {
		spec listenSpec
		want bool
	}{
		{listenSpec{"tcp", net.JoinHostPort("", strconv.Itoa(anyPort)), ""}, true},
		{listenSpec{"tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(loPort)), ""}, true},
		{listenSpec{"tcp", net.JoinHostPort("", strconv.Itoa(loPort)), ""}, false},
		{listenSpec{"tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(loPort)), ""}, false},
		{listenSpec{"unix", "/run/x.sock", ""}, false},
	}
	for _, tt := range tests {
		if got := heldBy(inherited, tt.spec); got != tt.want {
			t.Errorf("heldBy(%v) = %v, want %v", tt.spec, got, tt.want)
		}
	}
}

func TestListenInheritedIgnoresOtherPID(t *testing.T) {
	env := map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "a:b:c"}
	got, err := inheritedListeners(func(k string) string { return env[k] }, 12345)
	if err != nil || got != nil {
		t.Errorf("inheritedListeners for another pid = %v, %v; want nothing", got, err)
	}
}

func listenerFD(t *testing.T, ln net.Listener) uintptr {
	t.Helper()
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	rc.Control(func(s uintptr) { fd = s })
	return fd
}

func fcntl(fd, cmd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func fcntlGetfl(fd int) (int, error) { return fcntl(fd, syscall.F_GETFL) }

func freePortNumber(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
