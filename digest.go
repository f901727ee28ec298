package main

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/url"
	"os"
	"strings"
)

// Where the digest of an artifact comes from, in order of preference:
//  1. a signature (--verify-key): over a checksums file, or over the artifact;
//  2. a checksums file (checksums.txt, SHA256SUMS, <asset>.sha256);
//  3. the registry's own digest: GitHub's asset digest, S3's
//     ChecksumSHA256, the gRPC answer's digest field; or, for GCS, the
//     object's MD5 or CRC32C, which shows the bytes arrived as stored but
//     cannot be compared with a published SHA-256.
//
// Every source the release offers is read; SHA-256 sources that disagree
// refuse the release. A release with none is refused unless
// allow_unverified is set.

// objectChecksum is what a store keeps about an object's bytes, read
// without downloading them.
type objectChecksum struct {
	SHA256 string // hex; "" when the store keeps none
	// Algo and Sum (hex) are a weaker integrity check ("md5", "crc32c"),
	// used when the store keeps no SHA-256.
	Algo, Sum string
	From      string // the source, for messages: "S3 ChecksumSHA256"
}

// checksummer is an artifact store that can say what digest it keeps for
// an object (S3, GCS). A zero objectChecksum means it keeps none.
type checksummer interface {
	checksum(ctx context.Context, u *url.URL) (objectChecksum, error)
}

// verifiedNone is what status, audit and notifications say of a release
// deployed without any digest under allow_unverified.
const verifiedNone = "nothing (allow_unverified)"

// verification is what vouches for one artifact of a release.
type verification struct {
	want, wantFrom string // the SHA-256 the download must have, and who says so; "" when none
	by             string // the most trusted source, for the log, status, audit and notifications
	sig            []byte // the artifact's own signature, checked once it is on disk
	integrity      objectChecksum
}

// digestSource is one SHA-256 a release offers for an artifact.
type digestSource struct{ sum, from string }

// sourcesDisagreeError is a release whose digest sources name different
// bytes: one of them is wrong, and dewy cannot tell which.
type sourcesDisagreeError struct {
	Asset string
	A, B  digestSource
}

func (e *sourcesDisagreeError) Error() string {
	return fmt.Sprintf("digest sources disagree on %s: %s says sha256 %s, %s says sha256 %s", e.Asset, e.A.from, e.A.sum, e.B.from, e.B.sum)
}

// verification collects every digest source for artifact a of rel; store
// serves u, the artifact's URL. It returns errNoChecksum when there is
// none. Errors that a later poll may not repeat (a checksum file that
// could not be fetched) do not wrap errVerify.
func (d *deployer) verification(ctx context.Context, rel release, a asset, store artifactStore, u *url.URL) (verification, error) {
	var v verification
	var sums []digestSource
	if sv := d.cfg.Verifier; sv != nil {
		// Only a checksum file whose signature verified is trusted.
		sum, file, sig, err := sv.signedDigest(ctx, d.storeFor, rel, a)
		if err != nil {
			return v, err
		}
		if sum != "" {
			sums = append(sums, digestSource{sum, sv.kind + " signature on " + file})
		} else {
			v.sig, v.by = sig, sv.kind+" signature"
		}
	} else {
		sum, file, err := expectedDigest(ctx, d.storeFor, checksumAssets(rel, a.Name), a.Name)
		switch {
		case err == nil:
			sums = append(sums, digestSource{sum, "checksums file " + file})
		case !errors.Is(err, errNoChecksum):
			return v, err
		}
	}
	if a.SHA256 != "" {
		sums = append(sums, digestSource{strings.ToLower(a.SHA256), orDefault(a.SHA256From, "registry digest")})
	} else if cs, ok := store.(checksummer); ok {
		oc, err := cs.checksum(ctx, u)
		if err != nil {
			return v, fmt.Errorf("read the registry's digest of %s: %w", a.Name, err)
		}
		if oc.SHA256 != "" {
			sums = append(sums, digestSource{oc.SHA256, oc.From})
		} else if oc.Algo != "" {
			v.integrity = oc
		}
	}
	for _, s := range sums[min(1, len(sums)):] {
		if s.sum != sums[0].sum {
			return v, fmt.Errorf("%w: %w", errVerify, &sourcesDisagreeError{Asset: a.Name, A: sums[0], B: s})
		}
	}
	if len(sums) > 0 {
		v.want, v.wantFrom = sums[0].sum, sums[0].from
		if v.by == "" {
			v.by = sums[0].from
		}
	}
	if v.by == "" {
		v.by = v.integrity.From
	}
	if v.by == "" {
		return v, errNoChecksum
	}
	return v, nil
}

// checkIntegrity compares the file at path with a store's MD5 or CRC32C.
func (oc objectChecksum) check(path, name string) error {
	var h hash.Hash
	switch oc.Algo {
	case "md5":
		h = md5.New()
	case "crc32c":
		h = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	default:
		return fmt.Errorf("check %s: unknown checksum %q", name, oc.Algo)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", name, err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("check %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != oc.Sum {
		return fmt.Errorf("%w: %w", errVerify, &checksumMismatchError{Asset: name, Algo: oc.Algo, Want: oc.Sum, Got: got, From: oc.From})
	}
	return nil
}

// crc32cHex spells a CRC32C the way checkIntegrity computes it.
func crc32cHex(c uint32) string {
	return hex.EncodeToString(binary.BigEndian.AppendUint32(nil, c))
}

// noDigestError is the one line an operator sees for a release that
// offers no digest: which release, and how to publish one.
func noDigestError(tag, name string) error {
	return fmt.Errorf("deploy %s: %w: %w for %s; publish one with the release (sha256sum %s > %s.sha256, or goreleaser's checksums.txt), or set allow_unverified to deploy it anyway",
		tag, errVerify, errNoChecksum, name, name, name)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
