package main

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves. Its after channels fire when
// advance passes their time, and blockUntil tells when the code under test
// waits on it, so that a test moves time only once that code is blocked.
type fakeClock struct {
	mu            sync.Mutex
	nowLocked     time.Time
	timersLocked  []fakeTimer
	changedLocked chan struct{} // closed and replaced when a timer is added
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

var _ clock = (*fakeClock)(nil)

// newFakeClock starts at the wall clock's time, because lock files carry
// the file system's times and are compared with this clock.
func newFakeClock() *fakeClock {
	return &fakeClock{nowLocked: time.Now(), changedLocked: make(chan struct{})}
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nowLocked
}

func (f *fakeClock) after(d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 {
		c <- f.nowLocked
		return c
	}
	f.timersLocked = append(f.timersLocked, fakeTimer{at: f.nowLocked.Add(d), c: c})
	close(f.changedLocked)
	f.changedLocked = make(chan struct{})
	return c
}

// advance moves the clock d on and fires every timer due by then.
func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nowLocked = f.nowLocked.Add(d)
	kept := f.timersLocked[:0]
	for _, tm := range f.timersLocked {
		if tm.at.After(f.nowLocked) {
			kept = append(kept, tm)
			continue
		}
		tm.c <- f.nowLocked
	}
	f.timersLocked = kept
}

// blockUntil returns once n timers are pending. A timer whose waiter gave
// up (its ctx ended) counts until it fires, as the clock cannot tell.
func (f *fakeClock) blockUntil(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(time.Minute) // a generous bound on a goroutine getting to its wait
	for {
		f.mu.Lock()
		pending, changed := len(f.timersLocked), f.changedLocked
		f.mu.Unlock()
		if pending >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d timers pending on the fake clock after a minute, want %d", pending, n)
		}
	}
}

// autoAdvance moves the clock to the next timer whenever one is pending,
// until stop is called: for code that polls the clock while it contends
// with itself (lock files), where no test step is waiting to be taken.
func (f *fakeClock) autoAdvance() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			f.mu.Lock()
			changed := f.changedLocked
			var next time.Time
			for _, tm := range f.timersLocked {
				if next.IsZero() || tm.at.Before(next) {
					next = tm.at
				}
			}
			d := next.Sub(f.nowLocked)
			f.mu.Unlock()
			if !next.IsZero() {
				f.advance(d)
				continue
			}
			select {
			case <-changed:
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

// useClock makes cs and its local caches go by clk.
func (cs *cacheSetup) useClock(clk clock) {
	cs.clk = clk
	cs.local.clk = clk
	if m, ok := cs.c.(*memoryCache); ok {
		m.clk = clk
	}
}

// everyTickOf keeps to its schedule as a time.Ticker does: a call that
// overruns costs the ticks it missed, not a shift of every later one.
func TestClockEveryTick(t *testing.T) {
	clk := newFakeClock()
	start := clk.now()
	ticks := make(chan time.Time)
	proceed := make(chan bool)
	done := make(chan struct{})
	go func() {
		defer close(done)
		everyTickOf(context.Background(), clk, time.Second, func() bool {
			ticks <- clk.now()
			return <-proceed
		})
	}()
	tick := func(advance, want time.Duration, more bool) {
		t.Helper()
		if advance > 0 {
			clk.blockUntil(t, 1)
			clk.advance(advance)
		}
		if got := (<-ticks).Sub(start); got != want {
			t.Errorf("tick at %v, want %v", got, want)
		}
		proceed <- more
	}
	tick(time.Second, time.Second, true)
	tick(time.Second, 2*time.Second, true)
	// f runs from 3 s to 5.5 s: the tick at 4 s comes at once when it
	// returns, the one at 5 s is dropped, and the next comes at 6 s.
	clk.blockUntil(t, 1)
	clk.advance(time.Second)
	<-ticks
	clk.advance(2500 * time.Millisecond)
	proceed <- true
	tick(0, 5500*time.Millisecond, true)
	tick(500*time.Millisecond, 6*time.Second, false)
	<-done
}
