package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// cacheSuiteOpts says what a backend may do differently from the rest.
type cacheSuiteOpts struct {
	ttl      time.Duration // lease ttl the expiry tests ask for
	expireBy time.Duration // by when after setNX an unrenewed lease must be gone
	maxValue int           // values above this fail with errTooLarge; 0: 1 MiB must fit
	// serverClock: the backend expires keys by its server's clock (redis,
	// consul), which no local clock moves, so the expiry tests wait in
	// real time. Otherwise they move a fake clock the cache is given.
	serverClock bool
}

// runCacheSuite checks the behaviour every cache backend promises. newFn
// returns a cache with a namespace of its own, going by clk unless the
// backend keeps a server clock.
func runCacheSuite(t *testing.T, newFn func(t *testing.T, clk clock) cache, o cacheSuiteOpts) {
	ctx := context.Background()
	// newClocked returns a cache and a way to let time pass for it.
	newClocked := func(t *testing.T) (c cache, now func() time.Time, pass func(time.Duration)) {
		if o.serverClock {
			// Real waits: the server's clock is the one that counts.
			return newFn(t, realClock{}), time.Now, time.Sleep
		}
		clk := newFakeClock()
		return newFn(t, clk), clk.now, clk.advance
	}

	t.Run("GetPutDelete", func(t *testing.T) {
		c := newFn(t, realClock{})
		if _, err := c.get(ctx, "app/missing"); !errors.Is(err, errNotFound) {
			t.Fatalf("get missing: err = %v, want errNotFound", err)
		}
		for _, v := range []string{"one", "two", ""} {
			if err := c.put(ctx, "app/k", []byte(v)); err != nil {
				t.Fatalf("put %q: %v", v, err)
			}
			got, err := c.get(ctx, "app/k")
			if err != nil || string(got) != v {
				t.Fatalf("get after put = %q, %v; want %q", got, err, v)
			}
		}
		if err := c.delete(ctx, "app/k"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := c.get(ctx, "app/k"); !errors.Is(err, errNotFound) {
			t.Fatalf("get after delete: err = %v, want errNotFound", err)
		}
		if err := c.delete(ctx, "app/k"); err != nil {
			t.Fatalf("delete missing: err = %v, want nil", err)
		}
	})

	t.Run("SetNXRefreshRelease", func(t *testing.T) {
		c := newFn(t, realClock{})
		mine, theirs := []byte("host-a 1"), []byte("host-b 2")
		if ok, err := c.setNX(ctx, "lease", mine, time.Minute); err != nil || !ok {
			t.Fatalf("setNX on absent key = %v, %v; want true", ok, err)
		}
		if ok, err := c.setNX(ctx, "lease", theirs, time.Minute); err != nil || ok {
			t.Fatalf("setNX on held key = %v, %v; want false", ok, err)
		}
		if got, err := c.get(ctx, "lease"); err != nil || !bytes.Equal(got, mine) {
			t.Fatalf("get lease = %q, %v; want %q", got, err, mine)
		}
		if ok, err := c.refresh(ctx, "lease", theirs, time.Minute); err != nil || ok {
			t.Fatalf("refresh by non-holder = %v, %v; want false", ok, err)
		}
		if err := c.release(ctx, "lease", theirs); err != nil {
			t.Fatalf("release by non-holder: %v", err)
		}
		if got, err := c.get(ctx, "lease"); err != nil || !bytes.Equal(got, mine) {
			t.Fatalf("after release by non-holder get = %q, %v; want %q", got, err, mine)
		}
		if ok, err := c.refresh(ctx, "lease", mine, time.Minute); err != nil || !ok {
			t.Fatalf("refresh by holder = %v, %v; want true", ok, err)
		}
		if err := c.release(ctx, "lease", mine); err != nil {
			t.Fatalf("release by holder: %v", err)
		}
		if _, err := c.get(ctx, "lease"); !errors.Is(err, errNotFound) {
			t.Fatalf("get after release: err = %v, want errNotFound", err)
		}
		if ok, err := c.refresh(ctx, "lease", mine, time.Minute); err != nil || ok {
			t.Fatalf("refresh after release = %v, %v; want false", ok, err)
		}
		if ok, err := c.setNX(ctx, "lease", theirs, time.Minute); err != nil || !ok {
			t.Fatalf("setNX after release = %v, %v; want true", ok, err)
		}
		c.release(ctx, "lease", theirs)

		if err := c.put(ctx, "plain", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.setNX(ctx, "plain", []byte("w"), time.Minute); err != nil || ok {
			t.Fatalf("setNX over a put value = %v, %v; want false", ok, err)
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		t.Parallel()
		c, now, pass := newClocked(t)
		val := []byte("short-lived")
		start := now()
		if ok, err := c.setNX(ctx, "expiring", val, o.ttl); err != nil || !ok {
			t.Fatalf("setNX = %v, %v; want true", ok, err)
		}
		if ok, _ := c.setNX(ctx, "expiring", []byte("other"), o.ttl); ok {
			t.Fatal("setNX right after setNX stored; the lease expired at once")
		}
		if o.serverClock {
			gone := waitGone(t, c, "expiring", start.Add(o.expireBy))
			if early := o.ttl - 50*time.Millisecond; gone.Sub(start) < early {
				t.Errorf("lease gone after %v, want no sooner than its ttl %v", gone.Sub(start), o.ttl)
			}
		} else {
			pass(o.ttl - time.Nanosecond)
			if got, err := c.get(ctx, "expiring"); err != nil || !bytes.Equal(got, val) {
				t.Fatalf("get just before the ttl = %q, %v; want %q", got, err, val)
			}
			pass(time.Nanosecond)
			if _, err := c.get(ctx, "expiring"); !errors.Is(err, errNotFound) {
				t.Fatalf("get at the ttl: err = %v, want errNotFound", err)
			}
		}
		if ok, err := c.refresh(ctx, "expiring", val, o.ttl); err != nil || ok {
			t.Errorf("refresh after expiry = %v, %v; want false", ok, err)
		}
		if ok, err := c.setNX(ctx, "expiring", []byte("next"), o.ttl); err != nil || !ok {
			t.Errorf("setNX after expiry = %v, %v; want true", ok, err)
		}
	})

	t.Run("RefreshKeepsLease", func(t *testing.T) {
		t.Parallel()
		c, now, pass := newClocked(t)
		val := []byte("renewed")
		if ok, err := c.setNX(ctx, "kept", val, o.ttl); err != nil || !ok {
			t.Fatalf("setNX = %v, %v; want true", ok, err)
		}
		end := now().Add(o.expireBy + o.ttl/2)
		for now().Before(end) {
			pass(o.ttl / 4) // the renewal interval under test
			if ok, err := c.refresh(ctx, "kept", val, o.ttl); err != nil || !ok {
				t.Fatalf("refresh by holder = %v, %v; want true", ok, err)
			}
		}
		if got, err := c.get(ctx, "kept"); err != nil || !bytes.Equal(got, val) {
			t.Fatalf("renewed lease get = %q, %v; want %q", got, err, val)
		}
		c.release(ctx, "kept", val)
	})

	t.Run("SetNXRace", func(t *testing.T) {
		clk := newFakeClock()
		c := newFn(t, clk)
		// Contenders for a file lock poll the clock; nothing else does here.
		defer clk.autoAdvance()()
		const n = 20
		var wg sync.WaitGroup
		wins := make(chan int, n)
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				ok, err := c.setNX(ctx, "race", fmt.Appendf(nil, "g%d", i), time.Minute)
				if err != nil {
					errs <- err
				}
				if ok {
					wins <- i
				}
			})
		}
		wg.Wait()
		close(wins)
		close(errs)
		for err := range errs {
			t.Errorf("setNX: %v", err)
		}
		var winners []int
		for w := range wins {
			winners = append(winners, w)
		}
		if len(winners) != 1 {
			t.Fatalf("setNX winners = %v, want exactly one", winners)
		}
		got, _ := c.get(ctx, "race")
		if want := fmt.Sprintf("g%d", winners[0]); string(got) != want {
			t.Errorf("race value = %q, want the winner's %q", got, want)
		}
	})

	t.Run("LargeValue", func(t *testing.T) {
		c := newFn(t, realClock{})
		big := make([]byte, 1<<20+1)
		rand.Read(big)
		err := c.put(ctx, "big", big)
		switch {
		case o.maxValue > 0 && len(big) > o.maxValue:
			if !errors.Is(err, errTooLarge) {
				t.Fatalf("put %d bytes: err = %v, want errTooLarge", len(big), err)
			}
			if _, err := c.get(ctx, "big"); !errors.Is(err, errNotFound) {
				t.Errorf("get after refused put: err = %v, want errNotFound (nothing half-written)", err)
			}
			fit := big[:o.maxValue-1024]
			if err := c.put(ctx, "big", fit); err != nil {
				t.Fatalf("put %d bytes (under the limit): %v", len(fit), err)
			}
			if got, err := c.get(ctx, "big"); err != nil || !bytes.Equal(got, fit) {
				t.Errorf("get %d bytes: %d bytes, %v", len(fit), len(got), err)
			}
		case err != nil:
			t.Fatalf("put %d bytes: %v", len(big), err)
		default:
			if got, err := c.get(ctx, "big"); err != nil || !bytes.Equal(got, big) {
				t.Errorf("get %d bytes: got %d bytes, %v", len(big), len(got), err)
			}
		}
	})

	t.Run("List", func(t *testing.T) {
		c := newFn(t, realClock{})
		want := []string{"app/quarantine/v1.0.0", "app/quarantine/v2 beta+x", "app/quarantine/wé?b"}
		for _, k := range append(slices.Clone(want), "app/quarantined-not", "app/other/v1", "other/quarantine/v1") {
			if err := c.put(ctx, k, []byte("x")); err != nil {
				t.Fatalf("put %q: %v", k, err)
			}
		}
		if ok, err := c.setNX(ctx, "app/quarantine/leased", []byte("x"), time.Minute); err != nil || !ok {
			t.Fatalf("setNX = %v, %v; want true", ok, err)
		}
		want = append(want, "app/quarantine/leased") // sorts first
		got, err := c.list(ctx, "app/quarantine/")
		slices.Sort(got)
		slices.Sort(want)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("list = %q, %v; want %q", got, err, want)
		}
		if err := c.delete(ctx, "app/quarantine/v1.0.0"); err != nil {
			t.Fatal(err)
		}
		c.release(ctx, "app/quarantine/leased", []byte("x"))
		got, err = c.list(ctx, "app/quarantine/")
		slices.Sort(got)
		if want := want[2:]; err != nil || !slices.Equal(got, want) {
			t.Fatalf("list after delete and release = %q, %v; want %q", got, err, want)
		}
		if got, err := c.list(ctx, "nothing/"); err != nil || len(got) != 0 {
			t.Fatalf("list of an empty prefix = %q, %v; want none", got, err)
		}
	})

	t.Run("OddKeys", func(t *testing.T) {
		c := newFn(t, realClock{})
		keys := []string{
			"app/hosts/web 1/state",
			"app/hosts/wéb-ü/state",
			"app/x?y#z%41&q=1+2",
			"app/.hidden/..",
			"app/a:b;c,d'e\"f",
			"app/" + strings.Repeat("long-", 60),
			"app/" + strings.Repeat("long-", 60) + "x",
			"app/hosts",
			"app/hosts/a",
		}
		for i, k := range keys {
			if err := c.put(ctx, k, fmt.Appendf(nil, "v%d", i)); err != nil {
				t.Fatalf("put %q: %v", k, err)
			}
		}
		for i, k := range keys {
			got, err := c.get(ctx, k)
			if want := fmt.Sprintf("v%d", i); err != nil || string(got) != want {
				t.Errorf("get %q = %q, %v; want %q", k, got, err, want)
			}
		}
		for _, k := range keys {
			if err := c.delete(ctx, k); err != nil {
				t.Errorf("delete %q: %v", k, err)
			}
			if _, err := c.get(ctx, k); !errors.Is(err, errNotFound) {
				t.Errorf("get %q after delete: err = %v, want errNotFound", k, err)
			}
		}
	})
}

// waitGone polls until key is gone and returns when; it fails at deadline.
func waitGone(t *testing.T, c cache, key string, deadline time.Time) time.Time {
	t.Helper()
	for {
		_, err := c.get(context.Background(), key)
		now := time.Now()
		if errors.Is(err, errNotFound) {
			return now
		}
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if now.After(deadline) {
			t.Fatalf("%s still held %v after its deadline", key, now.Sub(deadline))
		}
		time.Sleep(20 * time.Millisecond) // polling an expiry: there is no signal to wait on
	}
}

// testCacheSetup builds a cacheSetup from raw for a test, closed at cleanup.
func testCacheSetup(t *testing.T, raw string) *cacheSetup {
	t.Helper()
	cs, err := newCache(context.Background(), raw, t.TempDir(), func(string) string { return "" }, testCacheLogger(t))
	if err != nil {
		t.Fatalf("newCache(%q): %v", raw, err)
	}
	t.Cleanup(func() { cs.close() })
	return cs
}

func TestCacheSuiteMemory(t *testing.T) {
	runCacheSuite(t, func(t *testing.T, clk clock) cache {
		c := newMemoryCache()
		c.clk = clk
		return c
	}, cacheSuiteOpts{ttl: defaultLeaseTTL, expireBy: defaultLeaseTTL})
}

func TestCacheSuiteFile(t *testing.T) {
	runCacheSuite(t, func(t *testing.T, clk clock) cache {
		c, err := newFileCache(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		c.clk = clk
		return c
	}, cacheSuiteOpts{ttl: defaultLeaseTTL, expireBy: defaultLeaseTTL})
	t.Run("ArtifactCorruption", func(t *testing.T) { testCachedArtifactCorruption(t, "file://"+t.TempDir()) })
}

func TestCacheSuiteRedis(t *testing.T) {
	addr := backendAddr(t, "redis", "DEWY_TEST_REDIS_ADDR")
	runCacheSuite(t, func(t *testing.T, _ clock) cache {
		return testCacheSetup(t, "redis://"+addr+"/0?prefix=dewy-test-"+randomSuffix()).c
	}, cacheSuiteOpts{ttl: 300 * time.Millisecond, expireBy: 400 * time.Millisecond, serverClock: true})
	t.Run("ArtifactCorruption", func(t *testing.T) {
		testCachedArtifactCorruption(t, "redis://"+addr+"/0?artifact-max=1MiB&prefix=dewy-test-"+randomSuffix())
	})
}

func TestCacheSuiteConsul(t *testing.T) {
	t.Parallel() // its expiry tests wait out Consul's 10 s session TTL floor
	addr := backendAddr(t, "consul", "DEWY_TEST_CONSUL_ADDR")
	runCacheSuite(t, func(t *testing.T, _ clock) cache {
		return testCacheSetup(t, "consul://"+addr+"/dewy-test-"+randomSuffix()).c
	}, cacheSuiteOpts{
		serverClock: true,
		// Consul's session TTL floor is 10 s and it invalidates a session
		// within twice its TTL.
		ttl:      consulMinTTL,
		expireBy: 2*consulMinTTL + 3*time.Second,
		maxValue: consulMaxValue,
	})
	t.Run("ArtifactCorruption", func(t *testing.T) {
		testCachedArtifactCorruption(t, "consul://"+addr+"/dewy-test-"+randomSuffix()+"?artifact-max=256KiB")
	})
}

// testCachedArtifactCorruption deploys one release on three hosts sharing
// the cache at raw. Between the first and the second, a byte of the cached
// artifact is flipped (in the shared backend when there is one, else in
// the cache directory): the second host must drop it and download the
// release again, which puts good bytes back for the third.
func testCachedArtifactCorruption(t *testing.T, raw string) {
	ctx := t.Context()
	dir := t.TempDir()
	reg := settledFileRegistry(t, dir)
	files := siteRelease(t, "v1.0.0")
	publishDir(t, dir, []suiteRelease{{Tag: "v1.0.0", Files: files}})
	const name = "site_1.0.0_linux_amd64.tar.gz"
	sum := sha256Hex(files[name])

	host := func(id string) (*deployer, *cacheLog, *cacheSetup) {
		logs, log := newCacheLog(t)
		root := t.TempDir()
		cs, err := newCache(ctx, raw, root, noEnv, log)
		if err != nil {
			t.Fatalf("newCache(%s): %v", raw, err)
		}
		t.Cleanup(func() { cs.close() })
		d := newTestDeployer(t, reg, root)
		d.log, d.cache, d.fleet = log, cs, "app"
		d.cfg.HostID = id
		return d, logs, cs
	}
	deploy := func(d *deployer) {
		t.Helper()
		if _, err := d.check(ctx); err != nil {
			t.Fatalf("deploy on %s: %v", d.cfg.HostID, err)
		}
		assertServing(t, d.cfg.Root, "v1.0.0")
	}

	a, _, acs := host("a")
	deploy(a)
	if acs.remote {
		key := artifactKey("v1.0.0", name, sum) + "/blob"
		blob, err := acs.c.get(ctx, key)
		if err != nil {
			t.Fatalf("artifact not shared through the cache: %v", err)
		}
		blob[len(blob)/2] ^= 0x01
		if err := acs.c.put(ctx, key, blob); err != nil {
			t.Fatal(err)
		}
	} else {
		p := acs.artifactPath("v1.0.0", name, sum)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("artifact not kept in the cache: %v", err)
		}
		data[len(data)/2] ^= 0x01
		// The cache hard-links the download; replace the file, as damage
		// on disk would, rather than write through a link.
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	b, blogs, _ := host("b")
	deploy(b)
	if n := blogs.count("does not match the release's digest", "dropped"); n != 1 {
		t.Errorf("host b logged %d warnings about the damaged cache entry, want 1", n)
	}
	if n := blogs.count("artifact found in cache"); n != 0 {
		t.Errorf("host b took the damaged artifact from the cache")
	}

	c, clogs, _ := host("c")
	deploy(c)
	if n := clogs.count("artifact found in cache"); n != 1 {
		t.Errorf("host c did not take the artifact host b put back into the cache")
	}
	if n := clogs.count("does not match"); n != 0 {
		t.Errorf("host c found the cache entry damaged after host b replaced it")
	}
}
