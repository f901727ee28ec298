package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fileCache keeps each key in its own file under dir/kv, written atomically
// (temp file beside it + fsync + rename). A file starts with its expiry
// (8 bytes, Unix nanoseconds, 0 for none) followed by the value.
//
// Leases are safe between processes on one host only: each lease operation
// holds a lock file created with O_EXCL, and expiry is read from the file.
// Several hosts sharing a directory over NFS get no such guarantee.
type fileCache struct {
	dir string
	clk clock
}

var _ cache = (*fileCache)(nil)

// staleLock is when a lock file is taken to be left by a killed process:
// a lock is held for one read and one write, well under a millisecond.
const staleLock = 10 * time.Second

// maxNameLen keeps file names under the 255 bytes most file systems allow.
const maxNameLen = 200

// checkFileCacheURL and openFileCache are file://'s row in the cache
// scheme table.
func checkFileCacheURL(cs *cacheSetup, u *url.URL, q url.Values) error {
	if u.Host != "" && u.Host != "localhost" {
		return errors.New("file:// takes a local path (file:///dir)")
	}
	if u.Path == "" {
		return errors.New("no directory (want file:///dir)")
	}
	return noCacheOptions(cs, u, q)
}

func openFileCache(_ *cacheSetup, u *url.URL, _ url.Values, _ func(string) string) (cache, error) {
	return asBackend[cache](newFileCache(filepath.FromSlash(u.Path)))
}

func newFileCache(dir string) (*fileCache, error) {
	if err := os.MkdirAll(filepath.Join(dir, "kv"), 0o755); err != nil {
		return nil, fmt.Errorf("prepare cache directory: %w", err)
	}
	return &fileCache{dir: dir, clk: realClock{}}, nil
}

// escapeName turns any string into one safe file name: bytes other than
// letters, digits, '-', '_' and a '.' that does not lead become %XX.
func escapeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' && i > 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func unescapeName(s string) (string, error) { return url.PathUnescape(s) }

func (c *fileCache) path(key string) (string, error) {
	if key == "" {
		return "", errors.New("empty cache key")
	}
	name := escapeName(key)
	if len(name) > maxNameLen {
		h := sha256.Sum256([]byte(key))
		name = "h-" + hex.EncodeToString(h[:])
	}
	return filepath.Join(c.dir, "kv", name), nil
}

// read returns the live value at path, or errNotFound.
func (c *fileCache) read(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	if len(data) < 8 {
		return nil, fmt.Errorf("cache file %s: truncated", path)
	}
	if exp := int64(binary.BigEndian.Uint64(data)); exp != 0 && c.clk.now().UnixNano() >= exp {
		return nil, errNotFound
	}
	return data[8:], nil
}

func (c *fileCache) write(path string, val []byte, ttl time.Duration) error {
	buf := make([]byte, 8, 8+len(val))
	if ttl > 0 {
		binary.BigEndian.PutUint64(buf, uint64(c.clk.now().Add(ttl).UnixNano()))
	}
	return writeFileAtomic(path, append(buf, val...), 0o644)
}

func (c *fileCache) get(ctx context.Context, key string) ([]byte, error) {
	p, err := c.path(key)
	if err != nil {
		return nil, err
	}
	v, err := c.read(p)
	if err != nil {
		return nil, fmt.Errorf("cache get %s: %w", key, err)
	}
	return v, nil
}

func (c *fileCache) put(ctx context.Context, key string, val []byte) error {
	p, err := c.path(key)
	if err != nil {
		return err
	}
	if err := c.write(p, val, 0); err != nil {
		return fmt.Errorf("cache put %s: %w", key, err)
	}
	return nil
}

func (c *fileCache) delete(ctx context.Context, key string) error {
	p, err := c.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache delete %s: %w", key, err)
	}
	return nil
}

func (c *fileCache) setNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	var stored bool
	err := c.locked(ctx, key, func(p string) error {
		_, err := c.read(p)
		if !errors.Is(err, errNotFound) {
			return err // held (nil) or broken
		}
		stored = true
		return c.write(p, val, ttl)
	})
	if err != nil {
		return false, fmt.Errorf("cache setnx %s: %w", key, err)
	}
	return stored, nil
}

func (c *fileCache) refresh(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	var held bool
	err := c.locked(ctx, key, func(p string) error {
		cur, err := c.read(p)
		if errors.Is(err, errNotFound) {
			return nil
		}
		if err != nil || !bytes.Equal(cur, val) {
			return err
		}
		held = true
		return c.write(p, val, ttl)
	})
	if err != nil {
		return false, fmt.Errorf("cache refresh %s: %w", key, err)
	}
	return held, nil
}

func (c *fileCache) release(ctx context.Context, key string, val []byte) error {
	err := c.locked(ctx, key, func(p string) error {
		cur, err := c.read(p)
		if errors.Is(err, errNotFound) {
			return nil
		}
		if err != nil || !bytes.Equal(cur, val) {
			return err
		}
		return os.Remove(p)
	})
	if err != nil {
		return fmt.Errorf("cache release %s: %w", key, err)
	}
	return nil
}

// locked runs f with key's lock file held. The lock file is created with
// O_EXCL, so one process at a time reads and rewrites the key.
func (c *fileCache) locked(ctx context.Context, key string, f func(path string) error) error {
	p, err := c.path(key)
	if err != nil {
		return err
	}
	lock := filepath.Join(filepath.Dir(p), ".lock-"+filepath.Base(p))
	for {
		lf, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			lf.Close()
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		if fi, err := os.Stat(lock); err == nil && c.clk.now().Sub(fi.ModTime()) > staleLock {
			os.Remove(lock)
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.clk.after(time.Millisecond):
		}
	}
	defer os.Remove(lock)
	return f(p)
}

// list reads the key names back from the file names. A key too long for a
// file name is stored under its hash and cannot be listed; the keys the
// fleet lists are short.
func (c *fileCache) list(ctx context.Context, prefix string) ([]string, error) {
	dir := filepath.Join(c.dir, "kv")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cache list %s: %w", prefix, err)
	}
	var keys []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "h-") && len(name) == 66 {
			continue // lock and temp files begin with '.', which escapeName never leaves leading
		}
		k, err := unescapeName(name)
		if err != nil || !strings.HasPrefix(k, prefix) {
			continue
		}
		if _, err := c.read(filepath.Join(dir, name)); err == nil {
			keys = append(keys, k)
		}
	}
	return keys, nil
}
