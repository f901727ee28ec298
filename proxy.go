package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy modes, as the proxy setting stores them; "" is off.
const (
	proxyHTTP = "http"
	proxyTCP  = "tcp"
)

// A switchProxy serves dewy's public listeners and forwards what arrives to
// the live generation of the application, which listens on a private
// loopback port of its own. It exists for applications that bind their own
// port and cannot take inherited sockets, and so that a release being gated
// never sees live traffic: only setLive routes anything to a generation.
//
// It is driven by the supervisor's one owning goroutine: setLive when a
// generation has passed its gate, drain for the one it replaces, gone when a
// generation's process has exited. Its own state sits behind mu so that
// request goroutines can read it; no lock leaks out of its methods.
type switchProxy struct {
	mode string
	log  *slog.Logger
	lns  []*listener

	// hold is how long a request or connection waits for a live
	// generation (during a crash restart, say) before it is refused with
	// 502 or closed. In socket-handoff mode the kernel's accept queue
	// holds it instead, as long as the client is willing to wait.
	hold time.Duration

	srv *http.Server // HTTP mode
	rp  *httputil.ReverseProxy

	mu      sync.Mutex
	live    *upstream
	gens    map[int]*upstream
	changed chan struct{} // closed and replaced whenever live changes
	closed  bool
	serving sync.WaitGroup
}

// An upstream is one generation of the application as the proxy sees it.
type upstream struct {
	gen  int
	addr string          // 127.0.0.1:PORT; never changes
	tr   *http.Transport // HTTP mode; its own pool, so a drained generation's idle connections close alone

	// Guarded by switchProxy.mu.
	active  int           // requests (upgraded ones included) or TCP connections in flight
	drained chan struct{} // made by drain, closed once active is 0 or the drain timed out
	timer   *time.Timer   // the drain timeout
	gone    bool

	// Every connection open to it (and, in TCP mode, from the client),
	// for a drain timeout or gone to close. A lock of its own, taken
	// after switchProxy.mu if both are, because a connection's Close
	// untracks it and is called with switchProxy.mu held.
	connMu sync.Mutex
	conns  map[net.Conn]struct{}
}

var errGenerationGone = errors.New("generation gone")

// Tuning of the HTTP side.
const (
	// Each generation gets a fresh pool: the default of two idle
	// connections per host would make a busy proxy dial and close a
	// connection for most requests.
	proxyIdlePerHost = 512
	// Below Node's default keepAliveTimeout of 5 s, so that the proxy,
	// not the application, closes an idle connection; when the
	// application closes first, a request can race the close.
	proxyIdleTimeout = 4 * time.Second
	// How many times one request is sent (see proxyTransport).
	proxyTries = 5
	// The most of a request body kept to send it again (see replayBody).
	// An unwritten request has had at most one copy buffer of its body
	// read; larger bodies stream on unkept.
	proxyReplayMax = 64 << 10
)

// newSwitchProxy returns a proxy for lns in mode (proxyHTTP or proxyTCP).
// Nothing is served until start.
func newSwitchProxy(mode string, lns []*listener, log *slog.Logger) (*switchProxy, error) {
	if mode != proxyHTTP && mode != proxyTCP {
		return nil, fmt.Errorf("proxy mode %q: want http or tcp", mode)
	}
	p := &switchProxy{
		mode:    mode,
		log:     log.With("proxy", mode),
		lns:     lns,
		hold:    30 * time.Second,
		gens:    map[int]*upstream{},
		changed: make(chan struct{}),
	}
	if mode == proxyHTTP {
		p.rp = &httputil.ReverseProxy{
			Rewrite:       p.rewrite,
			Transport:     proxyTransport{p},
			FlushInterval: -1, // server-sent events and other streams pass as they come
			BufferPool:    proxyBuffers{},
			ErrorHandler:  p.proxyError,
			ErrorLog:      slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		}
		p.srv = &http.Server{
			Handler: p,
			// dewy now faces the clients the application used to.
			ReadHeaderTimeout: time.Minute,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		}
	}
	return p, nil
}

// start serves every listener until shutdown.
func (p *switchProxy) start() {
	for _, l := range p.lns {
		if p.mode == proxyHTTP {
			p.serving.Go(func() {
				if err := p.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
					p.log.Error("serve", "listener", l.starter, "err", err)
				}
			})
		} else {
			p.serving.Go(func() { p.serveTCP(l) })
		}
	}
}

// pickUpstreamAddr returns a free private loopback address for a
// generation to listen on. The port is free when picked; the application
// binds it moments later.
func pickUpstreamAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick upstream port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// upstreamEnv is what a generation is told about its port: PORT, as
// Heroku-style applications read it, and DEWY_UPSTREAM with the loopback
// host, for applications that can bind an address.
func upstreamEnv(addr string) []string {
	_, port, _ := net.SplitHostPort(addr)
	return []string{"PORT=" + port, "DEWY_UPSTREAM=" + addr}
}

// setLive routes every new request (HTTP) or connection (TCP) to gen, which
// listens on addr. Call it only once gen has passed its gate. The previous
// live generation keeps what it is serving; drain it next. Setting a
// draining generation live again cancels its drain (its channel closes).
func (p *switchProxy) setLive(gen int, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.gens[gen]
	if u == nil || u.gone {
		u = &upstream{gen: gen, addr: addr, conns: map[net.Conn]struct{}{}}
		if p.mode == proxyHTTP {
			u.tr = p.newTransport(u)
		}
		p.gens[gen] = u
		p.live = u
	} else {
		// The address a generation was started with is the one it has.
		p.live = u
		p.endDrainLocked(u)
	}
	p.changedLocked()
}

// drain takes gen out of service, if it is live, and returns a channel
// that is closed once nothing is in flight to it any more: then its idle
// connections are closed, and the application can be stopped without
// anything to race. After timeout, whatever is still open to gen (streams,
// WebSockets, TCP connections) is closed and the channel closed. An
// unknown or gone generation's channel is closed at once.
func (p *switchProxy) drain(gen int, timeout time.Duration) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.gens[gen]
	if u == nil || u.gone {
		c := make(chan struct{})
		close(c)
		return c
	}
	if p.live == u {
		p.live = nil
		p.changedLocked()
	}
	if u.drained != nil {
		return u.drained
	}
	u.drained = make(chan struct{})
	if u.active == 0 {
		c := u.drained
		p.endDrainLocked(u)
		return c
	}
	u.timer = time.AfterFunc(timeout, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if u.drained == nil || u.gone {
			return
		}
		p.log.Warn("drain timed out; closing what is left", "generation", u.gen, "in_flight", u.active, "timeout", timeout)
		p.closeConnsLocked(u)
		p.endDrainLocked(u)
	})
	return u.drained
}

// gone forgets gen, whose process has exited: whatever is still open to it
// is closed, a pending drain ends, and if it was live nothing is until the
// next setLive (requests wait for it up to hold).
func (p *switchProxy) gone(gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.gens[gen]
	if u == nil {
		return
	}
	delete(p.gens, gen)
	u.gone = true
	if p.live == u {
		p.live = nil
		p.changedLocked()
	}
	p.closeConnsLocked(u)
	p.endDrainLocked(u)
}

// shutdown stops accepting and lets what is in flight finish, still served
// by the live generation, until ctx is done; then it closes everything.
// The listeners are closed.
func (p *switchProxy) shutdown(ctx context.Context) error {
	var err error
	if p.srv != nil {
		// Waits for requests in flight; closes idle keep-alive
		// connections, and busy ones after their answer.
		err = p.srv.Shutdown(ctx)
	} else {
		closeListeners(p.lns)
	}
	p.mu.Lock()
	p.closed = true
	p.live = nil
	p.changedLocked()
	var drains []<-chan struct{}
	for gen := range p.gens {
		drains = append(drains, p.drainAllLocked(gen))
	}
	p.mu.Unlock()
	// Upgraded connections and TCP connections, which Shutdown does not
	// wait for.
	for _, d := range drains {
		select {
		case <-d:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		if p.srv != nil {
			p.srv.Close()
		}
		p.mu.Lock()
		for _, u := range p.gens {
			p.closeConnsLocked(u)
			p.endDrainLocked(u)
		}
		p.mu.Unlock()
	}
	p.serving.Wait()
	return err
}

// drainAllLocked starts a drain with no timeout of its own: shutdown's
// context bounds it.
func (p *switchProxy) drainAllLocked(gen int) <-chan struct{} {
	u := p.gens[gen]
	if u.drained == nil {
		u.drained = make(chan struct{})
	}
	if u.active == 0 {
		c := u.drained
		p.endDrainLocked(u)
		return c
	}
	return u.drained
}

func (p *switchProxy) changedLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// endDrainLocked closes u's drain channel, if a drain is pending, and its
// idle connections: nothing will be sent on them again.
func (p *switchProxy) endDrainLocked(u *upstream) {
	if u.timer != nil {
		u.timer.Stop()
		u.timer = nil
	}
	if u.drained != nil {
		close(u.drained)
		u.drained = nil
	}
	if u.tr != nil && p.live != u {
		u.tr.CloseIdleConnections()
	}
}

func (p *switchProxy) closeConnsLocked(u *upstream) {
	u.connMu.Lock()
	conns := make([]net.Conn, 0, len(u.conns))
	for c := range u.conns {
		conns = append(conns, c)
	}
	u.connMu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	if u.tr != nil {
		u.tr.CloseIdleConnections()
	}
}

// acquire returns the live generation with one more in flight, waiting up
// to hold for one. A generation equal to avoid is waited past: it just
// refused a connection. It returns nil when none came, ctx ended or the
// proxy is shutting down.
func (p *switchProxy) acquire(ctx context.Context, avoid *upstream) *upstream {
	var timeout <-chan time.Time
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil
		}
		if u := p.live; u != nil && u != avoid {
			u.active++
			p.mu.Unlock()
			return u
		}
		changed := p.changed
		p.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(p.hold)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-timeout:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// release says one request or connection to u is done.
func (p *switchProxy) release(u *upstream) {
	if u == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u.active--
	if u.active == 0 && u.drained != nil {
		p.endDrainLocked(u)
	}
}

// track records c as open to u, so that a drain timeout or gone can close
// it. It refuses, closing c, once u is gone.
func (p *switchProxy) track(u *upstream, c net.Conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u.gone || p.closed {
		c.Close()
		return fmt.Errorf("generation %d: %w", u.gen, errGenerationGone)
	}
	u.connMu.Lock()
	u.conns[c] = struct{}{}
	u.connMu.Unlock()
	return nil
}

func (u *upstream) untrack(c net.Conn) {
	u.connMu.Lock()
	delete(u.conns, c)
	u.connMu.Unlock()
}

// --- HTTP mode ---

// heldKey carries a request's *held through its context to the transport.
type heldKey struct{}

// held is the generation a request counts against; a retry moves it.
type held struct{ u *upstream }

func (p *switchProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u := p.acquire(r.Context(), nil)
	if u == nil {
		if r.Context().Err() == nil {
			http.Error(w, "no live generation", http.StatusBadGateway)
		}
		return
	}
	h := &held{u: u}
	defer func() { p.release(h.u) }()
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), heldKey{}, h)))
}

// rewrite keeps the client's Host (applications build their URLs from it)
// and sets X-Forwarded-For, -Host and -Proto. net/http/httputil has already
// removed any X-Forwarded-* the client sent, so none can be forged.
func (p *switchProxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetXForwarded()
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pr.In.Context().Value(heldKey{}).(*held).u.addr
}

func (p *switchProxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	gen := -1
	if h, ok := r.Context().Value(heldKey{}).(*held); ok && h.u != nil {
		gen = h.u.gen
	}
	p.log.Warn("proxy request", "method", r.Method, "path", r.URL.Path, "generation", gen, "err", err)
	w.WriteHeader(http.StatusBadGateway)
}

func (p *switchProxy) newTransport(u *upstream) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		// Always u's address, whatever the request's URL says.
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "tcp", u.addr)
			if err != nil {
				return nil, err
			}
			tc := &trackedConn{Conn: c, u: u}
			if err := p.track(u, tc); err != nil {
				return nil, err
			}
			return tc, nil
		},
		MaxIdleConnsPerHost: proxyIdlePerHost,
		IdleConnTimeout:     proxyIdleTimeout,
		// Pass the application's encoding through untouched.
		DisableCompression: true,
	}
}

// trackedConn is a connection to a generation that counts the bytes it
// wrote, which tells whether a failed request reached the application.
type trackedConn struct {
	net.Conn
	u       *upstream
	written atomic.Int64
	once    sync.Once
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.u.untrack(c) })
	return c.Conn.Close()
}

// proxyTransport sends a request to the generation it counts against and,
// if none of it was written to that generation's connection, sends it
// again to the live one. That happens when the old application has just
// closed a keep-alive connection or its listener as it shuts down, or when
// it crashed: net/http then reports "server closed idle connection" or a
// refused dial, and does not resend a request with a body itself (it has no
// GetBody for a server's request). Whether the method is idempotent does
// not matter: the application never saw the request. A request written even
// in part is never sent twice.
type proxyTransport struct{ p *switchProxy }

func (t proxyTransport) RoundTrip(out *http.Request) (*http.Response, error) {
	h := out.Context().Value(heldKey{}).(*held)
	var body *replayBody
	if out.Body != nil && out.Body != http.NoBody {
		body = &replayBody{src: out.Body}
	}
	for try := 1; ; try++ {
		req := *out
		u := *out.URL
		u.Host = h.u.addr
		req.URL = &u
		if body != nil {
			req.Body = &bodyAttempt{b: body}
		}
		var w writeWatch
		ctx := httptrace.WithClientTrace(out.Context(), &httptrace.ClientTrace{GotConn: w.gotConn})
		resp, err := h.u.tr.RoundTrip(req.WithContext(ctx))
		if err == nil {
			return resp, nil
		}
		if try == proxyTries || out.Context().Err() != nil || w.wrote() || (body != nil && body.spilled) {
			return nil, err
		}
		// A stale keep-alive connection says nothing about the
		// generation; a refused dial says it is not listening, so wait
		// for another to go live.
		failed := h.u
		avoid := failed
		if w.reused {
			avoid = nil
		}
		t.p.release(failed)
		h.u = t.p.acquire(out.Context(), avoid)
		if h.u == nil {
			return nil, err
		}
		t.p.log.Debug("resending unwritten request", "method", out.Method, "path", out.URL.Path, "from", failed.gen, "to", h.u.gen, "err", err)
	}
}

// writeWatch notes the connections one attempt was given and what had
// been written to each at that moment.
type writeWatch struct {
	conns  []*trackedConn
	starts []int64
	reused bool
}

func (w *writeWatch) gotConn(info httptrace.GotConnInfo) {
	if c, ok := info.Conn.(*trackedConn); ok {
		w.conns = append(w.conns, c)
		w.starts = append(w.starts, c.written.Load())
	}
	w.reused = info.Reused
}

// wrote reports whether any byte of the attempt reached a connection.
// net/http waits for its write loop to end before it returns an error, so
// the counts are final.
func (w *writeWatch) wrote() bool {
	for i, c := range w.conns {
		if c.written.Load() != w.starts[i] {
			return true
		}
	}
	return false
}

// replayBody is a request body that can be read again from the start, as
// long as no more than proxyReplayMax of it was read: net/http may read
// part of a body into its write buffer before finding the connection
// closed. Beyond that it streams on, kept nowhere.
type replayBody struct {
	src     io.ReadCloser
	kept    []byte
	spilled bool // more was read than kept
}

// bodyAttempt is one attempt's reading of a replayBody. Closing it leaves
// the client's body open for the next attempt; the server closes that.
type bodyAttempt struct {
	b   *replayBody
	off int
}

func (a *bodyAttempt) Read(p []byte) (int, error) {
	b := a.b
	if a.off < len(b.kept) {
		n := copy(p, b.kept[a.off:])
		a.off += n
		return n, nil
	}
	n, err := b.src.Read(p)
	if n > 0 && !b.spilled {
		if len(b.kept)+n <= proxyReplayMax {
			b.kept = append(b.kept, p[:n]...)
			a.off += n
		} else {
			b.spilled, b.kept = true, nil
		}
	}
	return n, err
}

func (a *bodyAttempt) Close() error { return nil }

// proxyBuffers lends ReverseProxy its copy buffers.
type proxyBuffers struct{}

var proxyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (proxyBuffers) Get() []byte  { return *proxyBufferPool.Get().(*[]byte) }
func (proxyBuffers) Put(b []byte) { proxyBufferPool.Put(&b) }
