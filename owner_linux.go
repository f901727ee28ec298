package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// canTellAcceptor: Linux lists every TCP socket with its inode in
// /proc/net/tcp{,6}, and every process's descriptors in /proc/PID/fd, so dewy
// can learn which process accepted a connection it made to a shared socket.
var canTellAcceptor = func() bool {
	_, err := os.Stat("/proc/net/tcp")
	return err == nil
}()

// acceptedInode returns the inode of the server side of the TCP connection
// from client to port, or 0 while it waits in the accept queue: the kernel
// gives a socket its inode only when accept(2) hands it to a process.
func acceptedInode(port int, client *net.TCPAddr) (uint64, error) {
	var lastErr error
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		ino, found, err := scanTCPTable(table, port, client)
		if found {
			return ino, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			lastErr = err
		}
	}
	return 0, lastErr
}

func scanTCPTable(path string, port int, client *net.TCPAddr) (ino uint64, found bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		lip, lport, ok := parseProcAddr(fields[1])
		if !ok || lport != port {
			continue
		}
		rip, rport, ok := parseProcAddr(fields[2])
		if !ok || rport != client.Port || !rip.Equal(client.IP) || lip.IsUnspecified() {
			continue
		}
		n, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%s: inode %q: %w", path, fields[9], err)
		}
		return n, true, nil
	}
	return 0, false, sc.Err()
}

// parseProcAddr decodes "0100007F:1F90": the address as the kernel stores it,
// in host-order 32-bit words (little-endian here), then the port in hex.
func parseProcAddr(s string) (net.IP, int, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, false
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return nil, 0, false
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return net.IP(raw), int(port), true
}

// groupHolds reports whether a process in process group pgid holds a
// descriptor for socket inode ino.
func groupHolds(pgid int, ino uint64) bool {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	want := "socket:[" + strconv.FormatUint(ino, 10) + "]"
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || processGroup(pid) != pgid {
			continue
		}
		dir := "/proc/" + p.Name() + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if t, err := os.Readlink(dir + "/" + fd.Name()); err == nil && t == want {
				return true
			}
		}
	}
	return false
}

// processGroup returns pid's process group, or -1.
func processGroup(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return -1
	}
	g, err := strconv.Atoi(f[2])
	if err != nil {
		return -1
	}
	return g
}
