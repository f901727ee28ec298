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

func closeQueue(t *testing.T, q *notifyQueue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q.close(ctx)
}

func TestSlackPostMessage(t *testing.T) {
	f := newFakeEndpoint(t, false, nil)
	q, err := newNotifyQueue([]string{"slack://deploys?title=Shop"}, slackEnv(f.srv.URL+"/api/"), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	e := testEvent(eventDeployed)
	e.Slot = "green"
	q.notify(e)
	closeQueue(t, q)

	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	for _, c := range []struct{ name, got, want string }{
		{"method", r.Method, "POST"},
		{"path", r.Path, "/api/chat.postMessage"},
		{"Authorization", r.Header.Get("Authorization"), "Bearer " + testSlackToken},
		{"Content-Type", r.Header.Get("Content-Type"), "application/json; charset=utf-8"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	var body slackPost
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Channel != "#deploys" {
		t.Errorf("channel = %q, want #deploys", body.Channel)
	}
	if want := "Shop: deployed v1.2.3 on web-1 (from v1.2.2)"; body.Text != want {
		t.Errorf("text = %q, want %q", body.Text, want)
	}
	if len(body.Attachments) != 1 || body.Attachments[0].Color != "good" {
		t.Fatalf("attachments = %+v, want one coloured good", body.Attachments)
	}
	blocks, _ := json.Marshal(body.Attachments[0].Blocks)
	for _, want := range []string{`"type":"section"`, `"type":"mrkdwn"`, "*Shop: deployed v1.2.3 on web-1 (from v1.2.2)*", "sha256 0123456789ab", "took 4.2s", "slot green"} {
		if !strings.Contains(string(blocks), want) {
			t.Errorf("blocks %s lack %q", blocks, want)
		}
	}
}

func TestSlackEventMessages(t *testing.T) {
	rb := testEvent(eventRolledBack)
	rb.Error = "health check: GET /healthz: 503 <Service Unavailable>"
	failed := testEvent(eventFailed)
	failed.Error = "download: connection reset"
	failed.Hooks = []hookResult{{Name: "before_deploy", ExitCode: 2, Output: "migration failed"}}
	tests := []struct {
		e         deployEvent
		text      string
		color     string
		blockWant []string
	}{
		{testEvent(eventStarted), "shop: deploying v1.2.3 on web-1 (from v1.2.2)", "#439fe0", nil},
		{rb, "shop: v1.2.3 failed to start on web-1 and was rolled back; v1.2.2 keeps serving: " + rb.Error, "warning",
			[]string{"503 &lt;Service Unavailable&gt;"}},
		{failed, "shop: deploy of v1.2.3 failed on web-1: download: connection reset", "danger",
			[]string{"hook before_deploy failed (exit status 2)", "migration failed"}},
		{testEvent(eventRestarted), "shop: restarted v1.2.3 on web-1", "#439fe0", nil},
		{testEvent(eventStopped), "shop: dewy stopped on web-1 (v1.2.3 was live)", "#439fe0", nil},
	}
	for _, tc := range tests {
		t.Run(tc.e.Kind, func(t *testing.T) {
			m := slackMessage("#c", "", tc.e)
			if m.Text != tc.text {
				t.Errorf("text = %q, want %q", m.Text, tc.text)
			}
			if got := m.Attachments[0].Color; got != tc.color {
				t.Errorf("color = %q, want %q", got, tc.color)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.Encode(m.Attachments[0].Blocks)
			blocks := buf.Bytes()
			for _, w := range tc.blockWant {
				if !strings.Contains(string(blocks), w) {
					t.Errorf("blocks %s lack %q", blocks, w)
				}
			}
		})
	}
}

func TestSlackChannelForms(t *testing.T) {
	tests := []struct{ url, want string }{
		{"slack://deploys", "#deploys"},
		{"slack://#deploys", "#deploys"},
		{"slack://C0123ABCD", "C0123ABCD"},
		{"slack://deploys?quiet=true&title=x", "#deploys"},
	}
	for _, tc := range tests {
		n, _, _, err := newNotifier(tc.url, slackEnv(""))
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if got := n.(*slackNotifier).channel; got != tc.want {
			t.Errorf("%s: channel = %q, want %q", tc.url, got, tc.want)
		}
		if got := n.(*slackNotifier).endpoint; got != "https://slack.com/api/chat.postMessage" {
			t.Errorf("%s: endpoint = %q, want the public API", tc.url, got)
		}
	}
}

func TestSlackNotOK(t *testing.T) {
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   string
	}{
		{"ok false", func(w http.ResponseWriter) { io.WriteString(w, `{"ok":false,"error":"channel_not_found"}`) }, "slack chat.postMessage to #deploys: channel_not_found"},
		{"odd error", func(w http.ResponseWriter) { io.WriteString(w, `{"ok":false,"error":"Bearer `+testSlackToken+`"}`) }, "slack chat.postMessage to #deploys: not ok"},
		{"server error", func(w http.ResponseWriter) { w.WriteHeader(500) }, "slack chat.postMessage: HTTP 500"},
		{"not json", func(w http.ResponseWriter) { io.WriteString(w, "<html>") }, "slack chat.postMessage: answer is not JSON"},
		{"redirect", func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://elsewhere.example/")
			w.WriteHeader(302)
		}, "slack chat.postMessage: HTTP 302"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEndpoint(t, false, func(_ int, w http.ResponseWriter) { tc.answer(w) })
			n, _, _, err := newNotifier("slack://deploys", slackEnv(f.srv.URL+"/api"))
			if err != nil {
				t.Fatal(err)
			}
			err = n.send(context.Background(), testEvent(eventFailed))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("send = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSlackRetryAfter(t *testing.T) {
	f := newFakeEndpoint(t, false, func(n int, w http.ResponseWriter) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	n, _, _, err := newNotifier("slack://deploys", slackEnv(f.srv.URL+"/api/"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.send(context.Background(), testEvent(eventFailed)); err != nil {
		t.Fatalf("send = %v, want success on the second attempt", err)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests, want 2", len(reqs))
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < time.Second {
		t.Errorf("second attempt came %s after the first, want at least the advertised 1s", gap)
	}
	if !bytes.Equal(reqs[0].Body, reqs[1].Body) {
		t.Error("retry sent a different body")
	}
}

func TestSlackRetryAfterBounded(t *testing.T) {
	f := newFakeEndpoint(t, false, func(n int, w http.ResponseWriter) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	n, _, _, err := newNotifier("slack://deploys", slackEnv(f.srv.URL+"/api/"))
	if err != nil {
		t.Fatal(err)
	}
	s := n.(*slackNotifier)
	var waits []time.Duration
	s.sleep = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }

	err = s.send(context.Background(), testEvent(eventFailed))
	if err == nil || err.Error() != "slack chat.postMessage: HTTP 429" {
		t.Fatalf("send = %v, want HTTP 429 after the retries", err)
	}
	if want := []time.Duration{7 * time.Second, 7 * time.Second}; !slices.Equal(waits, want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}
	if got := len(f.requests()); got != 3 {
		t.Errorf("got %d requests, want 3", got)
	}

	// A wait past the send deadline is not started at all.
	waits = nil
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = s.send(ctx, testEvent(eventFailed))
	if err == nil || !strings.Contains(err.Error(), "past the send deadline") {
		t.Fatalf("send = %v, want a deadline error", err)
	}
	if len(waits) != 0 {
		t.Errorf("waited %v, want no wait", waits)
	}
}

func TestSlackQuiet(t *testing.T) {
	f := newFakeEndpoint(t, false, nil)
	q, err := newNotifyQueue([]string{"slack://deploys?quiet=true"}, slackEnv(f.srv.URL+"/api/"), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{eventStarted, eventDeployed, eventFailed, eventStarted, eventRolledBack, eventRestarted, eventStopped} {
		e := testEvent(k)
		e.Error = k + " error" // distinct errors: nothing is collapsed
		q.notify(e)
	}
	closeQueue(t, q)
	var got []string
	for _, r := range f.requests() {
		got = append(got, r.json(t)["text"].(string))
	}
	want := []string{
		"shop: deploy of v1.2.3 failed on web-1: failed error",
		"shop: v1.2.3 failed to start on web-1 and was rolled back; v1.2.2 keeps serving: rolled_back error",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sent %q, want %q", got, want)
	}
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

func TestWebhookPayload(t *testing.T) {
	f := newFakeEndpoint(t, true, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) })
	raw := f.srv.URL + "/api/webhooks/123/TOKENPART"
	q, err := newNotifyQueue([]string{raw}, nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	q.targets[0].n.(*webhookNotifier).client = f.srv.Client() // trusts the test certificate
	e := testEvent(eventRolledBack)
	e.Error = "health check failed"
	e.Slot = "blue"
	q.notify(e)
	closeQueue(t, q)

	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/api/webhooks/123/TOKENPART" {
		t.Errorf("request = %s %s, want POST /api/webhooks/123/TOKENPART", r.Method, r.Path)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", got)
	}
	text := "shop: v1.2.3 failed to start on web-1 and was rolled back; v1.2.2 keeps serving: health check failed"
	want := map[string]any{
		"event":            "rolled_back",
		"app":              "shop",
		"host":             "web-1",
		"command":          "server",
		"user":             "dewy",
		"slot":             "blue",
		"version":          "v1.2.3",
		"previous":         "v1.2.2",
		"digest":           e.SHA256,
		"error":            "health check failed",
		"time":             "2025-03-04T05:06:07Z",
		"duration_seconds": 4.2,
		"text":             text,
		"content":          text,
	}
	got := r.json(t)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %q", k)
		}
	}
}

func TestWebhookPlaintextAndErrors(t *testing.T) {
	f := newFakeEndpoint(t, false, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	n, _, _, err := newNotifier("webhook+http://"+f.srv.Listener.Addr().String()+"/in/SECRETPATH?k=v", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.send(context.Background(), testEvent(eventStarted)); err != nil {
		t.Fatalf("send = %v", err)
	}
	if r := f.requests()[0]; r.Path != "/in/SECRETPATH?k=v" {
		t.Errorf("path = %q, want /in/SECRETPATH?k=v", r.Path)
	}
	err = n.send(context.Background(), testEvent(eventStarted))
	want := "webhook webhook+http://" + f.srv.Listener.Addr().String() + "/…: HTTP 502"
	if err == nil || err.Error() != want {
		t.Errorf("send = %v, want %q", err, want)
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
