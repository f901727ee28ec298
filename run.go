package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// run is dewy after the command line has been understood: build the
// parts, prepare the root, then deploy and serve until a stop signal.
func run(ctx context.Context, cfg *config) error {
	if client, ok := clientCommands[cfg.Command]; ok {
		return client(ctx, cfg)
	}
	log := newLogger(cfg, os.Stderr)
	p, err := buildParts(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer p.close()
	state, err := prepareRoot(cfg, log)
	if err != nil {
		return err
	}
	cs, err := newCache(ctx, cfg.Cache, cfg.Root, os.Getenv, log.With("component", "cache"))
	if err != nil {
		return &usageError{fmt.Sprintf("--cache %q: %v", redactRaw(cfg.Cache), err)}
	}
	defer cs.close()
	state = recoverState(ctx, state, cs, p.fleet, cfg)
	audit, err := openAudit(cfg.AuditLog)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer audit.close()
	d := newDeployer(cfg, log, p, cs, state, auditEmitter(audit, p.notes, cfg.AuditLog, log))
	if cfg.Command == "assets" && cfg.Once {
		return runOnce(ctx, d)
	}
	return serve(ctx, d)
}

// clientCommands talk to a running dewy or read its files; they need no
// root, registry or cache.
var clientCommands = map[string]func(context.Context, *config) error{
	"version": func(context.Context, *config) error {
		fmt.Println(versionLine(debug.ReadBuildInfo))
		return nil
	},
	"rollback": controlClient, "pause": controlClient, "resume": controlClient, "pin": controlClient,
	"status":  statusClient,
	"history": historyClient,
}

func controlClient(ctx context.Context, cfg *config) error {
	return controlCommand(ctx, cfg.Admin, cfg.Control, os.Stdout)
}

func statusClient(ctx context.Context, cfg *config) error {
	if cfg.Control.Fleet {
		return fleetStatusCommand(ctx, cfg.Admin, cfg.JSON, os.Stdout)
	}
	healthy, err := statusCommand(ctx, cfg.Admin, cfg.JSON, os.Stdout)
	if err == nil && !healthy {
		return errUnhealthy
	}
	return err
}

func historyClient(_ context.Context, cfg *config) error {
	events, err := readAudit(cfg.AuditLog)
	var skipped *auditSkippedError
	if errors.As(err, &skipped) {
		fmt.Fprintf(os.Stderr, "dewy: %v\n", err)
	} else if err != nil {
		return err
	}
	printHistory(os.Stdout, events, cfg.History)
	return nil
}

// parts are the plug-ins that need no disk, built before the root is touched.
type parts struct {
	reg    registry
	stores *storeSet
	notes  *notifyQueue
	fleet  string // the application's key in a shared cache
}

func buildParts(ctx context.Context, cfg *config, log *slog.Logger) (*parts, error) {
	reg, err := newRegistry(ctx, cfg.Registry, cfg.Select, os.Getenv, log)
	if err != nil {
		return nil, &usageError{cfg.registryMessage(fmt.Sprintf("--registry %q: %v", redactRaw(cfg.RegistryRaw), err))}
	}
	notes, err := newNotifyQueue(cfg.Notifiers, os.Getenv, log.With("component", "notify"))
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	stores := &storeSet{reg: reg, regScheme: cfg.Registry.Scheme, getenv: os.Getenv, log: log, ctx: ctx}
	return &parts{reg: reg, stores: stores, notes: notes, fleet: fleetApp(cfg.Registry)}, nil
}

// close sends whatever notifications are queued before dewy exits, within bounds.
func (p *parts) close() {
	ctx, cancel := context.WithTimeout(context.Background(), notifySendTimeout)
	defer cancel()
	p.notes.close(ctx)
}

// prepareRoot makes the root's directories, clears what an interrupted run
// left, and loads the state file, which current on disk overrules.
func prepareRoot(cfg *config, log *slog.Logger) (*deployState, error) {
	for _, dir := range []string{cfg.Root, filepath.Join(cfg.Root, releasesDir), filepath.Join(cfg.Root, dewyDir, "tmp")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("prepare root: %w", err)
		}
	}
	if err := cleanLeftovers(cfg.Root); err != nil {
		log.Warn("could not clean leftovers", "err", err)
	}
	state, err := loadState(cfg.Root)
	if err != nil {
		if state == nil {
			return nil, err
		}
		log.Warn("ignoring state file", "err", err)
	}
	// current is the truth about what is live; the state file only adds detail.
	if live, err := currentDir(cfg.Root); err == nil && live != state.CurrentDir {
		state.Current, state.CurrentDir = "", ""
		if live != "" {
			state.CurrentDir = live
			state.Current = tagOfDir(live)
		}
	}
	return state, nil
}

// recoverState lets a host whose disk state is gone (a rebuilt VM) learn
// from the shared cache what it ran; current on disk stays the truth.
func recoverState(ctx context.Context, state *deployState, cs *cacheSetup, fleet string, cfg *config) *deployState {
	if state.Current != "" {
		return state
	}
	if s, err := cs.loadState(ctx, fleet, cfg.HostID); err == nil && s.Current != "" && s.CurrentDir != "" {
		if _, err := os.Stat(filepath.Join(cfg.Root, releasesDir, s.CurrentDir)); err == nil {
			return s
		}
	}
	return state
}

// auditEmitter writes each event to the audit log, redacted, and queues
// it for the notifiers. An audit log that fails is said once per streak.
func auditEmitter(audit *auditLog, notes *notifyQueue, path string, log *slog.Logger) func(deployEvent) {
	var failing atomic.Bool
	return func(e deployEvent) {
		if err := audit.record(notes.redact(e)); err != nil {
			if !failing.Swap(true) {
				log.Error("could not write the audit log", "path", path, "err", err)
			}
		} else {
			failing.Store(false)
		}
		notes.notify(e)
	}
}

// newDeployer wires the owner of the live release to its observer.
func newDeployer(cfg *config, log *slog.Logger, p *parts, cs *cacheSetup, state *deployState, emit func(deployEvent)) *deployer {
	cacheKind := "file"
	if cfg.Cache != "" {
		cacheKind, _, _ = strings.Cut(cfg.Cache, ":")
	}
	board := newStatusBoard(cfg.Command, redactRaw(cfg.RegistryRaw), cacheKind, cfg.Server.Ports)
	board.deploySlot(cfg.Select.Slot)
	obs := &observer{board: board, metrics: newMetrics(version), emit: emit, log: log}
	if rep, ok := p.reg.(reporter); ok {
		obs.reg = rep
	}
	obs.restored(state, cfg.Command == "assets")
	d := &deployer{cfg: cfg, log: log, reg: cs.wrapRegistry(p.reg, cfg.Registry.String()), state: state,
		storeFor: p.stores.storeFor, now: timeNow, act: noActivation{}, obs: obs, app: appName(cfg.Registry),
		user: currentUser(), cache: cs, fleet: p.fleet}
	d.slot = d.rolloutSlot
	d.controlState.init()
	d.showControl()
	return d
}

// runOnce is `dewy assets --once`: one deploy if needed, then exit.
func runOnce(ctx context.Context, d *deployer) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGINT || s == syscall.SIGTERM {
					stop()
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	res, err := d.checkOnce(ctx)
	d.endBake()
	if err != nil {
		return err
	}
	d.obs.ready(d.state.Current)
	switch {
	case !res.UpToDate && d.holdWhy != "":
		d.log.Info("not deploying: "+d.holdWhy, "version", d.state.Current)
		return nil
	case !res.UpToDate:
		return errors.New("newest release is not deployed: it failed before and is waiting for its retry time, or its checksum file has not arrived (see the log)")
	}
	d.log.Info("up to date", "version", d.state.Current)
	return nil
}

// server is dewy running until told to stop.
type server struct {
	d     *deployer
	app   *app // nil for dewy assets
	sigs  chan os.Signal
	poke  chan struct{} // asks the deployer's loop to poll now
	stop  context.CancelFunc
	tasks sync.WaitGroup // the deployer's loop and the admin endpoint
}

// serve runs the application (dewy server), the admin endpoint and the
// deployer's loop until a stop signal, or until the application cannot
// be kept running.
func serve(ctx context.Context, d *deployer) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	s := &server{d: d, sigs: make(chan os.Signal, 4), poke: make(chan struct{}, 1), stop: stop}
	signal.Notify(s.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(s.sigs)
	a, err := startApp(d)
	if err != nil {
		return err
	}
	if a != nil {
		// The application's supervisor stops only after the loop has,
		// so a stop never races a deploy; then dewy waits for the child.
		defer a.stopAndWait(d.log)
		s.app = a
		d.startLive(ctx)
	}
	if err := s.startAdmin(ctx); err != nil {
		return err
	}
	startWatchdog(ctx, os.Getenv, d.log)
	s.tasks.Go(func() { d.pollLoop(ctx, d.cfg.Interval, s.poke) })
	d.log.Info("dewy started", "command", d.cfg.Command, "registry", redactRaw(d.cfg.RegistryRaw), "root", d.cfg.Root,
		"interval", d.cfg.Interval, "version", version)
	return s.wait(ctx)
}

func (s *server) pollNow() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// startAdmin serves --admin, if set.
func (s *server) startAdmin(ctx context.Context) error {
	d, cfg := s.d, s.d.cfg
	if cfg.Admin == "" {
		return nil
	}
	act := adminActions{deploy: s.pollNow, control: d.control, history: func() ([]deployEvent, error) { return readAudit(cfg.AuditLog) }}
	if d.cache.remote {
		act.fleet = func(ctx context.Context) (fleetJSON, error) { return d.cache.fleet(ctx, d.fleet) }
	}
	if s.app != nil {
		act.restart = d.restart
	}
	adm, err := newAdminServer(cfg.Admin, cfg.AdminPublic, d.obs.board, d.obs.metrics, act, d.log.With("component", "admin"))
	if err != nil {
		return &usageError{fmt.Sprintf("--admin %q: %v", cfg.Admin, err)}
	}
	s.tasks.Go(func() {
		if err := adm.serve(ctx); err != nil {
			d.log.Error("admin endpoint", "err", err)
		}
	})
	return nil
}

// wait serves signals until a stop signal, or until the application's
// supervisor gives up.
func (s *server) wait(ctx context.Context) error {
	var appDone chan error
	if s.app != nil {
		appDone = s.app.done
	}
	for {
		select {
		case sig := <-s.sigs:
			switch sig {
			case syscall.SIGUSR1:
				s.pollNow()
			case syscall.SIGHUP:
				if s.app != nil {
					go s.d.restart(ctx)
				}
			default:
				s.d.log.Info("stopping", "signal", sig.String())
				s.shutDown()
				e := s.d.event(eventStopped, s.d.state.Current)
				e.Outcome = outcomeOK
				s.d.obs.event(e)
				go s.killOnSecondSignal()
				return nil
			}
		case err := <-appDone:
			s.shutDown()
			appDone <- err // for stopAndWait
			return err
		}
	}
}

// shutDown stops the loop and the admin endpoint and waits for them.
func (s *server) shutDown() {
	sdStopping()
	s.stop()
	s.tasks.Wait()
}

// killOnSecondSignal kills the application at once on a second stop
// signal, for an operator who will not wait for it to drain.
func (s *server) killOnSecondSignal() {
	for sig := range s.sigs {
		if (sig == syscall.SIGINT || sig == syscall.SIGTERM) && s.app != nil {
			s.d.log.Warn("second stop signal: killing the application now")
			s.app.sup.kill()
		}
	}
}

// app is the application dewy server runs, under its supervisor.
type app struct {
	sup  *supervisor
	done chan error // the supervisor's result, put back once read
	stop context.CancelFunc
}

// startApp starts the supervisor for dewy server; nil for dewy assets.
func startApp(d *deployer) (*app, error) {
	if d.cfg.Command != "server" {
		return nil, nil
	}
	sc := d.cfg.Server
	sc.Dir, sc.Proxy = d.cfg.Root, d.cfg.Proxy
	sup, err := newSupervisor(sc, d.log)
	if err != nil {
		return nil, err
	}
	d.act = sup
	sup.onChild = func(pid, generation, restarts int) {
		d.obs.child(pid, generation, restarts)
		d.children.set(pid, generation, restarts)
	}
	sup.onRestart = d.obs.crashRestart
	sup.onDown = func(down bool, version, why string) {
		e := d.event(eventUp, version)
		if down {
			e.Kind = eventDown
		}
		e.Error = why
		d.obs.event(e)
	}
	ctx, stop := context.WithCancel(context.Background())
	a := &app{sup: sup, done: make(chan error, 1), stop: stop}
	go func() { a.done <- sup.run(ctx) }()
	return a, nil
}

func (a *app) stopAndWait(log *slog.Logger) {
	a.stop()
	if err := <-a.done; err != nil {
		log.Error("supervisor", "err", err)
	}
}

// startLive starts the release current points at, before the loop runs.
// If it does not start, current's claim is forgotten, so the first poll
// deploys the newest release afresh instead of calling a release that does
// not start "up to date".
func (d *deployer) startLive(ctx context.Context) {
	if d.state.Current == "" {
		return
	}
	if err := d.act.activate(ctx, d.state.Current); err != nil {
		d.log.Error("could not start the current release; deploying afresh", "version", d.state.Current, "err", err)
		d.state.Current = ""
		return
	}
	d.obs.ready(d.state.Current)
}

// errUnhealthy makes `dewy status` exit 1; the table already says why.
var errUnhealthy = errors.New("unhealthy")

func newLogger(cfg *config, w *os.File) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// tagOfDir recovers the tag from a release directory name (tag or tag+digest).
func tagOfDir(dir string) string {
	if i := len(dir) - 13; i > 0 && dir[i] == '+' {
		return dir[:i]
	}
	return dir
}

// appName names the application in notifications: the repository, bucket
// prefix or directory the registry points at.
func appName(u *url.URL) string {
	p := strings.Trim(u.Path, "/")
	if i := strings.LastIndex(p, "/"); i >= 0 {
		p = p[i+1:]
	}
	if p == "" {
		return u.Host
	}
	return p
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}
