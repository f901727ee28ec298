//go:build nogcs

package main

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
)

// Built with -tags nogcs: the Cloud Storage client is not linked. A gs://
// registry is refused with errNoGCS when dewy builds its registry at start
// (exit 2); a gs:// artifact URL is refused when that artifact is fetched.
var errNoGCS = errors.New("gs:// support left out of this build (built with -tags nogcs)")

func newGCSRegistry(context.Context, *url.URL, func(string) string, *slog.Logger) (registry, error) {
	return nil, errNoGCS
}

func newGCSStore(context.Context, *url.URL, func(string) string, *slog.Logger) (artifactStore, error) {
	return nil, errNoGCS
}
