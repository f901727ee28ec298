package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// notifier delivers deploy events to one place (a Slack channel, a webhook).
type notifier interface {
	// send delivers one event and returns once the receiver has accepted it
	// or ctx ends. Errors name the endpoint only in redacted form and never
	// carry a token.
	send(ctx context.Context, e deployEvent) error
}

const (
	// notifyQueueLen bounds the events waiting for one notifier. A deploy
	// makes two or three; 64 covers a long outage of the receiver.
	notifyQueueLen = 64
	// notifySendTimeout bounds one event's delivery, waits for a rate
	// limit included; notifyAttemptTimeout bounds one HTTP request.
	notifySendTimeout    = 30 * time.Second
	notifyAttemptTimeout = 10 * time.Second
	// notifyCollapseWindow is how often a run of identical failures is
	// summarised while it lasts.
	notifyCollapseWindow = time.Hour
	// notifyMaxRetries is how often a 429 is waited out before giving up.
	notifyMaxRetries = 2
	// notifyTextLimit keeps an error or hook output readable in a chat
	// message; Slack refuses section text over 3000 characters.
	notifyTextLimit = 1500
)

// notifyQueue hands events to every notifier without ever making the
// deploy wait: each notifier has its own bounded queue and goroutine, so a
// hung endpoint delays only its own messages.
type notifyQueue struct {
	log     *slog.Logger
	targets []*notifyTarget
	scrub   *strings.Replacer // replaces this queue's own secrets; nil if it has none
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	dropped    int
	dropLogged bool
}

// notifyTarget is one notifier with its queue. Fields below ch belong to
// the target's goroutine.
type notifyTarget struct {
	name    string // redacted URL, for logs
	n       notifier
	quiet   bool // only failures, rollbacks and down
	ch      chan deployEvent
	log     *slog.Logger
	scrub   func(string) string
	timeout time.Duration
	window  time.Duration

	run   failureRun
	timer *time.Timer
}

// failureRun is a streak of failures with the same error text.
type failureRun struct {
	err        string      // "" when there is no streak
	version    string      // the release that keeps failing
	suppressed int         // identical failures not sent since since
	since      time.Time   // first suppressed failure
	last       deployEvent // latest suppressed failure
}

// newNotifyQueue builds one notifier per URL and starts delivering.
// Without URLs it returns a queue that drops everything.
func newNotifyQueue(urls []string, getenv func(string) string, log *slog.Logger) (*notifyQueue, error) {
	q := &notifyQueue{log: log}
	var secrets []string
	for _, raw := range urls {
		n, quiet, s, err := newNotifier(raw, getenv)
		if err != nil {
			return nil, fmt.Errorf("notifier %s: %w", redactNotifyURL(raw), err)
		}
		secrets = append(secrets, s...)
		name := redactNotifyURL(raw)
		q.targets = append(q.targets, &notifyTarget{
			name:    name,
			n:       n,
			quiet:   quiet,
			ch:      make(chan deployEvent, notifyQueueLen),
			log:     log.With("notifier", name),
			timeout: notifySendTimeout,
			window:  notifyCollapseWindow,
		})
	}
	q.scrub = secretReplacer(secrets)
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	for _, t := range q.targets {
		t.scrub = q.scrubString
		q.wg.Go(func() { t.loop(ctx) })
	}
	return q, nil
}

// notifierScheme is one row of notifierSchemes.
type notifierScheme struct {
	scheme string
	usage  string
	// build makes the notifier for u (raw as given). It also returns
	// whether the URL asks for failures only, and the secrets the
	// notifier holds, so that they can be kept out of every message.
	// Building one opens no connection, so building is the check.
	build func(u *url.URL, raw string, getenv func(string) string) (n notifier, quiet bool, secrets []string, err error)
}

func (r notifierScheme) names() (string, string) { return r.scheme, r.usage }

var notifierSchemes = []notifierScheme{
	{scheme: "slack", usage: "slack://channel", build: buildSlackNotifier},
	{scheme: "smtp", usage: "smtp://host:port/recipient", build: buildMailNotifier},
	{scheme: "https", usage: "https://…", build: buildWebhookNotifier},
	{scheme: "webhook+http", usage: "webhook+http://…", build: buildWebhookNotifier},
	{scheme: "mail", build: buildMailNotifier}, // upstream Dewy's name
	{scheme: "webhook+https", build: buildWebhookNotifier},
	{scheme: "http", build: refusePlainHTTP},
}

// newNotifier is the one place a notifier is chosen.
func newNotifier(raw string, getenv func(string) string) (notifier, bool, []string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" && u.Fragment == "" {
		return nil, false, nil, fmt.Errorf("not a URL (want %s)", orList(schemeForms(notifierSchemes)))
	}
	row, err := lookupScheme(notifierSchemes, u.Scheme)
	if err != nil {
		return nil, false, nil, err
	}
	return row.build(u, raw, getenv)
}

// checkNotifier refuses a --notifier URL that newNotifyQueue would refuse.
// Its errors do not repeat the URL.
func checkNotifier(raw string, getenv func(string) string) error {
	_, _, _, err := newNotifier(raw, getenv)
	return err
}

func refusePlainHTTP(*url.URL, string, func(string) string) (notifier, bool, []string, error) {
	return nil, false, nil, errors.New("plain http sends events unencrypted; write webhook+http:// to mean it")
}

// notify queues e for every notifier and returns at once. When a queue is
// full its oldest event is dropped: the newest says what is true now.
func (q *notifyQueue) notify(e deployEvent) {
	if len(q.targets) == 0 {
		return
	}
	if e.Time.IsZero() {
		e.Time = timeNow()
	}
	e.Hooks = slices.Clone(e.Hooks) // the caller may reuse its slice
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	for _, t := range q.targets {
		q.pushLocked(t, e)
	}
}

func (q *notifyQueue) pushLocked(t *notifyTarget, e deployEvent) {
	for {
		select {
		case t.ch <- e:
			return
		default:
		}
		// Full: make room. The goroutine may have made room meanwhile,
		// in which case nothing is dropped.
		select {
		case <-t.ch:
			q.dropped++
			if !q.dropLogged {
				q.dropLogged = true
				t.log.Warn("notification queue full; dropping the oldest events")
			}
		default:
		}
	}
}

// close delivers what is queued, giving up when ctx ends.
func (q *notifyQueue) close(ctx context.Context) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	pending := 0
	for _, t := range q.targets {
		pending += len(t.ch)
		close(t.ch)
	}
	dropped := q.dropped
	q.mu.Unlock()
	if len(q.targets) == 0 {
		return
	}

	done := make(chan struct{})
	go func() {
		q.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		q.cancel()
		q.log.Warn("stopped before all notifications were sent", "queued_at_close", pending)
	}
	q.cancel()
	if dropped > 0 {
		q.log.Warn("notifications dropped because a queue was full", "dropped", dropped)
	}
}

// redact removes this queue's secrets (the Slack token, webhook URLs) from
// e's free text, for records kept elsewhere such as the audit log.
func (q *notifyQueue) redact(e deployEvent) deployEvent { return scrubEvent(e, q.scrubString) }

func (q *notifyQueue) scrubString(s string) string {
	if q.scrub == nil {
		return s
	}
	return q.scrub.Replace(s)
}

func (t *notifyTarget) loop(ctx context.Context) {
	var summary <-chan time.Time
	for {
		select {
		case e, ok := <-t.ch:
			if !ok {
				t.endRun(ctx)
				return
			}
			t.handle(ctx, e)
		case <-summary:
			// The streak goes on: report it and keep suppressing.
			t.flushRun(ctx)
		case <-ctx.Done():
			return
		}
		summary = nil
		if t.timer != nil && t.run.suppressed > 0 {
			summary = t.timer.C
		}
	}
}

// handle collapses streaks of identical failures: a registry that stays
// broken would otherwise post one message per poll.
func (t *notifyTarget) handle(ctx context.Context, e deployEvent) {
	if t.run.err != "" {
		switch {
		case e.Kind == eventFailed && e.Error == t.run.err:
			if t.run.suppressed == 0 {
				t.run.since = e.Time
				t.armTimer()
			}
			t.run.suppressed++
			t.run.last = e
			return
		case e.Kind == eventStarted && e.Version == t.run.version:
			// Each retry of the failing release starts again; its
			// outcome decides whether anything is worth saying.
			return
		}
		t.endRun(ctx)
	}
	if e.Kind == eventFailed {
		t.run = failureRun{err: e.Error, version: e.Version}
	}
	t.deliver(ctx, e)
}

func (t *notifyTarget) armTimer() {
	if t.timer == nil {
		t.timer = time.NewTimer(t.window)
		return
	}
	t.timer.Reset(t.window)
}

// flushRun sends the summary of suppressed failures, if any; the streak
// itself goes on.
func (t *notifyTarget) flushRun(ctx context.Context) {
	if t.run.suppressed == 0 {
		return
	}
	s := t.run.last
	s.Error = fmt.Sprintf("%d more identical failures since %s: %s",
		t.run.suppressed, t.run.since.UTC().Format(time.RFC3339), t.run.err)
	t.run.suppressed = 0
	if t.timer != nil {
		t.timer.Stop()
	}
	t.deliver(ctx, s)
}

func (t *notifyTarget) endRun(ctx context.Context) {
	t.flushRun(ctx)
	t.run = failureRun{}
}

func (t *notifyTarget) deliver(ctx context.Context, e deployEvent) {
	if t.quiet && e.Kind != eventFailed && e.Kind != eventRolledBack && e.Kind != eventDown {
		return
	}
	e = scrubEvent(e, t.scrub)
	sctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	if err := t.n.send(sctx, e); err != nil {
		t.log.Warn("could not send notification", "event", e.Kind, "version", e.Version, "err", t.scrub(err.Error()))
	}
}

// scrubEvent keeps the queue's own secrets out of free text that came from
// elsewhere (an error quoting a URL, a hook printing its environment).
func scrubEvent(e deployEvent, scrub func(string) string) deployEvent {
	e.Error = scrub(e.Error)
	e.ArtifactURL = scrub(e.ArtifactURL)
	if len(e.Hooks) > 0 {
		hs := make([]hookResult, len(e.Hooks))
		for i, h := range e.Hooks {
			h.Command, h.Output, h.Error = scrub(h.Command), scrub(h.Output), scrub(h.Error)
			hs[i] = h
		}
		e.Hooks = hs
	}
	return e
}

func secretReplacer(secrets []string) *strings.Replacer {
	var pairs []string
	for _, s := range secrets {
		// Very short values would mangle ordinary words; no real token
		// or webhook secret is that short.
		if len(s) >= 6 {
			pairs = append(pairs, s, "xxxxx")
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	return strings.NewReplacer(pairs...)
}

// redactNotifyURL shows scheme and host only: Slack incoming webhooks and
// Discord carry their secret in the path.
func redactNotifyURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		if i := strings.Index(raw, "://"); i > 0 {
			return raw[:i] + "://…"
		}
		return "(not a URL)"
	}
	if u.Scheme == "slack" {
		return "slack://" + slackChannelOf(u)
	}
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		s += "/…"
	}
	return s
}

// notifyClient refuses redirects: a redirect would carry the token or the
// event somewhere the operator did not name.
var notifyClient = &http.Client{
	Timeout: notifyAttemptTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// notifyPoster posts JSON and waits out 429 answers.
type notifyPoster struct {
	client *http.Client
	// sleep waits d or until ctx ends; tests shorten it.
	sleep func(ctx context.Context, d time.Duration) error
}

func notifySleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// post sends body to target and returns the answer's status and body.
// what names the endpoint in errors; target never appears in them.
func (p notifyPoster) post(ctx context.Context, target, what string, header http.Header, body []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return 0, nil, fmt.Errorf("%s: bad URL", what)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("User-Agent", "dewy")
		resp, err := p.client.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // drop the URL: it may hold a secret
			}
			return 0, nil, fmt.Errorf("%s: %w", what, err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("%s: read answer: %w", what, err)
		}
		if resp.StatusCode != http.StatusTooManyRequests || attempt == notifyMaxRetries {
			return resp.StatusCode, data, nil
		}
		// Slack always says how long; without a word, wait a second.
		wait := time.Second
		now := timeNow()
		if until, ok := retryAfter(resp.Header.Get("Retry-After"), now); ok {
			wait = max(until.Sub(now), 0)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return 0, nil, fmt.Errorf("%s: rate limited; Retry-After %s is past the send deadline", what, wait)
		}
		if err := p.sleep(ctx, wait); err != nil {
			return 0, nil, fmt.Errorf("%s: rate limited: %w", what, err)
		}
	}
}

func hookFailure(h hookResult) string {
	if h.Error != "" {
		return h.Error
	}
	return fmt.Sprintf("exit status %d", h.ExitCode)
}

func notifyAppName(title string, e deployEvent) string {
	switch {
	case title != "":
		return title
	case e.App != "":
		return e.App
	}
	return "dewy"
}

// notifyHeadline is the one-line message for an event.
func notifyHeadline(app string, e deployEvent) string {
	host := orNone(e.Host)
	switch e.Kind {
	case eventStarted:
		return fmt.Sprintf("%s: deploying %s on %s (from %s)", app, orNone(e.Version), host, orNone(e.Previous))
	case eventDeployed:
		return fmt.Sprintf("%s: deployed %s on %s (from %s)", app, orNone(e.Version), host, orNone(e.Previous))
	case eventRolledBack:
		return fmt.Sprintf("%s: %s failed to start on %s and was rolled back; %s keeps serving", app, orNone(e.Version), host, orNone(e.Previous))
	case eventFailed:
		if e.Version == "" {
			return fmt.Sprintf("%s: deploy failed on %s", app, host)
		}
		return fmt.Sprintf("%s: deploy of %s failed on %s", app, e.Version, host)
	case eventRestarted:
		return fmt.Sprintf("%s: restarted %s on %s", app, orNone(e.Version), host)
	case eventStopped:
		return fmt.Sprintf("%s: dewy stopped on %s (%s was live)", app, host, orNone(e.Version))
	case eventDown:
		return fmt.Sprintf("%s: nothing serves on %s; connections are refused", app, host)
	case eventUp:
		return fmt.Sprintf("%s: %s serves again on %s", app, orNone(e.Version), host)
	case eventRollback, eventPinned:
		verb := map[string]string{eventRollback: "rolled back", eventPinned: "pinned"}[e.Kind]
		if e.Outcome == outcomeFailed {
			return fmt.Sprintf("%s: %s to %s on %s by %s failed; %s keeps serving", app, verb, orNone(e.Version), host, orNone(e.By), orNone(e.Previous))
		}
		return fmt.Sprintf("%s: %s to %s on %s by %s (from %s)", app, verb, orNone(e.Version), host, orNone(e.By), orNone(e.Previous))
	case eventPaused, eventResumed:
		where := "on " + host
		if e.Fleet {
			where = "on every host (from " + host + ")"
		}
		return fmt.Sprintf("%s: deploys %s %s by %s", app, e.Kind, where, orNone(e.By))
	case eventHeldBack:
		return fmt.Sprintf("%s: deploy of %s held back on %s", app, orNone(e.Version), host)
	}
	return fmt.Sprintf("%s: %s on %s", app, e.Kind, host)
}

// notifyDetails is the small print: digest, duration, who and how.
func notifyDetails(e deployEvent) string {
	var parts []string
	if e.SHA256 != "" {
		parts = append(parts, "sha256 "+e.SHA256[:min(12, len(e.SHA256))])
	}
	if e.VerifiedBy != "" {
		parts = append(parts, "verified by "+e.VerifiedBy)
	}
	if e.Duration > 0 {
		parts = append(parts, "took "+e.Duration.Round(100*time.Millisecond).String())
	}
	if e.Slot != "" {
		parts = append(parts, "slot "+e.Slot)
	}
	if e.Command != "" {
		parts = append(parts, "dewy "+e.Command)
	}
	if e.User != "" {
		parts = append(parts, "as "+e.User)
	}
	return strings.Join(parts, " · ")
}

// notifyClip keeps the head and the tail of long text, where errors and
// build logs say what matters.
func notifyClip(s string) string {
	if len(s) <= notifyTextLimit {
		return s
	}
	h := notifyTextLimit * 2 / 3
	t := notifyTextLimit - h
	return strings.ToValidUTF8(s[:h], "") + "\n…\n" + strings.ToValidUTF8(s[len(s)-t:], "")
}
