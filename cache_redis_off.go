//go:build noredis

package main

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// redisCache is left out of this build (built with -tags noredis).
type redisCache struct{}

var _ cache = (*redisCache)(nil)

func newRedisCache(*url.URL, url.Values, func(string) string, time.Duration) (*redisCache, error) {
	return nil, errors.New("this dewy was built without Redis support (-tags noredis)")
}

func (*redisCache) Close() error                                  { return nil }
func (*redisCache) get(context.Context, string) ([]byte, error)   { return nil, errNotFound }
func (*redisCache) put(context.Context, string, []byte) error     { return nil }
func (*redisCache) delete(context.Context, string) error          { return nil }
func (*redisCache) release(context.Context, string, []byte) error { return nil }
func (*redisCache) setNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, nil
}
func (*redisCache) refresh(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, nil
}
func (*redisCache) list(context.Context, string) ([]string, error) { return nil, nil }
