//go:build noredis

package main

import (
	"errors"
	"net/url"
)

// Built with -tags noredis: go-redis is not linked; redis:// and rediss://
// keep their rows in the cache scheme table and are refused.
var errNoRedis = errors.New("this dewy was built without Redis support (-tags noredis)")

func checkRedisURL(*cacheSetup, *url.URL, url.Values) error { return errNoRedis }

func openRedisCache(*cacheSetup, *url.URL, url.Values, func(string) string) (cache, error) {
	return nil, errNoRedis
}
