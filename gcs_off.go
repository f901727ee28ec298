//go:build nogcs

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
)

// Built with -tags nogcs: the Cloud Storage client is not linked, and gs://
// URLs are refused when the configuration is read.
type gcsRegistry struct{}

var (
	_ registry      = (*gcsRegistry)(nil)
	_ artifactStore = (*gcsRegistry)(nil)
)

var errNoGCS = errors.New("gs:// support left out of this build (built with -tags nogcs)")

func newGCSRegistry(context.Context, *url.URL, func(string) string, *slog.Logger) (*gcsRegistry, error) {
	return nil, errNoGCS
}

func (*gcsRegistry) releases(context.Context) ([]release, error) { return nil, errNoGCS }

func (*gcsRegistry) open(context.Context, *url.URL, int64) (io.ReadCloser, int64, error) {
	return nil, 0, errNoGCS
}
