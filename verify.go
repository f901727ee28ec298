package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"aead.dev/minisign"
)

// sigVerifier checks release signatures against one trusted public key,
// given with --verify-key as "minisign:KEY-OR-FILE" or "cosign:FILE".
type sigVerifier struct {
	kind     string // "minisign" or "cosign"
	spec     string // as given, for messages; public keys are not secret
	minisign minisign.PublicKey
	ecdsa    *ecdsa.PublicKey
}

// errSignature marks a signature that does not verify, as opposed to one
// that could not be read: either way the release is refused. errUnsigned
// is a release that carries no signature the key could check.
var (
	errSignature = errors.New("signature does not verify")
	errUnsigned  = errors.New("release carries no signature")
)

const (
	// maxSignatureFile caps a .minisig or .sig; real ones are a few hundred
	// bytes, and a trusted comment is one line.
	maxSignatureFile = 64 << 10
	// minisignLegacyMax caps files checked against a legacy ("Ed")
	// minisign signature. Pure Ed25519 needs the whole message in memory;
	// prehashed ("ED") signatures, minisign's default since 0.10, stream.
	minisignLegacyMax = 64 << 20
	// maxKeyFile caps a public key file; a PEM key is under 200 bytes.
	maxKeyFile = 64 << 10
)

// parseVerifyKey reads a --verify-key value. A minisign key may be inline
// (the base64 line of a .pub file) or a path to the .pub file; a cosign
// key is a path to cosign.pub (PEM, ECDSA P-256).
func parseVerifyKey(spec string) (*sigVerifier, error) {
	kind, val, ok := strings.Cut(spec, ":")
	if !ok || val == "" {
		return nil, fmt.Errorf("verify key %q: want minisign:<public key or .pub file> or cosign:<cosign.pub file>", spec)
	}
	v := &sigVerifier{kind: kind, spec: spec}
	switch kind {
	case "minisign":
		if err := v.minisign.UnmarshalText([]byte(strings.TrimSpace(val))); err == nil {
			return v, nil
		}
		data, err := readKeyFile(val)
		if err != nil {
			return nil, fmt.Errorf("verify key %q: neither a minisign public key nor a readable .pub file: %v", spec, err)
		}
		if err := v.minisign.UnmarshalText(bytes.TrimSpace(data)); err != nil {
			return nil, fmt.Errorf("verify key %q: %s is not a minisign public key: %v", spec, val, verifyOneLine(err))
		}
		return v, nil
	case "cosign":
		data, err := readKeyFile(val)
		if err != nil {
			return nil, fmt.Errorf("verify key %q: %v", spec, err)
		}
		pub, err := parseCosignKey(data)
		if err != nil {
			return nil, fmt.Errorf("verify key %q: %s: %v", spec, val, err)
		}
		v.ecdsa = pub
		return v, nil
	}
	return nil, fmt.Errorf("verify key %q: unknown kind %q (want minisign or cosign)", spec, kind)
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.Unwrap(err) // *PathError repeats the path the caller names
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d bytes", maxKeyFile)
	}
	return data, nil
}

// parseCosignKey accepts what `cosign generate-key-pair` writes to cosign.pub.
func parseCosignKey(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block is %q, want \"PUBLIC KEY\"", block.Type)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %v", err)
	}
	pub, ok := key.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%T key, want ECDSA P-256", key)
	}
	return pub, nil
}

// suffix is what the signature of a release file is named after it.
func (v *sigVerifier) suffix() string {
	if v.kind == "cosign" {
		return ".sig"
	}
	return ".minisig"
}

// verifyFile checks sig over the file at path without holding the file in
// memory (except for legacy minisign signatures, capped at 64 MiB).
func (v *sigVerifier) verifyFile(path string, sig []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify %s: %v", filepath.Base(path), errors.Unwrap(err))
	}
	defer f.Close()
	return v.verifyReader(f, filepath.Base(path), sig)
}

// verifyReader is verifyFile over any stream; name is what errors call it.
// A signature that is well-formed but does not match wraps errSignature.
func (v *sigVerifier) verifyReader(r io.Reader, name string, sig []byte) error {
	if err := v.verify(r, sig); err != nil {
		return fmt.Errorf("verify %s with %s key: %w", name, v.kind, err)
	}
	return nil
}

func (v *sigVerifier) verify(r io.Reader, sig []byte) error {
	if len(bytes.TrimSpace(sig)) == 0 {
		return errors.New("empty signature")
	}
	if len(sig) > maxSignatureFile {
		return fmt.Errorf("signature larger than %d bytes", maxSignatureFile)
	}
	if v.kind == "cosign" {
		return v.verifyCosign(r, sig)
	}
	return v.verifyMinisign(r, sig)
}

func (v *sigVerifier) verifyMinisign(r io.Reader, sig []byte) error {
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return fmt.Errorf("malformed minisign signature: %s", verifyOneLine(err))
	}
	// The key ID is only a hint, but a mismatch tells the operator which
	// key signed the release, which is the useful thing to know.
	if s.KeyID != v.minisign.ID() {
		return fmt.Errorf("%w: signed by key %s, not by the trusted key %s", errSignature, keyIDString(s.KeyID), keyIDString(v.minisign.ID()))
	}
	switch s.Algorithm {
	case minisign.HashEdDSA:
		mr := minisign.NewReader(r)
		if _, err := io.Copy(io.Discard, mr); err != nil {
			return fmt.Errorf("read: %v", err)
		}
		if !mr.Verify(v.minisign, sig) {
			return errSignature
		}
	default: // EdDSA, the legacy format: Ed25519 over the whole message
		msg, err := io.ReadAll(io.LimitReader(r, minisignLegacyMax+1))
		if err != nil {
			return fmt.Errorf("read: %v", err)
		}
		if len(msg) > minisignLegacyMax {
			return fmt.Errorf("legacy (non-prehashed) minisign signature over more than %d bytes; sign with minisign -H", minisignLegacyMax)
		}
		if !minisign.Verify(v.minisign, msg, sig) {
			return errSignature
		}
	}
	return nil
}

func keyIDString(id uint64) string { return strings.ToUpper(strconv.FormatUint(id, 16)) }

// verifyCosign checks a `cosign sign-blob --key` signature: base64 of an
// ASN.1 ECDSA signature over the blob's SHA-256. No transparency log is
// consulted; the key alone is trusted.
func (v *sigVerifier) verifyCosign(r io.Reader, sig []byte) error {
	der, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(sig)))
	if err != nil {
		return errors.New("malformed cosign signature: not base64")
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("read: %v", err)
	}
	if !ecdsa.VerifyASN1(v.ecdsa, h.Sum(nil), der) {
		return errSignature
	}
	return nil
}

// oneLine keeps a library's error on one line of the log.
func verifyOneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// signedDigest finds what vouches for artifact a of rel. Preferred is a
// checksum file with a signature beside it (<file><suffix>): its signature
// is checked here and the digest it lists for a is returned, for the
// caller to compare with the download. Otherwise the artifact's own
// signature (<artifact><suffix>) is returned, for verifyArtifact once the
// download is on disk.
//
// A release that is unsigned, wrongly signed, or whose signed checksum
// file is malformed wraps errVerify (and errUnsigned or errSignature); a
// signature or checksum file that could not be fetched does not, so that
// the poll is retried like any other transient failure.
func (v *sigVerifier) signedDigest(ctx context.Context, storeFor func(*url.URL) (artifactStore, error), rel release, a asset) (sum, from string, artifactSig []byte, err error) {
	byName := make(map[string]asset, len(rel.Assets))
	for _, x := range rel.Assets {
		byName[x.Name] = x
	}
	for _, c := range checksumAssets(rel, a.Name) {
		sa, ok := byName[c.Name+v.suffix()]
		if !ok {
			continue
		}
		sig, err := readSmallAsset(ctx, storeFor, sa, maxSignatureFile)
		if err != nil {
			return "", "", nil, err
		}
		data, err := readSmallAsset(ctx, storeFor, c, maxChecksumFile)
		if err != nil {
			return "", "", nil, err
		}
		if err := v.verifyReader(bytes.NewReader(data), c.Name, sig); err != nil {
			return "", "", nil, fmt.Errorf("%w: %w", errVerify, err)
		}
		single := c.Name == a.Name+".sha256" || c.Name == a.Name+".sha256sum"
		got, ok, err := parseChecksums(data, a.Name, single)
		if err != nil {
			return "", "", nil, fmt.Errorf("%w: checksum file %s: %w", errVerify, c.Name, err)
		}
		if ok {
			return got, c.Name, nil, nil
		}
	}
	if sa, ok := byName[a.Name+v.suffix()]; ok {
		sig, err := readSmallAsset(ctx, storeFor, sa, maxSignatureFile)
		if err != nil {
			return "", "", nil, err
		}
		return "", "", sig, nil
	}
	return "", "", nil, fmt.Errorf("%w: %w for %s (want %s, or a checksum file listing it with its %s signature)",
		errVerify, errUnsigned, a.Name, a.Name+v.suffix(), v.suffix())
}

// verifyArtifact checks the artifact's own signature over the downloaded
// file at path; name is the asset's name, for the message.
func (v *sigVerifier) verifyArtifact(path, name string, sig []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify %s: %w", name, err)
	}
	defer f.Close()
	if err := v.verifyReader(f, name, sig); err != nil {
		return fmt.Errorf("%w: %w", errVerify, err)
	}
	return nil
}
