package main

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The login testdata/smtpd/smtpd.py accepts.
const (
	testMailUser     = "dewy"
	testMailPassword = "dewy-test-password"
)

var testMailCA = filepath.Join("testdata", "smtpd", "cert.pem")

// receivedMail is one message as testdata/smtpd/smtpd.py recorded it.
type receivedMail struct {
	Listener string   `json:"listener"`
	TLS      bool     `json:"tls"`
	AuthUser *string  `json:"auth_user"`
	MailFrom string   `json:"mail_from"`
	RcptTos  []string `json:"rcpt_tos"`
	Data     string   `json:"data"`

	header mail.Header
	body   string // quoted-printable decoded
}

// mailsFor returns the messages the test SMTP server received whose raw
// text contains marker. The server writes each one before it answers 250,
// so once the queue is closed everything sent is there.
func mailsFor(t *testing.T, marker string) []receivedMail {
	t.Helper()
	dir := backendAddr(t, "smtp", "DEWY_TEST_SMTP_DIR")
	files, err := filepath.Glob(filepath.Join(dir, "msg-*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []receivedMail
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m receivedMail
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !strings.Contains(m.Data, marker) {
			continue
		}
		msg, err := mail.ReadMessage(strings.NewReader(m.Data))
		if err != nil {
			t.Fatalf("message is not RFC 5322: %v\n%s", err, m.Data)
		}
		m.header = msg.Header
		body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
		if err != nil {
			t.Fatalf("body is not quoted-printable: %v", err)
		}
		m.body = string(body)
		out = append(out, m)
	}
	return out
}

// mailTest sends events through a notify queue for url (with the test
// password in MAIL_PASSWORD) and returns what the server received.
func mailTest(t *testing.T, raw, marker string, events ...deployEvent) []receivedMail {
	t.Helper()
	getenv := func(k string) string {
		if k == "MAIL_PASSWORD" {
			return testMailPassword
		}
		return ""
	}
	q, err := newNotifyQueue([]string{raw}, getenv, discardLogger())
	if err != nil {
		t.Fatalf("newNotifyQueue(%s): %v", raw, err)
	}
	for _, e := range events {
		e.Host = marker
		q.notify(e)
	}
	closeQueue(t, q)
	return mailsFor(t, marker)
}

func TestMailNotifierDelivers(t *testing.T) {
	for _, tc := range []struct {
		name, addrVar, url string
		tls                bool
	}{
		// tls unset: STARTTLS, as upstream Dewy defaults to.
		{"starttls", "DEWY_TEST_SMTP_STARTTLS_ADDR", "smtp://ADDR/ops@example.com?from=dewy@example.com&username=dewy&ca=" + testMailCA, true},
		{"smtps", "DEWY_TEST_SMTPS_ADDR", "mail://ADDR/ops@example.com,oncall@example.com?from=dewy@example.com&username=dewy&tls=implicit&ca=" + testMailCA, true},
		// A loopback relay without TLS, which the URL asks for.
		{"plain", "DEWY_TEST_SMTP_ADDR", "smtp://ADDR/ops@example.com?from=dewy@example.com&username=dewy&tls=false", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := backendAddr(t, "smtp", tc.addrVar)
			marker := "mail-" + tc.name + "-" + time.Now().Format("150405.000000000")
			e := testEvent(eventFailed)
			e.Slot = "blue"
			e.Error = "verify v1.2.3: sha256 mismatch"
			got := mailTest(t, strings.Replace(tc.url, "ADDR", addr, 1), marker, e)
			if len(got) != 1 {
				t.Fatalf("server received %d messages, want 1", len(got))
			}
			m := got[0]
			if m.Listener != tc.name || m.TLS != tc.tls {
				t.Errorf("received on %s (tls %v), want %s (tls %v)", m.Listener, m.TLS, tc.name, tc.tls)
			}
			if m.AuthUser == nil || *m.AuthUser != testMailUser {
				t.Errorf("authenticated as %v, want %q", m.AuthUser, testMailUser)
			}
			wantRcpt := []string{"ops@example.com"}
			if tc.name == "smtps" {
				wantRcpt = append(wantRcpt, "oncall@example.com")
			}
			if m.MailFrom != "dewy@example.com" || strings.Join(m.RcptTos, ",") != strings.Join(wantRcpt, ",") {
				t.Errorf("envelope %s → %v, want dewy@example.com → %v", m.MailFrom, m.RcptTos, wantRcpt)
			}
			subject, err := new(mime.WordDecoder).DecodeHeader(m.header.Get("Subject"))
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range []struct{ key, got, want string }{
				{"From", m.header.Get("From"), "dewy@example.com"},
				{"To", m.header.Get("To"), strings.Join(wantRcpt, ", ")},
				{"Subject", subject, "shop: deploy of v1.2.3 failed on " + marker},
				{"Content-Type", m.header.Get("Content-Type"), "text/plain; charset=utf-8"},
				{"X-Dewy-Event", m.header.Get("X-Dewy-Event"), "failed"},
			} {
				if h.got != h.want {
					t.Errorf("header %s = %q, want %q", h.key, h.got, h.want)
				}
			}
			if _, err := m.header.Date(); err != nil {
				t.Errorf("Date header: %v", err)
			}
			for _, want := range []string{
				"shop: deploy of v1.2.3 failed on " + marker + "\r\n",
				"verify v1.2.3: sha256 mismatch",
				"slot:     blue\r\n",
				"version:  v1.2.3\r\n",
				"previous: v1.2.2\r\n",
				"sha256 0123456789ab",
			} {
				if !strings.Contains(m.body, want) {
					t.Errorf("body lacks %q:\n%s", want, m.body)
				}
			}
			if strings.Contains(m.Data, testMailPassword) {
				t.Errorf("the password is in the message")
			}
		})
	}
}

// quiet=true sends failures and rollbacks only, as for Slack.
func TestMailNotifierQuiet(t *testing.T) {
	addr := backendAddr(t, "smtp", "DEWY_TEST_SMTP_STARTTLS_ADDR")
	marker := "mail-quiet-" + time.Now().Format("150405.000000000")
	raw := "smtp://" + addr + "/ops@example.com?from=dewy@example.com&username=dewy&quiet=true&ca=" + testMailCA
	got := mailTest(t, raw, marker, testEvent(eventStarted), testEvent(eventDeployed), testEvent(eventRolledBack))
	if len(got) != 1 || got[0].header.Get("X-Dewy-Event") != eventRolledBack {
		var kinds []string
		for _, m := range got {
			kinds = append(kinds, m.header.Get("X-Dewy-Event"))
		}
		t.Fatalf("quiet sent %v, want only rolled_back", kinds)
	}
}

// A server that offers no STARTTLS gets neither the password nor the
// message when the URL asks for TLS.
func TestMailNotifierRefusesMissingSTARTTLS(t *testing.T) {
	addr := backendAddr(t, "smtp", "DEWY_TEST_SMTP_ADDR")
	marker := "mail-nostarttls-" + time.Now().Format("150405.000000000")
	u, _ := url.Parse("smtp://" + addr + "/ops@example.com?from=dewy@example.com&username=dewy")
	m, _, err := newMailNotifier(u, func(string) string { return testMailPassword })
	if err != nil {
		t.Fatal(err)
	}
	e := testEvent(eventFailed)
	e.Host = marker
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = m.send(ctx, e)
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("send = %v, want a refusal naming STARTTLS", err)
	}
	if strings.Contains(err.Error(), testMailPassword) {
		t.Errorf("error %q carries the password", err)
	}
	if got := mailsFor(t, marker); len(got) != 0 {
		t.Errorf("server received %d messages, want none", len(got))
	}
}

func TestMailNotifierURLs(t *testing.T) {
	env := map[string]string{"MAIL_USERNAME": "env-user@example.com", "MAIL_PASSWORD": "env-secret-pw", "MAIL_FROM": ""}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		url  string
		want string // error text; "" = accepted
	}{
		{"smtp://smtp.example.com:587/ops@example.com", ""},
		{"mail://smtp.example.com/ops@example.com?subject=Deploy&quiet=true", ""},
		{"smtp://smtp.example.com:25/ops@example.com?tls=false", "in clear to smtp.example.com"},
		{"smtp://localhost:25/ops@example.com?tls=false", ""},
		{"smtp://[::1]:25/ops@example.com?tls=false", ""},
		{"smtp://smtp.example.com/", "no recipient"},
		{"smtp://smtp.example.com/not an address", "recipient"},
		{"smtp://smtp.example.com/ops@example.com?from=nobody", `from "nobody"`},
		{"smtp://smtp.example.com/ops@example.com?tls=maybe", `tls="maybe"`},
		{"smtp://smtp.example.com/ops@example.com?quiet=loud", `quiet="loud"`},
		{"smtp://smtp.example.com/ops@example.com?to=x", `unknown setting "to"`},
		{"smtp://smtp.example.com/ops@example.com?ca=/nonexistent/ca.pem", "ca=/nonexistent/ca.pem"},
		{"smtp://localhost/ops@example.com?tls=false&ca=" + testMailCA, "ca= needs TLS"},
		{"smtp:///ops@example.com", "want smtp://host:port/recipient"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = newMailNotifier(u, getenv)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("newMailNotifier(%s) = %v, want ok", tc.url, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("newMailNotifier(%s) = %v, want an error naming %q", tc.url, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "env-secret-pw"):
			t.Errorf("newMailNotifier(%s) error %q carries the password", tc.url, err)
		}
	}

	// Defaults as upstream Dewy has them: port 587 with STARTTLS, SMTPS on
	// 465, the sender from the username, credentials from the environment.
	for _, tc := range []struct{ url, addr, mode, from string }{
		{"smtp://smtp.example.com/ops@example.com", "smtp.example.com:587", mailSTARTTLS, "env-user@example.com"},
		{"smtp://smtp.example.com:465/ops@example.com", "smtp.example.com:465", mailImplicit, "env-user@example.com"},
		{"smtp://smtp.example.com/ops@example.com?tls=implicit&from=Dewy+<d@example.com>", "smtp.example.com:465", mailImplicit, "d@example.com"},
		{"smtp://u%40example.com:url-pw@smtp.example.com:2525/ops@example.com", "smtp.example.com:2525", mailSTARTTLS, "u@example.com"},
	} {
		u, _ := url.Parse(tc.url)
		m, _, err := newMailNotifier(u, getenv)
		if err != nil {
			t.Fatalf("newMailNotifier(%s): %v", tc.url, err)
		}
		if m.addr != tc.addr || m.tlsMode != tc.mode || m.from != tc.from {
			t.Errorf("%s: addr %s, tls %s, from %s; want %s, %s, %s", tc.url, m.addr, m.tlsMode, m.from, tc.addr, tc.mode, tc.from)
		}
	}

	// The password is one of the queue's secrets, and the notifier's name
	// in logs shows neither it nor the recipient.
	raw := "smtp://smtp.example.com/ops@example.com?password=url-secret-pw&username=u&from=d@example.com"
	q, err := newNotifyQueue([]string{raw}, getenv, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer closeQueue(t, q)
	if got := q.scrubString("auth failed for url-secret-pw"); strings.Contains(got, "url-secret-pw") {
		t.Errorf("scrub left the password: %q", got)
	}
	if name := q.targets[0].name; name != "smtp://smtp.example.com/…" {
		t.Errorf("notifier name = %q, want smtp://smtp.example.com/…", name)
	}
}
