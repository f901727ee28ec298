package main

// Operator controls: rollback, pause, resume and pin, on this host or, with
// a shared cache, on the whole fleet. They arrive over the admin endpoint
// as requests to the deployer's loop, so a control never races a deploy.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// controlRequest is one operator action.
type controlRequest struct {
	Action string // rollback, pause, resume or pin
	To     string // rollback --to, pin TAG
	Reason string // pause --reason
	Fleet  bool   // pause/resume every host sharing the cache
	By     string // who asked: the peer's uid on a unix socket, else its address
}

// pauseInfo says why deploys are held, on one host (state file) or on the
// fleet (shared cache).
type pauseInfo struct {
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
	Pin    string    `json:"pin,omitempty"` // set by dewy pin: the release held
}

func (p *pauseInfo) String() string {
	s := "paused"
	if p.Pin != "" {
		s = "pinned to " + p.Pin
	}
	if p.By != "" {
		s += " by " + p.By
	}
	if p.Reason != "" {
		s += ": " + p.Reason
	}
	return s
}

var (
	// errHeldBack is a refusal, not a verdict on a release: a pause, a
	// quarantine or an operator's request stopped a deploy before it
	// touched the live service.
	errHeldBack = errors.New("deploy held back")
	// errNoFleet: a fleet control without a shared cache.
	errNoFleet = errors.New("no shared cache (redis or consul): there is no fleet to control")
	// errControl is an operator request that cannot be carried out as asked.
	errControl = errors.New("cannot do that")
)

// control asks the deployer's loop to carry out req and waits for its
// answer. A deploy in progress ends first, but one that is only waiting
// for a fleet deploy slot gives way.
func (d *deployer) control(ctx context.Context, req controlRequest) (string, error) {
	c := ctlCall{ctx: ctx, req: req, reply: make(chan ctlAnswer, 1)}
	if err := ask(ctx, d, d.ctlC, c); err != nil {
		return "", err
	}
	select {
	case a := <-c.reply:
		return a.msg, a.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// errLoopDone answers a request that arrives after the loop stopped.
var errLoopDone = errors.New("dewy is stopping")

// ask hands r to the loop over ch, first telling a deploy that only waits
// for a fleet deploy slot to give way to it.
func ask[T any](ctx context.Context, d *deployer, ch chan<- T, r T) error {
	d.ctlWaiting.Add(1)
	defer d.ctlWaiting.Add(-1)
	select {
	case d.ctlPoke <- struct{}{}:
	default:
	}
	select {
	case ch <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-d.loopDone:
		return errLoopDone
	}
}

// ctlCall is an operator's control request on its way to the loop.
type ctlCall struct {
	ctx   context.Context
	req   controlRequest
	reply chan ctlAnswer
}

type ctlAnswer struct {
	msg string
	err error
}

// serveControl carries out one control request; only the loop calls it.
func (d *deployer) serveControl(c ctlCall) {
	var a ctlAnswer
	switch c.req.Action {
	case "rollback":
		a.msg, a.err = d.rollback(c.ctx, c.req)
	case "pin":
		a.msg, a.err = d.pin(c.ctx, c.req)
	case "pause":
		a.msg, a.err = d.pause(c.ctx, c.req)
	case "resume":
		a.msg, a.err = d.resume(c.ctx, c.req)
	default:
		a.err = fmt.Errorf("%w: unknown action %q", errControl, c.req.Action)
	}
	c.reply <- a
}

func (d *deployer) rollback(ctx context.Context, req controlRequest) (string, error) {
	from, to := d.state.Current, req.To
	if from == "" {
		return "", fmt.Errorf("rollback: %w: nothing is deployed", errControl)
	}
	if to == "" {
		to = d.state.Previous
		if to == "" {
			return "", fmt.Errorf("rollback: %w: no previous release recorded; name one with --to", errControl)
		}
	}
	if to == from {
		return "", fmt.Errorf("rollback: %w: %s is already live", errControl, to)
	}
	if err := d.switchTo(ctx, to, eventRollback, req); err != nil {
		return "", err
	}
	if !slices.Contains(d.state.Held, from) {
		d.state.Held = append(d.state.Held, from)
	}
	d.saveState(ctx)
	d.showControl()
	msg := fmt.Sprintf("rolled back to %s; %s is held until a newer release appears or dewy resume", to, from)
	if d.cache != nil && d.cache.remote {
		d.quarantine(ctx, from, "rolled back by "+req.By)
		msg += "; quarantined fleet-wide until dewy resume --fleet"
	}
	return msg, nil
}

// pin deploys req.To (back or forward) and pauses there.
func (d *deployer) pin(ctx context.Context, req controlRequest) (string, error) {
	if req.To == "" {
		return "", fmt.Errorf("pin: %w: name the release to pin", errControl)
	}
	if req.To != d.state.Current {
		if err := d.switchTo(ctx, req.To, eventPinned, req); err != nil {
			return "", err
		}
	} else {
		e := d.event(eventPinned, req.To)
		e.By, e.Outcome, e.Previous = req.By, outcomeOK, req.To
		d.obs.event(e)
	}
	reason := req.Reason
	d.state.Paused = &pauseInfo{Reason: reason, By: req.By, At: d.now().UTC(), Pin: req.To}
	d.saveState(ctx)
	d.showControl()
	return fmt.Sprintf("pinned to %s; deploys paused until dewy resume", req.To), nil
}

func (d *deployer) pause(ctx context.Context, req controlRequest) (string, error) {
	p := &pauseInfo{Reason: req.Reason, By: req.By, At: d.now().UTC()}
	e := d.event(eventPaused, d.state.Current)
	e.By, e.Outcome, e.Error = req.By, outcomeOK, req.Reason
	if req.Fleet {
		if d.cache == nil || !d.cache.remote {
			return "", fmt.Errorf("pause --fleet: %w", errNoFleet)
		}
		if err := d.cache.setFleetPause(ctx, d.fleet, p); err != nil {
			return "", fmt.Errorf("pause --fleet: %w", err)
		}
		e.Fleet = true
		d.obs.event(e)
		return "fleet paused: no host starts a new deploy until dewy resume --fleet", nil
	}
	d.state.Paused = p
	d.saveState(ctx)
	d.showControl()
	d.obs.event(e)
	return "paused: polling goes on, nothing is deployed until dewy resume", nil
}

func (d *deployer) resume(ctx context.Context, req controlRequest) (string, error) {
	e := d.event(eventResumed, d.state.Current)
	e.By, e.Outcome = req.By, outcomeOK
	if req.Fleet {
		if d.cache == nil || !d.cache.remote {
			return "", fmt.Errorf("resume --fleet: %w", errNoFleet)
		}
		if err := d.cache.setFleetPause(ctx, d.fleet, nil); err != nil {
			return "", fmt.Errorf("resume --fleet: %w", err)
		}
		cleared, err := d.cache.clearQuarantine(ctx, d.fleet)
		if err != nil {
			return "", fmt.Errorf("resume --fleet: %w", err)
		}
		e.Fleet = true
		d.obs.event(e)
		msg := "fleet resumed"
		if len(cleared) > 0 {
			msg += "; no longer quarantined: " + strings.Join(cleared, ", ")
		}
		return msg, nil
	}
	held := d.state.Held
	d.state.Paused, d.state.Held = nil, nil
	d.saveState(ctx)
	d.showControl()
	d.obs.event(e)
	msg := "resumed: the newest release deploys on the next poll"
	for _, tag := range held {
		if q, _ := d.cache.quarantined(ctx, d.fleet, tag); q != nil {
			msg += fmt.Sprintf("; %s stays quarantined fleet-wide until dewy resume --fleet", tag)
		}
	}
	return msg, nil
}

// switchTo makes tag live through the same health gate as a deploy: from
// its directory under releases/, else unpacked from the cached artifact,
// else fetched from the registry.
func (d *deployer) switchTo(ctx context.Context, tag, kind string, req controlRequest) error {
	start, from := d.now(), d.state.Current
	dir, sum, err := d.releaseOnHand(ctx, tag)
	if errors.Is(err, errNotFound) {
		return d.deployFromRegistry(ctx, tag, req)
	}
	if err != nil {
		return fmt.Errorf("%s to %s: %w", kind, tag, err)
	}
	e := d.event(kind, tag)
	e.Previous, e.By, e.SHA256 = from, req.By, sum
	prevDir, err := currentDir(d.cfg.Root)
	if err == nil {
		err = pointCurrent(d.cfg.Root, dir)
	}
	if err == nil {
		if aerr := d.act.activate(ctx, tag); aerr != nil {
			if rerr := pointCurrent(d.cfg.Root, prevDir); rerr != nil {
				d.log.Error("could not point current back", "to", prevDir, "err", rerr)
			}
			err = fmt.Errorf("%w: %w", errHealth, aerr)
		}
	}
	e.Duration, e.Time = d.now().Sub(start), d.now()
	if err != nil {
		err = fmt.Errorf("%s to %s: %w; %s keeps serving", kind, tag, err, orNone(from))
		e.Outcome, e.Error = outcomeFailed, err.Error()
		d.obs.event(e)
		return err
	}
	d.state.Previous, d.state.PreviousDir = from, prevDir
	d.state.Current, d.state.CurrentDir = tag, dir
	// What vouched for these bytes when they were first deployed is not
	// kept for older releases.
	d.state.SHA256, d.state.VerifiedBy, d.state.DeployedAt = sum, "", d.now()
	delete(d.state.Failed, tag)
	d.saveState(ctx)
	d.log.Info(fmt.Sprintf("%s to %s done", kind, tag), "from", orNone(from), "by", req.By)
	e.Outcome = outcomeOK
	d.obs.event(e)
	return nil
}

// releaseOnHand finds tag's release directory, or unpacks it from a cached
// artifact; errNotFound when neither is there.
func (d *deployer) releaseOnHand(ctx context.Context, tag string) (dir, sum string, err error) {
	ents, err := os.ReadDir(filepath.Join(d.cfg.Root, releasesDir))
	if err != nil {
		return "", "", err
	}
	for _, e := range slices.Backward(ents) {
		n := e.Name()
		if e.IsDir() && !strings.Contains(n, tmpMarker) && tagOfDir(n) == tag {
			if n == d.state.PreviousDir || dir == "" {
				dir = n
			}
		}
	}
	if dir != "" {
		return dir, "", nil
	}
	if d.cache == nil {
		return "", "", fmt.Errorf("release %s: %w on disk", tag, errNotFound)
	}
	files, _ := os.ReadDir(filepath.Join(d.cache.local.dir, "artifacts", escapeName(tag)))
	for _, f := range files {
		s, esc, ok := strings.Cut(f.Name(), ".")
		name, uerr := unescapeName(esc)
		if !ok || uerr != nil {
			continue
		}
		if path, ok := d.cache.artifact(ctx, tag, name, s); ok {
			dir, err := d.unpack(tag, name, path, s)
			if err != nil {
				return "", "", fmt.Errorf("release %s from the cache: %w", tag, err)
			}
			return dir, s, nil
		}
	}
	return "", "", fmt.Errorf("release %s: %w on disk or in the cache", tag, errNotFound)
}

// deployFromRegistry deploys tag as a poll would, for a pin forward or a
// rollback to a release no longer on the host.
func (d *deployer) deployFromRegistry(ctx context.Context, tag string, req controlRequest) error {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	rels, err := d.reg.releases(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%s not on disk or in the cache; list releases: %w", tag, err)
	}
	i := slices.IndexFunc(rels, func(r release) bool { return r.Tag == tag })
	if i < 0 {
		return fmt.Errorf("%w: %s is not on disk, in the cache or in the registry", errControl, tag)
	}
	a, err := pickAsset(rels[i], d.cfg.Select)
	if err != nil {
		return err
	}
	d.log.Info("deploying "+tag+" from the registry as asked", "by", req.By)
	return d.deploy(ctx, rels[i], canonicalVersion(tag), a)
}

// holdBack reports whether tag, the registry's newest release, must not be
// deployed now, and shows why on the status board.
func (d *deployer) holdBack(ctx context.Context, tag string) bool {
	why := ""
	switch {
	case d.state.Paused != nil:
		why = "deploys " + d.state.Paused.String()
	case slices.Contains(d.state.Held, tag):
		why = tag + " was rolled back; held until a newer release or dewy resume"
	default:
		why = d.fleetHold(ctx, tag)
	}
	d.obs.pending(tag, why)
	if why != d.holdWhy {
		if why != "" {
			d.log.Info("not deploying "+tag, "why", why)
		}
		d.holdWhy = why
	}
	if why != "" {
		return true
	}
	if len(d.state.Held) > 0 {
		// A newer release than the one rolled back from: the hold is over.
		d.state.Held = nil
		d.saveState(ctx)
		d.showControl()
	}
	d.rolloutTag = tag
	return false
}

// fleetHold says why the fleet holds tag back: a fleet pause or a
// quarantine. A cache that does not answer holds nothing back.
func (d *deployer) fleetHold(ctx context.Context, tag string) string {
	if d.cache == nil || !d.cache.remote {
		return ""
	}
	if p, _ := d.cache.fleetPause(ctx, d.fleet); p != nil {
		return "fleet " + p.String()
	}
	if q, _ := d.cache.quarantined(ctx, d.fleet, tag); q != nil {
		return fmt.Sprintf("%s quarantined fleet-wide (%s on %s)", tag, q.Reason, q.Host)
	}
	return ""
}

// quarantineFailed marks a release that failed its health gate bad for
// the fleet.
func (d *deployer) quarantineFailed(ctx context.Context, tag string) {
	if d.cache != nil && d.cache.remote {
		d.quarantine(ctx, tag, "failed its health gate")
	}
}

func (d *deployer) quarantine(ctx context.Context, tag, reason string) {
	q := quarantineInfo{Tag: tag, Reason: reason, Host: d.cfg.HostID, At: d.now().UTC()}
	if err := d.cache.quarantine(ctx, d.fleet, q); err != nil {
		d.log.Warn("could not quarantine the release fleet-wide", "version", tag, "err", err)
		return
	}
	d.log.Warn("quarantined "+tag+" fleet-wide", "reason", reason)
}

// showControl puts the host's pause and holds on the status board.
func (d *deployer) showControl() {
	d.obs.control(d.state.Paused, d.state.Held)
}

// rolloutSlot holds a fleet deploy slot for rolloutTag's deploy. Once it
// has the slot it looks again at the fleet's pause and quarantine, which
// may have changed while it waited; an operator's request ends the wait.
// With bake, the slot is kept after a good deploy until the release has
// run healthily that long, so the next host starts only then.
func (d *deployer) rolloutSlot(ctx context.Context) (func(live bool), error) {
	cs, host, tag := d.cache, d.cfg.HostID, d.rolloutTag
	d.rolloutTag = ""
	if cs.maxParallel <= 0 {
		return func(bool) {}, nil
	}
	if d.ctlWaiting.Load() > 0 {
		return nil, fmt.Errorf("%w: an operator request comes first", errHeldBack)
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		for {
			select {
			case <-sctx.Done():
				return
			case <-d.ctlPoke:
				if d.ctlWaiting.Load() > 0 {
					cancel(fmt.Errorf("%w: an operator request comes first", errHeldBack))
					return
				}
			}
		}
	}()
	free, err := cs.acquireSlot(sctx, d.fleet, host)
	if err != nil {
		if cause := context.Cause(sctx); errors.Is(cause, errHeldBack) {
			return nil, cause
		}
		return nil, err
	}
	d.obs.lease(host)
	done := func() { free(); d.obs.lease("") }
	if tag != "" {
		if why := d.fleetHold(ctx, tag); why != "" {
			done()
			return nil, fmt.Errorf("%w: %s", errHeldBack, why)
		}
	}
	return func(live bool) {
		if live && tag != "" && cs.bake > 0 {
			d.startBake(tag, done)
			return
		}
		done()
	}, nil
}

// bakeRun is a release being baked: this host keeps the fleet's deploy
// slot until it has run healthily for the bake time.
type bakeRun struct {
	tag      string
	until    time.Time
	restarts int // the child's restarts when baking began
	free     func()
	tick     *time.Ticker
}

// startBake keeps the deploy slot while tag runs; the loop looks at it on
// every tick of bakeC.
func (d *deployer) startBake(tag string, free func()) {
	d.endBake()
	d.log.Info("baking "+tag+" before the next host may deploy it", "bake", d.cache.bake)
	d.baking = &bakeRun{tag: tag, until: d.now().Add(d.cache.bake), restarts: d.children.get().restarts, free: free,
		tick: time.NewTicker(min(d.cache.bake/10, time.Second))}
}

// bakeC ticks while a release bakes; nil otherwise.
func (d *deployer) bakeC() <-chan time.Time {
	if d.baking == nil {
		return nil
	}
	return d.baking.tick.C
}

// bakeCheck frees the slot once the release has baked, or at once when it
// is no longer live or went down meanwhile; a release that went down is
// quarantined.
func (d *deployer) bakeCheck(ctx context.Context) {
	b, c := d.baking, d.children.get()
	switch {
	case d.state.Current != b.tag:
		// Rolled back or replaced meanwhile: whoever did it decided.
	case d.cfg.Command == "server" && (c.pid == 0 || c.restarts > b.restarts):
		d.quarantine(ctx, b.tag, "went down while baking")
	case !d.now().Before(b.until):
		d.log.Info("baked " + b.tag + "; the next host may deploy it")
	default:
		return
	}
	d.endBake()
}

// endBake frees a slot kept for baking.
func (d *deployer) endBake() {
	if d.baking != nil {
		d.baking.tick.Stop()
		d.baking.free()
		d.baking = nil
	}
}

// controlState is what the deployer's loop keeps for operator requests.
type controlState struct {
	ctlC     chan ctlCall      // operator controls
	restartC chan chan<- error // restarts; those waiting together are merged
	loopDone chan struct{}     // closed when the loop has stopped
	// ctlWaiting counts requests not yet taken by the loop; ctlPoke wakes
	// a deploy waiting for a fleet slot so that it gives way to them.
	ctlWaiting atomic.Int32
	ctlPoke    chan struct{}
	holdWhy    string   // the last reason logged for holding a release back
	rolloutTag string   // the release check is about to deploy
	baking     *bakeRun // nil unless a release is baking
}

// init makes the channels the loop and its callers share.
func (c *controlState) init() {
	c.ctlC, c.restartC, c.loopDone = make(chan ctlCall), make(chan chan<- error), make(chan struct{})
	c.ctlPoke = make(chan struct{}, 1)
}

// restarter is an activator that can start the live release afresh.
type restarter interface {
	restart(ctx context.Context) error
}

// restart asks the loop to restart the application gracefully, and waits
// until it has (SIGHUP, POST /restart). Restarts that wait together are
// served by one.
func (d *deployer) restart(ctx context.Context) error {
	reply := make(chan error, 1)
	if err := ask(ctx, d, d.restartC, reply); err != nil {
		return err
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serveRestarts restarts the application once for w and every restart
// request already waiting behind it; only the loop calls it.
func (d *deployer) serveRestarts(ctx context.Context, w chan<- error) {
	waiting := []chan<- error{w}
	for more := true; more; {
		select {
		case w := <-d.restartC:
			waiting = append(waiting, w)
		default:
			more = false
		}
	}
	err := d.restartLive(ctx)
	for _, w := range waiting {
		w <- err
	}
}

// restartLive starts the live release afresh, between systemd's
// RELOADING=1 and READY=1, and reports it.
func (d *deployer) restartLive(ctx context.Context) error {
	r, ok := d.act.(restarter)
	if !ok {
		return fmt.Errorf("%w: dewy %s runs no application to restart", errControl, d.cfg.Command)
	}
	current := d.state.Current
	e := d.event(eventRestarted, current)
	e.Previous = current
	err := sdReload(ctx, r.restart, func() string { return "serving " + orNone(d.state.Current) })
	if err != nil {
		msg := "restart failed; previous process keeps serving"
		if current == "" {
			msg = "restart failed"
		}
		d.log.Error(msg, "err", err)
		e.Outcome, e.Error = outcomeFailed, err.Error()
	} else {
		d.log.Info("restarted " + orNone(current))
		e.Outcome = outcomeOK
	}
	d.obs.event(e)
	return err
}
