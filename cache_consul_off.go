//go:build noconsul

package main

import (
	"errors"
	"net/url"
)

// Built with -tags noconsul: the Consul client is not linked.
func newConsulCache(*url.URL, url.Values, func(string) string) (cache, error) {
	return nil, errors.New("this dewy was built without Consul support (-tags noconsul)")
}
