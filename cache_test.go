package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// cacheLog collects log output for assertions and copies it to the test log.
type cacheLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (l *cacheLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out.Write(p)
	return l.buf.Write(p)
}

// count returns how many log lines contain every one of subs.
func (l *cacheLog) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.Lines(l.buf.String()) {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

func newCacheLog(t *testing.T) (*cacheLog, *slog.Logger) {
	l := &cacheLog{out: t.Output()}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testCacheLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestCacheNewOptions(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		raw                   string
		wantScheme            string
		wantTTL               time.Duration
		wantParallel          int
		wantLocal             string
		wantErr, wantNotInErr string
	}{
		{raw: "", wantScheme: "file", wantLocal: filepath.Join(root, ".dewy", "cache")},
		{raw: "file://" + root + "/c?registry-ttl=30s&max-parallel=2", wantScheme: "file", wantTTL: 30 * time.Second, wantParallel: 2, wantLocal: filepath.Join(root, "c")},
		{raw: "memory://", wantScheme: "memory", wantLocal: filepath.Join(root, ".dewy", "cache")},
		{raw: "redis://127.0.0.1:1/0?registry-ttl=5s&max-parallel=1&prefix=x&dial_timeout=1s", wantScheme: "redis", wantTTL: 5 * time.Second, wantParallel: 1},
		{raw: "consul://127.0.0.1:1/dewy?max-parallel=3", wantScheme: "consul", wantParallel: 3},
		{raw: "memory://?bogus=1", wantErr: `unknown option "bogus"`},
		{raw: "redis://u:s3cret@127.0.0.1:1/0?bogus=1", wantErr: `unknown option "bogus"`, wantNotInErr: "s3cret"},
		{raw: "redis://u:s3cret@127.0.0.1:1/x", wantErr: "invalid database number", wantNotInErr: "s3cret"},
		{raw: "redis://127.0.0.1:1/0?registry-ttl=soon", wantErr: "registry-ttl"},
		{raw: "memory://?max-parallel=-1", wantErr: "max-parallel"},
		{raw: "consul://127.0.0.1:1/p?artifact-max=1MiB", wantErr: "artifact-max"},
		{raw: "consul://tok:s3cret@127.0.0.1:1/p", wantErr: "CONSUL_HTTP_TOKEN", wantNotInErr: "s3cret"},
		{raw: "ftp://x/y", wantErr: `unknown scheme "ftp"`},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			cs, err := newCache(context.Background(), tt.raw, root, func(string) string { return "" }, slog.New(slog.DiscardHandler))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("newCache(%q) err = %v, want one containing %q", tt.raw, err, tt.wantErr)
				}
				if tt.wantNotInErr != "" && strings.Contains(err.Error(), tt.wantNotInErr) {
					t.Fatalf("newCache err %q shows the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("newCache(%q): %v", tt.raw, err)
			}
			defer cs.close()
			if cs.scheme != tt.wantScheme || cs.registryTTL != tt.wantTTL || cs.maxParallel != tt.wantParallel {
				t.Errorf("scheme, registry-ttl, max-parallel = %s, %v, %d; want %s, %v, %d",
					cs.scheme, cs.registryTTL, cs.maxParallel, tt.wantScheme, tt.wantTTL, tt.wantParallel)
			}
			if tt.wantLocal != "" && cs.local.dir != tt.wantLocal {
				t.Errorf("local dir = %s, want %s", cs.local.dir, tt.wantLocal)
			}
		})
	}
}

func TestCacheStateByHost(t *testing.T) {
	ctx := context.Background()
	for _, raw := range []string{"memory://", "file://" + t.TempDir()} {
		t.Run(raw[:strings.Index(raw, ":")], func(t *testing.T) {
			cs := testCacheSetup(t, raw)
			got, err := cs.loadState(ctx, "app", "web/1")
			if err != nil || got.Current != "" {
				t.Fatalf("loadState before any save = %+v, %v; want empty", got, err)
			}
			at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
			for _, h := range []string{"web/1", "web", "web%2F1"} {
				if err := cs.saveState(ctx, "app", h, &deployState{Current: "v1-" + h, SHA256: "ab", DeployedAt: at}); err != nil {
					t.Fatalf("saveState %s: %v", h, err)
				}
			}
			for _, h := range []string{"web/1", "web", "web%2F1"} {
				got, err := cs.loadState(ctx, "app", h)
				if err != nil || got.Current != "v1-"+h || !got.DeployedAt.Equal(at) {
					t.Errorf("loadState %s = %+v, %v; want current v1-%s deployed %v", h, got, err, h, at)
				}
			}
		})
	}
}

func TestCacheArtifactReuseAndPrune(t *testing.T) {
	ctx := context.Background()
	cs := testCacheSetup(t, "file://"+t.TempDir())
	data := []byte("#!/bin/sh\necho hi\n")
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:])
	if _, ok := cs.artifact(ctx, "v1.0.0", "app_linux_amd64", sum); ok {
		t.Fatal("artifact found before keepArtifact")
	}
	dl := filepath.Join(t.TempDir(), "download")
	if err := os.WriteFile(dl, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cs.keepArtifact(ctx, "v1.0.0", "app_linux_amd64", sum, dl); err != nil {
		t.Fatalf("keepArtifact: %v", err)
	}
	os.Remove(dl) // the caller removes its download; the cache keeps its own link
	p, ok := cs.artifact(ctx, "v1.0.0", "app_linux_amd64", sum)
	if !ok {
		t.Fatal("artifact not found after keepArtifact")
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Errorf("cached artifact = %q, want %q", got, data)
	}
	if _, ok := cs.artifact(ctx, "v1.0.0", "app_linux_amd64", strings.Repeat("0", 64)); ok {
		t.Error("artifact found under another digest")
	}
	// A damaged copy is not handed out.
	if err := os.WriteFile(p, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := cs.artifact(ctx, "v1.0.0", "app_linux_amd64", sum); ok {
		t.Error("damaged artifact handed out")
	}

	for _, tag := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
		os.WriteFile(dl, data, 0o644)
		if err := cs.keepArtifact(ctx, tag, "a b/c", sum, dl); err != nil {
			t.Fatalf("keepArtifact %s: %v", tag, err)
		}
	}
	removed, err := cs.pruneArtifacts(ctx, []string{"v1.2.0", "v1.1.0"})
	if err != nil {
		t.Fatalf("pruneArtifacts: %v", err)
	}
	if strings.Join(removed, ",") != "v1.0.0" {
		t.Errorf("pruned %v, want [v1.0.0]", removed)
	}
	for tag, want := range map[string]bool{"v1.0.0": false, "v1.1.0": true, "v1.2.0": true} {
		if _, ok := cs.artifact(ctx, tag, "a b/c", sum); ok != want {
			t.Errorf("after prune artifact %s present = %v, want %v", tag, ok, want)
		}
	}
}

// Artifacts no larger than artifact-max travel between hosts via the cache.
func TestCacheArtifactSharedRedis(t *testing.T) {
	addr := backendAddr(t, "redis", "DEWY_TEST_REDIS_ADDR")
	ctx := context.Background()
	raw := "redis://" + addr + "/0?artifact-max=1KiB&prefix=dewy-test-" + randomSuffix()
	a, b := testCacheSetup(t, raw), testCacheSetup(t, raw)
	small, large := []byte("small artifact"), bytes.Repeat([]byte("x"), 2048)
	for _, data := range [][]byte{small, large} {
		h := sha256.Sum256(data)
		sum := hex.EncodeToString(h[:])
		dl := filepath.Join(t.TempDir(), "dl")
		os.WriteFile(dl, data, 0o644)
		if err := a.keepArtifact(ctx, "v1", "app", sum, dl); err != nil {
			t.Fatalf("keepArtifact: %v", err)
		}
		p, ok := b.artifact(ctx, "v1", "app", sum)
		if want := len(data) <= 1024; ok != want {
			t.Fatalf("other host finds %d-byte artifact = %v, want %v", len(data), ok, want)
		}
		if ok {
			if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
				t.Errorf("shared artifact = %q, want %q", got, data)
			}
		}
	}
}

func TestCacheFileLeaseStaleLock(t *testing.T) {
	c, err := newFileCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	c.clk = clk
	ctx := context.Background()
	p, _ := c.path("slot")
	lock := filepath.Join(filepath.Dir(p), ".lock-"+filepath.Base(p))
	// lockAt writes a lock file as another process would have at t and
	// returns its age on the clock (the file system may round t).
	lockAt := func(at time.Time) time.Duration {
		t.Helper()
		if err := os.WriteFile(lock, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(lock, at, at); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(lock)
		if err != nil {
			t.Fatal(err)
		}
		return clk.now().Sub(fi.ModTime())
	}

	// A lock file left by a killed process: old enough to be broken.
	lockAt(clk.now().Add(-staleLock - time.Second))
	if ok, err := c.setNX(ctx, "slot", []byte("a"), time.Hour); err != nil || !ok {
		t.Fatalf("setNX past a stale lock file = %v, %v; want true", ok, err)
	}

	// A fresh one holds the key, and the key only, until it is staleLock old.
	age := lockAt(clk.now())
	if _, err := c.setNX(ctx, "other", []byte("a"), time.Hour); err != nil {
		t.Fatalf("setNX on another key: %v", err)
	}
	released := make(chan error, 1)
	go func() { released <- c.release(ctx, "slot", []byte("a")) }()
	clk.blockUntil(t, 1)
	clk.advance(staleLock - age)
	clk.blockUntil(t, 1) // waiting again: a lock exactly staleLock old still holds
	select {
	case err := <-released:
		t.Fatalf("release went past a lock file %v old: err = %v", staleLock, err)
	default:
	}
	clk.advance(time.Millisecond) // the lock poll's interval
	select {
	case err := <-released:
		if err != nil {
			t.Fatalf("release past a stale lock file: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("release still waits on a lock file older than staleLock")
	}
	if _, err := c.get(ctx, "slot"); !errors.Is(err, errNotFound) {
		t.Errorf("get after release: err = %v, want errNotFound", err)
	}

	// Waiting on a fresh lock file ends with ctx.
	lockAt(clk.now())
	cctx, cancel := context.WithCancel(ctx)
	go func() { released <- c.release(cctx, "slot", []byte("a")) }()
	clk.blockUntil(t, 1)
	cancel()
	if err := <-released; !errors.Is(err, context.Canceled) {
		t.Errorf("release while another process holds the lock file: err = %v, want it to wait until ctx ends", err)
	}
}
