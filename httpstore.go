package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// httpStore reads artifacts from plain https:// URLs, such as a web server
// or a CDN in front of a bucket. Plain http:// is accepted only for loopback
// hosts: an artifact is code that dewy runs, and on any other network a
// plaintext download could be swapped in transit.
type httpStore struct {
	client *http.Client
}

var _ artifactStore = (*httpStore)(nil)

// httpMaxRedirects matches the limit of net/http's default policy; CDNs and
// release hosts use one or two.
const httpMaxRedirects = 10

// newHTTPStoreFor is https://'s row in the artifact scheme table.
func newHTTPStoreFor(_ context.Context, _ *url.URL, _ func(string) string, log *slog.Logger) (artifactStore, error) {
	return newHTTPStore(log.With("store", "https")), nil
}

func newHTTPStore(log *slog.Logger) *httpStore {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 30 * time.Second
	// Transparent gzip would change the byte count and break Range offsets;
	// the artifact is wanted exactly as stored.
	t.DisableCompression = true
	return &httpStore{
		// No Client.Timeout: it would cap the whole body, and artifacts may
		// be large. The caller's ctx bounds the transfer.
		client: &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return checkHTTPRedirect(log, req, via)
		}},
	}
}

// checkHTTPRedirect applies the scheme rule to every hop, so that an https
// URL cannot be redirected to plaintext.
func checkHTTPRedirect(log *slog.Logger, req *http.Request, via []*http.Request) error {
	if len(via) > httpMaxRedirects {
		return fmt.Errorf("more than %d redirects", httpMaxRedirects)
	}
	if err := checkHTTPScheme(req.URL); err != nil {
		return fmt.Errorf("redirect to %s: %w", redactURL(req.URL), err)
	}
	log.DebugContext(req.Context(), "following redirect", "from", redactURL(via[len(via)-1].URL), "to", redactURL(req.URL))
	return nil
}

func checkHTTPScheme(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return errors.New("plain http is accepted only for loopback hosts; use https")
	}
	return fmt.Errorf("scheme %q is not http or https", u.Scheme)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// open GETs u, from offset on with a Range request. A server that answers a
// Range request with the whole object gets an error, on which the caller
// starts over from 0.
func (s *httpStore) open(ctx context.Context, u *url.URL, offset int64) (io.ReadCloser, int64, error) {
	obj := redactURL(u)
	if err := checkHTTPScheme(u); err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", obj, err)
	}
	if offset < 0 {
		return nil, 0, fmt.Errorf("get %s: negative offset %d", obj, offset)
	}
	resp, err := s.get(ctx, u, obj, offset)
	if err != nil {
		return nil, 0, err
	}
	switch {
	case resp.StatusCode == http.StatusOK && offset == 0:
		return resp.Body, resp.ContentLength, nil
	case resp.StatusCode == http.StatusOK:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("get %s: server ignored the range request from offset %d", obj, offset)
	case resp.StatusCode == http.StatusPartialContent:
		total, err := httpContentRange(resp.Header.Get("Content-Range"), offset)
		if err != nil {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("get %s: %w", obj, err)
		}
		return resp.Body, total, nil
	}
	resp.Body.Close()
	return httpNoContent(resp, obj, offset)
}

// get sends the GET, asking for the bytes from offset on when the caller
// already holds the ones before.
func (s *httpStore) get(ctx context.Context, u *url.URL, obj string, offset int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: invalid URL", obj)
	}
	req.Header.Set("User-Agent", "dewy")
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, query tokens included; keep only
		// what went wrong.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("get %s: %w", obj, err)
	}
	return resp, nil
}

// httpNoContent answers a response whose body is not the object: either the
// caller already holds every byte, or the status maps to an error callers
// tell apart (errNotFound, errAccessDenied, retryAfterError).
func httpNoContent(resp *http.Response, obj string, offset int64) (io.ReadCloser, int64, error) {
	switch resp.StatusCode {
	case http.StatusRequestedRangeNotSatisfiable:
		// "bytes */TOTAL" with TOTAL == offset: the caller has every byte.
		if total, ok := strings.CutPrefix(resp.Header.Get("Content-Range"), "bytes */"); ok && total == strconv.FormatInt(offset, 10) {
			return io.NopCloser(strings.NewReader("")), offset, nil
		}
		return nil, 0, fmt.Errorf("get %s: offset %d is beyond the end (Content-Range %q)", obj, offset, resp.Header.Get("Content-Range"))
	case http.StatusNotFound, http.StatusGone:
		return nil, 0, fmt.Errorf("get %s: %w (HTTP %d)", obj, errNotFound, resp.StatusCode)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, 0, fmt.Errorf("get %s: %w (HTTP %d)", obj, errAccessDenied, resp.StatusCode)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		err := fmt.Errorf("get %s: HTTP %d", obj, resp.StatusCode)
		if until, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return nil, 0, &retryAfterError{Err: err, Until: until}
		}
		return nil, 0, err
	}
	return nil, 0, fmt.Errorf("get %s: HTTP %d", obj, resp.StatusCode)
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date.
func retryAfter(h string, now time.Time) (time.Time, bool) {
	if h == "" {
		return time.Time{}, false
	}
	if secs, err := strconv.ParseInt(h, 10, 32); err == nil && secs >= 0 {
		return now.Add(time.Duration(secs) * time.Second), true
	}
	if t, err := http.ParseTime(h); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// httpContentRange checks that a 206 answer's Content-Range
// ("bytes START-END/TOTAL") starts at offset and returns TOTAL, -1 for "*".
func httpContentRange(h string, offset int64) (int64, error) {
	start, total, err := parseContentRange(h)
	switch {
	case err != nil:
		return 0, err
	case start != offset:
		return 0, fmt.Errorf("asked for bytes from %d, got Content-Range %q", offset, h)
	case total != -1 && total <= start:
		return 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	return total, nil
}

// parseContentRange parses "bytes START-END/TOTAL" or "bytes */TOTAL";
// TOTAL "*" yields -1. START is -1 for the unsatisfied form.
func parseContentRange(h string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	rng, size, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	total = -1
	if size != "*" {
		if total, err = strconv.ParseInt(size, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("malformed Content-Range %q", h)
		}
	}
	if rng == "*" {
		return -1, total, nil
	}
	first, _, ok := strings.Cut(rng, "-")
	if start, err = strconv.ParseInt(first, 10, 64); !ok || err != nil {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	return start, total, nil
}
