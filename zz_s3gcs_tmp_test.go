package main

import (
	"net/url"
	"testing"
)

func TestHTTPStoreZZShow(t *testing.T) {
	srv := httpStoreServer(t, []byte("0123456789abcdefghijklmnopqrstuvwxyz"))
	s := newHTTPStore(discardLogger())
	for _, p := range []string{srv.URL + "/loop?token=s3cr3t-token", srv.URL + "/to-plain-http?token=x", srv.URL + "/missing?token=x", "http://user:pw@127.0.0.1:1/a?token=x", srv.URL + "/no-range/app.tar.gz"} {
		u, _ := url.Parse(p)
		_, _, err := s.open(t.Context(), u, 5)
		t.Log(err)
	}
}
