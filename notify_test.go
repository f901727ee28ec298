package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// notifyLog is a log sink tests can read while goroutines write to it.
type notifyLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *notifyLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *notifyLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newNotifyLog() (*notifyLog, *slog.Logger) {
	l := &notifyLog{}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// notifyReq is one request a fake endpoint received.
type notifyReq struct {
	Method, Path string
	Header       http.Header
	Body         []byte
	At           time.Time
}

func (r notifyReq) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("request body is not JSON: %v\n%s", err, r.Body)
	}
	return m
}

// fakeEndpoint records requests and answers each with answer(n), n
// counting from 0. It stands in for Slack's Web API (same wire format:
// 200 with {"ok":...}, 429 with Retry-After) and for webhook receivers.
type fakeEndpoint struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []notifyReq
	got    chan notifyReq
	answer func(n int, w http.ResponseWriter)
}

func newFakeEndpoint(t *testing.T, tls bool, answer func(n int, w http.ResponseWriter)) *fakeEndpoint {
	t.Helper()
	f := &fakeEndpoint{got: make(chan notifyReq, 100), answer: answer}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := notifyReq{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body, At: time.Now()}
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		f.got <- req
		if f.answer != nil {
			f.answer(n, w)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, `{"ok":true,"channel":"C0123","ts":"1700000000.000100"}`)
	})
	if tls {
		f.srv = httptest.NewTLSServer(h)
	} else {
		f.srv = httptest.NewServer(h)
	}
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEndpoint) requests() []notifyReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// next waits for the next request.
func (f *fakeEndpoint) next(t *testing.T) notifyReq {
	t.Helper()
	select {
	case r := <-f.got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no request arrived")
	}
	return notifyReq{}
}

const testSlackToken = "xoxb-1111-2222-SECRETSECRET"

func slackEnv(api string) func(string) string {
	return func(k string) string {
		switch k {
		case "SLACK_TOKEN":
			return testSlackToken
		case "SLACK_API_URL":
			return api
		}
		return ""
	}
}

func testEvent(kind string) deployEvent {
	return deployEvent{
		Kind:     kind,
		Time:     time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Command:  "server",
		App:      "shop",
		Host:     "web-1",
		User:     "dewy",
		Version:  "v1.2.3",
		Previous: "v1.2.2",
		SHA256:   "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Duration: 4200 * time.Millisecond,
	}
}

// sendOne queues e, closes q and returns the one request f received.
func sendOne(t *testing.T, q *notifyQueue, f *fakeEndpoint, e deployEvent) notifyReq {
	t.Helper()
	q.notify(e)
	closeQueue(t, q)
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

func closeQueue(t *testing.T, q *notifyQueue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q.close(ctx)
}

func TestNotifyCollapsesFailures(t *testing.T) {
	f := newFakeEndpoint(t, false, nil)
	q, err := newNotifyQueue([]string{"webhook+http://" + f.srv.Listener.Addr().String() + "/hook"}, nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	fail := func(v, msg string) deployEvent {
		e := testEvent(eventFailed)
		e.Version, e.Error = v, msg
		return e
	}
	start := func(v string) deployEvent {
		e := testEvent(eventStarted)
		e.Version = v
		return e
	}
	broken := "deploy v2: download: registry answered 502"
	for _, e := range []deployEvent{
		start("v2"), fail("v2", broken),
		start("v2"), fail("v2", broken),
		start("v2"), fail("v2", broken),
		fail("v2", broken),
		start("v3"), fail("v3", "deploy v3: bad digest"),
		fail("v3", "deploy v3: bad digest"),
		testEvent(eventDeployed),
	} {
		q.notify(e)
	}
	closeQueue(t, q)

	type sent struct{ event, version, err string }
	var got []sent
	for _, r := range f.requests() {
		m := r.json(t)
		got = append(got, sent{m["event"].(string), m["version"].(string), m["error"].(string)})
	}
	want := []sent{
		{"started", "v2", ""},
		{"failed", "v2", broken},
		{"failed", "v2", "3 more identical failures since 2025-03-04T05:06:07Z: " + broken},
		{"started", "v3", ""},
		{"failed", "v3", "deploy v3: bad digest"},
		{"failed", "v3", "1 more identical failures since 2025-03-04T05:06:07Z: deploy v3: bad digest"},
		{"deployed", "v1.2.3", ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("sent\n%q\nwant\n%q", got, want)
	}
}

func TestNotifyCollapseWindow(t *testing.T) {
	f := newFakeEndpoint(t, false, nil)
	q, err := newNotifyQueue([]string{"webhook+http://" + f.srv.Listener.Addr().String() + "/hook"}, nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	q.targets[0].window = 50 * time.Millisecond // set before the first event reaches the goroutine
	e := testEvent(eventFailed)
	e.Error = "registry down"
	for range 3 {
		q.notify(e)
	}
	if got := f.next(t).json(t)["error"]; got != "registry down" {
		t.Fatalf("first message error = %q, want the failure itself", got)
	}
	// No further event: the window alone brings the summary.
	if got := f.next(t).json(t)["error"]; got != "2 more identical failures since 2025-03-04T05:06:07Z: registry down" {
		t.Fatalf("second message error = %q, want the summary", got)
	}
	// The streak goes on: the next identical failure is held back again
	// and summarised when the queue closes.
	q.notify(e)
	closeQueue(t, q)
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("got %d messages, want 3", len(reqs))
	}
	if got := reqs[2].json(t)["error"]; got != "1 more identical failures since 2025-03-04T05:06:07Z: registry down" {
		t.Errorf("last message error = %q, want the closing summary", got)
	}
}

func TestNotifySeveralAtOnce(t *testing.T) {
	slack := newFakeEndpoint(t, false, nil)
	hook1 := newFakeEndpoint(t, false, nil)
	hook2 := newFakeEndpoint(t, false, nil)
	q, err := newNotifyQueue([]string{
		"slack://ops",
		"webhook+http://" + hook1.srv.Listener.Addr().String() + "/a",
		"webhook+http://" + hook2.srv.Listener.Addr().String() + "/b",
	}, slackEnv(slack.srv.URL+"/api/"), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	q.notify(testEvent(eventStarted))
	q.notify(testEvent(eventDeployed))
	closeQueue(t, q)
	for name, f := range map[string]*fakeEndpoint{"slack": slack, "hook1": hook1, "hook2": hook2} {
		if got := len(f.requests()); got != 2 {
			t.Errorf("%s got %d requests, want 2", name, got)
		}
	}
}

func TestNotifyHungReceiverDoesNotBlock(t *testing.T) {
	release := make(chan struct{})
	f := newFakeEndpoint(t, false, func(_ int, w http.ResponseWriter) { <-release })
	t.Cleanup(func() { close(release) }) // runs before the server closes
	logs, log := newNotifyLog()
	q, err := newNotifyQueue([]string{"webhook+http://" + f.srv.Listener.Addr().String() + "/hook"}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	q.notify(testEvent(eventStarted))
	f.next(t) // the receiver now holds the only send in flight

	start := time.Now()
	for range 3 * notifyQueueLen {
		q.notify(testEvent(eventDeployed))
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("notify took %s with the receiver hung, want it to return at once", took)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	q.close(ctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("close took %s, want it to return soon after its context ended", took)
	}
	out := logs.String()
	if got := strings.Count(out, "notification queue full"); got != 1 {
		t.Errorf("logged the full queue %d times, want once:\n%s", got, out)
	}
	if !strings.Contains(out, "dropped="+strconv.Itoa(2*notifyQueueLen)) {
		t.Errorf("log does not count %d drops:\n%s", 2*notifyQueueLen, out)
	}
	q.notify(testEvent(eventStopped)) // after close: dropped, no panic
}

func TestNotifyNoURLs(t *testing.T) {
	q, err := newNotifyQueue(nil, nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	q.notify(testEvent(eventDeployed))
	closeQueue(t, q)
}

func TestNotifyConstructionErrors(t *testing.T) {
	tests := []struct {
		url    string
		env    func(string) string
		want   string
		secret string
	}{
		{"ftp://files.example/deploys/SECRETX", nil, `notifier ftp://files.example/…: unknown scheme "ftp" (want slack, smtp, https or webhook+http)`, "SECRETX"},
		{"slack://deploys", func(string) string { return "" }, "notifier slack://deploys: SLACK_TOKEN is not set", ""},
		{"slack://deploys?titel=x", slackEnv(""), `notifier slack://deploys: unknown setting "titel" (want title or quiet)`, ""},
		{"slack://deploys?quiet=maybe", slackEnv(""), `notifier slack://deploys: quiet="maybe": want true or false`, ""},
		{"slack://", slackEnv(""), "notifier slack://: not a URL (want slack://channel, smtp://host:port/recipient, https://… or webhook+http://…)", ""},
		{"http://hooks.example/h/SECRETY", nil, "notifier http://hooks.example/…: plain http sends events unencrypted; write webhook+http:// to mean it", "SECRETY"},
		{"https://user:SECRETZ@hooks.example/", nil, "", "SECRETZ"},
		{"slack://deploys", func(k string) string {
			return map[string]string{"SLACK_TOKEN": "t0ken-value", "SLACK_API_URL": "ftp://api.example/SECRETW"}[k]
		}, `notifier slack://deploys: SLACK_API_URL "ftp://api.example/…": want an http(s) URL`, "SECRETW"},
	}
	for _, tc := range tests {
		env := tc.env
		if env == nil {
			env = func(string) string { return "" }
		}
		_, err := newNotifyQueue([]string{tc.url}, env, discardLogger())
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v, want success", tc.url, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.want {
			t.Errorf("newNotifyQueue(%s) = %v, want %q", tc.url, err, tc.want)
		}
		if tc.secret != "" && err != nil && strings.Contains(err.Error(), tc.secret) {
			t.Errorf("error %q shows the secret %q", err, tc.secret)
		}
	}
}

func TestNotifyRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/…"},
		{"https://discord.com/api/webhooks/1/abc?wait=true", "https://discord.com/…"},
		{"https://example.com", "https://example.com"},
		{"webhook+http://u:p@10.0.0.1:8080", "webhook+http://10.0.0.1:8080/…"},
		{"slack://deploys?title=x", "slack://deploys"},
		{"https://%zz/secret", "https://…"},
		{"no url", "(not a URL)"},
	}
	for _, tc := range tests {
		if got := redactNotifyURL(tc.in); got != tc.want {
			t.Errorf("redactNotifyURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestNotifySecretsNeverLeak drives failing and succeeding endpoints with
// secrets in the token, the webhook URLs and even the events, and looks for
// the secrets everywhere dewy writes: the log, request bodies (the
// Authorization header and the webhook URL are where they belong), the
// audit log.
func TestNotifySecretsNeverLeak(t *testing.T) {
	const hookSecret = "WEBHOOKSECRET0123456789"
	slackOK := newFakeEndpoint(t, false, nil)
	slackBad := newFakeEndpoint(t, false, func(_ int, w http.ResponseWriter) {
		io.WriteString(w, `{"ok":false,"error":"invalid_auth"}`)
	})
	hookBad := newFakeEndpoint(t, false, func(_ int, w http.ResponseWriter) { w.WriteHeader(500) })
	hookRedirect := newFakeEndpoint(t, false, func(_ int, w http.ResponseWriter) {
		w.Header().Set("Location", "http://127.0.0.1:1/"+hookSecret)
		w.WriteHeader(307)
	})
	gone := httptest.NewServer(http.NotFoundHandler())
	goneAddr := gone.Listener.Addr().String()
	gone.Close() // connection refused: the transport error quotes the URL

	logs, log := newNotifyLog()
	var queues []*notifyQueue
	for _, c := range []struct {
		api  string
		urls []string
	}{
		{slackOK.srv.URL + "/api/", []string{"slack://deploys"}},
		{slackBad.srv.URL + "/api/", []string{
			"slack://deploys",
			"webhook+http://" + hookBad.srv.Listener.Addr().String() + "/services/" + hookSecret,
			"webhook+http://" + hookRedirect.srv.Listener.Addr().String() + "/services/" + hookSecret,
			"webhook+http://" + goneAddr + "/services/" + hookSecret,
		}},
	} {
		q, err := newNotifyQueue(c.urls, slackEnv(c.api), log)
		if err != nil {
			t.Fatal(err)
		}
		queues = append(queues, q)
	}
	audit, err := openAudit(t.TempDir() + "/audit.log")
	if err != nil {
		t.Fatal(err)
	}

	// Events are not supposed to carry secrets; these do, as if an error
	// message from elsewhere had quoted one. A queue knows its own
	// secrets, so each gets events quoting those.
	eventsFor := func(secrets string) []deployEvent {
		var events []deployEvent
		for _, k := range []string{eventStarted, eventDeployed, eventFailed, eventRolledBack, eventRestarted, eventStopped} {
			e := testEvent(k)
			if k == eventFailed || k == eventRolledBack {
				e.Error = "upload failed: " + secrets
				e.Hooks = []hookResult{{Name: "on_failure", ExitCode: 1, Output: "env: " + secrets}}
			}
			events = append(events, e)
		}
		return events
	}
	perQueue := [][]deployEvent{
		eventsFor("SLACK_TOKEN=" + testSlackToken),
		eventsFor("https://hooks.example/services/" + hookSecret + " token " + testSlackToken),
	}
	for i, q := range queues {
		for _, e := range perQueue[i] {
			q.notify(e)
		}
	}
	for _, e := range perQueue[1] {
		if err := audit.record(queues[1].redact(e)); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range queues {
		closeQueue(t, q)
	}
	audit.close()
	data, err := os.ReadFile(audit.path)
	if err != nil {
		t.Fatal(err)
	}

	places := map[string]string{"log": logs.String(), "audit log": string(data)}
	for _, f := range []*fakeEndpoint{slackOK, slackBad, hookBad, hookRedirect} {
		if len(f.requests()) == 0 {
			t.Fatalf("an endpoint got no request; the test proves nothing")
		}
		for i, r := range f.requests() {
			// The webhook URL itself is the secret's home; the body is not.
			places["request "+strconv.Itoa(i)+" to "+f.srv.URL] = string(r.Body)
		}
	}
	for _, want := range []string{"invalid_auth", "HTTP 500", "HTTP 307", "connection refused"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q; the failure paths were not exercised:\n%s", want, logs.String())
		}
	}
	for where, text := range places {
		for _, secret := range []string{testSlackToken, hookSecret} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains the secret %q:\n%s", where, secret, text)
			}
		}
	}
}
