package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"aead.dev/minisign"
)

// testMinisignKey makes a fresh key pair; no private key is committed.
func testMinisignKey(t *testing.T) (minisign.PublicKey, minisign.PrivateKey) {
	t.Helper()
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// minisignPrehashed signs data the way minisign -S does by default (since
// 0.10): Ed25519 over the BLAKE2b-512 digest.
func minisignPrehashed(t *testing.T, priv minisign.PrivateKey, r io.Reader) []byte {
	t.Helper()
	mr := minisign.NewReader(r)
	if _, err := io.Copy(io.Discard, mr); err != nil {
		t.Fatal(err)
	}
	return mr.SignWithComments(priv, "timestamp:1700000000\tfile:checksums.txt\thashed", "signature from dewy test key")
}

// testCosignKey writes cosign.pub for a fresh P-256 key, as
// `cosign generate-key-pair` does, and returns its path.
func testCosignKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, p
}

// cosignSign produces what `cosign sign-blob --key` writes to <file>.sig.
func cosignSign(t *testing.T, priv *ecdsa.PrivateKey, data []byte) []byte {
	t.Helper()
	d := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(rand.Reader, priv, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(base64.StdEncoding.EncodeToString(sig))
}

func verifyTempFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyCase is one signature check that must pass or fail.
type verifyCase struct {
	name string
	v    *sigVerifier
	file string
	sig  []byte
	ok   bool
	want string // substring of the error
}

func runVerifyCases(t *testing.T, cases []verifyCase) {
	t.Helper()
	for _, tc := range cases {
		err := tc.v.verifyFile(tc.file, tc.sig)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: verifyFile = %v, want success", tc.name, err)
		case !tc.ok && err == nil:
			t.Errorf("%s: verifyFile succeeded, want an error", tc.name)
		case !tc.ok:
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, filepath.Base(tc.file)) || !strings.Contains(msg, tc.want) {
				t.Errorf("%s: error %q: want one line naming %s and containing %q", tc.name, msg, filepath.Base(tc.file), tc.want)
			}
		}
	}
	t.Logf("signatures: %d cases", len(cases))
}

func TestVerifyMinisign(t *testing.T) {
	pub, priv := testMinisignKey(t)
	otherPub, otherPriv := testMinisignKey(t)
	data := []byte("0123456789abcdef  app_1.0.0_linux_amd64.tar.gz\n")
	file := verifyTempFile(t, "checksums.txt", data)
	tampered := verifyTempFile(t, "checksums.txt", append([]byte("f"), data[1:]...))

	pubFile := verifyTempFile(t, "dewy.pub", mustText(pub.MarshalText()))
	inline, err := parseVerifyKey("minisign:" + pub.String())
	if err != nil {
		t.Fatalf("parseVerifyKey(inline) = %v", err)
	}
	fromFile, err := parseVerifyKey("minisign:" + pubFile)
	if err != nil {
		t.Fatalf("parseVerifyKey(file) = %v", err)
	}
	other, _ := parseVerifyKey("minisign:" + otherPub.String())
	if got := inline.suffix(); got != ".minisig" {
		t.Fatalf("suffix = %q, want .minisig", got)
	}

	hashed := minisignPrehashed(t, priv, bytes.NewReader(data))
	legacy := minisign.SignWithComments(priv, data, "timestamp:1700000000\tfile:checksums.txt", "legacy")
	byOther := minisignPrehashed(t, otherPriv, bytes.NewReader(data))
	lines := strings.SplitAfter(string(hashed), "\n")
	badComment := strings.Join(slices.Concat(lines[:2], []string{"trusted comment: timestamp:1\tfile:other.txt\thashed\n"}, lines[3:]), "")
	// The same key ID with a wrong Ed25519 signature: flip a byte past the header.
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(lines[1]))
	raw[20] ^= 1
	flipped := strings.Join(slices.Concat(lines[:1], []string{base64.StdEncoding.EncodeToString(raw) + "\n"}, lines[2:]), "")

	runVerifyCases(t, []verifyCase{
		{name: "prehashed", v: inline, file: file, sig: hashed, ok: true},
		{name: "prehashed, key from file", v: fromFile, file: file, sig: hashed, ok: true},
		{name: "legacy", v: inline, file: file, sig: legacy, ok: true},
		{name: "CRLF line ends", v: inline, file: file, sig: bytes.ReplaceAll(hashed, []byte("\n"), []byte("\r\n")), ok: true},
		{name: "tampered file", v: inline, file: tampered, sig: hashed, want: "does not verify"},
		{name: "tampered file, legacy", v: inline, file: tampered, sig: legacy, want: "does not verify"},
		{name: "wrong key", v: other, file: file, sig: hashed, want: "not by the trusted key"},
		{name: "signed by another key", v: inline, file: file, sig: byOther, want: "signed by key"},
		{name: "trusted comment changed", v: inline, file: file, sig: []byte(badComment), want: "does not verify"},
		{name: "signature bytes changed", v: inline, file: file, sig: []byte(flipped), want: "does not verify"},
		{name: "truncated", v: inline, file: file, sig: hashed[:len(hashed)/2], want: "malformed minisign signature"},
		{name: "only the first two lines", v: inline, file: file, sig: []byte(lines[0] + lines[1]), want: "malformed"},
		{name: "garbage", v: inline, file: file, sig: []byte("not a signature at all\n\x00\xff\n"), want: "malformed"},
		{name: "cosign signature given to minisign", v: inline, file: file, sig: []byte("MEUCIQ==\n"), want: "malformed"},
		{name: "empty", v: inline, file: file, sig: nil, want: "empty signature"},
		{name: "whitespace only", v: inline, file: file, sig: []byte(" \n\t\n"), want: "empty signature"},
		{name: "huge", v: inline, file: file, sig: bytes.Repeat([]byte("a"), maxSignatureFile+1), want: "larger than"},
		{name: "missing file", v: inline, file: filepath.Join(t.TempDir(), "gone.txt"), sig: hashed, want: "no such file"},
	})
}

func TestVerifyCosign(t *testing.T) {
	priv, pubFile := testCosignKey(t)
	otherPriv, otherFile := testCosignKey(t)
	data := []byte("artifact bytes\x00\x01\x02")
	file := verifyTempFile(t, "app_1.0.0_linux_amd64.tar.gz", data)
	tampered := verifyTempFile(t, "app_1.0.0_linux_amd64.tar.gz", append(bytes.Clone(data), '!'))
	v, err := parseVerifyKey("cosign:" + pubFile)
	if err != nil {
		t.Fatalf("parseVerifyKey = %v", err)
	}
	other, _ := parseVerifyKey("cosign:" + otherFile)
	if got := v.suffix(); got != ".sig" {
		t.Fatalf("suffix = %q, want .sig", got)
	}
	sig := cosignSign(t, priv, data)
	der, _ := base64.StdEncoding.DecodeString(string(sig))
	flipped := bytes.Clone(der)
	flipped[len(flipped)-1] ^= 1

	runVerifyCases(t, []verifyCase{
		{name: "good", v: v, file: file, sig: sig, ok: true},
		{name: "trailing newline", v: v, file: file, sig: append(bytes.Clone(sig), '\n'), ok: true},
		{name: "surrounding whitespace", v: v, file: file, sig: []byte(" \t" + string(sig) + "\r\n\n"), ok: true},
		{name: "tampered file", v: v, file: tampered, sig: sig, want: "does not verify"},
		{name: "wrong key", v: other, file: file, sig: sig, want: "does not verify"},
		{name: "signed by another key", v: v, file: file, sig: cosignSign(t, otherPriv, data), want: "does not verify"},
		{name: "signature bit flipped", v: v, file: file, sig: []byte(base64.StdEncoding.EncodeToString(flipped)), want: "does not verify"},
		{name: "truncated base64", v: v, file: file, sig: sig[:len(sig)/2+1], want: "cosign"},
		{name: "truncated DER", v: v, file: file, sig: []byte(base64.StdEncoding.EncodeToString(der[:len(der)-4])), want: "does not verify"},
		{name: "garbage", v: v, file: file, sig: []byte("%%% not base64 %%%"), want: "not base64"},
		{name: "minisign signature given to cosign", v: v, file: file, sig: []byte("untrusted comment: x\nRUQ=\ntrusted comment: y\nAAAA\n"), want: "not base64"},
		{name: "empty", v: v, file: file, sig: []byte{}, want: "empty signature"},
		{name: "whitespace only", v: v, file: file, sig: []byte("\n"), want: "empty signature"},
	})
}

func TestVerifyKeySpecErrors(t *testing.T) {
	dir := t.TempDir()
	rsaPEM := verifyTempFile(t, "rsa.pub", []byte("-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMv0q1l4xv0r1v0q1l4xv0r1v0q1l4xv\n-----END PUBLIC KEY-----\n"))
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	p384File := verifyTempFile(t, "p384.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der384}))
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	privDER, _ := x509.MarshalECPrivateKey(p256)
	privFile := verifyTempFile(t, "cosign.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: privDER}))
	garbage := verifyTempFile(t, "garbage.pub", []byte("untrusted comment: x\n!!!!\n"))
	huge := verifyTempFile(t, "huge.pub", bytes.Repeat([]byte("A"), maxKeyFile+1))
	cases := []string{
		"",
		"minisign",
		"minisign:",
		"cosign:",
		"gpg:/etc/key.asc",
		"MINISIGN:RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3",
		"minisign:RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7",
		"minisign:" + filepath.Join(dir, "missing.pub"),
		"minisign:" + garbage,
		"minisign:" + huge,
		"minisign:" + dir,
		"cosign:" + filepath.Join(dir, "missing.pub"),
		"cosign:" + garbage,
		"cosign:" + rsaPEM,
		"cosign:" + p384File,
		"cosign:" + privFile,
		"cosign:" + dir,
	}
	for _, spec := range cases {
		v, err := parseVerifyKey(spec)
		if err == nil {
			t.Errorf("parseVerifyKey(%q) = %v, want an error", spec, v)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, spec) {
			t.Errorf("parseVerifyKey(%q) error %q: want one line naming the spec", spec, msg)
		}
	}
	t.Logf("verify key specs: %d bad cases", len(cases))
}

// TestVerifyLargeFileStreamed checks that a prehashed minisign signature
// and a cosign signature over a large artifact are verified without
// reading the artifact into memory. The file is sparse, so the test costs
// hashing time but no disk.
func TestVerifyLargeFileStreamed(t *testing.T) {
	// Past the 16 MiB allocation budget below, so a verifier that read
	// the file into memory would fail.
	size := int64(80 << 20)
	p := filepath.Join(t.TempDir(), "big_linux_amd64.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("end"), size-3)
	f.Close()
	open := func() *os.File {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}

	pub, priv := testMinisignKey(t)
	mv, _ := parseVerifyKey("minisign:" + pub.String())
	msig := minisignPrehashed(t, priv, open())

	cpriv, cfile := testCosignKey(t)
	cv, _ := parseVerifyKey("cosign:" + cfile)
	h := sha256.New()
	io.Copy(h, open())
	d, _ := ecdsa.SignASN1(rand.Reader, cpriv, h.Sum(nil))
	csig := []byte(base64.StdEncoding.EncodeToString(d) + "\n")

	for _, tc := range []struct {
		name string
		v    *sigVerifier
		sig  []byte
	}{{"minisign", mv, msig}, {"cosign", cv, csig}} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := tc.v.verifyFile(p, tc.sig); err != nil {
			t.Fatalf("%s: verifyFile(%d MiB) = %v", tc.name, size>>20, err)
		}
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
			t.Errorf("%s: verifying %d MiB allocated %d MiB; want it streamed", tc.name, size>>20, grew>>20)
		}
	}

	// Legacy signatures need the whole message; past the cap they are
	// refused with advice rather than read into memory.
	legacy := minisign.Sign(priv, []byte("small"))
	big := filepath.Join(t.TempDir(), "legacy.bin")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, minisignLegacyMax+1); err != nil {
		t.Fatal(err)
	}
	if err := mv.verifyFile(big, legacy); err == nil || !strings.Contains(err.Error(), "minisign -H") {
		t.Fatalf("legacy signature over %d bytes: err = %v, want refusal advising -H", minisignLegacyMax+1, err)
	}
	t.Logf("signatures: %d MiB streamed per scheme", size>>20)
}

// TestVerifyErrSignature lets callers tell "does not verify" from "could
// not be read".
func TestVerifyErrSignature(t *testing.T) {
	pub, priv := testMinisignKey(t)
	v, _ := parseVerifyKey("minisign:" + pub.String())
	sig := minisignPrehashed(t, priv, strings.NewReader("good"))
	if err := v.verifyReader(strings.NewReader("bad"), "checksums.txt", sig); !errors.Is(err, errSignature) {
		t.Errorf("tampered: err = %v, want errSignature", err)
	}
	if err := v.verifyReader(strings.NewReader("good"), "checksums.txt", []byte("junk")); err == nil || errors.Is(err, errSignature) {
		t.Errorf("malformed: err = %v, want an error that is not errSignature", err)
	}
}

// TestVerifyE2E runs the deploy flow through the real binary once
// --verify-key exists: signed releases deploy, unsigned and wrongly signed
// ones are refused before anything is unpacked and the live release stays.
func TestVerifyE2E(t *testing.T) {
	if !slices.ContainsFunc(settings(), func(s setting) bool { return s.key == "verify_key" }) {
		t.Skip("--verify-key is not wired into the deploy flow in this build")
	}
	pub, priv := testMinisignKey(t)
	_, otherPriv := testMinisignKey(t)
	reg, root := t.TempDir(), t.TempDir()
	signed := func(tag string, key minisign.PrivateKey) map[string][]byte {
		files := siteRelease(t, tag)
		files["checksums.txt.minisig"] = minisignPrehashed(t, key, bytes.NewReader(files["checksums.txt"]))
		return files
	}
	args := []string{"assets", "--registry", "file://" + reg, "--root", root, "--once", "--verify-key", "minisign:" + pub.String()}

	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: signed("v1.0.0", priv)}})
	if r := runDewy(t, nil, args...); r.status != 0 || readCurrent(t, root, "index.html") != "site v1.0.0" {
		t.Fatalf("signed v1.0.0: status %d:\n%s", r.status, r.out)
	}

	for i, tc := range []struct {
		name  string
		files map[string][]byte
	}{
		{"unsigned", siteRelease(t, "v1.1.0")},
		{"signed by another key", signed("v1.2.0", otherPriv)},
		{"garbage signature", func() map[string][]byte {
			f := siteRelease(t, "v1.3.0")
			f["checksums.txt.minisig"] = []byte("garbage\n")
			return f
		}()},
		{"signed checksums, swapped artifact", func() map[string][]byte {
			f := signed("v1.4.0", priv)
			f["site_1.4.0_linux_amd64.tar.gz"] = e2eTarGz(t, map[string]string{"index.html": "evil"})
			return f
		}()},
		{"artifact signed by another key", func() map[string][]byte {
			f := siteRelease(t, "v1.5.0")
			delete(f, "checksums.txt")
			f["site_1.5.0_linux_amd64.tar.gz.minisig"] = minisignPrehashed(t, otherPriv, bytes.NewReader(f["site_1.5.0_linux_amd64.tar.gz"]))
			return f
		}()},
	} {
		tag := []string{"v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v1.5.0"}[i]
		publishDir(t, reg, []suiteRelease{{Tag: tag, Files: tc.files}})
		r := runDewy(t, nil, args...)
		if r.status != 1 {
			t.Fatalf("%s: status %d, want 1:\n%s", tc.name, r.status, r.out)
		}
		if got := readCurrent(t, root, "index.html"); got != "site v1.0.0" {
			t.Fatalf("%s: current serves %q, want site v1.0.0", tc.name, got)
		}
		if _, err := os.Stat(filepath.Join(root, "releases", tag)); err == nil {
			t.Fatalf("%s: releases/%s exists; a refused release must not be unpacked", tc.name, tag)
		}
		assertNoLeftovers(t, root)
		// Not tried again until the release changes.
		if r := runDewy(t, nil, args...); strings.Contains(r.out, "deploying "+tag) {
			t.Fatalf("%s: refused release retried at once:\n%s", tc.name, r.out)
		}
	}

	// A release whose artifact carries its own signature, and no checksum file.
	f := siteRelease(t, "v1.6.0")
	delete(f, "checksums.txt")
	f["site_1.6.0_linux_amd64.tar.gz.minisig"] = minisignPrehashed(t, priv, bytes.NewReader(f["site_1.6.0_linux_amd64.tar.gz"]))
	publishDir(t, reg, []suiteRelease{{Tag: "v1.6.0", Files: f}})
	if r := runDewy(t, nil, args...); r.status != 0 || readCurrent(t, root, "index.html") != "site v1.6.0" {
		t.Fatalf("artifact-signed v1.6.0: status %d:\n%s", r.status, r.out)
	}
	t.Logf("signatures: 2 signed releases deployed, 5 refused through the binary")
}

// TestVerifySignedDigest drives the release-level check over a file
// registry: which file vouches for the artifact, and which failures refuse
// the release (errVerify) rather than fail the poll.
func TestVerifySignedDigest(t *testing.T) {
	pub, priv := testMinisignKey(t)
	_, otherPriv := testMinisignKey(t)
	v, _ := parseVerifyKey("minisign:" + pub.String())
	const art = "app_linux_amd64.tar.gz"
	body := []byte("artifact")
	sums := []byte(sha256Hex(body) + "  " + art + "\n")
	otherSums := []byte(sha256Hex(body) + "  other.tar.gz\n")
	sign := func(k minisign.PrivateKey, b []byte) []byte { return minisignPrehashed(t, k, bytes.NewReader(b)) }
	for _, tc := range []struct {
		name    string
		files   map[string][]byte
		remove  string // listed by the registry, gone from the store
		wantSum bool
		wantSig bool
		wantErr []error // all must match; nil: no error
		notErr  error
	}{
		{name: "signed checksums", files: map[string][]byte{art: body, "checksums.txt": sums, "checksums.txt.minisig": sign(priv, sums)}, wantSum: true},
		{name: "signed per-asset digest", files: map[string][]byte{art: body, art + ".sha256": []byte(sha256Hex(body) + "\n"), art + ".sha256.minisig": sign(priv, []byte(sha256Hex(body)+"\n"))}, wantSum: true},
		{name: "artifact signature", files: map[string][]byte{art: body, art + ".minisig": sign(priv, body)}, wantSig: true},
		{name: "unsigned checksums", files: map[string][]byte{art: body, "checksums.txt": sums}, wantErr: []error{errVerify, errUnsigned}},
		{name: "nothing", files: map[string][]byte{art: body}, wantErr: []error{errVerify, errUnsigned}},
		{name: "checksums signed by another key", files: map[string][]byte{art: body, "checksums.txt": sums, "checksums.txt.minisig": sign(otherPriv, sums)}, wantErr: []error{errVerify, errSignature}},
		{name: "signed list without the artifact", files: map[string][]byte{art: body, "checksums.txt": otherSums, "checksums.txt.minisig": sign(priv, otherSums)}, wantErr: []error{errVerify, errUnsigned}},
		{name: "oversized signature", files: map[string][]byte{art: body, "checksums.txt": sums, "checksums.txt.minisig": bytes.Repeat([]byte("x"), maxSignatureFile+1)}, wantErr: []error{errVerify}},
		{name: "signature listed but unreadable", files: map[string][]byte{art: body, "checksums.txt": sums, "checksums.txt.minisig": sign(priv, sums)}, remove: "checksums.txt.minisig", notErr: errVerify},
	} {
		dir := t.TempDir()
		publishDir(t, dir, []suiteRelease{{Tag: "v1.0.0", Files: tc.files}})
		reg, _ := newFileRegistry(&url.URL{Scheme: "file", Path: dir})
		rels, err := reg.releases(t.Context())
		if err != nil || len(rels) != 1 {
			t.Fatalf("%s: releases = %v, %v", tc.name, rels, err)
		}
		if tc.remove != "" {
			os.Remove(filepath.Join(dir, "v1.0.0", tc.remove))
		}
		a, err := pickAsset(rels[0], selectOptions{GOOS: "linux", GOARCH: "amd64"})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		storeFor := func(*url.URL) (artifactStore, error) { return reg, nil }
		sum, _, sig, err := v.signedDigest(t.Context(), storeFor, rels[0], a)
		switch {
		case tc.wantErr == nil && tc.notErr == nil && err != nil:
			t.Errorf("%s: signedDigest = %v, want success", tc.name, err)
		case tc.notErr != nil && (err == nil || errors.Is(err, tc.notErr)):
			t.Errorf("%s: signedDigest = %v, want a transient error (not %v)", tc.name, err, tc.notErr)
		case tc.wantSum && sum != sha256Hex(body):
			t.Errorf("%s: digest = %q, want %s", tc.name, sum, sha256Hex(body))
		case tc.wantSig && sig == nil:
			t.Errorf("%s: no artifact signature returned", tc.name)
		}
		for _, want := range tc.wantErr {
			if !errors.Is(err, want) {
				t.Errorf("%s: signedDigest = %v, want %v", tc.name, err, want)
			}
		}
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("%s: error spans lines: %q", tc.name, err)
		}
		if tc.wantSig {
			p := filepath.Join(dir, "v1.0.0", art)
			if err := v.verifyArtifact(p, art, sig); err != nil {
				t.Errorf("%s: verifyArtifact = %v", tc.name, err)
			}
			os.WriteFile(p, []byte("tampered"), 0o644)
			if err := v.verifyArtifact(p, art, sig); !errors.Is(err, errVerify) || !errors.Is(err, errSignature) || !strings.Contains(err.Error(), art) {
				t.Errorf("%s: verifyArtifact over a tampered file = %v, want errVerify naming %s", tc.name, err, art)
			}
		}
	}
}

func mustText(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
