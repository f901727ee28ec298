//go:build !nos3

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// These tests run against versitygw, a real S3 gateway that checks SigV4
// signatures, started by scripts/test.

const s3TestRegion = "us-east-1"

type s3Backend struct {
	endpoint, accessKey, secretKey string
	admin                          *s3.Client // creates buckets and fixtures
}

func s3TestBackend(t *testing.T) *s3Backend {
	t.Helper()
	b := &s3Backend{
		endpoint:  backendAddr(t, "s3", "DEWY_TEST_S3_ENDPOINT"),
		accessKey: backendAddr(t, "s3", "DEWY_TEST_S3_ACCESS_KEY"),
		secretKey: backendAddr(t, "s3", "DEWY_TEST_S3_SECRET_KEY"),
	}
	b.admin = s3.New(s3.Options{
		Region:       s3TestRegion,
		BaseEndpoint: aws.String(b.endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(b.accessKey, b.secretKey, ""),
	})
	return b
}

// getenv is the environment a registry under test sees: the gateway's keys
// and nothing else, so the developer's own AWS settings cannot leak in.
func (b *s3Backend) getenv(extra ...string) func(string) string {
	env := map[string]string{"AWS_ACCESS_KEY_ID": b.accessKey, "AWS_SECRET_ACCESS_KEY": b.secretKey}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return func(k string) string { return env[k] }
}

// bucket creates a bucket no other test uses; it is emptied and removed
// when the test ends.
func (b *s3Backend) bucket(t *testing.T) string {
	t.Helper()
	name := "dewy-" + strings.ToLower(rand.Text())
	ctx := context.Background()
	if _, err := b.admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		// Batches of 1,000 keys, the most DeleteObjects takes, sent in
		// parallel: the gateway removes files one by one.
		var batches [][]types.ObjectIdentifier
		p := s3.NewListObjectsV2Paginator(b.admin, &s3.ListObjectsV2Input{Bucket: aws.String(name)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Errorf("cleanup: list %s: %v", name, err)
				return
			}
			var ids []types.ObjectIdentifier
			for _, o := range page.Contents {
				ids = append(ids, types.ObjectIdentifier{Key: o.Key})
			}
			if len(ids) > 0 {
				batches = append(batches, ids)
			}
		}
		var g errgroup.Group
		g.SetLimit(8)
		for _, ids := range batches {
			g.Go(func() error {
				_, err := b.admin.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(name), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Errorf("cleanup: delete objects in %s: %v", name, err)
			return
		}
		if _, err := b.admin.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)}); err != nil {
			t.Errorf("cleanup: delete bucket %s: %v", name, err)
		}
	})
	return name
}

// put uploads objects concurrently; 16 at once keeps 5,000 uploads to a
// few seconds without swamping a 2-core machine.
func (b *s3Backend) put(t *testing.T, bucket string, objects map[string][]byte) {
	t.Helper()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(16)
	for key, data := range objects {
		g.Go(func() error {
			_, err := b.admin.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data)})
			if err != nil {
				return fmt.Errorf("put %s/%s: %w", bucket, key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// registry opens s3://us-east-1/<bucket>/<prefix>?endpoint=<gateway>.
func (b *s3Backend) registry(t *testing.T, bucket, prefix string, getenv func(string) string) *s3Registry {
	t.Helper()
	u := &url.URL{Scheme: "s3", Host: s3TestRegion, Path: "/" + bucket + "/" + prefix,
		RawQuery: url.Values{"endpoint": {b.endpoint}}.Encode()}
	r, err := openS3(context.Background(), u, getenv, discardLogger())
	if err != nil {
		t.Fatalf("openS3(%s): %v", u, err)
	}
	return r
}

func TestS3RegistrySuite(t *testing.T) {
	b := s3TestBackend(t)
	runRegistrySuite(t, func(t *testing.T, rels []suiteRelease) (registry, artifactStore) {
		bucket := b.bucket(t)
		objects := map[string][]byte{}
		for _, rel := range rels {
			for name, data := range rel.Files {
				objects["releases/app/"+rel.Tag+"/"+name] = data
			}
		}
		b.put(t, bucket, objects)
		r := b.registry(t, bucket, "releases/app", b.getenv())
		return r, r
	})
}

// fixture is a fresh bucket in the shape the shared object-store tests use.
func (b *s3Backend) fixture(t *testing.T) bucketFixture {
	bucket := b.bucket(t)
	return bucketFixture{
		bucket: bucket,
		put:    func(t *testing.T, objects map[string][]byte) { b.put(t, bucket, objects) },
		open: func(t *testing.T, bucket, prefix string) bucketRegistry {
			return b.registry(t, bucket, prefix, b.getenv())
		},
	}
}

func TestS3ListsManyReleases(t *testing.T) {
	testBucketManyReleases(t, s3TestBackend(t).fixture(t), 5000)
}
func TestS3Prefix(t *testing.T) { testBucketPrefix(t, s3TestBackend(t).fixture(t)) }
func TestS3IgnoresDeployedReports(t *testing.T) {
	testBucketDeployedReports(t, s3TestBackend(t).fixture(t))
}
func TestS3NotFound(t *testing.T)  { testBucketNotFound(t, s3TestBackend(t).fixture(t)) }
func TestS3OpenRange(t *testing.T) { testBucketOpenRange(t, s3TestBackend(t).fixture(t)) }

func TestS3AccessDenied(t *testing.T) {
	b := s3TestBackend(t)
	bucket := b.bucket(t)
	b.put(t, bucket, map[string][]byte{"app/v1.0.0/app.tar.gz": []byte("artifact")})
	const wrongSecret = "not-the-secret-0123456789"
	for _, tc := range []struct {
		name   string
		getenv func(string) string
	}{
		{"wrong secret", b.getenv("AWS_SECRET_ACCESS_KEY", wrongSecret)},
		{"unknown key", b.getenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000", "AWS_SECRET_ACCESS_KEY", wrongSecret)},
	} {
		var logs bytes.Buffer
		u := &url.URL{Scheme: "s3", Host: s3TestRegion, Path: "/" + bucket + "/app",
			RawQuery: url.Values{"endpoint": {b.endpoint}}.Encode()}
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		r, err := openS3(context.Background(), u, tc.getenv, log)
		if err != nil {
			t.Fatalf("%s: openS3: %v", tc.name, err)
		}
		_, listErr := r.releases(t.Context())
		obj, _ := url.Parse(r.objectURL("app/v1.0.0/app.tar.gz"))
		_, _, openErr := r.open(t.Context(), obj, 0)
		for _, c := range []struct {
			op, want string
			err      error
		}{
			{"releases", bucket + "/app/", listErr},
			{"open", bucket + "/app/v1.0.0/app.tar.gz", openErr},
		} {
			if !errors.Is(c.err, errAccessDenied) {
				t.Fatalf("%s: %s err = %v, want errAccessDenied", tc.name, c.op, c.err)
			}
			msg := c.err.Error()
			if !strings.Contains(msg, "access denied") || !strings.Contains(msg, c.want) {
				t.Errorf("%s: %s error %q, want it to say access denied and name %s", tc.name, c.op, msg, c.want)
			}
			if strings.Contains(msg, wrongSecret) || strings.Contains(msg, b.secretKey) {
				t.Errorf("%s: %s error %q contains a secret", tc.name, c.op, msg)
			}
		}
		if strings.Contains(logs.String(), wrongSecret) {
			t.Errorf("%s: logs contain the secret: %s", tc.name, logs.String())
		}
	}
}

func TestS3EndpointFromEnvironment(t *testing.T) {
	b := s3TestBackend(t)
	bucket := b.bucket(t)
	b.put(t, bucket, map[string][]byte{"v1.0.0/app.tar.gz": []byte("artifact")})
	u := &url.URL{Scheme: "s3", Host: s3TestRegion, Path: "/" + bucket}
	r, err := openS3(context.Background(), u, b.getenv("AWS_ENDPOINT_URL", b.endpoint), discardLogger())
	if err != nil {
		t.Fatalf("openS3: %v", err)
	}
	rels, err := r.releases(t.Context())
	if err != nil || len(rels) != 1 || len(rels[0].Assets) != 1 {
		t.Fatalf("releases = %+v, %v; want one release with one asset", rels, err)
	}
	// The endpoint came from the environment, so asset URLs do not carry it.
	if got, want := rels[0].Assets[0].URL, "s3://us-east-1/"+bucket+"/v1.0.0/app.tar.gz"; got != want {
		t.Errorf("asset URL = %q, want %q", got, want)
	}
	au, _ := url.Parse(rels[0].Assets[0].URL)
	body, _, err := r.open(t.Context(), au, 0)
	if err != nil {
		t.Fatalf("open %s: %v", au, err)
	}
	got, _ := io.ReadAll(body)
	body.Close()
	if string(got) != "artifact" {
		t.Errorf("open read %q, want %q", got, "artifact")
	}
}

// TestS3URLForms needs no server: building a registry does no I/O.
func TestS3URLForms(t *testing.T) {
	getenv := func(string) string { return "" }
	cases := []bucketURLCase{
		{in: "s3://eu-west-1/my-bucket/app", bucket: "my-bucket", prefix: "app/", asset: "s3://eu-west-1/my-bucket/app/x.tar.gz"},
		{in: "s3://eu-west-1/my-bucket", bucket: "my-bucket", prefix: "", asset: "s3://eu-west-1/my-bucket/x.tar.gz"},
		{in: "s3://eu-west-1/my-bucket/", bucket: "my-bucket", prefix: "", asset: "s3://eu-west-1/my-bucket/x.tar.gz"},
		{in: "s3://auto/b/a/b/?endpoint=https%3A%2F%2Fs3.example.net", bucket: "b", prefix: "a/b/",
			asset: "s3://auto/b/a/b/x.tar.gz?endpoint=https%3A%2F%2Fs3.example.net"},
		{in: "s3:///my-bucket/app", wantErr: "missing region"},
		{in: "s3://eu-west-1", wantErr: "missing bucket"},
		{in: "s3://eu-west-1/", wantErr: "missing bucket"},
		{in: "s3://eu-west-1//app", wantErr: "missing bucket"},
		{in: "s3://eu-west-1:9000/b", wantErr: "has a port"},
		{in: "s3://eu-west-1/b/app?pre-release=true", wantErr: `unknown option "pre-release"`},
		{in: "s3://eu-west-1/b/app?endpoint=ftp%3A%2F%2Fhost", wantErr: "scheme must be http or https"},
		{in: "s3://eu-west-1/b/app?endpoint=", wantErr: "scheme must be http or https"},
		{in: "s3://eu-west-1/b/app?endpoint=http%3A%2F%2Fuser%3Atopsecret%40host", wantErr: "credentials and query are not accepted"},
		{in: "s3://AKIAID:topsecret@eu-west-1/b/app", wantErr: "credentials in the URL are not accepted"},
	}
	checkBucketURLForms(t, "openS3", cases, func(u *url.URL) (string, string, string, error) {
		r, err := openS3(context.Background(), u, getenv, discardLogger())
		if err != nil {
			return "", "", "", err
		}
		return r.bucket, r.prefix, r.objectURL(r.prefix + "x.tar.gz"), nil
	})
}

// TestS3OpenRejectsForeignEndpoint: requests carry our signature, so an
// asset URL must not send them to a server the registry was not set up for.
func TestS3OpenRejectsForeignEndpoint(t *testing.T) {
	u, _ := url.Parse("s3://us-east-1/b/app?endpoint=http%3A%2F%2F127.0.0.1%3A1")
	r, err := openS3(context.Background(), u, func(string) string { return "" }, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"s3://us-east-1/b/app/v1/x.tar.gz?endpoint=https%3A%2F%2Fevil.example",
		"s3://us-east-1/b/app/v1/x.tar.gz?token=abc",
		"s3://us-east-1/b/",
	} {
		a, _ := url.Parse(in)
		if _, _, err := r.open(context.Background(), a, 0); err == nil {
			t.Errorf("open(%q) err = nil, want a refusal", in)
		}
	}
}
