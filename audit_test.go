package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func auditEvent(i int) deployEvent {
	e := testEvent(eventDeployed)
	e.Time = time.Date(2025, 3, 4, 5, 6, 7+i, 0, time.UTC)
	e.Version = "v1.0." + strconv.Itoa(i)
	e.ArtifactURL = "ghr://acme/shop/shop_linux_amd64.tar.gz"
	e.Outcome = "ok"
	e.Slot = "blue"
	e.Hooks = []hookResult{{Name: "after_deploy", Command: "systemctl reload nginx", Output: "reloaded\n", Duration: 30 * time.Millisecond}}
	return e
}

func TestAuditRecordAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []deployEvent
	for i := range 3 {
		e := auditEvent(i)
		want = append(want, e)
		if err := a.record(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	if err := a.record(auditEvent(9)); err == nil {
		t.Error("record after close succeeded, want an error")
	}
	got, err := readAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("readAudit = %+v\nwant %+v", got, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("mode = %v, want at most 0640", perm)
	}
	data, _ := os.ReadFile(path)
	if lines := strings.Count(string(data), "\n"); lines != 3 {
		t.Errorf("file has %d lines, want 3", lines)
	}
	if !strings.HasPrefix(string(data), `{"event":"deployed","time":"2025-03-04T05:06:07Z","command":"server","app":"shop","host":"web-1","user":"dewy","slot":"blue","version":"v1.0.0","previous":"v1.2.2","artifact_url":"ghr://acme/shop/shop_linux_amd64.tar.gz","sha256":"0123`) {
		t.Errorf("first line = %s, want the deployEvent JSON", strings.SplitN(string(data), "\n", 2)[0])
	}

	// Reopening appends.
	a, err = openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	a.record(auditEvent(3))
	a.close()
	if got, _ := readAudit(path); len(got) != 4 {
		t.Errorf("after reopening, %d records, want 4", len(got))
	}

	if _, err := readAudit(filepath.Join(t.TempDir(), "none.log")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("readAudit(missing) = %v, want ErrNotExist", err)
	}
}

func TestAuditClipsLongText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	e := auditEvent(0)
	e.Error = "start" + strings.Repeat("x", 100<<10) + "end"
	e.Hooks[0].Output = "first" + strings.Repeat("y", 100<<10) + "last"
	if err := a.record(e); err != nil {
		t.Fatal(err)
	}
	if len(e.Hooks[0].Output) < 100<<10 {
		t.Error("record changed the caller's hook results")
	}
	got, err := readAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"error": got[0].Error, "hook output": got[0].Hooks[0].Output} {
		if len(s) > auditRecordLimit+64 {
			t.Errorf("%s is %d bytes, want about %d", name, len(s), auditRecordLimit)
		}
		if !strings.Contains(s, "bytes omitted") {
			t.Errorf("%s does not say it was clipped", name)
		}
	}
	if !strings.HasPrefix(got[0].Error, "start") || !strings.HasSuffix(got[0].Error, "end") {
		t.Error("clipped error lost its head or tail")
	}
}

// auditWriterEnv makes the test binary a second audit writer: it appends
// auditWriterCount records tagged with its PID and exits.
const (
	auditWriterEnv   = "DEWY_TEST_AUDIT_WRITER"
	auditWriterCount = 150
)

// auditBigEvent is large enough (over 4 KiB with the hook output) that
// interleaved writes would show.
func auditBigEvent(writer string, i int) deployEvent {
	e := auditEvent(i)
	e.Host = writer
	e.Version = fmt.Sprintf("v%d", i)
	e.Error = strings.Repeat(writer+":"+strconv.Itoa(i)+";", 3000/(len(writer)+6))
	e.Hooks[0].Output = strings.Repeat("o", 3000)
	return e
}

func auditCheckBig(e deployEvent) bool {
	i, err := strconv.Atoi(strings.TrimPrefix(e.Version, "v"))
	return err == nil && reflect.DeepEqual(e, auditBigEvent(e.Host, i))
}

func TestAuditConcurrentWriters(t *testing.T) {
	if path := os.Getenv(auditWriterEnv); path != "" {
		a, err := openAudit(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range auditWriterCount {
			if err := a.record(auditBigEvent("proc-"+strconv.Itoa(os.Getpid()), i)); err != nil {
				t.Fatal(err)
			}
		}
		a.close()
		return
	}

	path := filepath.Join(t.TempDir(), "audit.log")
	// Two other processes with their own descriptors...
	var procs []*exec.Cmd
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAuditConcurrentWriters$", "-test.count=1")
		cmd.Env = append(os.Environ(), auditWriterEnv+"="+path)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		procs = append(procs, cmd)
	}
	// ...while goroutines here share one auditLog and another opens its own.
	shared, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	other, err := openAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 4, 40
	var wg sync.WaitGroup
	for g := range goroutines {
		a := shared
		if g == 0 {
			a = other
		}
		wg.Go(func() {
			for i := range each {
				if err := a.record(auditBigEvent("g"+strconv.Itoa(g), i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	shared.close()
	other.close()
	for _, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("second writer: %v\n%s", err, cmd.Stdout)
		}
	}

	got, err := readAudit(path)
	if err != nil {
		t.Fatalf("readAudit: %v", err)
	}
	if want := goroutines*each + 2*auditWriterCount; len(got) != want {
		t.Fatalf("read %d records, want %d", len(got), want)
	}
	perWriter := map[string]int{}
	for _, e := range got {
		if !auditCheckBig(e) {
			t.Fatalf("record from %s #%s came back changed", e.Host, e.Version)
		}
		perWriter[e.Host]++
	}
	if len(perWriter) != goroutines+2 {
		t.Errorf("records from %d writers, want %d", len(perWriter), goroutines+2)
	}
}

// TestAuditTornTail cuts the file inside its last record at every offset,
// as a crash mid-write would, then reads it and appends to it.
func TestAuditTornTail(t *testing.T) {
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.log")
	a, err := openAudit(whole)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := a.record(auditEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	a.close()
	data, err := os.ReadFile(whole)
	if err != nil {
		t.Fatal(err)
	}
	lastStart := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1

	for cut := lastStart; cut < len(data); cut++ {
		path := filepath.Join(dir, "torn.log")
		if err := os.WriteFile(path, data[:cut], 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := readAudit(path)
		switch {
		case cut == lastStart:
			if err != nil || len(got) != 2 {
				t.Fatalf("cut at a line boundary: %d records, err %v; want 2, nil", len(got), err)
			}
		case cut == len(data)-1:
			// Only the newline is missing: the record is whole.
			if err != nil || len(got) != 3 {
				t.Fatalf("cut before the final newline: %d records, err %v; want 3, nil", len(got), err)
			}
		default:
			var skip *auditSkippedError
			if !errors.As(err, &skip) || skip.Skipped != 1 || skip.Lines[0] != 3 || len(got) != 2 {
				t.Fatalf("cut at %d: %d records, err %v; want 2 and one skipped line 3", cut, len(got), err)
			}
		}
		if !reflect.DeepEqual(got[:2], []deployEvent{auditEvent(0), auditEvent(1)}) {
			t.Fatalf("cut at %d: whole records came back changed", cut)
		}

		// The next writer starts a fresh line, so its record survives.
		// (Every eighth cut is enough here; each record costs an fsync.)
		if cut%8 != 0 && cut != len(data)-1 && cut != lastStart+1 {
			continue
		}
		a, err := openAudit(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.record(auditEvent(7)); err != nil {
			t.Fatal(err)
		}
		a.close()
		got, _ = readAudit(path)
		if n := len(got); n == 0 || !reflect.DeepEqual(got[n-1], auditEvent(7)) {
			t.Fatalf("cut at %d: the record appended after the crash is lost", cut)
		}
	}
}

func TestAuditSkipsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	good := `{"event":"deployed","time":"2025-03-04T05:06:07Z","version":"v1"}`
	content := good + "\n\nnot json\n{\"unrelated\":true}\n" + good + "\n"
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := readAudit(path)
	var skip *auditSkippedError
	if !errors.As(err, &skip) || skip.Skipped != 2 || !reflect.DeepEqual(skip.Lines, []int{3, 4}) {
		t.Fatalf("readAudit error = %v, want 2 skipped lines (3 and 4)", err)
	}
	if want := "audit log " + path + ": skipped 2 unreadable line(s) (first at line 3)"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if len(got) != 2 {
		t.Errorf("read %d records, want 2", len(got))
	}
}

func TestHistoryTable(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2025, 3, 4, 5, 6, s, 0, time.UTC) }
	events := []deployEvent{
		{Kind: eventStarted, Time: at(0), Host: "web-1", User: "dewy", Version: "v1.2.3", Previous: "v1.2.2"},
		{Kind: eventDeployed, Time: at(5), Host: "web-1", User: "dewy", Version: "v1.2.3", Previous: "v1.2.2", Duration: 4230 * time.Millisecond},
		// Written late by another process: sorted by time, not file order.
		{Kind: eventRestarted, Time: at(3), Host: "web-2", User: "root", Version: "v1.2.2"},
		{Kind: eventFailed, Time: at(9), Host: "web-1", User: "dewy", Version: "v1.2.4", Previous: "v1.2.3", Duration: 870 * time.Millisecond,
			Error: "deploy v1.2.4: verification failed:\n\tsha256 mismatch for shop_linux_amd64.tar.gz: want 0123456789abcdef, got fedcba9876543210"},
		{Kind: eventRolledBack, Time: time.Date(2025, 3, 4, 6, 6, 10, 0, time.FixedZone("", 3600)), Host: "web-1", User: "dewy", Version: "v1.2.5", Previous: "v1.2.3", Error: "health check: \x1b[31mred\x1b[0m"},
	}
	var b bytes.Buffer
	printHistory(&b, events, 4)
	want := `TIME                       EVENT        VERSION  FROM    HOST   USER  DURATION  ERROR
2025-03-04 06:06:10+01:00  rolled_back  v1.2.5   v1.2.3  web-1  dewy  -         health check: [31mred[0m
2025-03-04 05:06:09Z       failed       v1.2.4   v1.2.3  web-1  dewy  870ms     deploy v1.2.4: verification failed: sha256 mismatch for sho…
2025-03-04 05:06:05Z       deployed     v1.2.3   v1.2.2  web-1  dewy  4.2s      -
2025-03-04 05:06:03Z       restarted    v1.2.2   -       web-2  root  -         -
`
	if got := b.String(); got != want {
		t.Errorf("printHistory =\n%s\nwant\n%s", got, want)
	}

	b.Reset()
	printHistory(&b, events, 0)
	if got := strings.Count(b.String(), "\n"); got != 6 {
		t.Errorf("n=0 printed %d lines, want all 5 events and the header", got)
	}
	b.Reset()
	printHistory(&b, nil, 20)
	if got := b.String(); got != "no deploy events recorded\n" {
		t.Errorf("empty history = %q", got)
	}
}
