//go:build !nos3

package main

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// versitygw (v1.8.0) keeps the checksum an object was uploaded with and
// returns it from HeadObject with ChecksumMode ENABLED, as S3 does.
func TestS3ChecksumSHA256(t *testing.T) {
	b := s3TestBackend(t)
	bucket := b.bucket(t)
	put := func(key string, data []byte, algo types.ChecksumAlgorithm) {
		t.Helper()
		_, err := b.admin.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: bytes.NewReader(data), ChecksumAlgorithm: algo})
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	reg := b.registry(t, bucket, "app", b.getenv())
	h := newVerifyHarness(t, reg)
	h.d.storeFor = func(*url.URL) (artifactStore, error) { return reg, nil }

	// Uploaded with a SHA-256 checksum and nothing else: S3 vouches for it.
	v1 := siteRelease(t, "v1.0.0")
	const art1 = "site_1.0.0_linux_amd64.tar.gz"
	put("app/v1.0.0/"+art1, v1[art1], types.ChecksumAlgorithmSha256)
	oc, err := reg.checksum(t.Context(), mustParseURL(t, reg.objectURL("app/v1.0.0/"+art1)))
	if err != nil || oc.SHA256 != sha256Hex(v1[art1]) || oc.From != "S3 ChecksumSHA256" {
		t.Fatalf("checksum = %+v, %v; want the artifact's SHA-256 from S3 ChecksumSHA256", oc, err)
	}
	if _, err := h.d.check(t.Context()); err != nil {
		t.Fatalf("deploy v1.0.0: %v", err)
	}
	h.assertVerifiedBy(t, "v1.0.0", "S3 ChecksumSHA256")

	// A checksums file that names other bytes than S3 keeps: refused.
	v2 := siteRelease(t, "v1.1.0")
	const art2 = "site_1.1.0_linux_amd64.tar.gz"
	put("app/v1.1.0/"+art2, v2[art2], types.ChecksumAlgorithmSha256)
	wrong := sha256Hex([]byte("other bytes"))
	put("app/v1.1.0/checksums.txt", []byte(wrong+"  "+art2+"\n"), "")
	_, err = h.d.check(t.Context())
	if !errors.Is(err, errVerify) || !strings.Contains(err.Error(), "checksums file checksums.txt says sha256 "+wrong) ||
		!strings.Contains(err.Error(), "S3 ChecksumSHA256 says sha256 "+sha256Hex(v2[art2])) {
		t.Fatalf("deploy v1.1.0: error = %v, want a refusal naming both sources", err)
	}

	// Uploaded with the SDK's default CRC checksum only: no SHA-256 to
	// check against, so the release is refused for want of a digest.
	v3 := siteRelease(t, "v1.2.0")
	const art3 = "site_1.2.0_linux_amd64.tar.gz"
	put("app/v1.2.0/"+art3, v3[art3], "")
	if oc, err := reg.checksum(t.Context(), mustParseURL(t, reg.objectURL("app/v1.2.0/"+art3))); err != nil || oc != (objectChecksum{}) {
		t.Fatalf("checksum of an object put without SHA-256 = %+v, %v; want none", oc, err)
	}
	if _, err := h.d.check(t.Context()); !errors.Is(err, errNoChecksum) {
		t.Fatalf("deploy v1.2.0: error = %v, want a refusal for want of a digest", err)
	}
	assertServing(t, h.d.cfg.Root, "v1.0.0")
}
