package main

// Fleet coordination through the cache: one registry request per TTL window
// for all hosts, and rolling deploys with at most max-parallel hosts of an
// app deploying at once. Neither may stop a deploy: when the cache fails,
// each host asks the registry and deploys on its own, and says so.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"
)

// sharedRegistry lets one host per registry-ttl window ask the registry;
// the others read its answer from the cache.
type sharedRegistry struct {
	cs  *cacheSetup
	reg registry
	key string
	log *slog.Logger
}

var _ registry = (*sharedRegistry)(nil)

// registryAnswer is the shared answer of one window: the releases, or the
// registry's error, which the other hosts then report as their own instead
// of all asking a registry that just failed (or asked for a pause).
type registryAnswer struct {
	Window     int64     `json:"window"`
	Releases   []release `json:"releases,omitempty"`
	Err        string    `json:"err,omitempty"`
	RetryUntil time.Time `json:"retry_until,omitzero"`
	// TooLarge: the releases did not fit in the cache; ask the registry.
	TooLarge bool `json:"too_large,omitempty"`
}

// errAskRegistry is a shared answer that says each host must ask itself.
var errAskRegistry = errors.New("shared registry answer too large for the cache")

// fleetApp names the application for fleet keys: the registry location
// without credentials or options, so every host of one app agrees on it.
func fleetApp(reg *url.URL) string {
	return reg.Scheme + "://" + reg.Host + reg.Path
}

// wrapRegistry returns r itself without registry-ttl, else a registry that
// shares r's answers through the cache. key names the registry (its URL);
// it is hashed, so credentials in it never reach the cache.
func (cs *cacheSetup) wrapRegistry(r registry, key string) registry {
	if cs.registryTTL <= 0 {
		return r
	}
	h := sha256.Sum256([]byte(key))
	k := "registry/" + hex.EncodeToString(h[:8])
	return &sharedRegistry{cs: cs, reg: r, key: k, log: cs.log.With("registry_key", k)}
}

// Window keys are numbered, so a window's lock and answer never need to be
// taken back; they expire after two windows to keep the cache small.
func (s *sharedRegistry) lockKey(w int64) string   { return fmt.Sprintf("%s/%d/lock", s.key, w) }
func (s *sharedRegistry) answerKey(w int64) string { return fmt.Sprintf("%s/%d/answer", s.key, w) }

func (s *sharedRegistry) releases(ctx context.Context) ([]release, error) {
	ttl := s.cs.registryTTL
	w := s.cs.now().UnixNano() / int64(ttl)
	rels, ok, err := s.answer(ctx, w)
	if ok {
		return rels, err
	}
	if err != nil {
		return s.reg.releases(ctx)
	}
	var won bool
	err = s.cs.call(ctx, "registry lock", "asking the registry directly", func(ctx context.Context) (err error) {
		won, err = s.cs.c.setNX(ctx, s.lockKey(w), []byte(randomSuffix()), 2*ttl)
		return err
	})
	if err != nil {
		return s.reg.releases(ctx)
	}
	if won {
		rels, rerr := s.reg.releases(ctx)
		a := registryAnswer{Window: w, Releases: rels}
		if rerr != nil {
			a.Releases, a.Err = nil, rerr.Error()
			var ra *retryAfterError
			if errors.As(rerr, &ra) {
				a.RetryUntil = ra.Until
			}
		}
		s.share(ctx, a)
		return rels, rerr
	}
	// Another host holds this window: wait briefly for its answer.
	deadline := s.cs.now().Add(s.cs.answerWait)
	for s.cs.now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.cs.clk.after(50*time.Millisecond + rand.N(100*time.Millisecond)):
		}
		rels, ok, err := s.answer(ctx, w)
		if ok {
			return rels, err
		}
		if err != nil {
			return s.reg.releases(ctx)
		}
	}
	s.log.Info("no shared registry answer in time; asking the registry", "waited", s.cs.answerWait)
	return s.reg.releases(ctx)
}

// share stores a, or, when it is too large for the cache, a marker that
// sends the other hosts to the registry at once.
func (s *sharedRegistry) share(ctx context.Context, a registryAnswer) {
	put := func(a registryAnswer) error {
		data, err := json.Marshal(a)
		if err != nil {
			return err
		}
		return s.cs.call(ctx, "registry answer", "other hosts ask the registry themselves", func(ctx context.Context) error {
			_, err := s.cs.c.setNX(ctx, s.answerKey(a.Window), data, 2*s.cs.registryTTL)
			return err
		})
	}
	if err := put(a); errors.Is(err, errTooLarge) {
		s.log.Warn("registry answer too large for the cache; every host asks the registry itself", "releases", len(a.Releases))
		put(registryAnswer{Window: a.Window, TooLarge: true})
	}
}

// answer reads window w's shared answer; ok is false when there is none.
// A registry error shared by another host comes back as err with ok true.
// Any other error means: ask the registry yourself.
func (s *sharedRegistry) answer(ctx context.Context, w int64) (rels []release, ok bool, err error) {
	var data []byte
	err = s.cs.call(ctx, "registry answer", "asking the registry directly", func(ctx context.Context) (err error) {
		data, err = s.cs.c.get(ctx, s.answerKey(w))
		return err
	})
	if errors.Is(err, errNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var a registryAnswer
	if err := json.Unmarshal(data, &a); err != nil || a.Window != w {
		s.log.Warn("shared registry answer unreadable; asking the registry", "err", err)
		return nil, false, fmt.Errorf("shared registry answer unreadable")
	}
	switch {
	case a.TooLarge:
		return nil, false, errAskRegistry
	case a.Err != "" && !a.RetryUntil.IsZero():
		return nil, true, &retryAfterError{Err: fmt.Errorf("shared by another host: %s", a.Err), Until: a.RetryUntil}
	case a.Err != "":
		return nil, true, fmt.Errorf("shared by another host: %s", a.Err)
	}
	return a.Releases, true, nil
}

// acquireSlot waits until this host may deploy app: at most max-parallel
// hosts hold one of the slots slot-0…slot-N-1 at a time. A slot is a lease
// renewed every lease-ttl/3 while held, so a host that dies mid-deploy
// frees its slot when the lease runs out. release must be called when the
// deploy is over, success or not. When the cache fails, the host proceeds
// uncoordinated (logged). err is only ctx's, when it ends while waiting.
func (cs *cacheSetup) acquireSlot(ctx context.Context, app, host string) (release func(), err error) {
	if cs.maxParallel <= 0 {
		return func() {}, nil
	}
	log := cs.log.With("app", app, "host", host)
	token := []byte(host + " " + randomSuffix()) // unique per hold: a restarted host cannot renew its old lease
	first := rand.N(cs.maxParallel)              // hosts start at different slots to collide less
	waiting := false
	for {
		for i := range cs.maxParallel {
			key := appKey(app, "slots", fmt.Sprintf("slot-%d", (first+i)%cs.maxParallel))
			var ok bool
			err := cs.call(ctx, "acquire slot", "deploying without waiting for a slot", func(ctx context.Context) (err error) {
				ok, err = cs.c.setNX(ctx, key, token, cs.leaseTTL)
				return err
			})
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil {
				return func() {}, nil
			}
			if ok {
				if waiting {
					log.Info("got a deploy slot", "slot", key)
				}
				return cs.holdLease(key, token, log), nil
			}
		}
		if !waiting {
			log.Info("waiting for a deploy slot", "max_parallel", cs.maxParallel)
			waiting = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-cs.clk.after(cs.slotRetry/2 + rand.N(cs.slotRetry)):
		}
	}
}

// holdLease renews the lease at key until the returned release is called,
// which then gives the lease back.
func (cs *cacheSetup) holdLease(key string, token []byte, log *slog.Logger) (release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		everyTickOf(ctx, cs.clk, cs.leaseTTL/3, func() bool {
			var held bool
			err := cs.call(ctx, "renew slot", "the deploy goes on; the slot may expire", func(ctx context.Context) (err error) {
				held, err = cs.c.refresh(ctx, key, token, cs.leaseTTL)
				return err
			})
			if err == nil && !held {
				log.Warn("deploy slot lost before the deploy ended; another host may deploy alongside", "slot", key)
				return false
			}
			return true
		})
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			_ = cs.call(context.Background(), "release slot", "the slot frees when its lease runs out", func(ctx context.Context) error {
				return cs.c.release(ctx, key, token)
			})
		})
	}
}
