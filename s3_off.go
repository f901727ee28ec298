//go:build nos3

package main

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
)

// Built with -tags nos3: the AWS SDK is not linked. s3:// keeps its rows in
// the scheme tables, so an s3:// registry is refused with errNoS3 when the
// configuration is checked (exit 2); an s3:// artifact URL is refused when
// that artifact is fetched.
var errNoS3 = errors.New("s3:// support left out of this build (built with -tags nos3)")

func newS3Registry(context.Context, *url.URL, selectOptions, func(string) string, *slog.Logger) (registry, error) {
	return nil, errNoS3
}

func newS3Store(context.Context, *url.URL, func(string) string, *slog.Logger) (artifactStore, error) {
	return nil, errNoS3
}

func checkS3URL(*url.URL, func(string) string) error { return errNoS3 }
