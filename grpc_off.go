//go:build nogrpc

package main

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
)

// Built with -tags nogrpc: gRPC is not linked. grpc:// keeps its row in the
// registry scheme table, so a grpc:// registry is refused when the
// configuration is checked (exit 2).
var errNoGRPC = errors.New("grpc:// support left out of this build (built with -tags nogrpc)")

func newGRPCRegistry(context.Context, *url.URL, selectOptions, func(string) string, *slog.Logger) (registry, error) {
	return nil, errNoGRPC
}

func checkGRPCURL(*url.URL, func(string) string) error { return errNoGRPC }
