package main

import (
	"fmt"
	"net"
	"os/user"
	"strconv"
	"syscall"
)

// unixPeer names the process on the other end of a unix socket by its uid,
// which the kernel vouches for (SO_PEERCRED).
func unixPeer(c *net.UnixConn) string {
	raw, err := c.SyscallConn()
	if err != nil {
		return "unix socket"
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return "unix socket"
	}
	uid := strconv.FormatUint(uint64(cred.Uid), 10)
	if u, err := user.LookupId(uid); err == nil {
		return fmt.Sprintf("uid %s (%s)", uid, u.Username)
	}
	return "uid " + uid
}
