package main

import (
	"os"
	"os/exec"
)

// A process is one started generation as the supervisor's loop sees it. It
// is the seam between the loop and os/exec: tests hand the loop fakes that
// exit when told to. Every method but wait is called from the run goroutine.
type process interface {
	pid() int
	// signal sends sig to the process alone: the app decides how to stop
	// whatever it spawned.
	signal(sig os.Signal) error
	// kill sends SIGKILL to the process and, where that is safe, to its
	// whole group. It is called only before reap.
	kill()
	// wait blocks until the process has exited. Where the system allows it
	// leaves a zombie (Linux), whose pid pins the group id for kill.
	wait()
	// reap collects the process once wait has returned and returns its
	// exit status: nil for a zero exit.
	reap() error
}

// A procSpec is how to start one generation.
type procSpec struct {
	path  string
	args  []string
	dir   string
	env   []string
	files []*os.File // fd 3 on; the caller closes its copies once started
}

// osProcess is a real child process, in its own process group and killed
// by the kernel should dewy die first (sysProcAttr).
type osProcess struct {
	cmd     *exec.Cmd
	waitErr error // off Linux: Wait's result, set before wait returns
}

var _ process = (*osProcess)(nil)

// startOSProcess is the supervisor's newProc. It must run on the thread
// that run keeps locked, for Pdeathsig's sake.
func startOSProcess(sp procSpec) (process, error) {
	cmd := exec.Command(sp.path, sp.args...)
	cmd.Dir = sp.dir
	cmd.Env = sp.env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = sp.files
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &osProcess{cmd: cmd}, nil
}

func (p *osProcess) pid() int { return p.cmd.Process.Pid }

func (p *osProcess) signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }
