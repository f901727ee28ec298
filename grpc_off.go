//go:build nogrpc

package main

import "errors"

// Built with -tags nogrpc: gRPC is not linked. grpc:// keeps its row in the
// registry scheme table, so a grpc:// registry is refused when the
// configuration is checked (exit 2).
var errNoGRPC = errors.New("grpc:// support left out of this build (built with -tags nogrpc)")

var newGRPCRegistry, _, checkGRPCURL = leftOut(errNoGRPC)
