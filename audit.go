package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// auditRecordLimit bounds the free text in one audit record (an error, each
// hook's output) so that a record stays one modest write.
const auditRecordLimit = 4 << 10

// auditLog appends one JSON line per event. Each line is a single write(2)
// on a file opened with O_APPEND, which Linux file systems apply whole, so
// several dewy processes may share one log; fsync makes a record durable
// before the deploy goes on.
type auditLog struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openAudit(path string) (*auditLog, error) {
	// Read access lets record look at the last byte of the file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &auditLog{path: path, f: f}, nil
}

// record appends e as one line.
func (a *auditLog) record(e deployEvent) error {
	e = auditTrim(e)
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit log %s: encode: %w", a.path, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return fmt.Errorf("audit log %s: closed", a.path)
	}
	// A writer that crashed mid-line left no newline; start a fresh line
	// so that only the torn record is lost, not this one too.
	buf := make([]byte, 0, len(line)+2)
	if torn, err := auditEndsTorn(a.f); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	} else if torn {
		buf = append(buf, '\n')
	}
	buf = append(append(buf, line...), '\n')
	if _, err := a.f.Write(buf); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	return nil
}

// auditEndsTorn reports whether f is non-empty and does not end in a newline.
func auditEndsTorn(f *os.File) (bool, error) {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return false, err
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], st.Size()-1); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil // truncated meanwhile (log rotation)
		}
		return false, err
	}
	return b[0] != '\n', nil
}

func (a *auditLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	if err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	return nil
}

// auditTrim bounds e's free text without touching the caller's hooks.
func auditTrim(e deployEvent) deployEvent {
	e.Error = auditClip(e.Error, auditRecordLimit)
	if len(e.Hooks) > 0 {
		hs := make([]hookResult, len(e.Hooks))
		for i, h := range e.Hooks {
			h.Output = auditClip(h.Output, auditRecordLimit)
			h.Error = auditClip(h.Error, auditRecordLimit)
			hs[i] = h
		}
		e.Hooks = hs
	}
	return e
}

// auditClip keeps the head and the tail of s within about n bytes.
func auditClip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	h := n / 2
	omitted := len(s) - n
	return fmt.Sprintf("%s\n… %d bytes omitted …\n%s",
		bytes.ToValidUTF8([]byte(s[:h]), nil), omitted, bytes.ToValidUTF8([]byte(s[len(s)-(n-h):]), nil))
}

// auditSkippedError says readAudit passed over lines it could not read: a
// record torn by a crash, or a line that is not an event. The events it
// returns alongside are still every whole record.
type auditSkippedError struct {
	Path    string
	Skipped int
	Lines   []int // 1-based, at most the first ten
}

func (e *auditSkippedError) Error() string {
	return fmt.Sprintf("audit log %s: skipped %d unreadable line(s) (first at line %d)", e.Path, e.Skipped, e.Lines[0])
}

// readAudit returns every whole record in the file, oldest first. When it
// skipped lines the error is an *auditSkippedError and the events are
// still good.
func readAudit(path string) ([]deployEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	var (
		events  []deployEvent
		skipped *auditSkippedError
	)
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return events, fmt.Errorf("audit log %s: %w", path, err)
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			var e deployEvent
			if jerr := json.Unmarshal(t, &e); jerr != nil || e.Kind == "" {
				if skipped == nil {
					skipped = &auditSkippedError{Path: path}
				}
				skipped.Skipped++
				if len(skipped.Lines) < 10 {
					skipped.Lines = append(skipped.Lines, n)
				}
			} else {
				events = append(events, e)
			}
		}
		if err != nil {
			break
		}
	}
	if skipped != nil {
		return events, skipped
	}
	return events, nil
}
