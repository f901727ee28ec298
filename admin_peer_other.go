//go:build !linux

package main

import "net"

// unixPeer: only Linux has SO_PEERCRED; elsewhere the socket is all we know.
func unixPeer(*net.UnixConn) string { return "unix socket" }
