package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverConfig is what `dewy server` runs.
type serverConfig struct {
	Ports         []string       // raw --port values, already split on commas: "8000", "8000-8003", "127.0.0.1:8000", "[::1]:8000", "unix:/run/app.sock"
	Command       []string       // argv after `--`
	Dir           string         // working directory for the child (the --root dir)
	HealthPath    string         // "" = none
	HealthTimeout time.Duration  // default 30s
	ReadyDelay    time.Duration  // default 1s
	DrainTimeout  time.Duration  // default 30s
	StopSignal    syscall.Signal // default SIGTERM
	Env           []string       // extra environment for the child (appended to os.Environ())
	Proxy         string         // "" hands the child the sockets; proxyHTTP or proxyTCP forwards to its own port
}

// healthName names the private listener each generation gets for health
// probes, in LISTEN_FDNAMES.
const healthName = "dewy-health"

var errStopped = errors.New("supervisor stopped")

// isInterrupted reports whether an activation ended because dewy is
// stopping or its caller gave up: that is no verdict on the release.
func isInterrupted(err error) bool {
	return errors.Is(err, errStopped) || errors.Is(err, context.Canceled)
}

// A supervisor runs one generation of the child at a time, and two while
// swapping. It binds the listening sockets once and gives every generation a
// descriptor for each, so that the kernel's accept queue outlives the
// children and a swap refuses no connection.
//
// Readiness must be the new generation's own. Both generations accept on the
// shared sockets while the new one warms up, so a probe sent there may be
// answered by the old one and prove nothing (and a bare TCP connect proves
// even less: the kernel completes the handshake from the accept queue
// whether or not anyone calls accept). So:
//   - with HealthPath, each generation gets one more socket, a private
//     loopback listener only it holds, listed last and named "dewy-health" in
//     LISTEN_FDNAMES (by its address in SERVER_STARTER_PORT); dewy probes
//     only that one. Apps that serve every inherited listener with the same
//     handler answer there without change; an app that serves only the
//     sockets it recognises never gets ready, which fails loudly rather than
//     swapping on someone else's answer.
//   - otherwise it is ready when it says READY=1 on its own NOTIFY_SOCKET,
//     which dewy opens per generation and believes only from the child's
//     pid (see readySocket and execShim), or when it has stayed up for
//     ReadyDelay, whichever comes first. Once any generation has said
//     READY=1, later ones must say it and ReadyDelay no longer counts: the
//     app has shown it knows how, and a premature swap is worse than a
//     slower one.
type supervisor struct {
	cfg serverConfig
	log *slog.Logger
	exe string      // dewy itself, run as the exec shim
	lns []*listener // held for the supervisor's whole life
	// shared is where health probes reach the first shared TCP socket;
	// nil where only the private listener can be probed (see gate.go).
	shared *net.TCPAddr
	// proxy, in proxy mode, serves the sockets itself and forwards to the
	// live generation's private port; nil in socket-handoff mode.
	proxy *switchProxy
	// newProc starts a child: startOSProcess, or a fake in tests, which set
	// it before run starts.
	newProc func(procSpec) (process, error)

	// Crash-restart backoff and probe pacing; tests shorten them before
	// run starts.
	backoffMin   time.Duration // first delay after a crash
	backoffMax   time.Duration // the delay doubles up to this
	backoffReset time.Duration // a child up this long starts over at backoffMin
	probeEvery   time.Duration // pause between health probes
	// downAfter is how long nothing may serve before the sockets refuse
	// connections instead of queueing them for a process that may not come.
	downAfter time.Duration

	// Observers, set before run starts and called from the run goroutine
	// only: the status board and metrics learn of children this way.
	onChild   func(pid, generation, restarts int) // pid 0: nothing serving
	onRestart func()                              // a crashed child was restarted, or a restart request served
	// onDown is told when nothing has served for downAfter (down true:
	// the sockets now refuse connections) and when a child serves again.
	onDown func(down bool, version, why string)

	reqC   chan request
	killC  chan struct{}
	exitC  chan *child
	readyC chan readyEvent
	drainC chan *child
	// saidReadyC carries a child's first READY=1, whenever it comes: a
	// late one still tells dewy that the app speaks sd_notify.
	saidReadyC chan *child
	drainedC   chan *child // proxy mode: nothing is in flight to the child any more
	proxyDown  chan struct{}
	done       chan struct{} // closed when run returns
}

// A request asks run to start a new generation.
type request struct {
	ctx     context.Context
	version string
	restart bool // run the live generation's release again
	reply   chan error
}

// A child is one generation of the application. The fields below the blank
// line belong to run.
type child struct {
	gen       int
	version   string
	proc      process
	pid       int
	started   time.Time
	health    string        // address of its private probe listener, "" without HealthPath
	upstream  string        // proxy mode: the private port it listens on itself
	readySock *readySocket  // nil where the sender of a datagram cannot be checked
	dead      chan struct{} // closed once the process has exited

	stopping bool
	reaped   bool
	drain    *time.Timer
}

type readyEvent struct {
	c   *child
	via string // "health", "notify" or "delay"
	err error
}

// newSupervisor binds the listeners, or adopts the ones systemd passed to
// dewy (LISTEN_FDS), and returns without starting any child.
func newSupervisor(cfg serverConfig, log *slog.Logger) (*supervisor, error) {
	if len(cfg.Command) == 0 {
		return nil, errors.New("server: no command given after --")
	}
	specs, err := parsePorts(cfg.Ports)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find dewy's own executable: %w", err)
	}
	lns, err := openListeners(specs)
	if err != nil {
		return nil, err
	}
	cfg = withServerDefaults(cfg)
	var px *switchProxy
	if cfg.Proxy != "" {
		if px, err = newSwitchProxy(cfg.Proxy, lns, log); err != nil {
			closeListeners(lns)
			return nil, err
		}
	}
	s := &supervisor{
		cfg:          cfg,
		log:          log,
		exe:          exe,
		lns:          lns,
		shared:       sharedProbeAddr(lns),
		backoffMin:   time.Second,
		backoffMax:   time.Minute,
		backoffReset: 30 * time.Second,
		probeEvery:   100 * time.Millisecond,
		downAfter:    time.Second,
		reqC:         make(chan request),
		killC:        make(chan struct{}, 1),
		exitC:        make(chan *child),
		readyC:       make(chan readyEvent),
		drainC:       make(chan *child),
		saidReadyC:   make(chan *child),
		drainedC:     make(chan *child),
		proxyDown:    make(chan struct{}),
		done:         make(chan struct{}),
		proxy:        px,
		newProc:      startOSProcess,
	}
	if px != nil {
		// Each generation has a port of its own: nothing to tell apart.
		s.shared = nil
	}
	return s, nil
}

// openListeners adopts the sockets systemd passed to dewy (LISTEN_FDS) and
// binds the rest of specs. On failure nothing stays open.
func openListeners(specs []listenSpec) ([]*listener, error) {
	inherited, err := inheritedListeners(os.Getenv, os.Getpid())
	if err != nil {
		return nil, err
	}
	if len(inherited) > 0 {
		// The descriptors are consumed; nothing else in dewy may adopt
		// them again.
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			os.Unsetenv(k)
		}
	}
	bound, err := bindListeners(specs, inherited)
	if err != nil {
		closeListeners(inherited)
		return nil, err
	}
	return append(inherited, bound...), nil
}

// withServerDefaults fills in what cfg leaves unset, so that the loop never
// has to tell "unset" from "zero".
func withServerDefaults(cfg serverConfig) serverConfig {
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 30 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.StopSignal == 0 {
		cfg.StopSignal = syscall.SIGTERM
	}
	cfg.ReadyDelay = max(cfg.ReadyDelay, 0)
	if cfg.HealthPath != "" && !strings.HasPrefix(cfg.HealthPath, "/") {
		cfg.HealthPath = "/" + cfg.HealthPath
	}
	return cfg
}

// activate starts a new generation from the command, waits until it is
// ready, then stops the old generation and waits for it to exit. It returns
// nil only when the new child serves and the old one is gone. On failure (not
// ready within HealthTimeout, or it exited first) the new child is stopped
// like any other, StopSignal then SIGKILL after DrainTimeout, since it may
// hold connections already, and the error comes once it is gone; the old
// generation keeps serving untouched. Without listening sockets there is
// nothing to share, so the old generation is stopped first, and a failure
// brings the previous release back with the crash-restart backoff.
// Only one activation runs at a time; requests that arrive meanwhile wait
// their turn, and restarts waiting together are served by one.
func (s *supervisor) activate(ctx context.Context, version string) error {
	return s.send(ctx, request{ctx: ctx, version: version})
}

// restart activates the live generation's release again.
func (s *supervisor) restart(ctx context.Context) error {
	return s.send(ctx, request{ctx: ctx, restart: true})
}

// kill sends SIGKILL to every child now. It is the answer to a second
// SIGTERM: no child is started after it, and run still returns only once
// its context ends.
func (s *supervisor) kill() {
	select {
	case s.killC <- struct{}{}:
	default: // one is pending already
	}
}

func (s *supervisor) send(ctx context.Context, r request) error {
	r.reply = make(chan error, 1)
	select {
	case s.reqC <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errStopped
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		// run answers every request it took before it returns.
		select {
		case err := <-r.reply:
			return err
		default:
			return errStopped
		}
	}
}

// run owns every child. It returns once ctx has ended and every child has
// exited: each gets StopSignal, then SIGKILL after DrainTimeout. It closes
// the listeners on return.
func (s *supervisor) run(ctx context.Context) error {
	// Pdeathsig fires when the thread that forked the child exits, not
	// when dewy does, and a Go thread can exit under a running program
	// (when a goroutine that locked it ends without unlocking). Children
	// are started only from this goroutine, locked to its thread until
	// every child is gone, so that thread lives exactly as long as dewy
	// supervises anything.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(s.done)
	defer closeListeners(s.lns)

	l := &loop{s: s, children: map[*child]bool{}}
	if s.proxy != nil {
		s.proxy.start()
	}
	ctxDone := ctx.Done()
	for {
		if ctxDone == nil && len(l.children) == 0 {
			return nil
		}
		select {
		case <-ctxDone:
			ctxDone = nil
			l.shutdown()
		case r := <-s.reqC:
			l.request(r)
		case c := <-s.exitC:
			l.exited(c)
		case ev := <-s.readyC:
			l.ready(ev)
		case c := <-s.drainC:
			l.drainExpired(c)
		case <-l.restartC:
			l.restartC = nil
			l.restartCrashed()
		case c := <-s.saidReadyC:
			l.learnSdNotify(c)
		case c := <-s.drainedC:
			l.stop(c)
		case <-s.proxyDown:
			for c := range l.children {
				l.stop(c)
			}
		case <-l.downC:
			l.downC = nil
			l.goDown()
		case <-s.killC:
			l.killAll()
		}
		l.checkDown()
	}
}

// drainExpired kills c if it is still running when its DrainTimeout ends.
func (l *loop) drainExpired(c *child) {
	if !c.reaped {
		l.s.log.Warn("child outlived the drain timeout; killing it", "gen", c.gen, "pid", c.pid, "timeout", l.s.cfg.DrainTimeout)
		c.proc.kill()
	}
}

// killAll answers kill. halted keeps crash restarts and queued requests
// from starting a child after the SIGKILLs.
func (l *loop) killAll() {
	l.halted = true
	l.stopRestart()
	for c := range l.children {
		l.s.log.Warn("killing child", "gen", c.gen, "pid", c.pid)
		c.proc.kill()
	}
}

// loop is the state run owns.
type loop struct {
	s              *supervisor
	gen            int
	children       map[*child]bool // started and not yet reaped
	live           *child          // the generation serving; nil before the first activation or after a crash
	version        string          // the release live runs, or last ran
	act            *activation     // at most one at a time
	queue          []request       // requests waiting for act to finish
	backoff        time.Duration   // last crash-restart delay
	restartT       *time.Timer
	restartC       <-chan time.Time
	restartAt      time.Time
	downT          *time.Timer
	downC          <-chan time.Time
	refusing       bool // the sockets refuse connections: nothing serves
	down           bool // observers were told that nothing serves
	speaksSdNotify bool // a generation has said READY=1
	halted         bool // no more children: shutting down, or killed
	restarts       int  // crash restarts and restart requests served
}

// observe tells the observers which child serves now.
func (l *loop) observe() {
	if l.s.onChild == nil {
		return
	}
	if l.live == nil {
		l.s.onChild(0, l.gen, l.restarts)
		return
	}
	l.s.onChild(l.live.pid, l.live.gen, l.restarts)
}

func (l *loop) restarted() {
	l.restarts++
	if l.s.onRestart != nil {
		l.s.onRestart()
	}
}

// An activation is one request to bring up a new generation.
type activation struct {
	req     request
	also    []request // restarts that arrived while req waited, answered with it
	version string
	c       *child // the new generation, nil until started
	old     *child // the generation that must be gone before the reply
	ready   bool
	failed  error // set when c is being stopped for not getting ready
	cancel  context.CancelFunc
}

func (l *loop) request(r request) {
	switch {
	case l.halted:
		r.reply <- errStopped
		return
	case r.ctx.Err() != nil:
		r.reply <- r.ctx.Err()
		return
	case l.act != nil:
		l.queue = append(l.queue, r)
		return
	}
	l.begin(r)
}

// begin starts serving r; no other activation is in progress.
func (l *loop) begin(r request) {
	p := &activation{req: r, version: r.version}
	if r.restart {
		if l.version == "" {
			r.reply <- errors.New("restart: nothing was activated yet")
			return
		}
		p.version = l.version
		// One new generation answers every restart that waited.
		rest := l.queue[:0]
		for _, q := range l.queue {
			if q.restart {
				p.also = append(p.also, q)
			} else {
				rest = append(rest, q)
			}
		}
		l.queue = rest
	}
	l.act = p
	l.stopRestart()
	if len(l.s.lns) == 0 && l.live != nil {
		// Without sockets to share, two generations would only fight
		// over whatever else the app holds: stop, then start.
		p.old, l.live = l.live, nil
		l.stop(p.old)
		return
	}
	l.launch(p)
}

// launch starts p's child and waits for its readiness in another goroutine.
func (l *loop) launch(p *activation) {
	s := l.s
	c, err := l.start(p.version)
	if err != nil {
		l.finish(p, err)
		return
	}
	p.c = c
	ctx, cancel := context.WithTimeoutCause(p.req.ctx, s.cfg.HealthTimeout,
		fmt.Errorf("not ready within %s", s.cfg.HealthTimeout))
	p.cancel = cancel
	requireReady := l.speaksSdNotify && c.readySock != nil
	go func() {
		via, err := s.waitReady(ctx, c, requireReady)
		select {
		case s.readyC <- readyEvent{c: c, via: via, err: err}:
		case <-s.done:
		}
	}()
}

func (l *loop) ready(ev readyEvent) {
	s, p, c := l.s, l.act, ev.c
	if p == nil || p.c != c || p.ready || p.failed != nil {
		return
	}
	select {
	case <-c.dead:
		return // the exit is on its way and decides
	default:
	}
	p.cancel()
	if ev.err != nil {
		// Stopped, not killed: it may hold connections already.
		p.failed = ev.err
		l.stop(c)
		return
	}
	if ev.via == "notify" {
		l.learnSdNotify(c)
	}
	s.log.Info("child ready", "gen", c.gen, "pid", c.pid, "version", p.version, "via", ev.via,
		"after", time.Since(c.started).Round(time.Millisecond))
	p.ready = true
	old := l.live
	l.live, l.version, l.backoff = c, p.version, 0
	l.goLive(c)
	if p.req.restart {
		l.restarted()
	}
	l.observe()
	l.up()
	if old == nil {
		l.finish(p, nil)
		return
	}
	p.old = old
	l.retire(old)
}

// retire stops old, which a new generation has just replaced. In proxy
// mode new requests already go to the new one; old is stopped only once
// what is in flight to it has finished, so that nothing races its close.
func (l *loop) retire(old *child) {
	s := l.s
	if s.proxy == nil {
		l.stop(old)
		return
	}
	drained := s.proxy.drain(old.gen, s.cfg.DrainTimeout)
	go func() {
		<-drained
		select {
		case s.drainedC <- old:
		case <-s.done:
		}
	}()
}

// goLive routes traffic to c, in proxy mode; with shared sockets c takes
// its share by accepting.
func (l *loop) goLive(c *child) {
	if l.s.proxy != nil {
		l.s.proxy.setLive(c.gen, c.upstream)
	}
}

func (l *loop) exited(c *child) {
	s := l.s
	// Whatever the child left in its group (workers, a shell's children)
	// would go on accepting on the shared sockets. The unreaped leader
	// pins the group id, so this cannot reach anyone else.
	c.proc.kill()
	status := c.proc.reap()
	c.reaped = true
	delete(l.children, c)
	if c.drain != nil {
		c.drain.Stop()
	}
	if c.readySock != nil {
		c.readySock.close()
	}
	if s.proxy != nil {
		s.proxy.gone(c.gen)
	}
	if c.stopping {
		s.log.Info("child exited", "gen", c.gen, "pid", c.pid, "status", exitStatus(status))
	} else {
		s.log.Warn("child exited unexpectedly", "gen", c.gen, "pid", c.pid, "status", exitStatus(status),
			"uptime", time.Since(c.started).Round(time.Millisecond))
	}

	if p := l.act; p != nil {
		switch c {
		case p.c:
			err := p.failed
			switch {
			case err != nil:
			case p.ready:
				err = fmt.Errorf("exited before the old generation stopped: %s", exitStatus(status))
			default:
				err = fmt.Errorf("exited before it was ready: %s", exitStatus(status))
			}
			l.finish(p, err)
		case p.old:
			if p.c == nil && !l.halted {
				l.launch(p)
			} else if p.c == nil {
				l.finish(p, errStopped)
			} else if p.ready {
				l.finish(p, nil)
			}
		}
	}
	if c == l.live {
		l.live = nil
		l.observe()
		if !l.halted {
			l.scheduleRestart(time.Since(c.started))
		}
	}
}

// finish answers p's request. A failed activation that leaves nothing
// serving (no sockets, so the old generation was stopped first; or the
// live child had crashed) brings the last good release back with backoff.
func (l *loop) finish(p *activation, err error) {
	l.act = nil
	if p.cancel != nil {
		p.cancel()
	}
	if err != nil {
		err = fmt.Errorf("activate %s: %w", p.version, err)
	}
	p.req.reply <- err
	for _, r := range p.also {
		r.reply <- err
	}
	for len(l.queue) > 0 && l.act == nil && !l.halted {
		next := l.queue[0]
		l.queue = l.queue[1:]
		l.request(next)
	}
	if l.act == nil && err != nil && l.live == nil && l.version != "" && !l.halted && l.restartC == nil {
		l.scheduleRestart(0)
	}
}

// learnSdNotify records that c said READY=1: from then on every generation
// must say it, even one that was declared ready by ReadyDelay first.
func (l *loop) learnSdNotify(c *child) {
	if l.speaksSdNotify {
		return
	}
	l.speaksSdNotify = true
	l.s.log.Info("child speaks sd_notify; later generations must send READY=1", "gen", c.gen)
}

// scheduleRestart arms the crash-restart timer. uptime is how long the
// crashed child ran: a child that stayed up for backoffReset was healthy,
// so its crash starts the backoff over.
func (l *loop) scheduleRestart(uptime time.Duration) {
	s := l.s
	l.backoff = nextBackoff(l.backoff, uptime, s.backoffMin, s.backoffMax, s.backoffReset)
	s.log.Warn("restarting child after backoff", "version", l.version, "in", l.backoff)
	l.restartT = time.NewTimer(l.backoff)
	l.restartC = l.restartT.C
	l.restartAt = time.Now().Add(l.backoff)
}

func nextBackoff(prev, uptime, lo, hi, reset time.Duration) time.Duration {
	if prev == 0 || uptime >= reset {
		return lo
	}
	return min(prev*2, hi)
}

func (l *loop) stopRestart() {
	if l.restartT != nil {
		l.restartT.Stop()
	}
	l.restartT, l.restartC = nil, nil
}

// restartCrashed brings back the release that was live when its child
// crashed. There is nothing to swap with, so it serves at once.
func (l *loop) restartCrashed() {
	if l.live != nil || l.act != nil || l.halted {
		return
	}
	c, err := l.start(l.version)
	if err != nil {
		l.s.log.Error("restart child", "version", l.version, "err", err)
		l.scheduleRestart(0)
		return
	}
	l.live = c
	l.goLive(c)
	l.restarted()
	l.observe()
	l.up()
}

// shutdown stops every child; run returns once they are gone.
func (l *loop) shutdown() {
	l.halted = true
	l.stopRestart()
	for _, r := range l.queue {
		r.reply <- errStopped
	}
	l.queue = nil
	if p := l.act; p != nil {
		if p.c == nil {
			l.finish(p, errStopped)
		} else if !p.ready && p.failed == nil {
			p.failed = errStopped
			p.cancel()
		}
	}
	if s := l.s; s.proxy != nil {
		// The proxy lets what is in flight finish through the live
		// generation, then the children are stopped.
		if p := l.act; p != nil && p.c != nil && !p.ready {
			l.stop(p.c)
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
			defer cancel()
			if err := s.proxy.shutdown(ctx); err != nil {
				s.log.Warn("proxy shutdown", "err", err)
			}
			select {
			case s.proxyDown <- struct{}{}:
			case <-s.done:
			}
		}()
		return
	}
	for c := range l.children {
		l.stop(c)
	}
}

// stop asks c to exit with StopSignal and kills its group if it is still
// there after DrainTimeout.
func (l *loop) stop(c *child) {
	s := l.s
	if c.stopping || c.reaped {
		return
	}
	c.stopping = true
	s.log.Info("stopping child", "gen", c.gen, "pid", c.pid, "signal", s.cfg.StopSignal)
	if err := c.proc.signal(s.cfg.StopSignal); err != nil {
		s.log.Warn("signal child", "gen", c.gen, "pid", c.pid, "err", err)
	}
	c.drain = time.AfterFunc(s.cfg.DrainTimeout, func() {
		select {
		case s.drainC <- c:
		case <-s.done:
		}
	})
}

// start runs one generation through the exec shim, handing it a descriptor
// for every listener from fd 3 on.
func (l *loop) start(version string) (*child, error) {
	s := l.s
	l.resume()
	l.gen++
	c := &child{gen: l.gen, version: version, dead: make(chan struct{})}
	var fds fdSet
	defer fds.close() // the child has its own copies once started
	extraEnv, err := l.sockets(c, &fds)
	if err != nil {
		return nil, err
	}
	env := append(childEnv(os.Environ(), s.cfg.Env), fds.env()...)
	env = append(env, "SERVER_STARTER_GENERATION="+strconv.Itoa(c.gen))
	env = append(env, extraEnv...)
	n, err := listenReady()
	if err != nil {
		return nil, err
	}
	if n != nil {
		c.readySock = n
		env = append(env, "NOTIFY_SOCKET="+n.addr)
	}
	p, err := s.newProc(procSpec{
		path:  s.exe,
		args:  append([]string{"__exec", "--"}, s.cfg.Command...),
		dir:   s.cfg.Dir,
		env:   env,
		files: fds.files,
	})
	if err != nil {
		if n != nil {
			n.close()
		}
		return nil, fmt.Errorf("start %s: %w", s.cfg.Command[0], err)
	}
	c.proc, c.pid, c.started = p, p.pid(), time.Now()
	l.children[c] = true
	l.watch(c)
	s.log.Info("child started", "gen", c.gen, "pid", c.pid, "version", version)
	return c, nil
}

// sockets gathers what c inherits: in handoff mode a descriptor for each
// listener and, with HealthPath, its private probe listener; in proxy mode
// nothing, but a port of its own, which the returned environment names.
func (l *loop) sockets(c *child, fds *fdSet) ([]string, error) {
	s := l.s
	if s.proxy != nil {
		// The app binds a port of its own; the proxy holds the sockets.
		addr, err := pickUpstreamAddr()
		if err != nil {
			return nil, err
		}
		c.upstream = addr
		if s.cfg.HealthPath != "" {
			c.health = addr // only this generation listens there
		}
		return upstreamEnv(addr), nil
	}
	for _, ln := range s.lns {
		if err := fds.add(ln.ln, ln.starter, ln.fdName); err != nil {
			return nil, err
		}
	}
	if s.cfg.HealthPath == "" {
		return nil, nil
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("health probe listener: %w", err)
	}
	c.health = hl.Addr().String()
	err = fds.add(hl, c.health, healthName)
	// Only the child keeps it open, so a dead child refuses the probe
	// instead of leaving it queued.
	hl.Close()
	return nil, err
}

// watch tells run when c exits and when it first says READY=1.
func (l *loop) watch(c *child) {
	s := l.s
	go func() {
		c.proc.wait()
		close(c.dead)
		s.exitC <- c // run does not return while c is unreaped
	}()
	n := c.readySock
	if n == nil {
		return
	}
	go n.serve(c.pid)
	go func() {
		select {
		case <-n.ready:
			select {
			case s.saidReadyC <- c:
			case <-s.done:
			}
		case <-c.dead:
		}
	}()
}

// An fdSet is the listening sockets one generation inherits, from fd 3 on,
// and their names in systemd's and server-starter's conventions.
type fdSet struct {
	files          []*os.File
	starter, names []string
}

func (fs *fdSet) add(ln net.Listener, starterName, fdName string) error {
	f, err := dupListener(ln, starterName)
	if err != nil {
		return err
	}
	fs.files = append(fs.files, f)
	fs.starter = append(fs.starter, starterName+"="+strconv.Itoa(2+len(fs.files)))
	fs.names = append(fs.names, fdName)
	return nil
}

// env names the descriptors for the child. LISTEN_PID is set by the exec
// shim, which knows its own pid.
func (fs *fdSet) env() []string {
	if len(fs.files) == 0 {
		return nil
	}
	return []string{
		"LISTEN_FDS=" + strconv.Itoa(len(fs.files)),
		"LISTEN_FDNAMES=" + strings.Join(fs.names, ":"),
		"SERVER_STARTER_PORT=" + strings.Join(fs.starter, ";"),
	}
}

func (fs *fdSet) close() {
	for _, f := range fs.files {
		f.Close()
	}
}

// childEnv is dewy's environment without the variables that describe
// dewy's own sockets and service manager, then the configured extras.
func childEnv(base, extra []string) []string {
	env := make([]string, 0, len(base)+len(extra)+5)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
			"SERVER_STARTER_PORT", "SERVER_STARTER_GENERATION",
			"WATCHDOG_USEC", "WATCHDOG_PID": // dewy's own watchdog, not the child's
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// waitReady returns once c is ready, as the supervisor's comment describes,
// or an error when ctx ends first.
func (s *supervisor) waitReady(ctx context.Context, c *child, requireReady bool) (string, error) {
	if s.cfg.HealthPath != "" {
		return "health", s.probe(ctx, c)
	}
	var saidReady <-chan struct{}
	if c.readySock != nil {
		saidReady = c.readySock.ready
	}
	var delay <-chan time.Time
	if !requireReady {
		t := time.NewTimer(s.cfg.ReadyDelay)
		defer t.Stop()
		delay = t.C
	}
	select {
	case <-saidReady:
		return "notify", nil
	case <-delay:
		return "delay", nil
	case <-c.dead:
		return "", errors.New("exited")
	case <-ctx.Done():
		if requireReady {
			return "", fmt.Errorf("%w: no READY=1 on NOTIFY_SOCKET", context.Cause(ctx))
		}
		return "", context.Cause(ctx)
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// execShim runs in the child as `dewy __exec -- app args...` and replaces
// itself with the app. os/exec cannot know a child's pid before it starts,
// but systemd's convention wants it in LISTEN_PID, and the pid the notify
// socket checks must be the app's: execve keeps the pid, so the shim sets
// LISTEN_PID to its own. args are the words after "__exec". It returns only
// on error.
func execShim(args []string) error {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return errors.New("__exec: no command")
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return fmt.Errorf("__exec: %w", err)
	}
	if os.Getenv("LISTEN_FDS") != "" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	if err := syscall.Exec(path, args, os.Environ()); err != nil {
		return fmt.Errorf("__exec %s: %w", path, err)
	}
	return nil
}

// checkDown runs after every event: when nothing serves and no restart is
// due within downAfter, the sockets start refusing connections downAfter
// from now. A client is then told at once instead of waiting in the accept
// queue for a process that may not come.
func (l *loop) checkDown() {
	s := l.s
	serving := l.live != nil || l.act != nil && l.act.c != nil
	soon := l.restartC != nil && time.Until(l.restartAt) <= s.downAfter
	// In proxy mode dewy itself accepts; requests wait for a generation
	// and are answered 502 if none comes.
	if l.halted || serving || soon || s.proxy != nil {
		if l.downT != nil {
			l.downT.Stop()
			l.downT, l.downC = nil, nil
		}
		return
	}
	if l.refusing || l.downC != nil {
		return
	}
	l.downT = time.NewTimer(s.downAfter)
	l.downC = l.downT.C
}

// goDown makes the sockets refuse connections while nothing serves.
func (l *loop) goDown() {
	s := l.s
	l.downT = nil
	if l.halted || l.refusing || l.live != nil || l.act != nil && l.act.c != nil {
		return
	}
	l.refusing = true
	why := "no release has started yet"
	if l.version != "" {
		why = l.version + " is not running"
	}
	next := "until a release starts"
	if l.restartC != nil {
		next = "until the restart in " + time.Until(l.restartAt).Round(100*time.Millisecond).String()
	}
	pauseListeners(s.lns, s.log)
	s.log.Warn("nothing serves; refusing connections "+next, "why", why)
	if !l.down && s.onDown != nil {
		s.onDown(true, l.version, why)
	}
	l.down = true
}

// resume makes the sockets accept again, just before a child starts.
func (l *loop) resume() {
	if l.downT != nil {
		l.downT.Stop()
		l.downT, l.downC = nil, nil
	}
	if !l.refusing {
		return
	}
	l.refusing = false
	resumeListeners(l.s.lns, l.s.log)
}

// up is called when a child serves: the end of a down spell, if any.
func (l *loop) up() {
	if !l.down {
		return
	}
	l.down = false
	if l.s.onDown != nil {
		l.s.onDown(false, l.version, "")
	}
}
