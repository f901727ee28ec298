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

// hookEnv is the environment a hook sees in addition to dewy's own. Every
// variable is set, empty if unknown, so scripts may use `set -u`.
func hookEnv(command, version, previous, releaseDir, sha256, host, reason string) []string {
	return []string{
		"DEWY_COMMAND=" + command,
		"DEWY_VERSION=" + version,
		"DEWY_PREVIOUS_VERSION=" + previous,
		"DEWY_RELEASE_DIR=" + releaseDir,
		"DEWY_ARTIFACT_SHA256=" + sha256,
		"DEWY_HOST=" + host,
		"DEWY_FAILURE_REASON=" + reason,
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

	pr, pw, err := os.Pipe()
	if err != nil {
		r.ExitCode, r.Error = -1, fmt.Sprintf("output pipe: %v", err)
		return r
	}
	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	// One pipe we read ourselves rather than exec's copying goroutine:
	// Wait then returns when the shell exits, not when the last background
	// child closes its copy of the pipe.
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log.Debug("running hook", "hook", name)
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
		r.ExitCode, r.Error = -1, fmt.Sprintf("start: %v", err)
		return r
	}
	pgid := cmd.Process.Pid
	out := &hookOutput{log: log, name: name}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(out, pr)
		out.flush()
	}()

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	select {
	case err = <-waited:
	case <-deadline:
		r.Error = fmt.Sprintf("killed after the %s hook timeout", timeout)
		err = stopHookGroup(pgid, waited)
	case <-ctx.Done():
		r.Error = fmt.Sprintf("killed: %v", ctx.Err())
		err = stopHookGroup(pgid, waited)
	}
	// Whatever the hook left behind in its group goes with it. Linux hands
	// out PIDs in increasing order and reuses one only after wrapping at
	// pid_max, so the just-reaped group ID cannot belong to anyone else.
	syscall.Kill(-pgid, syscall.SIGKILL)

	select {
	case <-copied:
	case <-time.After(hookPipeGrace):
		log.Warn("hook output still open after the hook's processes were killed; not reading further", "hook", name)
	}
	pr.Close()
	<-copied

	r.Output = out.String()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.ExitCode = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && r.Error == "" {
			r.Error = "killed by " + ws.Signal().String()
		}
	default:
		r.ExitCode = -1
		if r.Error == "" {
			r.Error = err.Error()
		}
	}
	log.Debug("hook finished", "hook", name, "exit_code", r.ExitCode, "err", r.Error, "took", time.Since(start))
	return r
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
