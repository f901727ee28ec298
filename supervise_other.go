//go:build !linux

package main

import (
	"errors"
	"net"
	"syscall"
)

// Without SO_PASSCRED there is no way to tell the child's READY=1 from
// anyone else's, so children get no notify socket.
const canCheckSender = false

// Off Linux there is no Pdeathsig: a dewy killed with SIGKILL leaves its
// child running.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// wait reaps at once: there is no portable wait that leaves a zombie.
func (p *osProcess) wait() { p.waitErr = p.cmd.Wait() }

func (p *osProcess) reap() error { return p.waitErr }

// kill kills only the child: it may be reaped already, and its process
// group id could then belong to someone else.
func (p *osProcess) kill() { p.cmd.Process.Kill() }

func passCredentials(*net.UnixConn) error { return errors.ErrUnsupported }

func senderPID([]byte) int { return 0 }
