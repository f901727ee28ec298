package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

var _ notifier = (*webhookNotifier)(nil)

// webhookNotifier posts a JSON document per event. The text and content
// fields make it readable as is by Mattermost and Teams (text) and Discord
// (content).
type webhookNotifier struct {
	notifyPoster
	url  string
	name string // redacted, for errors
}

// buildWebhookNotifier is https://, webhook+https:// and webhook+http://'s
// row in the notifier scheme table.
func buildWebhookNotifier(u *url.URL, raw string, _ func(string) string) (notifier, bool, []string, error) {
	w, err := newWebhookNotifier(u)
	if err != nil {
		return nil, false, nil, err
	}
	return w, false, webhookSecrets(raw, w.url), nil
}

func newWebhookNotifier(u *url.URL) (*webhookNotifier, error) {
	c := *u
	c.Scheme = strings.TrimPrefix(u.Scheme, "webhook+")
	return &webhookNotifier{
		notifyPoster: notifyPoster{client: notifyClient, sleep: notifySleep},
		url:          c.String(),
		name:         redactNotifyURL(u.String()),
	}, nil
}

type webhookPayload struct {
	Event    string  `json:"event"`
	App      string  `json:"app"`
	Host     string  `json:"host"`
	Command  string  `json:"command,omitempty"`
	User     string  `json:"user,omitempty"`
	Slot     string  `json:"slot,omitempty"`
	Version  string  `json:"version"`
	Previous string  `json:"previous"`
	Digest   string  `json:"digest"`
	Verified string  `json:"verified_by,omitempty"`
	Error    string  `json:"error"`
	Time     string  `json:"time"`
	Duration float64 `json:"duration_seconds,omitempty"`
	Text     string  `json:"text"`
	Content  string  `json:"content"`
}

func (w *webhookNotifier) send(ctx context.Context, e deployEvent) error {
	text := notifyHeadline(notifyAppName("", e), e)
	if e.Error != "" {
		text += ": " + notifyClip(e.Error)
	}
	body, err := json.Marshal(webhookPayload{
		Event:    e.Kind,
		App:      e.App,
		Host:     e.Host,
		Command:  e.Command,
		User:     e.User,
		Slot:     e.Slot,
		Version:  e.Version,
		Previous: e.Previous,
		Digest:   e.SHA256,
		Verified: e.VerifiedBy,
		Error:    e.Error,
		Time:     e.Time.UTC().Format(time.RFC3339),
		Duration: e.Duration.Seconds(),
		Text:     text,
		// Discord refuses content over 2000 characters.
		Content: strings.ToValidUTF8(text[:min(len(text), 1900)], ""),
	})
	if err != nil {
		return fmt.Errorf("webhook %s: encode: %w", w.name, err)
	}
	status, _, err := w.post(ctx, w.url, "webhook "+w.name, nil, body)
	if err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return fmt.Errorf("webhook %s: HTTP %d", w.name, status)
	}
	return nil
}

// webhookSecrets lists the parts of a webhook URL that may be a secret.
func webhookSecrets(raw, target string) []string {
	s := []string{raw, target}
	if u, err := url.Parse(target); err == nil {
		if p, ok := u.User.Password(); ok {
			s = append(s, p)
		}
		if u.RawQuery != "" {
			s = append(s, u.RawQuery)
		}
		if u.Path != "" && u.Path != "/" {
			s = append(s, u.EscapedPath(), u.Path)
		}
	}
	return s
}
