//go:build !noredis

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// redisCache keeps keys as <prefix>/<key> in one Redis database.
type redisCache struct {
	rdb    *redis.Client
	prefix string
}

var (
	_ cache     = (*redisCache)(nil)
	_ io.Closer = (*redisCache)(nil) // newCache closes the client at shutdown
)

// Compare-and-act must happen inside Redis: between a GET and a PEXPIRE
// from here, the lease may expire and another host take it.
var (
	redisRefresh = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
	redisRelease = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
)

// checkRedisURL and openRedisCache are redis:// and rediss://'s rows in the
// cache scheme table.
func checkRedisURL(_ *cacheSetup, u *url.URL, q url.Values) error {
	_, _, err := redisOptions(u, q)
	return err
}

// openRedisCache takes redis://[user:password@]host:port/db?prefix=dewy
// (rediss:// for TLS). Without a password in the URL, REDISCLI_AUTH
// (redis-cli's variable) supplies one, which keeps it off the command line.
func openRedisCache(cs *cacheSetup, u *url.URL, q url.Values, getenv func(string) string) (cache, error) {
	opt, prefix, err := redisOptions(u, q)
	if err != nil {
		return nil, err
	}
	if opt.Password == "" {
		opt.Password = getenv("REDISCLI_AUTH")
	}
	// A cache call has its own short deadline; retrying inside it only
	// delays the fallback.
	opt.MaxRetries = 1
	opt.DialerRetries = 1
	opt.DialTimeout = cs.timeout
	opt.ReadTimeout, opt.WriteTimeout = cs.timeout, cs.timeout
	opt.ContextTimeoutEnabled = true // without it go-redis waits ReadTimeout whatever ctx says
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	// go-redis logs connection failures to stderr through a process-wide
	// logger; dewy reports each failing cache call itself (cacheSetup.call).
	silenceRedis.Do(func() { redis.SetLogger(&logging.VoidLogger{}) })
	return &redisCache{rdb: redis.NewClient(opt), prefix: prefix}, nil
}

// redisOptions reads the URL for go-redis: prefix is dewy's option, the
// rest of q go-redis's own.
func redisOptions(u *url.URL, q url.Values) (*redis.Options, string, error) {
	if u.Host == "" {
		// go-redis would quietly use localhost:6379; say which host instead.
		return nil, "", fmt.Errorf("want %s://host:port/db", u.Scheme)
	}
	prefix := "dewy"
	if q.Has("prefix") {
		prefix = strings.Trim(q.Get("prefix"), "/")
		q.Del("prefix")
	}
	// go-redis rejects options it does not know; ours are gone by now.
	clean := &url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host, Path: u.Path, RawQuery: q.Encode()}
	opt, err := redis.ParseURL(clean.String())
	if err != nil {
		if _, name, ok := strings.Cut(err.Error(), "unexpected option: "); ok {
			return nil, "", fmt.Errorf("unknown option %q", name)
		}
		return nil, "", err // go-redis's messages name the field, never the password
	}
	return opt, prefix, nil
}

var silenceRedis sync.Once

func (c *redisCache) Close() error { return c.rdb.Close() }

func (c *redisCache) key(k string) string {
	if c.prefix == "" {
		return k
	}
	return c.prefix + "/" + k
}

func (c *redisCache) get(ctx context.Context, key string) ([]byte, error) {
	v, err := c.rdb.Get(ctx, c.key(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("cache get %s: %w", key, errNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("cache get %s: %w", key, err)
	}
	return v, nil
}

func (c *redisCache) put(ctx context.Context, key string, val []byte) error {
	if err := c.rdb.Set(ctx, c.key(key), val, 0).Err(); err != nil {
		return fmt.Errorf("cache put %s: %w", key, err)
	}
	return nil
}

func (c *redisCache) delete(ctx context.Context, key string) error {
	if err := c.rdb.Del(ctx, c.key(key)).Err(); err != nil {
		return fmt.Errorf("cache delete %s: %w", key, err)
	}
	return nil
}

func (c *redisCache) setNX(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	ok, err := c.rdb.SetNX(ctx, c.key(key), val, ttl).Result() // SET key val PX ttl NX
	if err != nil {
		return false, fmt.Errorf("cache setnx %s: %w", key, err)
	}
	return ok, nil
}

func (c *redisCache) refresh(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	n, err := redisRefresh.Run(ctx, c.rdb, []string{c.key(key)}, val, max(ttl.Milliseconds(), 1)).Int()
	if err != nil {
		return false, fmt.Errorf("cache refresh %s: %w", key, err)
	}
	return n == 1, nil
}

func (c *redisCache) release(ctx context.Context, key string, val []byte) error {
	if err := redisRelease.Run(ctx, c.rdb, []string{c.key(key)}, val).Err(); err != nil {
		return fmt.Errorf("cache release %s: %w", key, err)
	}
	return nil
}

func (c *redisCache) list(ctx context.Context, prefix string) ([]string, error) {
	// SCAN, not KEYS: KEYS blocks the server for the whole keyspace.
	var keys []string
	full := c.key(prefix)
	it := c.rdb.Scan(ctx, 0, redisGlobEscape(full)+"*", 200).Iterator()
	for it.Next(ctx) {
		keys = append(keys, strings.TrimPrefix(it.Val(), c.key("")))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("cache list %s: %w", prefix, err)
	}
	return keys, nil
}

// redisGlobEscape quotes the characters MATCH treats as a pattern.
func redisGlobEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\^-`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
