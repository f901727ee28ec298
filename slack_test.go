package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSlackPostMessage(t *testing.T) {
	f := newFakeEndpoint(t, false, nil)
	q, err := newNotifyQueue([]string{"slack://deploys?title=Shop"}, slackEnv(f.srv.URL+"/api/"), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	e := testEvent(eventDeployed)
	e.Slot = "green"
	r := sendOne(t, q, f, e)
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
