package main

import (
	"context"
	"net/http"
	"testing"
)

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
	r := sendOne(t, q, f, e)
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
