//go:build nogrpc

package main

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
)

// errNoGRPC is what every grpc:// use says in a build without grpc.
var errNoGRPC = errors.New("grpc:// support left out of this build (built with -tags nogrpc)")

// grpcRegistry exists so the scheme switch compiles; it is never built.
type grpcRegistry struct{}

var (
	_ registry = (*grpcRegistry)(nil)
	_ reporter = (*grpcRegistry)(nil)
)

func newGRPCRegistry(context.Context, *url.URL, string, func(string) string, *slog.Logger) (*grpcRegistry, error) {
	return nil, errNoGRPC
}

func (*grpcRegistry) releases(context.Context) ([]release, error) { return nil, errNoGRPC }

func (*grpcRegistry) report(context.Context, deployReport) error { return errNoGRPC }
