package main

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// verifyHarness is a deployer over one registry that keeps what it logs
// and emits, for tests of where an artifact's digest comes from.
type verifyHarness struct {
	d    *deployer
	logs *cacheLog

	mu     sync.Mutex
	events []deployEvent
}

func newVerifyHarness(t *testing.T, reg registry) *verifyHarness {
	t.Helper()
	h := &verifyHarness{}
	var log *slog.Logger
	h.logs, log = newCacheLog(t)
	h.d = newTestDeployer(t, reg, t.TempDir())
	h.d.log = log
	h.d.obs = &observer{board: newStatusBoard("assets", "test://registry", "", nil), emit: func(e deployEvent) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.events = append(h.events, e)
	}}
	return h
}

// last returns the last event emitted.
func (h *verifyHarness) last(t *testing.T) deployEvent {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.events) == 0 {
		t.Fatal("no event emitted")
	}
	return h.events[len(h.events)-1]
}

// assertVerifiedBy checks that a deploy of tag succeeded and that the log
// line, /status, the audit event and the notification text all name by.
func (h *verifyHarness) assertVerifiedBy(t *testing.T, tag, by string) {
	t.Helper()
	assertServing(t, h.d.cfg.Root, tag)
	if n := h.logs.count("deployed "+tag, `verified_by="`+by+`"`); n != 1 {
		t.Errorf("deploy log lines naming %q as the source: %d, want 1", by, n)
	}
	if got := h.d.obs.board.snapshot().VerifiedBy; got != by {
		t.Errorf("/status verified_by = %q, want %q", got, by)
	}
	e := h.last(t)
	if e.Kind != eventDeployed || e.VerifiedBy != by {
		t.Errorf("event %s verified_by = %q, want %s by %q", e.Kind, e.VerifiedBy, eventDeployed, by)
	}
	if d := notifyDetails(e); !strings.Contains(d, "verified by "+by) {
		t.Errorf("notification details %q do not name %q", d, by)
	}
	if h.d.state.VerifiedBy != by {
		t.Errorf("state verified_by = %q, want %q", h.d.state.VerifiedBy, by)
	}
}

func TestVerifyGitHubDigest(t *testing.T) {
	const art = "site_1.0.0_linux_amd64.tar.gz"
	other := sha256Hex([]byte("other bytes"))
	for _, tc := range []struct {
		name      string
		checksums bool    // publish checksums.txt as well
		digest    *string // nil: GitHub's own; else served as is ("" → null)
		wantBy    string  // "" when refused
		wantErr   []string
	}{
		{name: "digest only", wantBy: "GitHub digest"},
		{name: "checksums file preferred", checksums: true, wantBy: "checksums file checksums.txt"},
		{name: "null digest beside a checksums file", checksums: true, digest: new(""), wantBy: "checksums file checksums.txt"},
		{name: "wrong digest", digest: new("sha256:" + other),
			wantErr: []string{"checksum mismatch for " + art, "GitHub digest lists sha256 " + other}},
		{name: "wrong digest beside a checksums file", checksums: true, digest: new("sha256:" + other),
			wantErr: []string{"digest sources disagree on " + art, "checksums file checksums.txt says sha256", "GitHub digest says sha256 " + other}},
		{name: "null digest, nothing else", digest: new(""),
			wantErr: []string{"deploy v1.0.0:", "no digest published for " + art, "sha256sum " + art, "checksums.txt", "allow_unverified"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGitHub(t, "")
			files := siteRelease(t, "v1.0.0")
			if !tc.checksums {
				delete(files, "checksums.txt")
			}
			f.addRelease("v1.0.0", false, false, files)
			if tc.digest != nil {
				var d *string
				if *tc.digest != "" {
					d = tc.digest
				}
				f.setDigest("v1.0.0", art, d)
			}
			h := newVerifyHarness(t, f.newRegistry(t))
			_, err := h.d.check(t.Context())
			if tc.wantBy != "" {
				if err != nil {
					t.Fatalf("deploy: %v", err)
				}
				h.assertVerifiedBy(t, "v1.0.0", tc.wantBy)
				return
			}
			if !errors.Is(err, errVerify) {
				t.Fatalf("deploy error = %v, want a verification failure", err)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
			if dir, _ := currentDir(h.d.cfg.Root); dir != "" {
				t.Error("current points at a release after a refusal")
			}
			if e := h.last(t); e.Kind != eventFailed {
				t.Errorf("last event %s, want %s", e.Kind, eventFailed)
			}
		})
	}
}

// fileReleaseAt publishes files as tag in dir with every file modified at mtime.
func fileReleaseAt(t *testing.T, dir, tag string, files map[string][]byte, mtime time.Time) {
	t.Helper()
	publishDir(t, dir, []suiteRelease{{Tag: tag, Files: files}})
	for name := range files {
		if err := os.Chtimes(filepath.Join(dir, tag, name), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// newVerifyFileHarness deploys from a file:// registry that offers a
// release as soon as it is written (settle=0s).
func newVerifyFileHarness(t *testing.T) (*verifyHarness, string) {
	t.Helper()
	dir := t.TempDir()
	return newVerifyHarness(t, settledFileRegistry(t, dir)), dir
}

func withoutChecksums(files map[string][]byte) map[string][]byte {
	delete(files, "checksums.txt")
	return files
}

func TestVerifyFileReleaseWithoutChecksumRefused(t *testing.T) {
	h, dir := newVerifyFileHarness(t)
	fileReleaseAt(t, dir, "v1.0.0", withoutChecksums(siteRelease(t, "v1.0.0")), time.Now().Add(-time.Hour))
	_, err := h.d.check(t.Context())
	if !errors.Is(err, errVerify) || !errors.Is(err, errNoChecksum) {
		t.Fatalf("deploy error = %v, want a refusal for want of a digest", err)
	}
	for _, s := range []string{"v1.0.0", "sha256sum", "goreleaser", "allow_unverified"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if _, ok := h.d.state.Failed["v1.0.0"]; !ok {
		t.Error("refused release not recorded as failed")
	}
	if dir, _ := currentDir(h.d.cfg.Root); dir != "" {
		t.Error("current points at a release that was refused")
	}
}

// A release whose archive arrived before its checksum file is still
// settling, not refused: the checksum file's arrival starts the settle
// window again, and the release deploys verified once it has passed.
// Preserved times (cp -p) do not shorten the wait.
func TestVerifyFileReleaseChecksumSettles(t *testing.T) {
	dir := t.TempDir()
	reg, err := newFileRegistry(&url.URL{Scheme: "file", Path: dir, RawQuery: "settle=1h"})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	reg.now = func() time.Time { return clock }
	h := newVerifyHarness(t, reg)
	files := siteRelease(t, "v1.0.0")
	sums := files["checksums.txt"]
	copiedLongAgo := time.Now().Add(-48 * time.Hour)
	fileReleaseAt(t, dir, "v1.0.0", withoutChecksums(files), copiedLongAgo)
	res, err := h.d.check(t.Context())
	if err != nil || res.Settling != "v1.0.0" {
		t.Fatalf("check while the checksum may still come: %+v, %v; want v1.0.0 settling", res, err)
	}
	if _, ok := h.d.state.Failed["v1.0.0"]; ok {
		t.Fatal("release without its checksum yet recorded as failed")
	}
	clock = clock.Add(30 * time.Minute)
	fileReleaseAt(t, dir, "v1.0.0", map[string][]byte{"checksums.txt": sums}, copiedLongAgo)
	if res, err := h.d.check(t.Context()); err != nil || res.Settling != "v1.0.0" {
		t.Fatalf("check just after the checksum arrived: %+v, %v; want v1.0.0 settling", res, err)
	}
	clock = clock.Add(2 * time.Hour)
	if _, err := h.d.check(t.Context()); err != nil {
		t.Fatalf("deploy once settled with its checksum: %v", err)
	}
	h.assertVerifiedBy(t, "v1.0.0", "checksums file checksums.txt")
}

func TestVerifyAllowUnverified(t *testing.T) {
	h, dir := newVerifyFileHarness(t)
	h.d.cfg.AllowUnverified = true
	for _, tag := range []string{"v1.0.0", "v1.1.0"} {
		// Fresh files: an operator who opted out does not wait for a checksum.
		fileReleaseAt(t, dir, tag, withoutChecksums(siteRelease(t, tag)), time.Now().Add(-10*time.Second))
		if _, err := h.d.check(t.Context()); err != nil {
			t.Fatalf("deploy %s with allow_unverified: %v", tag, err)
		}
		h.assertVerifiedBy(t, tag, verifiedNone)
	}
	if n := h.logs.count("level=WARN", "deploying unverified", "allow_unverified"); n != 2 {
		t.Errorf("%d warnings for two unverified deploys, want 2", n)
	}
}

func TestConfigAllowUnverifiedAndRequireChecksum(t *testing.T) {
	c := defaultConfig()
	c.Command, c.RegistryRaw, c.Root = "assets", "file:///srv/releases", t.TempDir()
	c.RequireChecksum = true
	if err := c.validate(noEnv); err != nil {
		t.Fatalf("require_checksum alone, as old configs set it: %v", err)
	}
	c.AllowUnverified = true
	var ue *usageError
	if err := c.validate(noEnv); !errors.As(err, &ue) || !strings.Contains(err.Error(), "allow-unverified") {
		t.Fatalf("both set: error = %v, want a usage error naming them", err)
	}
}

func mustParseURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// GCS keeps no SHA-256; its MD5 or CRC32C catches damaged bytes and is
// named as an integrity check only.
func TestVerifyIntegrityCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "artifact")
	data := []byte("artifact bytes")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m := md5.Sum(data)
	good := []objectChecksum{
		{Algo: "md5", Sum: hex.EncodeToString(m[:]), From: "GCS MD5 (integrity only)"},
		{Algo: "crc32c", Sum: crc32cHex(crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))), From: "GCS CRC32C (integrity only)"},
	}
	for _, oc := range good {
		if err := oc.check(path, "artifact"); err != nil {
			t.Errorf("%s over the right bytes: %v", oc.From, err)
		}
		oc.Sum = strings.Repeat("0", len(oc.Sum))
		err := oc.check(path, "artifact")
		var cm *checksumMismatchError
		if !errors.Is(err, errVerify) || !errors.As(err, &cm) || !strings.Contains(err.Error(), oc.From+" lists "+oc.Algo+" ") {
			t.Errorf("%s over other bytes: error = %v, want a mismatch naming the source and %s", oc.From, err, oc.Algo)
		}
	}
}
