package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

const (
	// A hook's output is kept as its first and last 2 KiB (the command
	// line and the error, usually), about 4 KiB in the audit record.
	hookOutputHead = 2 << 10
	hookOutputTail = 2 << 10
	// A chatty or runaway hook must not flood the log either.
	hookLogLines   = 1000
	hookLogLineMax = 1 << 10
	// hookTermGrace is how long a timed-out hook has between SIGTERM and
	// SIGKILL to clean up after itself.
	hookTermGrace = 2 * time.Second
	// hookPipeGrace bounds the wait for output after the whole group is
	// gone: only a process that left the group can still hold the pipe.
	hookPipeGrace = time.Second
)

// hookEnv is what a hook is told about the deploy, in addition to dewy's
// own environment.
type hookEnv struct {
	Command    string // server or assets
	Version    string // the release being deployed
	Previous   string // the release it replaces; empty on the first deploy
	ReleaseDir string
	SHA256     string // the artifact's
	Host       string
	Reason     string // why the deploy failed, for on_failure
}

// environ is e as variables. Every one is set, empty if unknown, so
// scripts may use `set -u`.
func (e hookEnv) environ() []string {
	return []string{
		"DEWY_COMMAND=" + e.Command,
		"DEWY_VERSION=" + e.Version,
		"DEWY_PREVIOUS_VERSION=" + e.Previous,
		"DEWY_RELEASE_DIR=" + e.ReleaseDir,
		"DEWY_ARTIFACT_SHA256=" + e.SHA256,
		"DEWY_HOST=" + e.Host,
		"DEWY_FAILURE_REASON=" + e.Reason,
	}
}

// runHook runs command with sh -c in dir and waits for it, at most timeout
// (none if timeout <= 0) and no longer than ctx. The hook runs in its own
// process group; when it exits, times out or is cancelled the whole group
// is killed, so nothing it started in the background outlives it (start
// daemons with setsid). Output is logged line by line and kept, clipped,
// in the result. ExitCode != 0 or Error != "" means the hook failed. An
// empty command does nothing and succeeds.
func runHook(ctx context.Context, name, command, dir string, env []string, timeout time.Duration, log *slog.Logger) (r hookResult) {
	r = hookResult{Name: name, Command: command}
	if command == "" {
		return r
	}
	start := time.Now()
	defer func() { r.Duration = time.Since(start) }()

	h, err := startHook(command, dir, env, &hookOutput{log: log, name: name})
	if err != nil {
		r.ExitCode, r.Error = -1, err.Error()
		return r
	}
	stopped, err := h.wait(ctx, timeout)
	r.Output = h.finish()
	r.ExitCode, r.Error = hookExit(err, stopped)
	log.Debug("hook finished", "hook", name, "exit_code", r.ExitCode, "err", r.Error, "took", time.Since(start))
	return r
}

// startedHook is a hook's shell, leader of its own process group, with one
// goroutine copying the group's output and one waiting for the shell.
type startedHook struct {
	pgid   int
	pr     *os.File
	out    *hookOutput
	copied chan struct{}
	waited chan error
}

// startHook starts command with sh -c in dir, in a process group of its
// own, its output going to out.
func startHook(command, dir string, env []string, out *hookOutput) (*startedHook, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	// One pipe we read ourselves rather than exec's copying goroutine:
	// Wait then returns when the shell exits, not when the last background
	// child closes its copy of the pipe.
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out.log.Debug("running hook", "hook", out.name)
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		// A missing directory makes exec blame the shell ("fork/exec
		// /bin/sh: no such file or directory"); name the real culprit.
		var pe *fs.PathError
		if _, serr := os.Stat(dir); dir != "" && errors.As(serr, &pe) {
			err = fmt.Errorf("directory %s: %w", dir, pe.Err)
		}
		return nil, fmt.Errorf("start: %w", err)
	}
	h := &startedHook{pgid: cmd.Process.Pid, pr: pr, out: out, copied: make(chan struct{}), waited: make(chan error, 1)}
	go func() {
		defer close(h.copied)
		io.Copy(out, pr)
		out.flush()
	}()
	go func() { h.waited <- cmd.Wait() }()
	return h, nil
}

// wait returns the shell's wait result once it exits. At the timeout (none
// if <= 0) or when ctx is done it stops the group first, and stopped says
// why.
func (h *startedHook) wait(ctx context.Context, timeout time.Duration) (stopped string, err error) {
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	select {
	case err = <-h.waited:
		return "", err
	case <-deadline:
		return fmt.Sprintf("killed after the %s hook timeout", timeout), stopHookGroup(h.pgid, h.waited)
	case <-ctx.Done():
		return fmt.Sprintf("killed: %v", ctx.Err()), stopHookGroup(h.pgid, h.waited)
	}
}

// finish kills what the exited hook left behind in its group and returns
// the output kept.
func (h *startedHook) finish() string {
	// Linux hands out PIDs in increasing order and reuses one only after
	// wrapping at pid_max, so the just-reaped group ID cannot belong to
	// anyone else.
	syscall.Kill(-h.pgid, syscall.SIGKILL)
	select {
	case <-h.copied:
	case <-time.After(hookPipeGrace):
		h.out.log.Warn("hook output still open after the hook's processes were killed; not reading further", "hook", h.out.name)
	}
	h.pr.Close()
	<-h.copied
	return h.out.String()
}

// hookExit is a hook result's exit code and error from the shell's wait
// result; stopped, the reason dewy killed the hook if it did, comes first.
func hookExit(err error, stopped string) (code int, why string) {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stopped
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && stopped == "" {
			stopped = "killed by " + ws.Signal().String()
		}
		return ee.ExitCode(), stopped
	case stopped != "":
		return -1, stopped
	default:
		return -1, err.Error()
	}
}

// stopHookGroup asks the group to stop, then kills it, and returns the
// shell's wait result.
func stopHookGroup(pgid int, waited <-chan error) error {
	syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(hookTermGrace)
	defer t.Stop()
	select {
	case err := <-waited:
		return err
	case <-t.C:
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	return <-waited
}

// hookOutput keeps the head and tail of a hook's output and logs it line
// by line, in bounded memory whatever the hook writes. Only the copying
// goroutine uses it until the copy is done.
type hookOutput struct {
	log    *slog.Logger
	name   string
	head   []byte
	tail   []byte
	total  int64
	line   []byte
	lines  int
	capped bool
}

func (o *hookOutput) Write(p []byte) (int, error) {
	n := len(p)
	o.total += int64(n)
	o.logLines(p)
	if room := hookOutputHead - len(o.head); room > 0 {
		k := min(room, len(p))
		o.head = append(o.head, p[:k]...)
		p = p[k:]
	}
	if len(p) > 0 {
		o.tail = append(o.tail, p...)
		// Trim only once the slack is used up, so that appending stays
		// amortised constant time.
		if len(o.tail) > 2*hookOutputTail {
			o.tail = append(o.tail[:0], o.tail[len(o.tail)-hookOutputTail:]...)
		}
	}
	return n, nil
}

func (o *hookOutput) logLines(p []byte) {
	for len(p) > 0 && !o.capped {
		room := hookLogLineMax - len(o.line)
		i := bytes.IndexByte(p, '\n')
		switch {
		case i >= 0 && i <= room:
			o.line = append(o.line, p[:i]...)
			o.emit()
			p = p[i+1:]
		case len(p) < room:
			o.line = append(o.line, p...)
			p = nil
		default: // an endless line is logged in pieces
			o.line = append(o.line, p[:room]...)
			o.emit()
			p = p[room:]
		}
	}
}

func (o *hookOutput) emit() {
	line := bytes.TrimRight(o.line, "\r")
	o.line = o.line[:0]
	if o.lines == hookLogLines {
		o.capped = true
		o.log.Info("hook output continues; not logging more of it", "hook", o.name)
		return
	}
	o.lines++
	o.log.Info("hook output", "hook", o.name, "line", string(bytes.ToValidUTF8(line, []byte("\uFFFD"))))
}

func (o *hookOutput) flush() {
	if len(o.line) > 0 && !o.capped {
		o.emit()
	}
}

// String is the kept output: all of it if small, else head and tail
// around a note of what was left out.
func (o *hookOutput) String() string {
	tail := o.tail
	if len(tail) > hookOutputTail {
		tail = tail[len(tail)-hookOutputTail:]
	}
	omitted := o.total - int64(len(o.head)) - int64(len(tail))
	if omitted == 0 {
		return string(bytes.ToValidUTF8(append(o.head[:len(o.head):len(o.head)], tail...), []byte("\uFFFD")))
	}
	return fmt.Sprintf("%s\n… %d bytes omitted …\n%s",
		bytes.ToValidUTF8(o.head, nil), omitted, bytes.ToValidUTF8(tail, nil))
}
