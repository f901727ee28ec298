package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// activator brings a release to life once current points at it.
type activator interface {
	// activate starts what current now points at and returns once it
	// serves. On error the caller points current back; whatever served
	// before must still be serving.
	activate(ctx context.Context, version string) error
}

// noActivation is `dewy assets`: swapping current is the whole deploy.
type noActivation struct{}

func (noActivation) activate(context.Context, string) error { return nil }

// deployer turns the registry's newest release into the live one. Only the
// poll goroutine calls it.
type deployer struct {
	cfg      *config
	log      *slog.Logger
	reg      registry
	act      activator
	state    *deployState
	storeFor func(*url.URL) (artifactStore, error)
	now      func() time.Time
	// emit records and announces an event (audit log, notifiers, status);
	// it must not block.
	emit func(deployEvent)
	// slot holds a fleet-wide deploy slot for the swap; nil = no fleet limit.
	slot  func(ctx context.Context) (release func(), err error)
	app   string // name used in notifications
	user  string // who dewy runs as, for the audit log
	cache *cacheSetup
	fleet string // the application's key in a shared cache

	board      *statusBoard
	metrics    *metrics
	onUpToDate func() // called after each check that finds the newest release live

	controlState
	// settleStreak counts looks in a row that found the newest release
	// still arriving, so that a slow copy is logged at info now and then.
	settleStreak int
}

// event fills in what every event of this deployer shares.
func (d *deployer) event(kind, version string) deployEvent {
	// Safe from any goroutine: it reads nothing the poll loop changes.
	return deployEvent{Kind: kind, Time: d.now(), Command: d.cfg.Command, App: d.app, Host: d.cfg.HostID, User: d.user,
		Slot: d.cfg.Select.Slot, Version: version}
}

func (d *deployer) send(e deployEvent) {
	if d.emit != nil {
		d.emit(e)
	}
}

// failure classes decide when a release is tried again.
var (
	errVerify = errors.New("verification failed")     // bad digest, bad archive: back off per release
	errHealth = errors.New("release failed to start") // not tried again until a newer release
)

// Per-release backoff after a verification failure: the bytes will not
// change by themselves, but a maintainer may fix the release in place.
const (
	verifyBackoffMin = time.Minute
	verifyBackoffMax = 6 * time.Hour
)

// checkResult is what one look at the registry found.
type checkResult struct {
	UpToDate bool // the newest release is the live one
	// Settling names the newest release while it is still arriving;
	// LookAgain is when the registry expects it to have settled.
	Settling  string
	LookAgain time.Time
}

// check asks the registry once and deploys its newest release if needed.
func (d *deployer) check(ctx context.Context) (checkResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.reportHost(ctx)
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	rels, err := d.reg.releases(rctx)
	cancel()
	if err != nil {
		return checkResult{}, fmt.Errorf("list releases from %s: %w", d.cfg.RegistryRaw, err)
	}
	rel, v, ok := newest(rels, d.cfg.Select, d.log)
	if !ok {
		reg := redactRaw(d.cfg.RegistryRaw)
		if len(rels) == 0 {
			return checkResult{UpToDate: d.state.Current != ""}, fmt.Errorf("registry %s holds no releases", reg)
		}
		return checkResult{UpToDate: d.state.Current != ""}, fmt.Errorf("registry %s holds no release that matches (of %d tags: %s)", reg, len(rels), tagList(rels))
	}
	if rel.Tag == d.state.Current {
		d.settleStreak = 0
		if d.onUpToDate != nil {
			d.onUpToDate()
		}
		return checkResult{UpToDate: true}, nil
	}
	if d.holdBack(ctx, rel.Tag) {
		return checkResult{}, nil
	}
	if !rel.SettlingUntil.IsZero() {
		// Deploying an older release meanwhile would only be replaced
		// a moment later; the live one keeps serving.
		d.settleStreak++
		lvl := slog.LevelDebug
		if d.settleStreak == 1 || d.settleStreak%10 == 0 {
			lvl = slog.LevelInfo
		}
		d.log.Log(ctx, lvl, fmt.Sprintf("release %s is still arriving; looking again at %s", rel.Tag, rel.SettlingUntil.Format("15:04:05.000")),
			"version", rel.Tag, "in", max(rel.SettlingUntil.Sub(d.now()), 0).Round(time.Millisecond))
		return checkResult{Settling: rel.Tag, LookAgain: rel.SettlingUntil}, nil
	}
	d.settleStreak = 0
	a, err := pickAsset(rel, d.cfg.Select)
	if err != nil {
		return checkResult{}, err
	}
	if f, ok := d.state.Failed[rel.Tag]; ok && f.Asset == a.Name && f.Fingerprint == releaseFingerprint(rel) {
		if f.Permanent && !d.cfg.RetryFailed {
			d.log.Debug("skipping release that failed before", "version", rel.Tag, "reason", f.Reason)
			return checkResult{}, nil
		}
		if !f.Permanent && d.now().Before(f.NotBefore) {
			d.log.Debug("skipping release until its retry time", "version", rel.Tag, "retry_at", f.NotBefore)
			return checkResult{}, nil
		}
	}
	if err := d.deploy(ctx, rel, v, a); err != nil {
		d.deployFailed(ctx, rel.Tag, err)
		return checkResult{}, err
	}
	if d.onUpToDate != nil {
		d.onUpToDate()
	}
	return checkResult{UpToDate: true}, nil
}

// tagList names a registry's tags for a message, bounded like assetNames.
func tagList(rels []release) string {
	as := make([]asset, len(rels))
	for i, r := range rels {
		as[i].Name = r.Tag
	}
	return assetNames(as)
}

// deploy fetches, verifies, unpacks and swaps in one release.
func (d *deployer) deploy(ctx context.Context, rel release, v string, a asset) (err error) {
	start := d.now()
	from := d.state.Current
	log := d.log.With("version", rel.Tag)
	log.Info("deploying "+rel.Tag, "from", orNone(from), "asset", a.Name)
	ev := d.event(eventStarted, rel.Tag)
	ev.Previous, ev.ArtifactURL = from, redactRaw(a.URL)
	d.send(ev)
	var hooks []hookResult
	releaseDir := ""
	sdStatus("deploying " + rel.Tag)
	defer func() {
		ev.Duration, ev.Time = d.now().Sub(start), d.now()
		if err == nil {
			d.metrics.observeDeploy(outcomeOK, ev.Duration)
			d.board.deployed(rel.Tag, ev.SHA256, ev.VerifiedBy, d.state.DeployedAt)
			d.metrics.current(rel.Tag)
			d.metrics.serving(true)
			sdStatus("serving " + rel.Tag)
			ev.Kind, ev.Outcome, ev.Hooks = eventDeployed, "ok", hooks
			d.send(ev)
			d.reportToRegistry(rel, ev)
			return
		}
		if errors.Is(err, errHeldBack) {
			log.Info("deploy held back", "why", err)
			ev.Kind, ev.Outcome, ev.Error = eventHeldBack, "held_back", err.Error()
			d.send(ev)
			return
		}
		d.recordFailure(rel, a, err)
		ev.Kind, ev.Outcome = eventFailed, outcomeFailed
		if errors.Is(err, errHealth) {
			ev.Kind, ev.Outcome = eventRolledBack, outcomeRolledBack
		}
		d.metrics.observeDeploy(ev.Outcome, ev.Duration)
		if d.state.Current != "" {
			sdStatus("serving " + d.state.Current + "; " + rel.Tag + " failed")
		}
		ev.Error = err.Error()
		if d.cfg.FailureHook != "" && ctx.Err() == nil {
			env := hookEnv{Command: d.cfg.Command, Version: rel.Tag, Previous: from, ReleaseDir: releaseDir, SHA256: ev.SHA256, Host: d.cfg.HostID, Reason: err.Error()}.environ()
			hooks = append(hooks, runHook(ctx, "on_failure", d.cfg.FailureHook, d.cfg.Root, env, d.cfg.HookTimeout, log))
		}
		ev.Hooks = hooks
		d.send(ev)
		d.reportToRegistry(rel, ev)
	}()

	u, err := url.Parse(a.URL)
	if err != nil {
		return fmt.Errorf("deploy %s: asset URL %q: %w", rel.Tag, a.URL, err)
	}
	store, err := d.storeFor(u)
	if err != nil {
		return fmt.Errorf("deploy %s: %w", rel.Tag, err)
	}
	ver, err := d.verification(ctx, rel, a, store, u)
	switch {
	case errors.Is(err, errNoChecksum) && d.cfg.AllowUnverified:
		log.Warn("deploying unverified: the release publishes no digest and allow_unverified is set", "asset", a.Name)
		ver.by = verifiedNone
	case errors.Is(err, errNoChecksum):
		return noDigestError(rel.Tag, a.Name)
	case err != nil:
		return fmt.Errorf("deploy %s: %w", rel.Tag, err)
	}
	ev.VerifiedBy = ver.by

	var path, sum string
	var size int64
	if p, ok := d.cacheArtifact(ctx, rel.Tag, a.Name, ver.want); ok {
		// Same bytes as before (a rollback, a restart, a second dewy):
		// the cache re-hashed them against the release's digest.
		path, sum = p, ver.want
		log.Info("artifact found in cache", "asset", a.Name)
	} else {
		tmp := filepath.Join(d.cfg.Root, dewyDir, "tmp")
		path, sum, size, err = download(ctx, store, u, tmp, log)
		if err != nil {
			return fmt.Errorf("deploy %s: %w", rel.Tag, err)
		}
		defer os.Remove(path)
		d.metrics.downloaded(size)
	}
	ev.SHA256 = sum
	if ver.sig != nil {
		if err := d.cfg.Verifier.verifyArtifact(path, a.Name, ver.sig); err != nil {
			return fmt.Errorf("deploy %s: %w", rel.Tag, err)
		}
		log.Info("artifact signature verified", "asset", a.Name)
	}
	if ver.want != "" && ver.want != sum {
		return fmt.Errorf("deploy %s: %w: %w", rel.Tag, errVerify, &checksumMismatchError{Asset: a.Name, Want: ver.want, Got: sum, From: ver.wantFrom})
	}
	if ver.integrity.Algo != "" {
		if err := ver.integrity.check(path, a.Name); err != nil {
			return fmt.Errorf("deploy %s: %w", rel.Tag, err)
		}
	}
	if size > 0 && d.cache != nil {
		if err := d.cache.keepArtifact(ctx, rel.Tag, a.Name, sum, path); err != nil {
			log.Warn("could not keep the artifact in the cache", "err", err)
		}
	}

	dir, err := d.unpack(rel.Tag, a.Name, path, sum)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		// The host's fault, not the release's: retried on the next poll.
		return fmt.Errorf("deploy %s: %w", rel.Tag, err)
	}
	if err != nil {
		return fmt.Errorf("deploy %s: %w: %w", rel.Tag, errVerify, err)
	}
	releaseDir = filepath.Join(d.cfg.Root, releasesDir, dir)

	// The fleet slot covers everything that touches the live service:
	// hooks, swap, restart, health gate.
	if d.slot != nil {
		free, err := d.slot(ctx)
		if err != nil {
			return fmt.Errorf("deploy %s: wait for a deploy slot: %w", rel.Tag, err)
		}
		defer free()
	}
	env := hookEnv{Command: d.cfg.Command, Version: rel.Tag, Previous: from, ReleaseDir: releaseDir, SHA256: sum, Host: d.cfg.HostID}.environ()
	if d.cfg.BeforeHook != "" {
		h := runHook(ctx, "before_deploy", d.cfg.BeforeHook, d.cfg.Root, env, d.cfg.HookTimeout, log)
		hooks = append(hooks, h)
		if h.ExitCode != 0 || h.Error != "" {
			return fmt.Errorf("deploy %s: before-deploy hook failed (%s); release not swapped in", rel.Tag, hookWhy(h))
		}
	}
	prevDir, err := currentDir(d.cfg.Root)
	if err != nil {
		return err
	}
	if err := pointCurrent(d.cfg.Root, dir); err != nil {
		return fmt.Errorf("deploy %s: %w", rel.Tag, err)
	}
	if err := d.act.activate(ctx, v); err != nil {
		if rerr := pointCurrent(d.cfg.Root, prevDir); rerr != nil {
			log.Error("could not point current back", "to", prevDir, "err", rerr)
		}
		if isInterrupted(err) || ctx.Err() != nil {
			// Stopping dewy is no verdict on the release: it is tried
			// again at the next start.
			log.Info("deploy interrupted; "+rel.Tag+" will be tried again", "reason", err)
			return fmt.Errorf("deploy %s: interrupted: %w", rel.Tag, err)
		}
		if from == "" {
			log.Warn(rel.Tag+" did not start and nothing else can serve; trying it again after a backoff", "reason", err)
		} else {
			log.Warn("rolled back to "+from, "reason", err)
		}
		return fmt.Errorf("deploy %s: %w: %w", rel.Tag, errHealth, err)
	}
	if d.cfg.AfterHook != "" {
		h := runHook(ctx, "after_deploy", d.cfg.AfterHook, d.cfg.Root, env, d.cfg.HookTimeout, log)
		hooks = append(hooks, h)
		if h.ExitCode != 0 || h.Error != "" {
			// The release is live and healthy; a failing after-hook is
			// reported, not undone.
			log.Warn("after-deploy hook failed", "why", hookWhy(h))
		}
	}

	d.state.Previous, d.state.PreviousDir = d.state.Current, prevDir
	d.state.Current, d.state.CurrentDir = rel.Tag, dir
	d.state.Asset, d.state.SHA256, d.state.VerifiedBy, d.state.DeployedAt = a.Name, sum, ver.by, d.now()
	delete(d.state.Failed, rel.Tag)
	d.saveState(ctx)
	if removed, err := pruneReleases(d.cfg.Root, d.cfg.Keep, d.cfg.Select, dir, prevDir); err != nil {
		log.Warn("could not prune old releases", "err", err)
	} else if len(removed) > 0 {
		log.Info("pruned old releases", "removed", strings.Join(removed, ","))
	}
	d.pruneArtifacts(ctx)
	log.Info(fmt.Sprintf("deployed %s (sha256 %s…) in %s", rel.Tag, sum[:12], d.now().Sub(start).Round(time.Millisecond)),
		"from", orNone(from), "bytes", size, "verified_by", ver.by)
	return nil
}

// unpack lays the artifact out in a new release directory and returns its name.
func (d *deployer) unpack(tag, name, path, sum string) (string, error) {
	rels := filepath.Join(d.cfg.Root, releasesDir)
	tmp, err := os.MkdirTemp(rels, tag+tmpMarker)
	if err != nil {
		return "", fmt.Errorf("unpack %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	// MkdirTemp makes 0700; a release is read by the application's user
	// and, for assets, by the web server.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("unpack %s: %w", name, err)
	}
	if kind := archiveKind(name); kind != "" {
		if err := extractArchive(path, kind, tmp, d.cfg.Limits); err != nil {
			return "", err
		}
	} else {
		// A bare executable: hard link it in under a stable name (the
		// download is on the same file system and is removed afterwards).
		if !isPlainFileName(name) {
			return "", fmt.Errorf("unpack %q: not a plain file name", truncate(name, 80))
		}
		dst := filepath.Join(tmp, bareName(name))
		if err := os.Link(path, dst); err != nil {
			return "", fmt.Errorf("unpack %s: %w", name, err)
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			return "", fmt.Errorf("unpack %s: %w", name, err)
		}
	}
	dir, err := installRelease(d.cfg.Root, tmp, tag, sum)
	if err != nil {
		return "", err
	}
	ok = true
	return dir, nil
}

func (d *deployer) recordFailure(rel release, a asset, err error) {
	tag := rel.Tag
	if !errors.Is(err, errVerify) && !errors.Is(err, errHealth) {
		return // transient: the poll loop's backoff governs
	}
	if d.state.Failed == nil {
		d.state.Failed = map[string]failedRelease{}
	}
	f := d.state.Failed[tag]
	fp := releaseFingerprint(rel)
	if f.Asset != a.Name || f.Fingerprint != fp {
		f = failedRelease{Asset: a.Name, Size: a.Size, Fingerprint: fp}
	}
	f.Attempts++
	f.Reason = err.Error()
	// A release that failed to start, or whose signature is wrong, will
	// not get better by itself: wait for it to change.
	f.Permanent = errors.Is(err, errHealth) || errors.Is(err, errUnsigned) || errors.Is(err, errSignature)
	wait := min(verifyBackoffMin<<min(f.Attempts-1, 16), verifyBackoffMax)
	if errors.Is(err, errHealth) && d.state.Current == "" {
		// Nothing else can serve, so giving up helps nobody: the release
		// is tried again with the crash-restart backoff (a database it
		// needs may just be late).
		f.Permanent = false
		wait = min(time.Second<<min(f.Attempts-1, 16), time.Minute)
	}
	f.NotBefore = d.now().Add(wait)
	d.state.Failed[tag] = f
	d.board.failed(tag, f.Reason)
	d.saveState(context.Background())
}

// retryDue returns the earliest time a release that failed may be tried
// again, or the zero time when none is waiting: the poll loop comes back
// then rather than a whole interval later.
func (d *deployer) retryDue() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var due time.Time
	now := d.now()
	for _, f := range d.state.Failed {
		if f.Permanent || !f.NotBefore.After(now) {
			continue
		}
		if due.IsZero() || f.NotBefore.Before(due) {
			due = f.NotBefore
		}
	}
	return due
}

// saveState writes the state file and, with a shared cache, this host's copy there.
func (d *deployer) saveState(ctx context.Context) {
	if err := d.state.save(d.cfg.Root); err != nil {
		d.log.Error("could not save state", "err", err)
	}
	if d.cache != nil {
		if err := d.cache.saveState(ctx, d.fleet, d.cfg.HostID, d.state); err != nil {
			d.log.Warn("could not save state to the cache", "err", err)
		}
	}
}

func (d *deployer) cacheArtifact(ctx context.Context, tag, name, want string) (string, bool) {
	if d.cache == nil || want == "" {
		return "", false
	}
	return d.cache.artifact(ctx, tag, name, want)
}

// pruneArtifacts drops cached artifacts of releases no longer on disk, so a
// rollback still finds its bytes.
func (d *deployer) pruneArtifacts(ctx context.Context) {
	if d.cache == nil {
		return
	}
	ents, err := os.ReadDir(filepath.Join(d.cfg.Root, releasesDir))
	if err != nil {
		return
	}
	var tags []string
	for _, e := range ents {
		if e.IsDir() && !strings.Contains(e.Name(), tmpMarker) {
			tags = append(tags, tagOfDir(e.Name()))
		}
	}
	if _, err := d.cache.pruneArtifacts(ctx, tags); err != nil {
		d.log.Warn("could not prune cached artifacts", "err", err)
	}
}

func hookWhy(h hookResult) string {
	if h.Error != "" {
		return h.Error
	}
	return fmt.Sprintf("exit status %d", h.ExitCode)
}

// reportToRegistry tells a registry that tracks its hosts how the attempt
// went. Its failure is logged, never fatal.
func (d *deployer) reportToRegistry(rel release, ev deployEvent) {
	rep, ok := d.reg.(reporter)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := deployReport{ID: rel.ID, Tag: rel.Tag, Command: d.cfg.Command, Host: d.cfg.HostID, Err: ev.Error, Event: ev}
	if err := rep.report(ctx, r); err != nil {
		d.log.Warn("could not report the deploy to the registry", "version", rel.Tag, "err", err)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
