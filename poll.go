package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// A release is one version a registry offers. Registries report what they
// hold; choosing among releases and assets is the core's job (select.go).
type release struct {
	Tag        string  // the tag exactly as the registry spells it
	ID         string  // registry-specific identifier, echoed back in reports
	Prerelease bool    // the registry's own pre-release flag (GitHub); semver suffixes count too
	Assets     []asset // every file of the release, checksum and signature files included
	// SettlingUntil is set while the release is still arriving (files
	// being copied into a file:// registry): it is not offered before
	// then, and the registry should be asked again at that time.
	SettlingUntil time.Time `json:",omitzero"`
}

// An asset is one file of a release.
type asset struct {
	Name string
	URL  string // where an artifactStore fetches it: file://, ghr://, s3://, gs://, https://
	Size int64  // -1 when the registry does not say
	// SHA256 is a digest (hex) the registry itself keeps for the file, as
	// listed with the release: GitHub's asset digest, the gRPC answer's.
	// SHA256From names that source for messages ("GitHub digest").
	// Checksum files and signatures, when present, must agree with it.
	SHA256     string
	SHA256From string
}

// registry is a source of releases.
type registry interface {
	// releases returns every release the registry holds, in any order.
	// An empty registry returns an empty slice and no error. Errors name the
	// registry location; a rejected credential wraps errAccessDenied.
	releases(ctx context.Context) ([]release, error)
}

var (
	errNotFound     = errors.New("not found")
	errAccessDenied = errors.New("access denied")
)

// retryAfterError is returned by a backend whose server asked it to come back
// later (HTTP 429, or 403 with an exhausted rate limit). The poll loop waits
// until Until instead of retrying sooner.
type retryAfterError struct {
	Err   error
	Until time.Time
}

func (e *retryAfterError) Error() string { return e.Err.Error() }
func (e *retryAfterError) Unwrap() error { return e.Err }

// maxErrorBackoff caps the wait between polls while the registry fails.
const maxErrorBackoff = 5 * time.Minute

// pollLoop is the deployer's loop, the one owner of what is live. It
// checks the registry at start-up and then every interval (plus up to 10 %
// jitter, so a fleet started together does not poll in step), at once when
// poke fires, or sooner when the newest release is still settling or a
// failed one is due for a retry. Errors back off exponentially; the live
// release keeps running whatever the registry does. Between checks it
// serves operator controls and restarts, and minds a baking release. It
// returns when ctx ends.
func (d *deployer) pollLoop(ctx context.Context, interval time.Duration, poke <-chan struct{}) {
	if d.loopDone != nil {
		defer close(d.loopDone)
	}
	defer d.endBake()
	streak := 0
	for {
		res, err := d.check(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := d.afterCheck(res, err, interval, &streak)
		if !d.idle(ctx, wait, poke) {
			return
		}
	}
}

// afterCheck logs and reports one check and returns how long to wait for
// the next.
func (d *deployer) afterCheck(res checkResult, err error, interval time.Duration, streak *int) time.Duration {
	wait := interval
	if err == nil {
		if *streak > 0 {
			d.log.Info("registry answers again", "failed_polls", *streak)
		}
		*streak = 0
		if !res.LookAgain.IsZero() {
			wait = min(interval, d.untilSettled(res.LookAgain))
		}
	} else {
		*streak++
		wait = errorBackoff(interval, *streak)
		var ra *retryAfterError
		if errors.As(err, &ra) {
			wait = max(wait, time.Until(ra.Until))
		}
		d.logPollError(err, *streak, wait)
	}
	j, now := jitter(wait), d.now()
	if !res.LookAgain.IsZero() {
		j = wait // the settle time is this host's own; no fleet to spread
	}
	if due := d.retryDue(); !due.IsZero() && due.Sub(now) < j {
		j = max(due.Sub(now), 0)
	}
	d.obs.polled(now, err, now.Add(j))
	return j
}

// logPollError logs once per streak (and every 10th time after), not on
// every poll.
func (d *deployer) logPollError(err error, streak int, wait time.Duration) {
	if streak != 1 && streak%10 != 0 {
		d.log.Debug("poll failed", "err", err, "failed_polls", streak)
		return
	}
	msg := "poll failed; " + d.state.Current + " keeps running"
	if d.state.Current == "" {
		msg = "poll failed; no release is running"
	}
	d.log.Error(msg, "err", err, "failed_polls", streak, "next_poll_in", wait.Round(time.Second))
}

// idle serves requests until the next check is due: after wait, or at
// once on poke. It returns false when ctx has ended.
func (d *deployer) idle(ctx context.Context, wait time.Duration, poke <-chan struct{}) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-poke:
			d.servePending(ctx)
			return true
		case <-t.C:
			d.servePending(ctx)
			return true
		case c := <-d.ctlC:
			d.serveControl(c)
		case w := <-d.restartC:
			d.serveRestarts(ctx, w)
		case <-d.bakeC():
			d.bakeCheck(ctx)
		}
	}
}

// servePending serves the requests already waiting when a check comes
// due: select picks among ready cases at random, and an operator who asked
// before the check (a pause, say) must go before it.
func (d *deployer) servePending(ctx context.Context) {
	for {
		select {
		case c := <-d.ctlC:
			d.serveControl(c)
		case w := <-d.restartC:
			d.serveRestarts(ctx, w)
		default:
			return
		}
	}
}

// minSettleLook keeps a registry that reports a settle time already past
// (a shared answer from the cache) from being asked in a busy loop.
const minSettleLook = 250 * time.Millisecond

// untilSettled is how long to wait before looking at a settling release again.
func (d *deployer) untilSettled(at time.Time) time.Duration {
	return max(at.Sub(d.now()), minSettleLook)
}

// onceSettleWait bounds how long `dewy assets --once` waits for a release
// that is still arriving: ample for the default settle window and a copy
// that ends moments after dewy starts, and short enough for a cron job.
const onceSettleWait = 30 * time.Second

// checkOnce is --once: one check, repeated while the newest release is
// settling, for at most onceSettleWait. A release that will not have
// settled by then is an error that names it.
func (d *deployer) checkOnce(ctx context.Context) (checkResult, error) {
	deadline := d.now().Add(onceSettleWait)
	for {
		res, err := d.check(ctx)
		if err != nil || res.LookAgain.IsZero() {
			return res, err
		}
		if res.LookAgain.After(deadline) {
			return res, fmt.Errorf("release %s is still arriving and will not have settled before %s, the end of --once's %s wait; run again later",
				res.Settling, res.LookAgain.Format("15:04:05.000"), onceSettleWait)
		}
		t := time.NewTimer(d.untilSettled(res.LookAgain))
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
	}
}

func errorBackoff(interval time.Duration, streak int) time.Duration {
	b := time.Second << min(streak-1, 20)
	return max(interval, min(b, maxErrorBackoff))
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}
