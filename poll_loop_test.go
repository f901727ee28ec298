package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// gateActivator is an application whose activations and restarts wait for
// the test to let them through, so that requests can be made to arrive
// while one is in progress.
type gateActivator struct {
	entered  chan string   // the version an activation or restart ("restart") began for
	release  chan struct{} // lets one through
	mu       sync.Mutex
	restarts int
}

func newGateActivator() *gateActivator {
	return &gateActivator{entered: make(chan string, 16), release: make(chan struct{})}
}

func (g *gateActivator) activate(ctx context.Context, version string) error {
	g.entered <- version
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gateActivator) restart(ctx context.Context) error {
	g.entered <- "restart"
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.restarts++
	return nil
}

func (g *gateActivator) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.restarts
}

func (g *gateActivator) waitEntered(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-g.entered:
		if got != want {
			t.Fatalf("entered %q, want %q", got, want)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s never began", want)
	}
}

// startLoop runs the deployer's loop over a file registry holding v1.0.0,
// with an application that waits for the test; the loop's first check is
// held in v1.0.0's activation when it returns.
func startLoop(t *testing.T) (*deployer, *gateActivator, *observerLog) {
	d, g, ol, _, _ := startLoopPoked(t)
	return d, g, ol
}

// startLoopPoked is startLoop that also returns the registry's directory
// and the loop's poke channel.
func startLoopPoked(t *testing.T) (*deployer, *gateActivator, *observerLog, string, chan struct{}) {
	t.Helper()
	reg := t.TempDir()
	publishAtomic(t, reg, "v1.0.0", map[string][]byte{"index.html": []byte("one")})
	d := newTestDeployer(t, settledFileRegistry(t, reg), t.TempDir())
	d.cfg.AllowUnverified = true
	d.cfg.Command = "server"
	g := newGateActivator()
	d.act = g
	ol := &observerLog{}
	d.obs = &observer{board: newStatusBoard("server", "test://registry", "", nil), emit: ol.add}
	d.controlState.init()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	poke := make(chan struct{}, 1)
	go func() { defer close(done); d.pollLoop(ctx, time.Hour, poke) }()
	t.Cleanup(func() { cancel(); <-done })
	g.waitEntered(t, "v1.0.0")
	return d, g, ol, reg, poke
}

// observerLog keeps the events the observer hears.
type observerLog struct {
	mu     sync.Mutex
	events []deployEvent
}

func (l *observerLog) add(e deployEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *observerLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ks []string
	for _, e := range l.events {
		ks = append(ks, e.Kind+" "+e.Version)
	}
	return ks
}

// Restarts that arrive while a deploy's activation runs wait for it, and
// those waiting together are served by one restart of the new release.
func TestLoopQueuesAndMergesRestartsBehindADeploy(t *testing.T) {
	d, g, ol := startLoop(t)
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- d.restart(t.Context()) }()
	}
	// All three are waiting for the loop before the activation ends.
	waitCond(t, "three restarts waiting", func() bool { return d.ctlWaiting.Load() == 3 })
	g.release <- struct{}{} // v1.0.0 is live
	g.waitEntered(t, "restart")
	g.release <- struct{}{}
	for range 3 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("restart = %v, want nil", err)
			}
		case v := <-g.entered:
			t.Fatalf("a second restart began (%s): the waiting ones were not merged", v)
		case <-time.After(time.Minute):
			t.Fatal("restarts not answered within a minute")
		}
	}
	if n := g.count(); n != 1 {
		t.Errorf("restarts done = %d, want 1 for three requests waiting together", n)
	}
	want := []string{"started v1.0.0", "deployed v1.0.0", "restarted v1.0.0"}
	if got := ol.kinds(); !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

// An operator's control that arrives during a deploy is answered once the
// deploy has ended, not refused.
func TestLoopQueuesAControlBehindADeploy(t *testing.T) {
	d, g, _ := startLoop(t)
	type answer struct {
		msg string
		err error
	}
	answers := make(chan answer, 1)
	go func() {
		msg, err := d.control(t.Context(), controlRequest{Action: "pause", Reason: "freeze", By: "test"})
		answers <- answer{msg, err}
	}()
	waitCond(t, "the pause waiting", func() bool { return d.ctlWaiting.Load() == 1 })
	select {
	case a := <-answers:
		t.Fatalf("pause answered during the deploy: %q, %v", a.msg, a.err)
	default:
	}
	g.release <- struct{}{}
	a := <-answers
	if a.err != nil {
		t.Fatalf("pause = %v, want nil", a.err)
	}
	if got := d.obs.board.snapshot(); got.Current != "v1.0.0" || got.Paused == nil || got.Paused.Reason != "freeze" {
		t.Errorf("status current %q, paused %+v; want v1.0.0, paused for freeze", got.Current, got.Paused)
	}
}

// A pause that waits while a check comes due goes first: the newer
// release is not deployed.
func TestLoopServesAWaitingPauseBeforeTheNextCheck(t *testing.T) {
	d, g, _, reg, poke := startLoopPoked(t)
	answers := make(chan error, 1)
	go func() {
		_, err := d.control(t.Context(), controlRequest{Action: "pause", By: "test"})
		answers <- err
	}()
	waitCond(t, "the pause waiting", func() bool { return d.ctlWaiting.Load() == 1 })
	publishAtomic(t, reg, "v2.0.0", map[string][]byte{"index.html": []byte("two")})
	poke <- struct{}{} // due at the same moment as the pause
	g.release <- struct{}{}
	select {
	case err := <-answers:
		if err != nil {
			t.Fatalf("pause = %v, want nil", err)
		}
	case v := <-g.entered:
		t.Fatalf("%s began deploying while a pause was waiting", v)
	case <-time.After(time.Minute):
		t.Fatal("pause not answered within a minute")
	}
	select {
	case v := <-g.entered:
		t.Fatalf("%s deployed after the pause", v)
	case <-time.After(200 * time.Millisecond): // nothing to wait for: a deploy would begin at once
	}
}

// A request made after the loop stopped gets an error that says so.
func TestLoopAnswersAfterItStopped(t *testing.T) {
	d := &deployer{}
	d.controlState.init()
	close(d.loopDone)
	if _, err := d.control(t.Context(), controlRequest{Action: "pause"}); !errors.Is(err, errLoopDone) {
		t.Errorf("control after stop = %v, want %v", err, errLoopDone)
	}
	if err := d.restart(t.Context()); !errors.Is(err, errLoopDone) {
		t.Errorf("restart after stop = %v, want %v", err, errLoopDone)
	}
}

// waitCond waits for cond, which other goroutines make true; a counter of
// waiting requests has no signal of its own to wait on.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bakeDeployer is a server deployer whose v1.0.0 is live with a child of
// no restarts, over a memory cache that plays a shared one, with a clock
// the test moves.
func bakeDeployer(t *testing.T) (d *deployer, now *time.Time, freed *int) {
	t.Helper()
	d = newTestDeployer(t, &listRegistry{}, t.TempDir())
	d.cfg.Command = "server"
	cs, err := newCache(t.Context(), "memory://", d.cfg.Root, noEnv, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Quarantine is a fleet's; the memory cache stands in for a shared one.
	cs.remote, cs.bake = true, time.Minute
	d.cache, d.fleet = cs, "app"
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now, freed = &clock, new(int)
	d.now = func() time.Time { return *now }
	d.state.Current = "v1.0.0"
	d.children.set(100, 1, 0)
	d.startBake("v1.0.0", func() { *freed++ })
	t.Cleanup(d.endBake)
	return d, now, freed
}

// A baking release keeps the fleet's slot for the bake time, and no longer.
func TestBakeKeepsTheSlotForTheBakeTime(t *testing.T) {
	d, now, freed := bakeDeployer(t)
	*now = now.Add(59 * time.Second)
	d.bakeCheck(t.Context())
	if *freed != 0 || d.baking == nil {
		t.Fatalf("after 59s of a 1m bake: freed %d times, baking %v; want the slot kept", *freed, d.baking != nil)
	}
	*now = now.Add(time.Second)
	d.bakeCheck(t.Context())
	if *freed != 1 || d.baking != nil {
		t.Fatalf("after the 1m bake: freed %d times, baking %v; want the slot freed once", *freed, d.baking != nil)
	}
	if q, _ := d.cache.quarantined(t.Context(), d.fleet, "v1.0.0"); q != nil {
		t.Errorf("a release that baked well is quarantined: %+v", q)
	}
}

// A baking release whose child restarted is quarantined and the slot
// freed at once; one that an operator replaced meanwhile just frees it.
func TestBakeEndsEarly(t *testing.T) {
	for _, tc := range []struct {
		name       string
		change     func(d *deployer)
		quarantine bool
	}{
		{"crash restart", func(d *deployer) { d.children.set(101, 2, 1) }, true},
		{"child gone", func(d *deployer) { d.children.set(0, 1, 0) }, true},
		{"rolled back", func(d *deployer) { d.state.Current = "v0.9.0" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, now, freed := bakeDeployer(t)
			tc.change(d)
			*now = now.Add(time.Second)
			d.bakeCheck(t.Context())
			if *freed != 1 || d.baking != nil {
				t.Fatalf("freed %d times, baking %v; want the slot freed at once", *freed, d.baking != nil)
			}
			q, _ := d.cache.quarantined(t.Context(), d.fleet, "v1.0.0")
			if (q != nil) != tc.quarantine {
				t.Errorf("quarantined = %+v, want quarantined %v", q, tc.quarantine)
			}
		})
	}
}
