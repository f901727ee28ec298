//go:build !nogcs

package main

import (
	"crypto/md5"
	"encoding/hex"
	"net/url"
	"testing"
)

// fake-gcs-server keeps an MD5 for every object, as GCS does for objects
// that are not composite; dewy checks the download against it and says it
// is an integrity check, not a published digest.
func TestGCSIntegrityChecksum(t *testing.T) {
	b := gcsTestBackend(t)
	bucket := b.bucket(t)
	files := siteRelease(t, "v1.0.0")
	const art = "site_1.0.0_linux_amd64.tar.gz"
	b.put(t, bucket, map[string][]byte{"app/v1.0.0/" + art: files[art]})
	reg := b.registry(t, bucket, "app")

	oc, err := reg.checksum(t.Context(), mustParseURL(t, reg.objectURL("app/v1.0.0/"+art)))
	m := md5.Sum(files[art])
	if err != nil || oc.SHA256 != "" || oc.Algo != "md5" || oc.Sum != hex.EncodeToString(m[:]) || oc.From != "GCS MD5 (integrity only)" {
		t.Fatalf("checksum = %+v, %v; want the object's MD5, named as an integrity check", oc, err)
	}
	h := newVerifyHarness(t, reg)
	h.d.storeFor = func(*url.URL) (artifactStore, error) { return reg, nil }
	if _, err := h.d.check(t.Context()); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	h.assertVerifiedBy(t, "v1.0.0", "GCS MD5 (integrity only)")
}
