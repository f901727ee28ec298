package main

import (
	"net"
	"syscall"
	"unsafe"
)

// canCheckSender: Linux attaches the sender's pid to a unix datagram
// (SO_PASSCRED), so a child's notify socket can be offered.
const canCheckSender = true

// sysProcAttr puts each child in its own process group, so that a child and
// whatever it spawned are killed together, and asks the kernel to SIGKILL the
// child if dewy dies first: a dewy killed with SIGKILL then leaves no
// orphan holding the listening sockets. Pdeathsig survives the exec shim's
// execve. It is tied to the thread that forked, which run keeps alive.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// wait blocks until p has exited but leaves it unreaped (WNOWAIT): as long
// as the zombie holds its pid, run can signal the process group without risk
// of hitting a recycled id. run reaps it.
func (p *osProcess) wait() {
	const pPID = 1     // P_PID in <sys/wait.h>
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(p.pid()),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if e != syscall.EINTR {
			return
		}
	}
}

func (p *osProcess) reap() error { return p.cmd.Wait() }

// kill sends SIGKILL to p's whole process group. Only run calls it, and
// only before it has reaped p.
func (p *osProcess) kill() { syscall.Kill(-p.pid(), syscall.SIGKILL) }

func passCredentials(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	return serr
}

// senderPID returns the pid the kernel attested for a datagram, or 0.
func senderPID(oob []byte) int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	pid := 0
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Level != syscall.SOL_SOCKET {
			continue
		}
		switch m.Header.Type {
		case syscall.SCM_CREDENTIALS:
			if cred, err := syscall.ParseUnixCredentials(m); err == nil {
				pid = int(cred.Pid)
			}
		case syscall.SCM_RIGHTS:
			// FDSTORE=1 sends descriptors along; dewy keeps none.
			if fds, err := syscall.ParseUnixRights(m); err == nil {
				for _, fd := range fds {
					syscall.Close(fd)
				}
			}
		}
	}
	return pid
}
