//go:build !nogcs

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// These tests run against fake-gcs-server, started by scripts/test. It does
// not check credentials, so denials are tested on the error mapping alone
// (TestGCSErrorMapping).

type gcsBackend struct {
	host  string          // host:port, as STORAGE_EMULATOR_HOST takes it
	admin *storage.Client // creates buckets and fixtures
}

func gcsTestBackend(t *testing.T) *gcsBackend {
	t.Helper()
	endpoint := backendAddr(t, "gcs", "DEWY_TEST_GCS_ENDPOINT")
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		t.Fatalf("DEWY_TEST_GCS_ENDPOINT = %q, want http://host:port", endpoint)
	}
	admin, err := storage.NewClient(context.Background(),
		option.WithEndpoint(strings.TrimSuffix(endpoint, "/")+"/storage/v1/"),
		option.WithoutAuthentication(), storage.WithDisabledClientMetrics())
	if err != nil {
		t.Fatalf("storage client for %s: %v", endpoint, err)
	}
	t.Cleanup(func() { admin.Close() })
	return &gcsBackend{host: u.Host, admin: admin}
}

// getenv is the environment a registry under test sees: the emulator's
// address and nothing else. Passing it through getenv rather than
// t.Setenv leaves the process environment alone.
func (b *gcsBackend) getenv(k string) string {
	if k == "STORAGE_EMULATOR_HOST" {
		return b.host
	}
	return ""
}

// bucket creates a bucket no other test uses; it is emptied and removed
// when the test ends.
func (b *gcsBackend) bucket(t *testing.T) string {
	t.Helper()
	name := "dewy-" + strings.ToLower(rand.Text())
	ctx := context.Background()
	if err := b.admin.Bucket(name).Create(ctx, "dewy-test", nil); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		it := b.admin.Bucket(name).Objects(ctx, nil)
		var g errgroup.Group
		g.SetLimit(16)
		for {
			o, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				t.Errorf("cleanup: list %s: %v", name, err)
				return
			}
			g.Go(func() error { return b.admin.Bucket(name).Object(o.Name).Delete(ctx) })
		}
		if err := g.Wait(); err != nil {
			t.Errorf("cleanup: delete objects in %s: %v", name, err)
			return
		}
		if err := b.admin.Bucket(name).Delete(ctx); err != nil {
			t.Errorf("cleanup: delete bucket %s: %v", name, err)
		}
	})
	return name
}

func (b *gcsBackend) put(t *testing.T, bucket string, objects map[string][]byte) {
	t.Helper()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(16)
	for key, data := range objects {
		g.Go(func() error {
			w := b.admin.Bucket(bucket).Object(key).NewWriter(ctx)
			w.ChunkSize = 0 // one request, no 16 MiB buffer per writer
			if _, err := w.Write(data); err != nil {
				w.Close()
				return fmt.Errorf("put %s/%s: %w", bucket, key, err)
			}
			if err := w.Close(); err != nil {
				return fmt.Errorf("put %s/%s: %w", bucket, key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func (b *gcsBackend) registry(t *testing.T, bucket, prefix string) *gcsRegistry {
	t.Helper()
	u := &url.URL{Scheme: "gs", Host: bucket, Path: "/" + prefix}
	r, err := openGCS(context.Background(), u, b.getenv, discardLogger())
	if err != nil {
		t.Fatalf("openGCS(%s): %v", u, err)
	}
	return r
}

// fixture is a fresh bucket in the shape the shared object-store tests use.
func (b *gcsBackend) fixture(t *testing.T) bucketFixture {
	bucket := b.bucket(t)
	return bucketFixture{
		bucket: bucket,
		put:    func(t *testing.T, objects map[string][]byte) { b.put(t, bucket, objects) },
		open: func(t *testing.T, bucket, prefix string) bucketRegistry {
			return b.registry(t, bucket, prefix)
		},
	}
}

func TestGCSRegistrySuite(t *testing.T) {
	b := gcsTestBackend(t)
	runRegistrySuite(t, func(t *testing.T, rels []suiteRelease) (registry, artifactStore) {
		bucket := b.bucket(t)
		objects := map[string][]byte{}
		for _, rel := range rels {
			for name, data := range rel.Files {
				objects["releases/app/"+rel.Tag+"/"+name] = data
			}
		}
		b.put(t, bucket, objects)
		r := b.registry(t, bucket, "releases/app")
		return r, r
	})
}

// The emulator keeps a bucket's objects in a slice that it scans on every
// upload, so uploads slow down as the bucket grows (5,000 took over a
// minute on 2 cores); 2,500 still span three pages of 1,000.
func TestGCSListsManyReleases(t *testing.T) {
	testBucketManyReleases(t, gcsTestBackend(t).fixture(t), 2500)
}
func TestGCSPrefix(t *testing.T) { testBucketPrefix(t, gcsTestBackend(t).fixture(t)) }
func TestGCSIgnoresDeployedReports(t *testing.T) {
	testBucketDeployedReports(t, gcsTestBackend(t).fixture(t))
}
func TestGCSNotFound(t *testing.T)  { testBucketNotFound(t, gcsTestBackend(t).fixture(t)) }
func TestGCSOpenRange(t *testing.T) { testBucketOpenRange(t, gcsTestBackend(t).fixture(t)) }

// TestGCSErrorMapping covers what the emulator cannot show: it accepts any
// caller, so a real denial never comes back from it.
func TestGCSErrorMapping(t *testing.T) {
	const principal = "deployer@example-project.iam.gserviceaccount.com"
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"forbidden", &googleapi.Error{Code: http.StatusForbidden, Message: principal + " does not have storage.objects.get access"}, errAccessDenied},
		{"unauthorized", &googleapi.Error{Code: http.StatusUnauthorized, Message: "Invalid Credentials"}, errAccessDenied},
		{"missing object", storage.ErrObjectNotExist, errNotFound},
		{"missing bucket", storage.ErrBucketNotExist, errNotFound},
		{"404", &googleapi.Error{Code: http.StatusNotFound}, errNotFound},
		{"server error", &googleapi.Error{Code: http.StatusInternalServerError, Message: "backend error"}, nil},
		{"cancelled", context.Canceled, context.Canceled},
	} {
		err := gcsError("get", "my-bucket", "app/v1.2.0/app.tar.gz", fmt.Errorf("wrapped: %w", tc.err))
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want it to wrap %v", tc.name, err, tc.want)
		}
		if tc.want == nil && (errors.Is(err, errNotFound) || errors.Is(err, errAccessDenied)) {
			t.Errorf("%s: err = %v, want neither errNotFound nor errAccessDenied", tc.name, err)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "gcs get my-bucket/app/v1.2.0/app.tar.gz: ") || strings.Contains(msg, principal) {
			t.Errorf("%s: error %q, want it to name my-bucket/app/v1.2.0/app.tar.gz and not the principal", tc.name, msg)
		}
	}
}

// TestGCSURLForms needs no server: building a registry does no I/O when an
// emulator is set.
func TestGCSURLForms(t *testing.T) {
	getenv := func(k string) string {
		if k == "STORAGE_EMULATOR_HOST" {
			return "127.0.0.1:1"
		}
		return ""
	}
	cases := []bucketURLCase{
		{in: "gs://my-bucket/app", bucket: "my-bucket", prefix: "app/", asset: "gs://my-bucket/app/x.tar.gz"},
		{in: "gs://my-bucket", bucket: "my-bucket", prefix: "", asset: "gs://my-bucket/x.tar.gz"},
		{in: "gs://my-bucket/a/b/", bucket: "my-bucket", prefix: "a/b/", asset: "gs://my-bucket/a/b/x.tar.gz"},
		{in: "gs:///app", wantErr: "missing bucket"},
		{in: "gs://", wantErr: "missing bucket"},
		{in: "gs://my-bucket:443/app", wantErr: "has a port"},
		{in: "gs://my-bucket/app?endpoint=http%3A%2F%2Fx", wantErr: `unknown option "endpoint"`},
		{in: "gs://user:topsecret@my-bucket/app", wantErr: "credentials in the URL are not accepted"},
	}
	checkBucketURLForms(t, "openGCS", cases, func(u *url.URL) (string, string, string, error) {
		r, err := openGCS(context.Background(), u, getenv, discardLogger())
		if err != nil {
			return "", "", "", err
		}
		return r.bucket, r.prefix, r.objectURL(r.prefix + "x.tar.gz"), nil
	})
}
