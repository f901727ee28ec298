package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHookEnvironment(t *testing.T) {
	t.Setenv("DEWY_TEST_INHERITED", "from-dewy")
	dir := t.TempDir()
	env := hookEnv{Command: "server", Version: "v1.2.3", Previous: "v1.2.2", ReleaseDir: "/srv/app/releases/v1.2.3",
		SHA256: "abc123", Host: "web-1"}.environ()
	script := `set -u; printf '%s|' "$DEWY_COMMAND" "$DEWY_VERSION" "$DEWY_PREVIOUS_VERSION" "$DEWY_RELEASE_DIR" "$DEWY_ARTIFACT_SHA256" "$DEWY_HOST" "$DEWY_FAILURE_REASON" "$DEWY_TEST_INHERITED" "$(pwd -P)"`
	r := runHook(context.Background(), "after_deploy", script, dir, env, time.Minute, discardLogger())
	if r.ExitCode != 0 || r.Error != "" {
		t.Fatalf("hook failed: exit %d, %q, output %q", r.ExitCode, r.Error, r.Output)
	}
	real, _ := filepath.EvalSymlinks(dir)
	want := "server|v1.2.3|v1.2.2|/srv/app/releases/v1.2.3|abc123|web-1||from-dewy|" + real + "|"
	if r.Output != want {
		t.Errorf("output = %q, want %q", r.Output, want)
	}
	if r.Name != "after_deploy" || r.Command != script || r.Duration <= 0 {
		t.Errorf("result = %+v, want name, command and duration filled in", r)
	}
}

func TestHookEnvNames(t *testing.T) {
	got := hookEnv{Command: "assets", Version: "v2", Previous: "v1", ReleaseDir: "/r", SHA256: "sum", Host: "h", Reason: "bad digest"}.environ()
	want := []string{"DEWY_COMMAND=assets", "DEWY_VERSION=v2", "DEWY_PREVIOUS_VERSION=v1", "DEWY_RELEASE_DIR=/r",
		"DEWY_ARTIFACT_SHA256=sum", "DEWY_HOST=h", "DEWY_FAILURE_REASON=bad digest"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("environ = %q, want %q", got, want)
	}
}

func TestHookResults(t *testing.T) {
	tests := []struct {
		name, command string
		dir           string
		exit          int
		errPrefix     string
		output        string
	}{
		{"ok", "echo fine", "", 0, "", "fine\n"},
		{"exit code", "echo oops >&2; exit 3", "", 3, "", "oops\n"},
		{"killed by signal", "kill -USR1 $$", "", -1, "killed by user defined signal 1", ""},
		{"empty", "", "", 0, "", ""},
		{"no dir", "true", "/nonexistent/dir", -1, "start: directory /nonexistent/dir: no such file or directory", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runHook(context.Background(), "before_deploy", tc.command, tc.dir, nil, time.Minute, discardLogger())
			if r.ExitCode != tc.exit {
				t.Errorf("ExitCode = %d, want %d", r.ExitCode, tc.exit)
			}
			if !strings.HasPrefix(r.Error, tc.errPrefix) || (tc.errPrefix == "") != (r.Error == "") {
				t.Errorf("Error = %q, want prefix %q", r.Error, tc.errPrefix)
			}
			if r.Output != tc.output {
				t.Errorf("Output = %q, want %q", r.Output, tc.output)
			}
		})
	}
}

func TestHookLogsOutputLines(t *testing.T) {
	logs, log := newNotifyLog()
	r := runHook(context.Background(), "after_deploy", `echo one; echo two >&2; printf 'no newline'`, "", nil, time.Minute, log)
	if r.ExitCode != 0 {
		t.Fatalf("exit %d: %s", r.ExitCode, r.Error)
	}
	out := logs.String()
	for _, want := range []string{
		`level=INFO msg="hook output" hook=after_deploy line=one`,
		`level=INFO msg="hook output" hook=after_deploy line=two`,
		`level=INFO msg="hook output" hook=after_deploy line="no newline"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// hookGroupAlive lists the live (not zombie) processes in process group pgid.
func hookGroupAlive(t *testing.T, pgid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc to look for processes in")
	}
	var alive []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			alive = append(alive, e.Name()+" "+string(stat[:strings.LastIndexByte(string(stat), ')')+1]))
		}
	}
	return alive
}

// hookAwaitGroupGone waits for the kernel to finish off a killed group.
// SIGKILL is delivered at once but a process needs a moment to exit, and
// nothing signals a test about a process that is not its child.
func hookAwaitGroupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive := hookGroupAlive(t, pgid)
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the hook's group %d still alive: %q", pgid, alive)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the hook did not write %s: %v", filepath.Base(path), err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestHookTimeoutKillsGroup(t *testing.T) {
	tests := []struct {
		name   string
		script string
		ctx    time.Duration // cancel the context after this, not the hook timeout
	}{
		// sh dies of SIGTERM; the background sleep would too.
		{"term", `sleep 1000 & echo $! > child; echo $$ > group; sleep 1000`, 0},
		// Everything ignores SIGTERM: SIGKILL after the grace period.
		{"kill", `trap '' TERM; sleep 1000 & echo $! > child; echo $$ > group; wait`, 0},
		{"context", `sleep 1000 & echo $! > child; echo $$ > group; sleep 1000`, 300 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			timeout := 300 * time.Millisecond
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
				timeout = time.Hour
			}
			start := time.Now()
			r := runHook(ctx, "before_deploy", tc.script, dir, nil, timeout, discardLogger())
			took := time.Since(start)
			if took > hookTermGrace+3*time.Second {
				t.Errorf("runHook took %s, want it to give up soon after the timeout", took)
			}
			want := "killed after the 300ms hook timeout"
			if tc.ctx > 0 {
				want = "killed: context deadline exceeded"
			}
			if r.Error != want || r.ExitCode != -1 {
				t.Errorf("result = exit %d, %q; want exit -1, %q", r.ExitCode, r.Error, want)
			}
			readPID(t, filepath.Join(dir, "child"))
			hookAwaitGroupGone(t, readPID(t, filepath.Join(dir, "group")))
		})
	}
}

func TestHookLeftoversKilled(t *testing.T) {
	dir := t.TempDir()
	// The hook succeeds at once but leaves a child behind holding its output.
	start := time.Now()
	r := runHook(context.Background(), "after_deploy", `sleep 1000 & echo $$ > group; echo done`, dir, nil, time.Minute, discardLogger())
	if took := time.Since(start); took > hookPipeGrace {
		t.Errorf("runHook took %s; the leftover child held it up", took)
	}
	if r.ExitCode != 0 || r.Error != "" || r.Output != "done\n" {
		t.Errorf("result = exit %d, %q, output %q; want a clean success", r.ExitCode, r.Error, r.Output)
	}
	hookAwaitGroupGone(t, readPID(t, filepath.Join(dir, "group")))
}

func TestHookOutputBounded(t *testing.T) {
	t.Run("long", func(t *testing.T) {
		logs, log := newNotifyLog()
		r := runHook(context.Background(), "after_deploy", `echo BEGIN; i=0; while [ $i -lt 3000 ]; do echo "line $i"; i=$((i+1)); done; echo END`, "", nil, time.Minute, log)
		if r.ExitCode != 0 {
			t.Fatalf("exit %d: %s", r.ExitCode, r.Error)
		}
		if len(r.Output) > hookOutputHead+hookOutputTail+64 {
			t.Errorf("output is %d bytes, want about %d", len(r.Output), hookOutputHead+hookOutputTail)
		}
		if !strings.HasPrefix(r.Output, "BEGIN\nline 0\n") || !strings.HasSuffix(r.Output, "line 2999\nEND\n") || !strings.Contains(r.Output, " bytes omitted …\n") {
			t.Errorf("output lost its head, tail or the note between them:\n%s", r.Output)
		}
		out := logs.String()
		if got := strings.Count(out, `msg="hook output"`); got != hookLogLines {
			t.Errorf("logged %d output lines, want the first %d", got, hookLogLines)
		}
		if !strings.Contains(out, "not logging more") {
			t.Error("log does not say it stopped logging output")
		}
	})
	t.Run("endless", func(t *testing.T) {
		// One line that never ends, until the timeout.
		logs, log := newNotifyLog()
		r := runHook(context.Background(), "after_deploy", `while :; do printf 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'; done`, "", nil, 500*time.Millisecond, log)
		if r.Error == "" {
			t.Fatal("the endless hook was not stopped")
		}
		if len(r.Output) > hookOutputHead+hookOutputTail+64 {
			t.Errorf("output is %d bytes, want about %d", len(r.Output), hookOutputHead+hookOutputTail)
		}
		for _, l := range strings.Split(logs.String(), "\n") {
			if len(l) > hookLogLineMax+200 {
				t.Fatalf("a log line is %d bytes, want pieces of at most %d", len(l), hookLogLineMax)
			}
		}
	})
}
