//go:build noredis

package main

import (
	"errors"
	"net/url"
	"time"
)

// Built with -tags noredis: go-redis is not linked.
func newRedisCache(*url.URL, url.Values, func(string) string, time.Duration) (cache, error) {
	return nil, errors.New("this dewy was built without Redis support (-tags noredis)")
}
