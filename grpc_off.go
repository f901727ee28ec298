//go:build nogrpc

package main

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
)

// Built with -tags nogrpc: gRPC is not linked, and a grpc:// registry is
// refused when dewy builds its registry at start (exit 2).
func newGRPCRegistry(context.Context, *url.URL, string, func(string) string, *slog.Logger) (registry, error) {
	return nil, errors.New("grpc:// support left out of this build (built with -tags nogrpc)")
}
