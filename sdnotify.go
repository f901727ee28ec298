package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"sync"
)

// sdNotify sends state ("READY=1", "STOPPING=1") to the service manager
// named by NOTIFY_SOCKET; without one it does nothing. Go's net package
// maps a leading "@" to the abstract namespace, as sd_notify(3) specifies.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", path, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", path, err)
	}
	return nil
}

// A readySocket is the NOTIFY_SOCKET dewy gives one generation of the
// child. It lives in the abstract namespace, so nothing is left on disk, and
// it only believes datagrams whose kernel-attested sender is the child itself
// (SCM_CREDENTIALS): a READY=1 from a helper the child spawned, or from
// another generation, does not count.
type readySocket struct {
	addr  string
	conn  *net.UnixConn
	ready chan struct{} // closed at the child's first READY=1
	once  sync.Once
}

// listenReady opens a readiness socket, or returns nil when this system cannot
// tell who sent a datagram.
func listenReady() (*readySocket, error) {
	if !canCheckSender {
		return nil, nil
	}
	addr := "@dewy-notify-" + rand.Text()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	if err := passCredentials(c); err != nil {
		c.Close()
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	return &readySocket{addr: addr, conn: c, ready: make(chan struct{})}, nil
}

// serve reads datagrams until the socket is closed, watching for READY=1
// from pid. Datagrams sent before the child's pid was known wait in the
// socket's buffer.
func (n *readySocket) serve(pid int) {
	buf := make([]byte, 4096)
	oob := make([]byte, 1024)
	for {
		nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		sender := senderPID(oob[:noob])
		if sender != pid {
			continue
		}
		for line := range bytes.SplitSeq(buf[:nb], []byte("\n")) {
			if string(line) == "READY=1" {
				n.once.Do(func() { close(n.ready) })
			}
		}
	}
}

func (n *readySocket) close() { n.conn.Close() }
