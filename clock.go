package main

import (
	"context"
	"time"
)

// clock is the time the cache and fleet code go by: lease and answer
// expiry in the local caches, lock staleness, the waits between slot and
// answer attempts, lease renewal. dewy runs on realClock; tests drive a
// fake one, so that they wait on the clock they move rather than on the
// machine. Redis and Consul expire keys by their own clocks, which no
// local clock moves.
type clock interface {
	now() time.Time
	// after returns a channel that receives the time once d has passed.
	after(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) now() time.Time { return time.Now() }

// after may be left unread: since Go 1.23 an unreferenced timer is
// collected whether or not it fired.
func (realClock) after(d time.Duration) <-chan time.Time { return time.After(d) }

// everyTickOf calls f every interval by clk until f returns false or ctx
// ends. Like a time.Ticker it keeps to its schedule: of the ticks an
// overlong f missed, one comes at once and the rest are dropped.
func everyTickOf(ctx context.Context, clk clock, interval time.Duration, f func() bool) {
	next := clk.now()
	for {
		next = next.Add(interval)
		wait := next.Sub(clk.now())
		if wait < 0 { // f overran: tick now, for the last tick due
			next = next.Add(-wait / interval * interval)
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-clk.after(wait):
		}
		if !f() {
			return
		}
	}
}
