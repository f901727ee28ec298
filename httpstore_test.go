package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// httpStoreServer serves one artifact the way a web server or CDN does,
// with http.ServeContent's Range handling, and a few misbehaving paths.
func httpStoreServer(t *testing.T, artifact []byte) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/files/app.tar.gz", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "s3cr3t-token" {
			http.Error(w, "token required", http.StatusForbidden)
			return
		}
		http.ServeContent(w, r, "app.tar.gz", time.Time{}, strings.NewReader(string(artifact)))
	})
	mux.HandleFunc("/no-range/app.tar.gz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(artifact)))
		w.Write(artifact) // ignores Range, as some servers do
	})
	mux.HandleFunc("/redirect/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/redirect/"))
		if n == 0 {
			http.Redirect(w, r, "/files/app.tar.gz?token=s3cr3t-token", http.StatusFound)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/redirect/%d?token=s3cr3t-token", n-1), http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop?token=s3cr3t-token", http.StatusFound)
	})
	mux.HandleFunc("/to-plain-http", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://example.com/app.tar.gz?token=s3cr3t-token", http.StatusFound)
	})
	mux.HandleFunc("/gone", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) })
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	mux.HandleFunc("/busy", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	mux.HandleFunc("/bad-range", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-9/10")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(artifact[:10])
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPStoreOpen(t *testing.T) {
	artifact := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	srv := httpStoreServer(t, artifact)
	s := newHTTPStore(discardLogger())
	for _, tc := range []struct {
		name   string
		path   string
		offset int64
	}{
		{"whole", "/files/app.tar.gz?token=s3cr3t-token", 0},
		{"range", "/files/app.tar.gz?token=s3cr3t-token", 10},
		{"last byte", "/files/app.tar.gz?token=s3cr3t-token", int64(len(artifact) - 1)},
		{"at the end", "/files/app.tar.gz?token=s3cr3t-token", int64(len(artifact))},
		{"redirects", "/redirect/9", 0},
		{"redirects and range", "/redirect/3", 5},
	} {
		u, _ := url.Parse(srv.URL + tc.path)
		body, total, err := s.open(t.Context(), u, tc.offset)
		if err != nil {
			t.Errorf("%s: open: %v", tc.name, err)
			continue
		}
		got, err := io.ReadAll(body)
		body.Close()
		if err != nil || string(got) != string(artifact[tc.offset:]) {
			t.Errorf("%s: read %q (%v), want %q", tc.name, got, err, artifact[tc.offset:])
		}
		if total != int64(len(artifact)) {
			t.Errorf("%s: total = %d, want %d", tc.name, total, len(artifact))
		}
	}
}

func TestHTTPStoreErrors(t *testing.T) {
	srv := httpStoreServer(t, []byte("0123456789abcdefghijklmnopqrstuvwxyz"))
	s := newHTTPStore(discardLogger())
	for _, tc := range []struct {
		name    string
		url     string
		offset  int64
		is      error  // sentinel the error must wrap, if any
		wantMsg string // part of the message
	}{
		{"404", srv.URL + "/missing?token=s3cr3t-token", 0, errNotFound, "/missing"},
		{"410", srv.URL + "/gone", 0, errNotFound, "/gone"},
		{"401", srv.URL + "/login?token=s3cr3t-token", 0, errAccessDenied, "/login"},
		{"403", srv.URL + "/files/app.tar.gz?token=wrong", 0, errAccessDenied, "/files/app.tar.gz"},
		{"500", srv.URL + "/broken?token=s3cr3t-token", 0, nil, "HTTP 500"},
		{"redirect loop", srv.URL + "/loop?token=s3cr3t-token", 0, nil, "more than 10 redirects"},
		{"too many redirects", srv.URL + "/redirect/11", 0, nil, "more than 10 redirects"},
		{"range ignored", srv.URL + "/no-range/app.tar.gz?token=s3cr3t-token", 5, nil, "ignored the range request"},
		{"wrong range", srv.URL + "/bad-range?token=s3cr3t-token", 5, nil, "asked for bytes from 5"},
		{"beyond the end", srv.URL + "/files/app.tar.gz?token=s3cr3t-token", 100, nil, "beyond the end"},
		{"downgrade to http", srv.URL + "/to-plain-http?token=s3cr3t-token", 0, nil, "plain http is accepted only for loopback"},
		{"plain http elsewhere", "http://example.com/app.tar.gz?token=s3cr3t-token", 0, nil, "plain http is accepted only for loopback"},
		{"other scheme", "ftp://example.com/app.tar.gz", 0, nil, `scheme "ftp"`},
		{"userinfo", "http://user:s3cr3t-token@127.0.0.1:1/app.tar.gz", 0, nil, "127.0.0.1:1/app.tar.gz"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("%s: parse %q: %v", tc.name, tc.url, err)
		}
		body, _, err := s.open(t.Context(), u, tc.offset)
		if err == nil {
			body.Close()
			t.Errorf("%s: open err = nil, want an error", tc.name)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: err = %v, want it to wrap %v", tc.name, err, tc.is)
		}
		if tc.is == nil && (errors.Is(err, errNotFound) || errors.Is(err, errAccessDenied)) {
			t.Errorf("%s: err = %v, want neither errNotFound nor errAccessDenied, so that the caller retries", tc.name, err)
		}
		if msg := err.Error(); !strings.Contains(msg, tc.wantMsg) || strings.Contains(msg, "s3cr3t") {
			t.Errorf("%s: error %q, want it to contain %q and no token", tc.name, msg, tc.wantMsg)
		}
	}
}

func TestHTTPStoreRetryAfter(t *testing.T) {
	srv := httpStoreServer(t, nil)
	u, _ := url.Parse(srv.URL + "/busy?token=s3cr3t-token")
	before := time.Now()
	_, _, err := newHTTPStore(discardLogger()).open(t.Context(), u, 0)
	var ra *retryAfterError
	if !errors.As(err, &ra) {
		t.Fatalf("open on 429: err = %v, want a *retryAfterError", err)
	}
	if d := ra.Until.Sub(before); d < 119*time.Second || d > 121*time.Second+time.Since(before) {
		t.Errorf("retry after %v, want 120s", d)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %q contains the token", err)
	}
}

func TestHTTPStoreContentRange(t *testing.T) {
	for _, tc := range []struct {
		header  string
		offset  int64
		want    int64
		wantErr bool
	}{
		{"bytes 5-9/10", 5, 10, false},
		{"bytes 5-9/*", 5, -1, false},
		{"bytes 0-9/10", 5, 0, true},
		{"bytes 5-9/5", 5, 0, true},
		{"bytes */10", 5, 0, true},
		{"", 5, 0, true},
		{"items 5-9/10", 5, 0, true},
	} {
		got, err := httpContentRange(tc.header, tc.offset)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("httpContentRange(%q, %d) = %d, %v; want %d, error %v", tc.header, tc.offset, got, err, tc.want, tc.wantErr)
		}
	}
}
