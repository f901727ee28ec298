//go:build noconsul

package main

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// consulCache is left out of this build (built with -tags noconsul).
type consulCache struct{}

var _ cache = (*consulCache)(nil)

func newConsulCache(*url.URL, url.Values, func(string) string) (*consulCache, error) {
	return nil, errors.New("this dewy was built without Consul support (-tags noconsul)")
}

func (*consulCache) get(context.Context, string) ([]byte, error)   { return nil, errNotFound }
func (*consulCache) put(context.Context, string, []byte) error     { return nil }
func (*consulCache) delete(context.Context, string) error          { return nil }
func (*consulCache) release(context.Context, string, []byte) error { return nil }
func (*consulCache) setNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, nil
}
func (*consulCache) refresh(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, nil
}

func (*consulCache) list(context.Context, string) ([]string, error) { return nil, nil }
