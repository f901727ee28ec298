//go:build nos3

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
)

// Built with -tags nos3: the AWS SDK is not linked, and s3:// URLs are
// refused when the configuration is read.
type s3Registry struct{}

var (
	_ registry      = (*s3Registry)(nil)
	_ artifactStore = (*s3Registry)(nil)
)

var errNoS3 = errors.New("s3:// support left out of this build (built with -tags nos3)")

func newS3Registry(context.Context, *url.URL, func(string) string, *slog.Logger) (*s3Registry, error) {
	return nil, errNoS3
}

func (*s3Registry) releases(context.Context) ([]release, error) { return nil, errNoS3 }

func (*s3Registry) open(context.Context, *url.URL, int64) (io.ReadCloser, int64, error) {
	return nil, 0, errNoS3
}
