package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

var _ notifier = (*mailNotifier)(nil)

// Mail TLS modes, as tls= on the URL names them.
const (
	mailSTARTTLS = "starttls" // plain connection upgraded before anything is said
	mailImplicit = "implicit" // TLS from the first byte (SMTPS, port 465)
	mailNoTLS    = "none"     // tls=false
)

// mailNotifier sends each event as a plain-text mail, with the URL shapes of
// upstream Dewy: smtp://host:port/recipient?from=…&username=…&tls=…, or
// mail://; the password comes from MAIL_PASSWORD.
type mailNotifier struct {
	addr     string // host:port
	host     string
	tlsMode  string
	tlsConf  *tls.Config
	username string
	password string
	from     string
	to       []string
	subject  string // fixed subject; "" = the event's headline
	name     string // redacted, for errors
	helo     string
}

// buildMailNotifier is smtp:// and mail://'s row in the notifier scheme
// table.
func buildMailNotifier(u *url.URL, _ string, getenv func(string) string) (notifier, bool, []string, error) {
	m, quiet, err := newMailNotifier(u, getenv)
	if err != nil {
		return nil, false, nil, err
	}
	return m, quiet, m.secrets(), nil
}

// newMailNotifier reads the URL. Settings left off the URL come from
// MAIL_USERNAME, MAIL_PASSWORD and MAIL_FROM, as upstream Dewy reads them.
func newMailNotifier(u *url.URL, getenv func(string) string) (*mailNotifier, bool, error) {
	host := u.Hostname()
	if host == "" {
		return nil, false, errors.New("want smtp://host:port/recipient")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, false, fmt.Errorf("bad query: %v", err)
	}
	m := &mailNotifier{host: host, name: redactNotifyURL(u.String()), helo: "localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n") {
		m.helo = h
	}
	s, err := m.readQuery(q)
	if err != nil {
		return nil, false, err
	}
	if err := m.readCredentials(u, getenv); err != nil {
		return nil, false, err
	}
	if err := m.readTLS(u.Port(), s.tls, s.ca); err != nil {
		return nil, false, err
	}
	if err := m.readAddresses(u); err != nil {
		return nil, false, err
	}
	return m, s.quiet, nil
}

// mailQuery holds the query settings that are not fields of mailNotifier
// itself: they only steer how the notifier is built.
type mailQuery struct {
	quiet   bool
	tls, ca string
}

// readQuery takes the settings off the URL's query, refusing any it does
// not know so that a misspelt key is not silently ignored.
func (m *mailNotifier) readQuery(q url.Values) (mailQuery, error) {
	var s mailQuery
	for k, v := range q {
		switch k {
		case "username":
			m.username = v[0]
		case "password":
			m.password = v[0]
		case "from":
			m.from = v[0]
		case "subject":
			m.subject = oneLine(v[0])
		case "tls":
			s.tls = v[0]
		case "ca":
			s.ca = v[0]
		case "quiet":
			var err error
			if s.quiet, err = strconv.ParseBool(v[0]); err != nil {
				return s, fmt.Errorf("quiet=%q: want true or false", v[0])
			}
		default:
			return s, fmt.Errorf("unknown setting %q (want from, username, subject, tls, ca or quiet)", k)
		}
	}
	return s, nil
}

// readCredentials lets userinfo on the URL win over the query, and the
// environment fill in what both leave out, as upstream Dewy does.
func (m *mailNotifier) readCredentials(u *url.URL, getenv func(string) string) error {
	if u.User != nil {
		m.username = u.User.Username()
		if p, ok := u.User.Password(); ok {
			m.password = p
		}
	}
	m.username = firstNonEmpty(m.username, getenv("MAIL_USERNAME"))
	m.password = firstNonEmpty(m.password, getenv("MAIL_PASSWORD"))
	m.from = firstNonEmpty(m.from, getenv("MAIL_FROM"), m.username)
	if m.password != "" && m.username == "" {
		return errors.New("a password without a username (set username= or MAIL_USERNAME)")
	}
	return nil
}

// readTLS picks the TLS mode and the port that goes with it, and loads the
// CA file. It runs after readCredentials because it refuses to send a
// password in clear to anything but a loopback host.
func (m *mailNotifier) readTLS(port, tlsParam, ca string) error {
	switch strings.ToLower(tlsParam) {
	case "", "true", "1":
		// upstream's default: STARTTLS on the submission port, and
		// SMTPS on 465 where a server speaks TLS at once.
		m.tlsMode = mailSTARTTLS
		if port == "465" {
			m.tlsMode = mailImplicit
		}
	case mailSTARTTLS:
		m.tlsMode = mailSTARTTLS
	case mailImplicit:
		m.tlsMode = mailImplicit
	case "false", "0":
		m.tlsMode = mailNoTLS
	default:
		return fmt.Errorf("tls=%q: want true, false, starttls or implicit", tlsParam)
	}
	if port == "" {
		port = "587"
		if m.tlsMode == mailImplicit {
			port = "465"
		}
	}
	m.addr = net.JoinHostPort(m.host, port)
	if m.tlsMode == mailNoTLS && m.password != "" && !isLoopbackHost(m.host) {
		return fmt.Errorf("tls=false would send the password in clear to %s; only a loopback host may be sent one without TLS", m.host)
	}
	if m.tlsMode == mailNoTLS {
		if ca != "" {
			return errors.New("ca= needs TLS; drop tls=false")
		}
		return nil
	}
	m.tlsConf = &tls.Config{ServerName: m.host, MinVersion: tls.VersionTLS12}
	if ca == "" {
		return nil
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return fmt.Errorf("ca=%s: %w", ca, errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("ca=%s: no PEM certificate in it", ca)
	}
	m.tlsConf.RootCAs = pool
	return nil
}

// readAddresses checks the sender and the recipients (the URL's path, comma
// separated) and keeps only their bare addresses for the SMTP envelope.
func (m *mailNotifier) readAddresses(u *url.URL) error {
	if m.from == "" {
		return errors.New("no sender: set from=, MAIL_FROM or a username that is an address")
	}
	from, err := mail.ParseAddress(m.from)
	if err != nil {
		return fmt.Errorf("from %q: not a mail address", m.from)
	}
	m.from = from.Address
	rcpt := strings.TrimPrefix(u.Path, "/")
	if rcpt == "" {
		return errors.New("no recipient: want smtp://host:port/ops@example.com")
	}
	for _, r := range strings.Split(rcpt, ",") {
		a, err := mail.ParseAddress(strings.TrimSpace(r))
		if err != nil {
			return fmt.Errorf("recipient %q: not a mail address", r)
		}
		m.to = append(m.to, a.Address)
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func (m *mailNotifier) secrets() []string { return []string{m.password} }

// send delivers one event. net/smtp knows no context, so ctx's deadline
// becomes the connection's and its cancellation closes the connection.
func (m *mailNotifier) send(ctx context.Context, e deployEvent) error {
	msg := m.message(e, timeNow())
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return fmt.Errorf("mail %s: %w", m.name, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if m.tlsMode == mailImplicit {
		tc := tls.Client(conn, m.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("mail %s: TLS: %w", m.name, err)
		}
		conn = tc
	}
	if err := m.converse(conn, msg); err != nil {
		return fmt.Errorf("mail %s: %w", m.name, err)
	}
	return nil
}

// converse speaks SMTP on conn. In STARTTLS mode a server that does not
// offer it is refused before anything, credentials above all, is sent.
func (m *mailNotifier) converse(conn net.Conn, msg []byte) error {
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(m.helo); err != nil {
		return err
	}
	if m.tlsMode == mailSTARTTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("server does not offer STARTTLS (tls=implicit for SMTPS, tls=false for none)")
		}
		if err := c.StartTLS(m.tlsConf); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if m.username != "" {
		// PlainAuth itself refuses a connection that is neither TLS nor
		// to localhost; newMailNotifier refused such URLs already.
		if err := c.Auth(smtp.PlainAuth("", m.username, m.password, m.host)); err != nil {
			return fmt.Errorf("auth as %s: %w", m.username, err)
		}
	}
	if err := c.Mail(m.from); err != nil {
		return err
	}
	for _, r := range m.to {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("recipient %s: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// message renders e as an RFC 5322 message: the headline as subject, the
// body in quoted-printable so that long lines and any bytes survive.
func (m *mailNotifier) message(e deployEvent, now time.Time) []byte {
	head := notifyHeadline(notifyAppName("", e), e)
	subject := m.subject
	if subject == "" {
		subject = head
	}
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", m.from)
	hdr("To", strings.Join(m.to, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", oneLine(subject)))
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Message-ID", fmt.Sprintf("<dewy.%d.%s@%s>", now.UnixNano(), e.Kind, m.helo))
	hdr("X-Dewy-Event", e.Kind)
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")

	var body strings.Builder
	body.WriteString(head + "\n")
	if e.Error != "" {
		body.WriteString("\n" + notifyClip(e.Error) + "\n")
	}
	for _, h := range e.Hooks {
		if h.ExitCode == 0 && h.Error == "" {
			continue
		}
		fmt.Fprintf(&body, "\nhook %s failed (%s)\n", h.Name, hookFailure(h))
		if h.Output != "" {
			body.WriteString(notifyClip(h.Output) + "\n")
		}
	}
	body.WriteString("\n")
	for _, f := range []struct{ k, v string }{
		{"event", e.Kind}, {"app", e.App}, {"host", e.Host}, {"slot", e.Slot}, {"version", e.Version},
		{"previous", e.Previous}, {"sha256", e.SHA256}, {"time", e.Time.UTC().Format(time.RFC3339)},
	} {
		if f.v != "" {
			fmt.Fprintf(&body, "%-9s %s\n", f.k+":", f.v)
		}
	}
	if d := notifyDetails(e); d != "" {
		body.WriteString("\n" + d + "\n")
	}
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(body.String(), "\n", "\r\n")))
	_ = qp.Close()
	return b.Bytes()
}
