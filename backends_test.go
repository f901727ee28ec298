package main

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// backendAddr returns the address of a real backend started by scripts/test, read
// from env var name (e.g. "DEWY_TEST_REDIS_ADDR"). Without it the test is skipped,
// or fails when DEWY_TEST_REQUIRE_BACKENDS=1, so that a CI run cannot pass by
// quietly testing nothing.
func backendAddr(t *testing.T, what, name string) string {
	t.Helper()
	addr := os.Getenv(name)
	if addr != "" {
		return addr
	}
	if os.Getenv("DEWY_TEST_REQUIRE_BACKENDS") == "1" {
		t.Fatalf("backend %s not running: %s unset (scripts/test starts it)", what, name)
	}
	t.Skipf("backend %s not running: %s unset (scripts/test starts it)", what, name)
	return ""
}

// backendHTTPGet fetches path from the backend at base (a URL or host:port)
// after checking that its port accepts TCP connections.
func backendHTTPGet(t *testing.T, base, path string) (*http.Response, []byte) {
	t.Helper()
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse backend address %q: %v", base, err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	conn.Close()

	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(strings.TrimSuffix(base, "/") + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", base, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("read GET %s%s: %v", base, path, err)
	}
	return resp, body
}

func TestBackendRedisReachable(t *testing.T) {
	addr := backendAddr(t, "redis", "DEWY_TEST_REDIS_ADDR")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial redis %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// PING as a RESP array of bulk strings, the form every client sends.
	if _, err := io.WriteString(conn, "*1\r\n$4\r\nPING\r\n"); err != nil {
		t.Fatalf("write PING to %s: %v", addr, err)
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("read PING reply from %s: %v", addr, err)
	}
	if want := "+PONG\r\n"; got != want {
		t.Errorf("PING reply = %q, want %q", got, want)
	}
}

func TestBackendConsulReachable(t *testing.T) {
	addr := backendAddr(t, "consul", "DEWY_TEST_CONSUL_ADDR")
	resp, body := backendHTTPGet(t, addr, "/v1/status/leader")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/status/leader status = %d, want 200; body %q", resp.StatusCode, body)
	}
	var leader string
	if err := json.Unmarshal(body, &leader); err != nil {
		t.Fatalf("GET /v1/status/leader body %q is not a JSON string: %v", body, err)
	}
	if _, _, err := net.SplitHostPort(leader); err != nil {
		t.Errorf("leader = %q, want host:port of the elected server: %v", leader, err)
	}
}

func TestBackendS3Reachable(t *testing.T) {
	endpoint := backendAddr(t, "s3", "DEWY_TEST_S3_ENDPOINT")
	backendAddr(t, "s3", "DEWY_TEST_S3_ACCESS_KEY")
	backendAddr(t, "s3", "DEWY_TEST_S3_SECRET_KEY")
	// Unsigned, so the gateway must refuse it with an S3 error document.
	resp, body := backendHTTPGet(t, endpoint, "/")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unsigned GET / status = %d, want %d", resp.StatusCode, http.StatusForbidden)
	}
	var s3err struct {
		XMLName xml.Name `xml:"Error"`
		Code    string   `xml:"Code"`
	}
	if err := xml.Unmarshal(body, &s3err); err != nil {
		t.Fatalf("unsigned GET / body %q is not an S3 error document: %v", body, err)
	}
	if s3err.Code == "" {
		t.Errorf("S3 error document %q has no Code", body)
	}
}

func TestBackendGCSReachable(t *testing.T) {
	endpoint := backendAddr(t, "gcs", "DEWY_TEST_GCS_ENDPOINT")
	resp, body := backendHTTPGet(t, endpoint, "/storage/v1/b")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /storage/v1/b status = %d, want 200; body %q", resp.StatusCode, body)
	}
	var list struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("GET /storage/v1/b body %q is not JSON: %v", body, err)
	}
	if want := "storage#buckets"; list.Kind != want {
		t.Errorf("bucket list kind = %q, want %q", list.Kind, want)
	}
}
