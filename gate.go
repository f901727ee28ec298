package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// The health gate decides whether a new generation may replace the live
// one. Its verdict must be the new process's own: while it is gated, both
// generations accept on the shared sockets, and an answer from the old one
// proves nothing.
//
// Each probe is one HTTP GET of HealthPath on a fresh connection, through
// one of two doors:
//   - the generation's private loopback listener ("dewy-health"), which only
//     it holds: apps that serve every inherited socket answer there;
//   - the first shared TCP socket, which every app serves. On Linux dewy
//     watches the kernel's socket table until a process accepts the probe
//     connection, and sends the request only when that process belongs to
//     the new generation's process group; otherwise it hangs up and tries
//     again. The old generation gets no request from dewy (at most a request
//     line, to an app that asks the kernel to defer accepting).
//
// A generation that has not answered at all is bounded by HealthTimeout. One
// that answers and fails (non-2xx, or a reset once it accepted) is refused
// as soon as failProbes probes in a row have failed over at least
// failWindow: a broken release shares live traffic for about that long, not
// for the whole HealthTimeout.
const (
	failProbes   = 3
	failWindow   = time.Second
	probeTimeout = 5 * time.Second // one probe's wait for its answer
	// privateWait is how long a probe on the private listener waits for the
	// app to accept it. An app that does not serve that listener never
	// will, and later probes of the same generation skip it.
	privateWait = 200 * time.Millisecond
	sharedWait  = time.Second
)

// probeResult is what one probe learnt.
type probeResult int

const (
	probeNoAnswer probeResult = iota // nobody answered, or the old generation took the connection
	probeOK                          // the new generation answered 2xx
	probeFailed                      // the new generation answered something else, or hung up on us
)

// gateError is a definitive verdict: the new generation answered, and
// answered wrong.
type gateError struct {
	Path   string
	Got    string
	Probes int
	Over   time.Duration
}

func (e *gateError) Error() string {
	return fmt.Sprintf("GET %s: %s on %d probes in a row over %s", e.Path, e.Got, e.Probes, e.Over.Round(100*time.Millisecond))
}

// sharedProbeAddr is where probes through the first shared TCP socket go:
// the socket's own address, or loopback for a wildcard one. It returns nil
// when there is no TCP socket or dewy cannot tell who accepts.
func sharedProbeAddr(lns []*listener) *net.TCPAddr {
	if !canTellAcceptor {
		return nil
	}
	for _, l := range lns {
		a, ok := l.ln.Addr().(*net.TCPAddr)
		if !ok {
			continue
		}
		ip := a.IP
		switch {
		case ip == nil || ip.To4() != nil && ip.IsUnspecified():
			ip = net.IPv4(127, 0, 0, 1)
		case ip.IsUnspecified():
			// Go's wildcard listeners are dual-stack.
			ip = net.IPv4(127, 0, 0, 1)
		}
		return &net.TCPAddr{IP: ip, Port: a.Port}
	}
	return nil
}

// probe returns nil once c answers HealthPath with 2xx, a *gateError once it
// has answered wrong for long enough, or an error when ctx ends or c exits.
func (s *supervisor) probe(ctx context.Context, c *child) error {
	var (
		streak    int
		firstFail time.Time
		last      string // what the last answered probe got
		private   = c.health != ""
	)
	for {
		res, detail := probeNoAnswer, ""
		if private {
			res, detail = s.probeOnce(ctx, c, c.health, false, privateWait)
			if res == probeNoAnswer && s.shared != nil {
				private = false // it does not serve dewy-health; try the shared door from now on
			}
		}
		if res == probeNoAnswer && s.shared != nil {
			res, detail = s.probeOnce(ctx, c, s.shared.String(), true, sharedWait)
		}
		switch res {
		case probeOK:
			return nil
		case probeFailed:
			if streak == 0 {
				firstFail = time.Now()
			}
			streak++
			last = detail
			if over := time.Since(firstFail); streak >= failProbes && over >= failWindow {
				return &gateError{Path: s.cfg.HealthPath, Got: last, Probes: streak, Over: over}
			}
		default:
			if detail != "" && last == "" {
				last = detail
			}
		}
		select {
		case <-ctx.Done():
			if last != "" {
				return fmt.Errorf("%w: last probe: %s", context.Cause(ctx), last)
			}
			return context.Cause(ctx)
		case <-c.dead:
			return errors.New("exited")
		case <-time.After(s.probeEvery):
		}
	}
}

// probeOnce sends one probe to addr. With owned, the connection is used
// only if a process of c's group accepted it. Where dewy can watch the
// socket table it waits at most acceptWait for anyone to accept.
func (s *supervisor) probeOnce(ctx context.Context, c *child, addr string, owned bool, acceptWait time.Duration) (probeResult, string) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, acceptWait)
	conn, err := d.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return probeNoAnswer, err.Error()
	}
	defer conn.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+s.cfg.HealthPath, nil)
	req.Header.Set("User-Agent", "dewy-health-probe")
	req.Close = true
	var raw bytes.Buffer
	req.Write(&raw)
	sent := 0
	if canTellAcceptor {
		var ok bool
		var why string
		if ok, why, sent = awaitAccept(ctx, c, conn, raw.Bytes(), owned, acceptWait); !ok {
			return probeNoAnswer, why
		}
	}
	deadline := time.Now().Add(probeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	if _, err := conn.Write(raw.Bytes()[sent:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return probeNoAnswer, err.Error()
		}
		return probeFailed, "write: " + err.Error()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return probeNoAnswer, fmt.Sprintf("no answer within %s", probeTimeout)
		}
		if !canTellAcceptor {
			// Nobody may have accepted at all (a closed private listener).
			return probeNoAnswer, err.Error()
		}
		return probeFailed, "connection closed without an answer: " + err.Error()
	}
	// The status is the verdict. A body without a length (some servers
	// answer errors so and keep the connection open) must not hold the
	// probe until its deadline.
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return probeOK, resp.Status
	}
	return probeFailed, resp.Status
}

// awaitAccept waits until a process accepts conn and, with owned, checks
// that it is one of c's. A server that sets TCP_DEFER_ACCEPT accepts only
// once bytes arrive, so the request line goes ahead after a while; sent
// says how much of raw is on its way.
func awaitAccept(ctx context.Context, c *child, conn net.Conn, raw []byte, owned bool, wait time.Duration) (ok bool, why string, sent int) {
	local, _ := conn.LocalAddr().(*net.TCPAddr)
	remote, _ := conn.RemoteAddr().(*net.TCPAddr)
	if local == nil || remote == nil {
		return false, "not a TCP connection", 0
	}
	start := time.Now()
	pause := time.Millisecond
	for {
		ino, err := acceptedInode(remote.Port, local)
		if err != nil {
			return false, fmt.Sprintf("read the socket table: %v", err), sent
		}
		if ino != 0 {
			if !owned {
				return true, "", sent
			}
			// The descriptor is installed just after the inode is given;
			// look twice before calling it someone else's.
			for range 2 {
				if groupHolds(c.pid, ino) {
					return true, "", sent
				}
				time.Sleep(time.Millisecond)
			}
			return false, "accepted by another generation", sent
		}
		elapsed := time.Since(start)
		if elapsed >= wait {
			return false, fmt.Sprintf("not accepted within %s", wait), sent
		}
		if sent == 0 && elapsed >= wait/4 {
			if i := bytes.IndexByte(raw, '\n'); i > 0 {
				if n, err := conn.Write(raw[:i+1]); err == nil {
					sent = n
				}
			}
		}
		select {
		case <-ctx.Done():
			return false, context.Cause(ctx).Error(), sent
		case <-c.dead:
			return false, "exited", sent
		case <-time.After(pause):
		}
		pause = min(pause*2, 20*time.Millisecond)
	}
}
