package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// serveTCP accepts connections on l and forwards each, as raw bytes, to the
// generation live when it arrived. A switch moves new connections only.
func (p *switchProxy) serveTCP(l *listener) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// As net/http's Serve does for EMFILE and the like.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Warn("accept", "listener", l.starter, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go p.forward(c)
	}
}

// forward connects client to the live generation and copies both ways
// until both sides are done, or the generation's drain times out.
func (p *switchProxy) forward(client net.Conn) {
	var (
		u, avoid *upstream
		up       net.Conn
	)
	for try := 1; ; try++ {
		if u = p.acquire(context.Background(), avoid); u == nil {
			client.Close()
			return
		}
		var err error
		if up, err = p.dialTCP(u); err == nil {
			break
		}
		p.release(u)
		if try == proxyTries {
			p.log.Warn("proxy connection", "generation", u.gen, "err", err)
			client.Close()
			return
		}
		// Nothing was sent: the next generation to go live gets it.
		avoid = u
	}
	defer p.release(u)
	if p.track(u, client) != nil {
		up.Close()
		u.untrack(up)
		return
	}
	pipe(client, up)
	client.Close()
	up.Close()
	u.untrack(client)
	u.untrack(up)
}

func (p *switchProxy) dialTCP(u *upstream) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", u.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if err := p.track(u, c); err != nil {
		return nil, err
	}
	return c, nil
}

// pipe copies a to b and b to a. An end of stream on one side is passed on
// as a half close, so request-then-EOF protocols work; an error on either
// side closes both.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	one := func(dst, src net.Conn) {
		if _, err := io.Copy(dst, src); err != nil {
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Go(func() { one(b, a) })
	one(a, b)
	wg.Wait()
}
