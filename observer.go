package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// observer hears what the owner of the live release (the deployer's loop)
// and the supervisor below it decide, and tells everyone who reports:
// the status board, metrics, the audit log and notifiers, systemd, and a
// registry that tracks its hosts. Nothing it feeds is read back to make a
// decision. Every method is safe on a nil *observer, for tests that watch
// nothing, and from any goroutine.
type observer struct {
	board   *statusBoard
	metrics *metrics
	// emit writes the audit log and queues notifications; it must not block.
	emit func(deployEvent)
	// reg is told how each deploy attempt went; nil when the registry
	// does not track its hosts.
	reg reporter
	log *slog.Logger

	readyOnce sync.Once
}

// event reports e to everyone who reports it, by its kind.
func (o *observer) event(e deployEvent) {
	if o == nil {
		return
	}
	switch e.Kind {
	case eventStarted:
		sdStatus("deploying " + e.Version)
	case eventDeployed:
		o.metrics.observeDeploy(outcomeOK, e.Duration)
		o.live(e)
	case eventFailed, eventRolledBack:
		o.metrics.observeDeploy(e.Outcome, e.Duration)
		if e.Previous != "" {
			sdStatus("serving " + e.Previous + "; " + e.Version + " failed")
		}
	case eventRollback, eventPinned:
		if e.Outcome == outcomeOK && e.Version != e.Previous {
			o.live(e)
		}
	case eventDown, eventUp:
		why := e.Error
		if e.Kind == eventUp {
			why = ""
		}
		o.board.down(why)
		o.metrics.serving(e.Kind == eventUp)
	}
	if o.emit != nil {
		o.emit(e)
	}
	switch e.Kind {
	case eventDeployed, eventFailed, eventRolledBack:
		o.report(e)
	}
}

// live reports that e.Version now serves.
func (o *observer) live(e deployEvent) {
	o.board.deployed(e.Version, e.SHA256, e.VerifiedBy, e.Time)
	o.metrics.current(e.Version)
	o.metrics.serving(true)
	sdStatus("serving " + e.Version)
}

// report tells a registry that tracks its hosts how a deploy attempt went.
// Its failure is logged, never fatal.
func (o *observer) report(e deployEvent) {
	if o.reg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := deployReport{ID: e.releaseID, Tag: e.Version, Command: e.Command, Host: e.Host, Err: e.Error, Event: e}
	if err := o.reg.report(ctx, r); err != nil && o.log != nil {
		o.log.Warn("could not report the deploy to the registry", "version", e.Version, "err", err)
	}
}

// ready tells systemd once that dewy is up, serving version.
func (o *observer) ready(version string) {
	if o == nil {
		return
	}
	o.readyOnce.Do(func() { sdReady("serving " + orNone(version)) })
}

// restored reports the release found live at start-up, and the failed
// releases the state file remembers.
func (o *observer) restored(s *deployState, assets bool) {
	if o == nil {
		return
	}
	if s.Current != "" {
		o.board.deployed(s.Current, s.SHA256, s.VerifiedBy, s.DeployedAt)
		o.metrics.current(s.Current)
		if assets {
			o.metrics.serving(true)
		}
	}
	for tag, f := range s.Failed {
		o.board.failed(tag, f.Reason)
	}
}

// failed reports that tag is in the failed set, and why.
func (o *observer) failed(tag, reason string) {
	if o != nil {
		o.board.failed(tag, reason)
	}
}

// pending reports the registry's newest release and what holds it back.
func (o *observer) pending(tag, why string) {
	if o != nil {
		o.board.pending(tag, why)
	}
}

// control reports this host's pause and held releases.
func (o *observer) control(p *pauseInfo, held []string) {
	if o != nil {
		o.board.control(p, held)
	}
}

// lease reports which host holds the fleet's deploy slot; "" for none.
func (o *observer) lease(holder string) {
	if o != nil {
		o.board.lease(holder)
	}
}

// polled reports one look at the registry and when the next is due.
func (o *observer) polled(at time.Time, err error, next time.Time) {
	if o == nil {
		return
	}
	o.board.pollDone(at, err, next)
	if err == nil {
		o.metrics.pollOK(at)
	} else {
		o.metrics.pollError()
	}
}

// downloaded reports bytes fetched from a store.
func (o *observer) downloaded(n int64) {
	if o != nil {
		o.metrics.downloaded(n)
	}
}

// child reports the live generation; pid 0 when none runs.
func (o *observer) child(pid, generation, restarts int) {
	if o == nil {
		return
	}
	o.board.child(pid, generation, restarts)
	if pid != 0 {
		o.metrics.serving(true)
	}
}

// crashRestart reports that the application was started again after it died.
func (o *observer) crashRestart() {
	if o != nil {
		o.metrics.childRestart()
	}
}

// childInfo is what the supervisor last said of its live generation; the
// deployer's loop reads it to decide whether a baking release held up.
type childInfo struct {
	pid, generation, restarts int
}

// childWatch passes the supervisor's reports to the deployer without
// either waiting on the other.
type childWatch struct{ p atomic.Pointer[childInfo] }

func (w *childWatch) set(pid, generation, restarts int) {
	w.p.Store(&childInfo{pid, generation, restarts})
}

func (w *childWatch) get() childInfo {
	if c := w.p.Load(); c != nil {
		return *c
	}
	return childInfo{}
}

// snapshot is what the status board shows, for this host's report to the
// fleet.
func (o *observer) snapshot() statusJSON {
	if o == nil {
		return (*statusBoard)(nil).snapshot()
	}
	return o.board.snapshot()
}
