//go:build noconsul

package main

import (
	"errors"
	"net/url"
)

// Built with -tags noconsul: the Consul client is not linked; consul:// keeps
// its row in the cache scheme table and is refused.
var errNoConsul = errors.New("this dewy was built without Consul support (-tags noconsul)")

func checkConsulURL(*cacheSetup, *url.URL, url.Values) error { return errNoConsul }

func openConsulCache(*cacheSetup, *url.URL, url.Values, func(string) string) (cache, error) {
	return nil, errNoConsul
}
