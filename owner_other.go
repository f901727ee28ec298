//go:build !linux

package main

import (
	"errors"
	"net"
)

// Off Linux dewy cannot learn which process accepted a connection, so health
// probes go to each generation's private listener only.
const canTellAcceptor = false

func acceptedInode(int, *net.TCPAddr) (uint64, error) { return 0, errors.ErrUnsupported }

func groupHolds(int, uint64) bool { return false }
