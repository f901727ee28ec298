package main

// The cache: what dewy keeps between polls and between restarts, and what
// hosts of one fleet share.
//
// What goes where:
//   - Deployed state per host (the deployState JSON) lives in the backend
//     under <app>/hosts/<host>/state. With a remote backend (redis, consul)
//     it is also written to the local file cache, which answers when the
//     server does not.
//   - Artifacts are files, whatever the backend: always in the local file
//     cache directory (the file:// directory, else <root>/.dewy/cache),
//     under artifacts/<tag>/<sha256>.<asset>. The backend holds only a small
//     metadata record per artifact, plus the bytes themselves when they are
//     no larger than artifact-max (default 0: never), so that other hosts
//     can take them from the cache instead of the registry. Consul refuses
//     values over 512 KiB, so there artifact-max may not exceed that.
//   - The registry answer shared by a fleet, the window lock that elects the
//     host asking the registry, and rolling-deploy slot leases (fleet.go)
//     live in the backend only.
//
// memory:// keeps state, answers and leases in this process: nothing of it
// survives a restart and no other dewy sees it. Artifacts still go to the
// local file cache, because they are files.
//
// file:// and memory:// coordinate one host only: leases in file:// are
// lock files on the local disk, shared by every dewy on that host.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cache is a small key/value store with leases. Keys are slash-separated
// and may hold any other character; each backend adds its own prefix.
type cache interface {
	// get returns the value at key, or an error wrapping errNotFound.
	get(ctx context.Context, key string) ([]byte, error)
	// put stores val at key with no expiry. A value the backend cannot hold
	// returns an error wrapping errTooLarge and leaves key as it was.
	put(ctx context.Context, key string, val []byte) error
	// delete removes key; a missing key is not an error.
	delete(ctx context.Context, key string) error
	// setNX stores val at key only if key is absent (or expired), expiring
	// after ttl (0: never); it reports whether it stored. Used for the
	// registry window lock and slot leases. A backend may round ttl up to
	// its own floor (consul: 10 s, and expiry may take up to twice ttl).
	setNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	// refresh extends the expiry of key to ttl from now if key still holds
	// val; false when the lease is lost.
	refresh(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error)
	// release deletes key if it still holds val.
	release(ctx context.Context, key string, val []byte) error
	// list returns every live key that starts with prefix, in any order.
	// Used for what the fleet shares per host and per release (host
	// status, quarantined releases), never for artifacts.
	list(ctx context.Context, prefix string) ([]string, error)
}

var errTooLarge = errors.New("value too large for the cache")

// Defaults for the options on the cache URL.
const (
	defaultCacheTimeout = 2 * time.Second
	defaultLeaseTTL     = 30 * time.Second
	// consulMaxValue is Consul's KV value limit (kv_max_value_size, 512 KiB).
	consulMaxValue = 512 << 10
	// consulMinTTL is the shortest session TTL Consul accepts; it also
	// waits up to twice the TTL before it invalidates a session.
	consulMinTTL = 10 * time.Second
)

// cacheSetup is the cache as the rest of dewy uses it: the backend, the
// local file cache beside it, and the fleet options from the cache URL.
type cacheSetup struct {
	scheme string
	raw    string // redacted, for messages
	c      cache
	local  *fileCache // the artifact directory; also state when c is remote
	remote bool       // c is shared with other hosts (redis, consul)

	registryTTL time.Duration // 0: every host asks the registry itself
	maxParallel int           // 0: no limit on concurrent deploys
	leaseTTL    time.Duration // slot lease lifetime
	timeout     time.Duration // per cache call
	artifactMax int64         // artifacts up to this size are shared through c
	slotRetry   time.Duration // base wait between slot attempts
	answerWait  time.Duration // how long a host waits for another's registry answer
	bake        time.Duration // a host keeps its slot this long after a good deploy (control.go)

	log    *slog.Logger
	closer io.Closer
	clk    clock // fleet waits and registry windows; the local caches carry their own

	mu      sync.Mutex
	failing map[string]bool // op → in a failure streak (warned once)
}

// cacheScheme is one row of cacheSchemes.
type cacheScheme struct {
	scheme string
	usage  string
	remote bool // shared with other hosts
	// check refuses what open would refuse about u and the options left
	// on it once the shared ones are on cs, without network or disk I/O.
	// q is check's own copy.
	check func(cs *cacheSetup, u *url.URL, q url.Values) error
	// open makes the backend once check has passed. A *fileCache it
	// returns also holds the artifacts.
	open func(cs *cacheSetup, u *url.URL, q url.Values, getenv func(string) string) (cache, error)
}

func (r cacheScheme) names() (string, string) { return r.scheme, r.usage }

var cacheSchemes = []cacheScheme{
	{scheme: "file", usage: "file:///dir", check: checkFileCacheURL, open: openFileCache},
	{scheme: "memory", usage: "memory://", check: noCacheOptions, open: openMemoryCache},
	{scheme: "redis", usage: "redis://host:port/db", remote: true, check: checkRedisURL, open: openRedisCache},
	{scheme: "rediss", remote: true, check: checkRedisURL, open: openRedisCache},
	{scheme: "consul", usage: "consul://host:port/prefix", remote: true, check: checkConsulURL, open: openConsulCache},
}

// newCache is the one place a cache backend is chosen. raw "" means the
// default, file://<root>/.dewy/cache. Options common to every backend:
// registry-ttl, max-parallel, lease-ttl, timeout, artifact-max, bake.
func newCache(ctx context.Context, raw, root string, getenv func(string) string, log *slog.Logger) (*cacheSetup, error) {
	localDir := filepath.Join(root, dewyDir, "cache")
	if raw == "" {
		raw = "file://" + filepath.ToSlash(localDir)
	}
	cs, open, err := parseCache(raw, log)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", redactRaw(raw), err)
	}
	c, err := open(getenv)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", cs.raw, err)
	}
	cs.c = c
	cs.closer, _ = c.(io.Closer)
	local, ok := c.(*fileCache)
	if !ok {
		if local, err = newFileCache(localDir); err != nil {
			return nil, fmt.Errorf("cache %s: %w", cs.raw, err)
		}
	}
	cs.local = local
	if cs.maxParallel > 0 && !cs.remote {
		cs.log.Info("max-parallel with a single-host cache limits deploys on this host only")
	}
	return cs, nil
}

// checkCacheURL refuses a --cache URL that newCache would refuse, without
// network or disk I/O. Its errors do not repeat the URL.
func checkCacheURL(raw string) error {
	_, _, err := parseCache(raw, slog.New(slog.DiscardHandler))
	return err
}

// parseCache is newCache short of I/O: it takes the shared options and
// lets the backend's row check the rest. It returns the backend still to
// open.
func parseCache(raw string, log *slog.Logger) (*cacheSetup, func(getenv func(string) string) (cache, error), error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return nil, nil, errors.New("not a URL")
	}
	row, err := lookupScheme(cacheSchemes, u.Scheme)
	if err != nil {
		return nil, nil, err
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, nil, fmt.Errorf("bad query: %v", err)
	}
	cs := &cacheSetup{
		scheme:    u.Scheme,
		raw:       redactRaw(raw),
		remote:    row.remote,
		leaseTTL:  defaultLeaseTTL,
		timeout:   defaultCacheTimeout,
		slotRetry: 500 * time.Millisecond,
		log:       log.With("cache", u.Scheme),
		clk:       realClock{},
		failing:   map[string]bool{},
	}
	if err := cs.takeOptions(q); err != nil {
		return nil, nil, err
	}
	cs.answerWait = min(cs.registryTTL/2, 10*time.Second)
	if err := row.check(cs, u, maps.Clone(q)); err != nil {
		return nil, nil, err
	}
	return cs, func(getenv func(string) string) (cache, error) { return row.open(cs, u, q, getenv) }, nil
}

// noCacheOptions is the check of a backend that takes no options of its own.
func noCacheOptions(_ *cacheSetup, _ *url.URL, q url.Values) error {
	if len(q) > 0 {
		return fmt.Errorf("unknown option %q", firstOption(q))
	}
	return nil
}

// takeOptions removes the options every backend shares from q.
func (cs *cacheSetup) takeOptions(q url.Values) error {
	dur := func(name string, dst *time.Duration) error {
		if !q.Has(name) {
			return nil
		}
		d, err := time.ParseDuration(q.Get(name))
		if err != nil || d < 0 {
			return fmt.Errorf("option %s=%q: want a duration such as 30s", name, q.Get(name))
		}
		q.Del(name)
		*dst = d
		return nil
	}
	if err := dur("registry-ttl", &cs.registryTTL); err != nil {
		return err
	}
	if err := dur("lease-ttl", &cs.leaseTTL); err != nil {
		return err
	}
	if err := dur("timeout", &cs.timeout); err != nil {
		return err
	}
	if err := dur("bake", &cs.bake); err != nil {
		return err
	}
	if cs.leaseTTL < 100*time.Millisecond || cs.timeout <= 0 {
		return fmt.Errorf("option lease-ttl or timeout: too short")
	}
	if q.Has("max-parallel") {
		n, err := strconv.Atoi(q.Get("max-parallel"))
		if err != nil || n < 0 {
			return fmt.Errorf("option max-parallel=%q: want a number, 0 for no limit", q.Get("max-parallel"))
		}
		cs.maxParallel = n
		q.Del("max-parallel")
	}
	if q.Has("artifact-max") {
		n, err := parseSize(q.Get("artifact-max"))
		if err != nil {
			return fmt.Errorf("option artifact-max=%q: %v", q.Get("artifact-max"), err)
		}
		cs.artifactMax = n
		q.Del("artifact-max")
	}
	if cs.bake > 0 && cs.maxParallel == 0 {
		return fmt.Errorf("option bake needs max-parallel: bake time paces a rolling deploy")
	}
	return nil
}

func (cs *cacheSetup) now() time.Time { return cs.clk.now() }

// close releases the backend's connections.
func (cs *cacheSetup) close() error {
	if cs.closer != nil {
		return cs.closer.Close()
	}
	return nil
}

// call runs one backend operation with the per-call timeout and keeps the
// failure streak for op: the first failure warns, the first success after
// it says so, the rest stay quiet.
func (cs *cacheSetup) call(ctx context.Context, op, fallback string, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, cs.timeout)
	err := f(cctx)
	cancel()
	if err != nil && ctx.Err() != nil {
		return err // our own caller gave up: not the server's fault
	}
	// Not found and too large are answers: the server works.
	failed := err != nil && !errors.Is(err, errNotFound) && !errors.Is(err, errTooLarge)
	cs.mu.Lock()
	was := cs.failing[op]
	cs.failing[op] = failed
	cs.mu.Unlock()
	switch {
	case failed && !was:
		cs.log.Warn("cache unavailable; "+fallback, "op", op, "cache_url", cs.raw, "err", err)
	case failed:
		cs.log.Debug("cache still unavailable", "op", op, "err", err)
	case was:
		cs.log.Info("cache answers again", "op", op)
	}
	return err
}

// Keys. Names given by the operator are path-escaped, so an app or host
// name can never reach into another's keys.
func appKey(app string, parts ...string) string {
	return strings.Join(append([]string{url.PathEscape(app)}, parts...), "/")
}

func hostStateKey(app, host string) string {
	return appKey(app, "hosts", url.PathEscape(host), "state")
}

// loadState returns the state this host saved for app: from the backend,
// else (server down, or nothing there yet) from the local file cache. A
// host with no saved state gets an empty one.
func (cs *cacheSetup) loadState(ctx context.Context, app, host string) (*deployState, error) {
	key := hostStateKey(app, host)
	var data []byte
	var err error
	if !cs.remote {
		data, err = cs.c.get(ctx, key)
	} else {
		err = cs.call(ctx, "load state", "reading state from the local file cache", func(ctx context.Context) (err error) {
			data, err = cs.c.get(ctx, key)
			return err
		})
		if err != nil && ctx.Err() == nil {
			data, err = cs.local.get(ctx, key)
		}
	}
	if errors.Is(err, errNotFound) {
		return &deployState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load state of %s: %w", host, err)
	}
	s := &deployState{}
	if err := json.Unmarshal(data, s); err != nil {
		return &deployState{}, fmt.Errorf("state of %s in the cache unreadable, starting afresh: %w", host, err)
	}
	return s, nil
}

// saveState stores this host's state. With a remote backend the local copy
// is written first and counts: a server that is down costs a warning only.
func (cs *cacheSetup) saveState(ctx context.Context, app, host string, s *deployState) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	key := hostStateKey(app, host)
	if cs.remote {
		if err := cs.local.put(ctx, key, data); err != nil {
			return fmt.Errorf("save state of %s: %w", host, err)
		}
		_ = cs.call(ctx, "save state", "state kept in the local file cache only", func(ctx context.Context) error {
			return cs.c.put(ctx, key, data)
		})
		return nil
	}
	if err := cs.c.put(ctx, key, data); err != nil {
		return fmt.Errorf("save state of %s: %w", host, err)
	}
	return nil
}

// artifactMeta is what the backend knows about one cached artifact.
type artifactMeta struct {
	Tag    string    `json:"tag"`
	Asset  string    `json:"asset"`
	SHA256 string    `json:"sha256"`
	Size   int64     `json:"size"`
	Shared bool      `json:"shared,omitempty"` // the bytes are in the backend too
	At     time.Time `json:"at"`
}

func artifactKey(tag, asset, sum string) string {
	return strings.Join([]string{"artifacts", url.PathEscape(tag), url.PathEscape(asset), sum}, "/")
}

func (cs *cacheSetup) artifactPath(tag, asset, sum string) string {
	return filepath.Join(cs.local.dir, "artifacts", escapeName(tag), sum+"."+escapeName(asset))
}

// artifact returns the path of a cached copy of the artifact with digest
// sum, fetching it from the backend when another host shared it. ok is
// false when there is no copy; the caller then downloads and calls
// keepArtifact. The file is the cache's: link or copy it, do not move it.
func (cs *cacheSetup) artifact(ctx context.Context, tag, asset, sum string) (path string, ok bool) {
	if !isSHA256Hex(sum) {
		return "", false
	}
	path = cs.artifactPath(tag, asset, sum)
	if _, err := os.Stat(path); err == nil {
		if got, err := fileSHA256(path); err == nil && got == sum {
			return path, true
		}
		cs.log.Warn("cached artifact does not match the release's digest; dropped, downloading again", "version", tag, "asset", asset)
		os.Remove(path)
	}
	if cs.artifactMax == 0 || cs.c == cache(cs.local) {
		return "", false
	}
	var data []byte
	err := cs.call(ctx, "get artifact", "downloading from the registry", func(ctx context.Context) (err error) {
		data, err = cs.c.get(ctx, artifactKey(tag, asset, sum)+"/blob")
		return err
	})
	if err != nil {
		return "", false
	}
	if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != sum {
		// Dropped, so that no other host takes it either; this host's
		// download shares the good bytes again.
		cs.log.Warn("shared artifact in the cache does not match the release's digest; dropped, downloading again", "version", tag, "asset", asset)
		cs.dropSharedArtifact(ctx, tag, asset, sum)
		return "", false
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", false
	}
	if err := writeFileAtomic(path, data, 0o644); err != nil {
		return "", false
	}
	return path, true
}

// keepArtifact puts a verified download (path, digest sum) into the cache:
// hard-linked (copied across file systems) into the artifact directory,
// recorded in the backend, and shared when no larger than artifact-max.
func (cs *cacheSetup) keepArtifact(ctx context.Context, tag, asset, sum, path string) error {
	if !isSHA256Hex(sum) {
		return fmt.Errorf("keep artifact %s: digest %q is not sha256", asset, sum)
	}
	dst := cs.artifactPath(tag, asset, sum)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("keep artifact %s: %w", asset, err)
	}
	if err := linkOrCopy(path, dst); err != nil {
		return fmt.Errorf("keep artifact %s: %w", asset, err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return fmt.Errorf("keep artifact %s: %w", asset, err)
	}
	if cs.c == cache(cs.local) {
		return nil // the file itself is the record
	}
	meta := artifactMeta{Tag: tag, Asset: asset, SHA256: sum, Size: fi.Size(), At: cs.now().UTC()}
	key := artifactKey(tag, asset, sum)
	if fi.Size() <= cs.artifactMax {
		data, err := os.ReadFile(dst)
		if err != nil {
			return fmt.Errorf("keep artifact %s: %w", asset, err)
		}
		meta.Shared = cs.call(ctx, "share artifact", "artifact kept locally only", func(ctx context.Context) error {
			return cs.c.put(ctx, key+"/blob", data)
		}) == nil
	}
	mdata, _ := json.Marshal(meta)
	_ = cs.call(ctx, "record artifact", "artifact kept locally only", func(ctx context.Context) error {
		return cs.c.put(ctx, key+"/meta", mdata)
	})
	return nil
}

// pruneArtifacts removes cached artifacts of every tag not in keep, as
// pruneReleases does for release directories, and their backend records.
func (cs *cacheSetup) pruneArtifacts(ctx context.Context, keep []string) (removed []string, err error) {
	base := filepath.Join(cs.local.dir, "artifacts")
	dirs, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prune artifacts: %w", err)
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[escapeName(k)] = true
	}
	for _, d := range dirs {
		if !d.IsDir() || kept[d.Name()] {
			continue
		}
		tag, _ := unescapeName(d.Name())
		files, _ := os.ReadDir(filepath.Join(base, d.Name()))
		for _, f := range files {
			sum, esc, ok := strings.Cut(f.Name(), ".")
			if !ok || !isSHA256Hex(sum) || cs.c == cache(cs.local) {
				continue
			}
			asset, _ := unescapeName(esc)
			cs.dropSharedArtifact(ctx, tag, asset, sum)
		}
		if err := os.RemoveAll(filepath.Join(base, d.Name())); err != nil {
			return removed, fmt.Errorf("prune artifacts of %s: %w", tag, err)
		}
		removed = append(removed, tag)
	}
	return removed, nil
}

// dropSharedArtifact deletes an artifact's bytes and record from the backend.
func (cs *cacheSetup) dropSharedArtifact(ctx context.Context, tag, asset, sum string) {
	key := artifactKey(tag, asset, sum)
	_ = cs.call(ctx, "drop artifact", "its record stays in the cache", func(ctx context.Context) error {
		if err := cs.c.delete(ctx, key+"/blob"); err != nil {
			return err
		}
		return cs.c.delete(ctx, key+"/meta")
	})
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// linkOrCopy makes dst hold src's bytes, atomically: a hard link when both
// are on one file system, else a copy to a temp file beside dst + rename.
func linkOrCopy(src, dst string) error {
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+tmpMarker+randomSuffix())
	if err := os.Link(src, tmp); err != nil {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(dst))
}
