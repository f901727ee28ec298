package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
)

// memoryCache lives and dies with this process: one dewy, one host.
type memoryCache struct {
	clk         clock
	mu          sync.Mutex
	itemsLocked map[string]memoryItem
}

type memoryItem struct {
	val []byte
	exp time.Time // zero: never
}

var _ cache = (*memoryCache)(nil)

// openMemoryCache is memory://'s row in the cache scheme table.
func openMemoryCache(*cacheSetup, *url.URL, url.Values, func(string) string) (cache, error) {
	return newMemoryCache(), nil
}

func newMemoryCache() *memoryCache {
	return &memoryCache{clk: realClock{}, itemsLocked: map[string]memoryItem{}}
}

// liveLocked returns key's item unless it is absent or expired.
func (c *memoryCache) liveLocked(key string) (memoryItem, bool) {
	it, ok := c.itemsLocked[key]
	if ok && !it.exp.IsZero() && !c.clk.now().Before(it.exp) {
		delete(c.itemsLocked, key)
		return memoryItem{}, false
	}
	return it, ok
}

func (c *memoryCache) expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return c.clk.now().Add(ttl)
}

func (c *memoryCache) get(ctx context.Context, key string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.liveLocked(key)
	if !ok {
		return nil, fmt.Errorf("cache get %s: %w", key, errNotFound)
	}
	return bytes.Clone(it.val), nil
}

func (c *memoryCache) put(ctx context.Context, key string, val []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.itemsLocked[key] = memoryItem{val: bytes.Clone(val)}
	return nil
}

func (c *memoryCache) delete(ctx context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.itemsLocked, key)
	return nil
}

func (c *memoryCache) setNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.liveLocked(key); ok {
		return false, nil
	}
	c.itemsLocked[key] = memoryItem{val: bytes.Clone(val), exp: c.expiry(ttl)}
	return true, nil
}

func (c *memoryCache) refresh(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.liveLocked(key)
	if !ok || !bytes.Equal(it.val, val) {
		return false, nil
	}
	it.exp = c.expiry(ttl)
	c.itemsLocked[key] = it
	return true, nil
}

func (c *memoryCache) release(ctx context.Context, key string, val []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if it, ok := c.liveLocked(key); ok && bytes.Equal(it.val, val) {
		delete(c.itemsLocked, key)
	}
	return nil
}

func (c *memoryCache) list(ctx context.Context, prefix string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []string
	for k := range c.itemsLocked {
		if _, ok := c.liveLocked(k); ok && strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}
