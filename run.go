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

// run is dewy after the command line has been understood.
func run(ctx context.Context, cfg *config) error {
	switch cfg.Command {
	case "version":
		fmt.Println(versionLine(debug.ReadBuildInfo))
		return nil
	case "rollback", "pause", "resume", "pin":
		return controlCommand(ctx, cfg.Admin, cfg.Control, os.Stdout)
	case "status":
		if cfg.Control.Fleet {
			return fleetStatusCommand(ctx, cfg.Admin, cfg.JSON, os.Stdout)
		}
		healthy, err := statusCommand(ctx, cfg.Admin, cfg.JSON, os.Stdout)
		if err != nil {
			return err
		}
		if !healthy {
			return errUnhealthy
		}
		return nil
	case "history":
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
	log := newLogger(cfg, os.Stderr)
	for _, dir := range []string{cfg.Root, filepath.Join(cfg.Root, releasesDir), filepath.Join(cfg.Root, dewyDir, "tmp")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("prepare root: %w", err)
		}
	}
	if err := cleanLeftovers(cfg.Root); err != nil {
		log.Warn("could not clean leftovers", "err", err)
	}
	state, err := loadState(cfg.Root)
	if err != nil {
		if state == nil {
			return err
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

	reg, err := newRegistry(ctx, cfg.Registry, cfg.Select, os.Getenv, log)
	if err != nil {
		return &usageError{cfg.registryMessage(fmt.Sprintf("--registry %q: %v", redactRaw(cfg.RegistryRaw), err))}
	}
	cs, err := newCache(ctx, cfg.Cache, cfg.Root, os.Getenv, log.With("component", "cache"))
	if err != nil {
		return &usageError{fmt.Sprintf("--cache %q: %v", redactRaw(cfg.Cache), err)}
	}
	defer cs.close()
	fleet := fleetApp(cfg.Registry)
	if state.Current == "" {
		// A host whose disk state is gone (a rebuilt VM) learns from the
		// shared cache what it ran, but current on disk stays the truth.
		if s, err := cs.loadState(ctx, fleet, cfg.HostID); err == nil && s.Current != "" && s.CurrentDir != "" {
			if _, err := os.Stat(filepath.Join(cfg.Root, releasesDir, s.CurrentDir)); err == nil {
				state = s
			}
		}
	}
	stores := &storeSet{reg: reg, regScheme: cfg.Registry.Scheme, getenv: os.Getenv, log: log, ctx: ctx}
	reg = cs.wrapRegistry(reg, cfg.Registry.String())
	notes, err := newNotifyQueue(cfg.Notifiers, os.Getenv, log.With("component", "notify"))
	if err != nil {
		return &usageError{err.Error()}
	}
	defer func() {
		// Whatever is queued goes out before dewy exits, within bounds.
		fctx, cancel := context.WithTimeout(context.Background(), notifySendTimeout)
		defer cancel()
		notes.close(fctx)
	}()
	audit, err := openAudit(cfg.AuditLog)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer audit.close()
	var auditFailing atomic.Bool
	emit := func(e deployEvent) {
		if err := audit.record(notes.redact(e)); err != nil {
			if !auditFailing.Swap(true) {
				log.Error("could not write the audit log", "path", cfg.AuditLog, "err", err)
			}
		} else {
			auditFailing.Store(false)
		}
		notes.notify(e)
	}
	cacheKind := "file"
	if cfg.Cache != "" {
		cacheKind, _, _ = strings.Cut(cfg.Cache, ":")
	}
	board := newStatusBoard(cfg.Command, redactRaw(cfg.RegistryRaw), cacheKind, cfg.Server.Ports)
	board.deploySlot(cfg.Select.Slot)
	mets := newMetrics(version)
	if state.Current != "" {
		board.deployed(state.Current, state.SHA256, state.VerifiedBy, state.DeployedAt)
		mets.current(state.Current)
		if cfg.Command == "assets" {
			mets.serving(true)
		}
	}
	for tag, f := range state.Failed {
		board.failed(tag, f.Reason)
	}
	d := &deployer{cfg: cfg, log: log, reg: reg, state: state, storeFor: stores.storeFor, now: timeNow, act: noActivation{},
		emit: emit, app: appName(cfg.Registry), user: currentUser(), cache: cs, fleet: fleet, board: board, metrics: mets}
	d.slot, d.ctlPoke = d.rolloutSlot, make(chan struct{}, 1)
	d.showControl()
	// Tells systemd (Type=notify) once that the service is up.
	var readyOnce sync.Once
	ready := func() {
		readyOnce.Do(func() { sdReady("serving " + orNone(board.snapshot().Current)) })
	}
	d.onUpToDate = ready

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	if cfg.Command == "assets" && cfg.Once {
		go func() {
			if s := <-sigs; s == syscall.SIGINT || s == syscall.SIGTERM {
				stop()
			}
		}()
		res, err := d.checkOnce(ctx)
		if err != nil {
			return err
		}
		ready()
		if !res.UpToDate && d.holdWhy != "" {
			log.Info("not deploying: "+d.holdWhy, "version", state.Current)
			return nil
		}
		if !res.UpToDate {
			return errors.New("newest release is not deployed: it failed before and is waiting for its retry time, or its checksum file has not arrived (see the log)")
		}
		log.Info("up to date", "version", state.Current)
		return nil
	}

	var sup *supervisor
	supDone := make(chan error, 1)
	if cfg.Command == "server" {
		sc := cfg.Server
		sc.Dir = cfg.Root
		sc.Proxy = cfg.Proxy
		sup, err = newSupervisor(sc, log)
		if err != nil {
			return err
		}
		d.act = sup
		sup.onChild = func(pid, generation, restarts int) {
			board.child(pid, generation, restarts)
			if pid != 0 {
				mets.serving(true)
			}
		}
		sup.onRestart = mets.childRestart
		sup.onDown = func(down bool, version, why string) {
			kind := eventUp
			if down {
				kind = eventDown
			}
			e := d.event(kind, version)
			e.Error = why
			board.down(why)
			mets.serving(!down)
			emit(e)
		}
		supCtx, stopSup := context.WithCancel(context.Background())
		defer stopSup()
		go func() { supDone <- sup.run(supCtx) }()
		if state.Current != "" {
			if err := sup.activate(ctx, state.Current); err != nil {
				// Nothing serves. Forget what current claims, so the first
				// poll deploys the newest release afresh instead of calling
				// a release that does not start "up to date".
				log.Error("could not start the current release; deploying afresh", "version", state.Current, "err", err)
				state.Current = ""
			} else {
				ready()
			}
		}
		// The supervisor's context ends only after polling has stopped,
		// so a stop never races a deploy; then dewy waits for the child.
		defer func() {
			stopSup()
			if err := <-supDone; err != nil {
				log.Error("supervisor", "err", err)
			}
		}()
	}

	poke := make(chan struct{}, 1)
	pollNow := func() {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
	serving := func() string { return "serving " + orNone(board.snapshot().Current) }
	restart := func(ctx context.Context) error {
		current := board.snapshot().Current
		e := d.event(eventRestarted, current)
		e.Previous = current
		err := sdReload(ctx, sup.restart, serving)
		if err != nil {
			log.Error("restart failed; previous process keeps serving", "err", err)
			e.Outcome, e.Error = "failed", err.Error()
		} else {
			log.Info("restarted " + orNone(current))
			e.Outcome = "ok"
		}
		emit(e)
		return err
	}
	var wg sync.WaitGroup
	if cfg.Admin != "" {
		act := adminActions{deploy: pollNow, control: d.control, history: func() ([]deployEvent, error) { return readAudit(cfg.AuditLog) }}
		if cs.remote {
			act.fleet = func(ctx context.Context) (fleetJSON, error) { return cs.fleet(ctx, fleet) }
		}
		if sup != nil {
			act.restart = restart
		}
		adm, err := newAdminServer(cfg.Admin, cfg.AdminPublic, board, mets, act, log.With("component", "admin"))
		if err != nil {
			return &usageError{fmt.Sprintf("--admin %q: %v", cfg.Admin, err)}
		}
		wg.Go(func() {
			if err := adm.serve(ctx); err != nil {
				log.Error("admin endpoint", "err", err)
			}
		})
	}
	startWatchdog(ctx, os.Getenv, log)
	wg.Go(func() { d.pollLoop(ctx, cfg.Interval, poke) })
	log.Info("dewy started", "command", cfg.Command, "registry", redactRaw(cfg.RegistryRaw), "root", cfg.Root, "interval", cfg.Interval, "version", version)
	for {
		select {
		case s := <-sigs:
			switch s {
			case syscall.SIGUSR1:
				pollNow()
			case syscall.SIGHUP:
				if sup != nil {
					go restart(ctx)
				}
			default:
				log.Info("stopping", "signal", s.String())
				sdStopping()
				stop()
				wg.Wait()
				e := d.event(eventStopped, d.stateCurrent())
				e.Outcome = "ok"
				emit(e)
				go func() {
					for s := range sigs {
						if (s == syscall.SIGINT || s == syscall.SIGTERM) && sup != nil {
							log.Warn("second stop signal: killing the application now")
							sup.kill()
						}
					}
				}()
				return nil
			}
		case err := <-supDone:
			sdStopping()
			stop()
			wg.Wait()
			supDone <- err
			return err
		}
	}
}

// stateCurrent is the release the state file calls current.
func (d *deployer) stateCurrent() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state.Current
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
