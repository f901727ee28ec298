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

// deployer owns what is live: the live release, the failed set, the
// operator's holds. Its loop (pollLoop) is the only goroutine that touches
// them once it runs; checks, operator controls and restarts are requests
// to it, and everything that reports hears of its decisions through obs.
type deployer struct {
	cfg      *config
	log      *slog.Logger
	reg      registry
	act      activator
	state    *deployState
	storeFor func(*url.URL) (artifactStore, error)
	now      func() time.Time
	obs      *observer
	// slot holds a fleet-wide deploy slot for the swap; nil = no fleet
	// limit. release says whether the release went live.
	slot  func(ctx context.Context) (release func(live bool), err error)
	app   string // name used in notifications
	user  string // who dewy runs as, for the audit log
	cache *cacheSetup
	fleet string // the application's key in a shared cache

	controlState
	// children is what the supervisor last said of the live generation.
	children childWatch
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
		d.obs.ready(d.state.Current)
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
		return checkResult{}, err
	}
	d.obs.ready(d.state.Current)
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

// attempt is one deploy on its way through the stages: each stage adds
// what the next one, and the record, need.
type attempt struct {
	rel     release
	v       string // canonical version, for the activator
	a       asset
	from    string // the release live before
	start   time.Time
	log     *slog.Logger
	ev      deployEvent // what the record will say
	store   artifactStore
	u       *url.URL
	ver     verification
	path    string // the verified artifact
	size    int64  // bytes downloaded; 0 when the cache had them
	dir     string // the release directory's name
	prevDir string // what current pointed at before
	hooks   []hookResult
}

// deploy fetches, verifies, unpacks and swaps in one release: a list of
// stages, each with its own error phrase, and a record of how it went.
func (d *deployer) deploy(ctx context.Context, rel release, v string, a asset) error {
	t := d.begin(rel, v, a)
	err := d.digest(ctx, t)
	if err == nil {
		var cleanup func()
		cleanup, err = d.obtain(ctx, t)
		if err == nil {
			defer cleanup()
			err = d.unpackStage(t)
		}
	}
	if err == nil {
		err = d.goLive(ctx, t)
	}
	d.record(ctx, t, err)
	return err
}

// begin announces the attempt.
func (d *deployer) begin(rel release, v string, a asset) *attempt {
	t := &attempt{rel: rel, v: v, a: a, from: d.state.Current, start: d.now(), log: d.log.With("version", rel.Tag)}
	t.log.Info("deploying "+rel.Tag, "from", orNone(t.from), "asset", a.Name)
	t.ev = d.event(eventStarted, rel.Tag)
	t.ev.Previous, t.ev.ArtifactURL, t.ev.releaseID = t.from, redactRaw(a.URL), rel.ID
	d.obs.event(t.ev)
	return t
}

// digest finds the store that holds the artifact and what vouches for its
// bytes: a signature, a published digest or the store's own integrity check.
func (d *deployer) digest(ctx context.Context, t *attempt) error {
	tag := t.rel.Tag
	u, err := url.Parse(t.a.URL)
	if err != nil {
		return fmt.Errorf("deploy %s: asset URL %q: %w", tag, t.a.URL, err)
	}
	store, err := d.storeFor(u)
	if err != nil {
		return fmt.Errorf("deploy %s: %w", tag, err)
	}
	ver, err := d.verification(ctx, t.rel, t.a, store, u)
	switch {
	case errors.Is(err, errNoChecksum) && d.cfg.AllowUnverified:
		t.log.Warn("deploying unverified: the release publishes no digest and allow_unverified is set", "asset", t.a.Name)
		ver.by = verifiedNone
	case errors.Is(err, errNoChecksum):
		return noDigestError(tag, t.a.Name)
	case err != nil:
		return fmt.Errorf("deploy %s: %w", tag, err)
	}
	t.store, t.u, t.ver, t.ev.VerifiedBy = store, u, ver, ver.by
	return nil
}

// obtain brings the artifact's bytes to disk, from the cache or the store,
// and checks them against what vouched for them. cleanup removes a
// download once the release is unpacked.
func (d *deployer) obtain(ctx context.Context, t *attempt) (cleanup func(), err error) {
	tag, name, want := t.rel.Tag, t.a.Name, t.ver.want
	var sum string
	cleanup = func() {}
	if p, ok := d.cacheArtifact(ctx, tag, name, want); ok {
		// Same bytes as before (a rollback, a restart, a second dewy):
		// the cache re-hashed them against the release's digest.
		t.path, sum = p, want
		t.log.Info("artifact found in cache", "asset", name)
	} else {
		tmp := filepath.Join(d.cfg.Root, dewyDir, "tmp")
		t.path, sum, t.size, err = download(ctx, t.store, t.u, tmp, t.log)
		if err != nil {
			return nil, fmt.Errorf("deploy %s: %w", tag, err)
		}
		path := t.path
		cleanup = func() { os.Remove(path) }
		d.obs.downloaded(t.size)
	}
	t.ev.SHA256 = sum
	if err := d.checkBytes(t, sum); err != nil {
		cleanup()
		return nil, fmt.Errorf("deploy %s: %w", tag, err)
	}
	if t.size > 0 && d.cache != nil {
		if err := d.cache.keepArtifact(ctx, tag, name, sum, t.path); err != nil {
			t.log.Warn("could not keep the artifact in the cache", "err", err)
		}
	}
	return cleanup, nil
}

// checkBytes holds the artifact on disk to its signature, digest and
// integrity check.
func (d *deployer) checkBytes(t *attempt, sum string) error {
	ver, name := t.ver, t.a.Name
	if ver.sig != nil {
		if err := d.cfg.Verifier.verifyArtifact(t.path, name, ver.sig); err != nil {
			return err
		}
		t.log.Info("artifact signature verified", "asset", name)
	}
	if ver.want != "" && ver.want != sum {
		return fmt.Errorf("%w: %w", errVerify, &checksumMismatchError{Asset: name, Want: ver.want, Got: sum, From: ver.wantFrom})
	}
	if ver.integrity.Algo != "" {
		return ver.integrity.check(t.path, name)
	}
	return nil
}

// unpackStage lays the release out under releases/.
func (d *deployer) unpackStage(t *attempt) error {
	dir, err := d.unpack(t.rel.Tag, t.a.Name, t.path, t.ev.SHA256)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		// The host's fault, not the release's: retried on the next poll.
		return fmt.Errorf("deploy %s: %w", t.rel.Tag, err)
	}
	if err != nil {
		return fmt.Errorf("deploy %s: %w: %w", t.rel.Tag, errVerify, err)
	}
	t.dir = dir
	return nil
}

// goLive swaps the release in and starts it, between the hooks and under
// the fleet's deploy slot, which covers everything that touches the live
// service. A release that does not start is swapped out again.
func (d *deployer) goLive(ctx context.Context, t *attempt) (err error) {
	tag := t.rel.Tag
	if d.slot != nil {
		free, err := d.slot(ctx)
		if err != nil {
			return fmt.Errorf("deploy %s: wait for a deploy slot: %w", tag, err)
		}
		defer func() { free(err == nil) }()
	}
	if d.cfg.BeforeHook != "" {
		h := d.hook(ctx, t, "before_deploy", d.cfg.BeforeHook, "")
		if h.ExitCode != 0 || h.Error != "" {
			return fmt.Errorf("deploy %s: before-deploy hook failed (%s); release not swapped in", tag, hookWhy(h))
		}
	}
	if t.prevDir, err = currentDir(d.cfg.Root); err != nil {
		return err
	}
	if err := pointCurrent(d.cfg.Root, t.dir); err != nil {
		return fmt.Errorf("deploy %s: %w", tag, err)
	}
	if err := d.act.activate(ctx, t.v); err != nil {
		return d.rollBack(ctx, t, err)
	}
	if d.cfg.AfterHook != "" {
		if h := d.hook(ctx, t, "after_deploy", d.cfg.AfterHook, ""); h.ExitCode != 0 || h.Error != "" {
			// The release is live and healthy; a failing after-hook is
			// reported, not undone.
			t.log.Warn("after-deploy hook failed", "why", hookWhy(h))
		}
	}
	return nil
}

// rollBack points current back after the release failed to start and
// says whether that was a verdict on the release or dewy stopping.
func (d *deployer) rollBack(ctx context.Context, t *attempt, err error) error {
	tag := t.rel.Tag
	if rerr := pointCurrent(d.cfg.Root, t.prevDir); rerr != nil {
		t.log.Error("could not point current back", "to", t.prevDir, "err", rerr)
	}
	if isInterrupted(err) || ctx.Err() != nil {
		// Stopping dewy is no verdict on the release: it is tried
		// again at the next start.
		t.log.Info("deploy interrupted; "+tag+" will be tried again", "reason", err)
		return fmt.Errorf("deploy %s: interrupted: %w", tag, err)
	}
	if t.from == "" {
		t.log.Warn(tag+" did not start and nothing else can serve; trying it again after a backoff", "reason", err)
	} else {
		t.log.Warn("rolled back to "+t.from, "reason", err)
	}
	// While this host still holds the fleet's deploy slot, so that no
	// other host takes the slot and the release before it is marked bad.
	d.quarantineFailed(ctx, tag)
	return fmt.Errorf("deploy %s: %w: %w", tag, errHealth, err)
}

// hook runs one hook for t and keeps its result for the record.
func (d *deployer) hook(ctx context.Context, t *attempt, name, command, reason string) hookResult {
	env := hookEnv{Command: d.cfg.Command, Version: t.rel.Tag, Previous: t.from, ReleaseDir: d.releasePath(t.dir),
		SHA256: t.ev.SHA256, Host: d.cfg.HostID, Reason: reason}.environ()
	h := runHook(ctx, name, command, d.cfg.Root, env, d.cfg.HookTimeout, t.log)
	t.hooks = append(t.hooks, h)
	return h
}

// releasePath is a release directory's full path; "" before it exists.
func (d *deployer) releasePath(dir string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(d.cfg.Root, releasesDir, dir)
}

// record keeps how the attempt went (the state file after a success, the
// failed set and the failure hook after a failure) and reports it.
func (d *deployer) record(ctx context.Context, t *attempt, err error) {
	e := t.ev
	switch {
	case err == nil:
		d.keepLive(ctx, t)
		e.Kind, e.Outcome = eventDeployed, outcomeOK
	case errors.Is(err, errHeldBack):
		t.log.Info("deploy held back", "why", err)
		e.Kind, e.Outcome, e.Error = eventHeldBack, "held_back", err.Error()
	default:
		d.recordFailure(t.rel, t.a, err)
		e.Kind, e.Outcome, e.Error = eventFailed, outcomeFailed, err.Error()
		if errors.Is(err, errHealth) {
			e.Kind, e.Outcome = eventRolledBack, outcomeRolledBack
		}
		if d.cfg.FailureHook != "" && ctx.Err() == nil {
			d.hook(ctx, t, "on_failure", d.cfg.FailureHook, err.Error())
		}
	}
	e.Hooks = t.hooks
	e.Duration, e.Time = d.now().Sub(t.start), d.now()
	d.obs.event(e)
}

// keepLive makes the state file say what is live now and prunes what is
// no longer needed.
func (d *deployer) keepLive(ctx context.Context, t *attempt) {
	d.state.Previous, d.state.PreviousDir = d.state.Current, t.prevDir
	d.state.Current, d.state.CurrentDir = t.rel.Tag, t.dir
	d.state.Asset, d.state.SHA256, d.state.VerifiedBy, d.state.DeployedAt = t.a.Name, t.ev.SHA256, t.ver.by, d.now()
	delete(d.state.Failed, t.rel.Tag)
	d.saveState(ctx)
	if removed, err := pruneReleases(d.cfg.Root, d.cfg.Keep, d.cfg.Select, t.dir, t.prevDir); err != nil {
		t.log.Warn("could not prune old releases", "err", err)
	} else if len(removed) > 0 {
		t.log.Info("pruned old releases", "removed", strings.Join(removed, ","))
	}
	d.pruneArtifacts(ctx)
	t.log.Info(fmt.Sprintf("deployed %s (sha256 %s…) in %s", t.rel.Tag, t.ev.SHA256[:12], d.now().Sub(t.start).Round(time.Millisecond)),
		"from", orNone(t.from), "bytes", t.size, "verified_by", t.ver.by)
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
	d.obs.failed(tag, f.Reason)
	d.saveState(context.Background())
}

// retryDue returns the earliest time a release that failed may be tried
// again, or the zero time when none is waiting: the poll loop comes back
// then rather than a whole interval later.
func (d *deployer) retryDue() time.Time {
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

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
