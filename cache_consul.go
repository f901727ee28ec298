//go:build !noconsul

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// consulCache keeps keys as <prefix>/<key> in Consul's KV store. Leases
// are keys locked by a session with a TTL and behavior=delete: when the
// holder stops renewing, Consul invalidates the session and deletes the key.
type consulCache struct {
	kv     *api.KV
	sess   *api.Session
	prefix string
}

var _ cache = (*consulCache)(nil)

// checkConsulURL and openConsulCache are consul://'s row in the cache
// scheme table.
func checkConsulURL(cs *cacheSetup, u *url.URL, q url.Values) error {
	if cs.artifactMax > consulMaxValue-1024 {
		return fmt.Errorf("artifact-max %d is over Consul's 512 KiB value limit", cs.artifactMax)
	}
	if u.User != nil {
		return errors.New("put the Consul token in CONSUL_HTTP_TOKEN, not in the URL")
	}
	return noCacheOptions(cs, u, q)
}

// openConsulCache takes consul://host:port/prefix. The address falls back to
// CONSUL_HTTP_ADDR and the token comes from CONSUL_HTTP_TOKEN, as with the
// consul command; TLS settings come from the CONSUL_* variables too.
func openConsulCache(cs *cacheSetup, u *url.URL, _ url.Values, getenv func(string) string) (cache, error) {
	cfg := api.DefaultConfig()
	if v := getenv("CONSUL_HTTP_ADDR"); v != "" {
		cfg.Address = v
	}
	if v := getenv("CONSUL_HTTP_TOKEN"); v != "" {
		cfg.Token = v
	}
	if u.Host != "" {
		cfg.Address = u.Host
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix == "" {
		prefix = "dewy"
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	if cs.leaseTTL < consulMinTTL {
		cs.log.Info("lease-ttl raised to Consul's shortest session TTL", "lease_ttl", consulMinTTL)
		cs.leaseTTL = consulMinTTL
	}
	return &consulCache{kv: c.KV(), sess: c.Session(), prefix: prefix}, nil
}

func (c *consulCache) key(k string) string { return c.prefix + "/" + k }

func consulErr(op, key string, err error) error {
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusRequestEntityTooLarge {
		return fmt.Errorf("cache %s %s: %w", op, key, errTooLarge)
	}
	return fmt.Errorf("cache %s %s: %w", op, key, err)
}

func qo(ctx context.Context) *api.QueryOptions { return (&api.QueryOptions{}).WithContext(ctx) }
func wo(ctx context.Context) *api.WriteOptions { return (&api.WriteOptions{}).WithContext(ctx) }

func (c *consulCache) get(ctx context.Context, key string) ([]byte, error) {
	p, _, err := c.kv.Get(c.key(key), qo(ctx))
	if err != nil {
		return nil, consulErr("get", key, err)
	}
	if p == nil {
		return nil, fmt.Errorf("cache get %s: %w", key, errNotFound)
	}
	return p.Value, nil
}

func (c *consulCache) put(ctx context.Context, key string, val []byte) error {
	if len(val) > consulMaxValue {
		return fmt.Errorf("cache put %s: %w (%d bytes, Consul holds up to %d)", key, errTooLarge, len(val), consulMaxValue)
	}
	if _, err := c.kv.Put(&api.KVPair{Key: c.key(key), Value: val}, wo(ctx)); err != nil {
		return consulErr("put", key, err)
	}
	return nil
}

func (c *consulCache) delete(ctx context.Context, key string) error {
	if _, err := c.kv.Delete(c.key(key), wo(ctx)); err != nil {
		return consulErr("delete", key, err)
	}
	return nil
}

func (c *consulCache) setNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	if len(val) > consulMaxValue {
		return false, fmt.Errorf("cache setnx %s: %w", key, errTooLarge)
	}
	k := c.key(key)
	// Most callers lose the race; a read spares Consul a session for them.
	if p, _, err := c.kv.Get(k, qo(ctx)); err != nil {
		return false, consulErr("setnx", key, err)
	} else if p != nil {
		return false, nil
	}
	if ttl <= 0 {
		ok, _, err := c.kv.CAS(&api.KVPair{Key: k, Value: val}, wo(ctx)) // index 0: create only
		if err != nil {
			return false, consulErr("setnx", key, err)
		}
		return ok, nil
	}
	id, _, err := c.sess.CreateNoChecks(&api.SessionEntry{
		Name:     "dewy lease",
		TTL:      max(ttl, consulMinTTL).String(),
		Behavior: api.SessionBehaviorDelete,
		// Consul's default lock delay (15 s) would keep a freed slot
		// closed well past the lease; 1 ms is the smallest it takes.
		LockDelay: time.Millisecond,
	}, wo(ctx))
	if err != nil {
		return false, consulErr("setnx", key, err)
	}
	// Acquire alone would also take a key that exists without a lock.
	ok, _, _, err := c.kv.Txn(api.KVTxnOps{
		{Verb: api.KVCheckNotExists, Key: k},
		{Verb: api.KVLock, Key: k, Value: val, Session: id},
	}, qo(ctx))
	if err != nil || !ok {
		c.sess.Destroy(id, wo(context.WithoutCancel(ctx)))
	}
	if err != nil {
		return false, consulErr("setnx", key, err)
	}
	return ok, nil
}

// refresh renews the session holding key. Consul renews a session by the
// TTL it was created with, so ttl here must match setNX's.
func (c *consulCache) refresh(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	p, _, err := c.kv.Get(c.key(key), qo(ctx))
	if err != nil {
		return false, consulErr("refresh", key, err)
	}
	if p == nil || !bytes.Equal(p.Value, val) {
		return false, nil
	}
	if p.Session == "" {
		return true, nil // stored without expiry
	}
	se, _, err := c.sess.Renew(p.Session, wo(ctx))
	if err != nil {
		return false, consulErr("refresh", key, err)
	}
	return se != nil, nil
}

func (c *consulCache) release(ctx context.Context, key string, val []byte) error {
	p, _, err := c.kv.Get(c.key(key), qo(ctx))
	if err != nil {
		return consulErr("release", key, err)
	}
	if p == nil || !bytes.Equal(p.Value, val) {
		return nil
	}
	if _, _, err := c.kv.DeleteCAS(p, wo(ctx)); err != nil {
		return consulErr("release", key, err)
	}
	if p.Session != "" {
		if _, err := c.sess.Destroy(p.Session, wo(ctx)); err != nil {
			return consulErr("release", key, err)
		}
	}
	return nil
}

func (c *consulCache) list(ctx context.Context, prefix string) ([]string, error) {
	full, _, err := c.kv.Keys(c.key(prefix), "", qo(ctx))
	if err != nil {
		return nil, consulErr("list", prefix, err)
	}
	keys := make([]string, 0, len(full))
	for _, k := range full {
		keys = append(keys, strings.TrimPrefix(k, c.prefix+"/"))
	}
	return keys, nil
}
