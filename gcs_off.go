//go:build nogcs

package main

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
)

// Built with -tags nogcs: the Cloud Storage client is not linked. gs:// keeps
// its rows in the scheme tables, so a gs:// registry is refused with errNoGCS
// when the configuration is checked (exit 2); a gs:// artifact URL is
// refused when that artifact is fetched.
var errNoGCS = errors.New("gs:// support left out of this build (built with -tags nogcs)")

func newGCSRegistry(context.Context, *url.URL, selectOptions, func(string) string, *slog.Logger) (registry, error) {
	return nil, errNoGCS
}

func newGCSStore(context.Context, *url.URL, func(string) string, *slog.Logger) (artifactStore, error) {
	return nil, errNoGCS
}

func checkGCSURL(*url.URL, func(string) string) error { return errNoGCS }
