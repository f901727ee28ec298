package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxHealthyPollErrors is the streak of failed polls `dewy status` still
// calls healthy: a registry hiccup or a rate limit is routine, and with the
// poll loop's backoff three failures in a row mean minutes without an answer.
const maxHealthyPollErrors = 3

// statusCommand is `dewy status`: it asks the admin endpoint at addr
// (host:port or unix:/path; "" for the default) and prints the answer as a
// table, or as the raw JSON with jsonOut. healthy is false when dewy
// answered but something needs attention; err is set only when it could
// not be asked.
func statusCommand(ctx context.Context, addr string, jsonOut bool, w io.Writer) (healthy bool, err error) {
	if addr == "" {
		addr = defaultAdminAddr
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client, base := adminClient(addr)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/status", nil)
	if err != nil {
		return false, fmt.Errorf("status from %s: %w", addr, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		// url.Error repeats the made-up URL; the dial error says enough.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return false, fmt.Errorf("status from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, fmt.Errorf("status from %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status from %s: %s", addr, resp.Status)
	}
	var s statusJSON
	if err := json.Unmarshal(body, &s); err != nil {
		return false, fmt.Errorf("status from %s: not dewy's status: %w", addr, err)
	}
	problems := s.problems()
	if jsonOut {
		_, err = w.Write(body)
	} else {
		err = printStatus(w, s, problems)
	}
	if err != nil {
		return false, fmt.Errorf("print status: %w", err)
	}
	return len(problems) == 0, nil
}

// adminClient returns a client for addr and the base URL to use with it.
// It never goes through an HTTP proxy from the environment: the admin
// endpoint is on this host or one the operator named.
func adminClient(addr string) (*http.Client, string) {
	tr := &http.Transport{DisableKeepAlives: true} // one request per run
	base := "http://" + addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		// The host is never dialled; it only fills the Host header.
		base = "http://localhost"
	}
	return &http.Client{Transport: tr}, base
}

// problems says what makes s unhealthy; none means healthy.
func (s statusJSON) problems() []string {
	var p []string
	if s.Current == "" {
		p = append(p, "no current version")
	}
	if s.PollErrorStreak >= maxHealthyPollErrors {
		p = append(p, fmt.Sprintf("%d failed polls in a row", s.PollErrorStreak))
	}
	switch {
	case s.Down != "":
		p = append(p, "nothing serves, connections are refused: "+s.Down)
	case s.Command == "server" && s.ChildPID == 0:
		p = append(p, "application not running")
	}
	return p
}

// printStatus writes s as a short table. Ages are measured against the
// snapshot's own time, so a skewed or remote clock does not distort them.
func printStatus(w io.Writer, s statusJSON, problems []string) error {
	var t statusTable
	t.release(s)
	t.polls(s)
	t.deploys(s)
	t.runtime(s, problems)
	_, err := io.WriteString(w, t.String())
	return err
}

// statusTable collects printStatus's rows, so that each group of rows can be
// written by its own method and the whole table still goes out in one write.
type statusTable struct{ strings.Builder }

func (t *statusTable) row(k, format string, args ...any) {
	fmt.Fprintf(t, "%-11s %s\n", k, fmt.Sprintf(format, args...))
}

// release writes what dewy is and which release it runs.
func (t *statusTable) release(s statusJSON) {
	t.row("dewy", "%s %s", s.DewyVersion, s.Command)
	t.row("registry", "%s", s.Registry)
	if s.Slot != "" {
		t.row("slot", "%s", s.Slot)
	}
	if s.Current == "" {
		t.row("current", "none")
	} else {
		t.row("current", "%s since %s", s.Current, stamp(s.CurrentSince, s.Time))
	}
	if s.SHA256 != "" {
		t.row("sha256", "%s", shortDigest(s.SHA256))
	}
	if s.VerifiedBy != "" {
		t.row("verified", "by %s", s.VerifiedBy)
	}
}

// polls writes when the registry was last and will next be asked.
func (t *statusTable) polls(s statusJSON) {
	switch {
	case s.LastPoll.IsZero():
		t.row("last poll", "not yet")
	case s.LastPollResult == "ok":
		t.row("last poll", "ok, %s ago", age(s.Time.Sub(s.LastPoll)))
	default:
		t.row("last poll", "error, %s ago (%d in a row)", age(s.Time.Sub(s.LastPoll)), s.PollErrorStreak)
	}
	if !s.NextPoll.IsZero() {
		if d := s.NextPoll.Sub(s.Time); d > 0 {
			t.row("next poll", "in %s", age(d))
		} else {
			t.row("next poll", "due")
		}
	}
	if s.LastError != "" {
		t.row("last error", "%s (%s ago)", s.LastError, age(s.Time.Sub(s.LastErrorAt)))
	}
}

// deploys writes what keeps releases from going live and what goes next.
func (t *statusTable) deploys(s statusJSON) {
	for _, f := range s.Failed {
		t.row("failed", "%s: %s", f.Version, f.Reason)
	}
	if s.Paused != nil {
		t.row("deploys", "%s (since %s)", s.Paused, stamp(s.Paused.At, s.Time))
	}
	if len(s.Held) > 0 {
		t.row("held", "%s (rolled back from; dewy resume releases)", strings.Join(s.Held, ", "))
	}
	switch {
	case s.Pending != "" && s.PendingWhy != "":
		t.row("next", "%s, held back: %s", s.Pending, s.PendingWhy)
	case s.Pending != "":
		t.row("next", "%s", s.Pending)
	}
}

// runtime writes the child, the sockets, the cache, the lease and the
// verdict on health.
func (t *statusTable) runtime(s statusJSON, problems []string) {
	if s.Command == "server" {
		if s.ChildPID == 0 {
			t.row("child", "not running (%s)", plural(s.Restarts, "restart"))
		} else {
			t.row("child", "pid %d, generation %d, %s", s.ChildPID, s.Generation, plural(s.Restarts, "restart"))
		}
	}
	if len(s.Listeners) > 0 {
		t.row("listeners", "%s", strings.Join(s.Listeners, ", "))
	}
	if s.Cache != "" {
		t.row("cache", "%s", s.Cache)
	}
	if s.LeaseHolder != "" {
		t.row("lease", "%s", s.LeaseHolder)
	}
	if len(problems) == 0 {
		t.row("health", "ok")
	} else {
		t.row("health", "UNHEALTHY: %s", strings.Join(problems, "; "))
	}
}

func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return fmt.Sprintf("%s (%s ago)", t.Format("2006-01-02 15:04:05 -0700"), age(now.Sub(t)))
}

// age rounds d to the two largest units that matter to a person.
func age(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

func shortDigest(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
