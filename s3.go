//go:build !nos3

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
)

// s3Registry lists releases stored as s3://<region>/<bucket>/<prefix>/<tag>/<file>
// and reads their assets. It also serves as the artifact store for s3:// URLs.
type s3Registry struct {
	client *s3.Client
	region string
	bucket string
	prefix string // "" or ending in "/"
	// urlEndpoint is the endpoint= option of the registry URL, repeated in
	// asset URLs so that they name the server they live on.
	urlEndpoint string
	log         *slog.Logger
}

var (
	_ registry      = (*s3Registry)(nil)
	_ artifactStore = (*s3Registry)(nil)
)

// The SDK's standard retryer would otherwise try three times with its own
// backoff; one retry absorbs a dropped connection, and the poll loop's
// backoff governs anything longer.
const s3MaxAttempts = 2

// newS3Registry, newS3Store and checkS3URL are s3://'s rows in the scheme
// tables; one s3Registry serves as either.
var newS3Registry, newS3Store = bucketBackend("s3", openS3)

func checkS3URL(u *url.URL, getenv func(string) string) error {
	_, _, err := parseS3(u, getenv)
	return err
}

// openS3 builds a registry from s3://<region>/<bucket>/<prefix>.
// Credentials come from the SDK's default chain.
func openS3(ctx context.Context, u *url.URL, getenv func(string) string, log *slog.Logger) (*s3Registry, error) {
	r, endpoint, err := parseS3(u, getenv)
	if err != nil {
		return nil, err
	}
	// No overall client timeout: an artifact body may take long to arrive.
	// Each phase before the body is bounded instead.
	hc := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 10 * time.Second }).
		WithTransportOptions(func(t *http.Transport) {
			t.TLSHandshakeTimeout = 10 * time.Second
			t.ResponseHeaderTimeout = 30 * time.Second
		})
	log = log.With("bucket", r.bucket, "prefix", r.prefix)
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(r.region),
		// The SDK writes notes such as "response has no supported checksum"
		// to stderr by default; they belong in the debug log.
		awsconfig.WithLogger(logging.LoggerFunc(func(_ logging.Classification, format string, v ...any) {
			log.Debug("aws sdk: " + fmt.Sprintf(format, v...))
		})),
		awsconfig.WithHTTPClient(hc),
		awsconfig.WithRetryMaxAttempts(s3MaxAttempts),
	}
	// Environment keys come first in the SDK's chain too; reading them
	// through getenv keeps the constructor testable without touching the
	// process environment.
	if id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(id, secret, getenv("AWS_SESSION_TOKEN"))))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		// The SDK's configuration errors name files and profiles, not secrets.
		return nil, fmt.Errorf("s3 config for %s: %w", r.bucket, err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
	})
	r.client, r.log = client, log
	return r, nil
}

// parseS3 is openS3 short of the client: the registry's place, and the
// endpoint to send requests to. A custom endpoint for S3-compatible stores
// comes from the endpoint= option, else from AWS_ENDPOINT_URL_S3 or
// AWS_ENDPOINT_URL; with one, requests use path-style addressing, which
// such stores expect.
func parseS3(u *url.URL, getenv func(string) string) (r *s3Registry, endpoint string, err error) {
	region, bucket, prefix, err := parseS3URL(u)
	if err != nil {
		return nil, "", err
	}
	q := u.Query()
	endpoint = q.Get("endpoint")
	q.Del("endpoint")
	if len(q) > 0 {
		return nil, "", fmt.Errorf("s3 url %s: unknown option %q", redactURL(u), firstOption(q))
	}
	if _, ok := u.Query()["endpoint"]; ok {
		if err := checkEndpoint(endpoint); err != nil {
			return nil, "", fmt.Errorf("s3 url %s: %w", redactURL(u), err)
		}
	}
	r = &s3Registry{region: region, bucket: bucket, prefix: prefix, urlEndpoint: endpoint}
	if endpoint == "" {
		endpoint = getenv("AWS_ENDPOINT_URL_S3")
		if endpoint == "" {
			endpoint = getenv("AWS_ENDPOINT_URL")
		}
		if endpoint != "" {
			if err := checkEndpoint(endpoint); err != nil {
				return nil, "", fmt.Errorf("s3 endpoint from environment: %w", err)
			}
		}
	}
	return r, endpoint, nil
}

// parseS3URL splits s3://<region>/<bucket>/<prefix>, the form upstream Dewy
// uses: the region is needed before the bucket can be reached, so it leads.
func parseS3URL(u *url.URL) (region, bucket, key string, err error) {
	const want = "want s3://<region>/<bucket>/<prefix>"
	switch {
	case u.Scheme != "s3":
		return "", "", "", fmt.Errorf("s3 url %s: scheme is not s3", redactURL(u))
	case u.User != nil:
		return "", "", "", fmt.Errorf("s3 url %s: credentials in the URL are not accepted; use the AWS credential chain", redactURL(u))
	case u.Opaque != "":
		return "", "", "", fmt.Errorf("s3 url %s: %s", redactURL(u), want)
	case u.Host == "":
		return "", "", "", fmt.Errorf("s3 url %s: missing region (%s)", redactURL(u), want)
	case u.Port() != "":
		return "", "", "", fmt.Errorf("s3 url %s: region %q has a port (%s)", redactURL(u), u.Host, want)
	case u.Fragment != "":
		return "", "", "", fmt.Errorf("s3 url %s: unexpected fragment #%s", redactURL(u), u.Fragment)
	}
	bucket, key, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if bucket == "" {
		return "", "", "", fmt.Errorf("s3 url %s: missing bucket (%s)", redactURL(u), want)
	}
	return u.Host, bucket, cleanPrefix(key), nil
}

// checkEndpoint accepts http(s)://host[:port][/path] without credentials:
// the endpoint is repeated in asset URLs, logs and errors.
func checkEndpoint(ep string) error {
	e, err := url.Parse(ep)
	if err != nil {
		return fmt.Errorf("endpoint is not a URL")
	}
	switch {
	case e.Scheme != "http" && e.Scheme != "https":
		return fmt.Errorf("endpoint %s: scheme must be http or https", redactURL(e))
	case e.Host == "":
		return fmt.Errorf("endpoint %s: missing host", redactURL(e))
	case e.User != nil || e.RawQuery != "":
		return fmt.Errorf("endpoint %s: credentials and query are not accepted", redactURL(e))
	}
	return nil
}

// objectURL is where an asset of this registry is found by open.
func (r *s3Registry) objectURL(key string) string {
	u := url.URL{Scheme: "s3", Host: r.region, Path: "/" + r.bucket + "/" + key}
	if r.urlEndpoint != "" {
		u.RawQuery = url.Values{"endpoint": {r.urlEndpoint}}.Encode()
	}
	return u.String()
}

// releases lists the whole prefix in one recursive listing and groups keys
// by tag. That costs one request per 1,000 objects, against one request per
// tag for a delimiter listing followed by a listing of each tag: 5,000
// releases of three files are 15 requests instead of 5,005. Deployment
// reports under <tag>/deployed/ are listed too and skipped.
func (r *s3Registry) releases(ctx context.Context) ([]release, error) {
	rels := newObjectReleases(r.prefix, r.objectURL)
	p := s3.NewListObjectsV2Paginator(r.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(r.bucket),
		Prefix: aws.String(r.prefix),
	}, func(o *s3.ListObjectsV2PaginatorOptions) { o.StopOnDuplicateToken = true })
	pages, objects := 0, 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s3Error("list", r.bucket, r.prefix, err)
		}
		pages++
		for _, o := range page.Contents {
			objects++
			rels.add(aws.ToString(o.Key), aws.ToInt64(o.Size))
		}
	}
	out := rels.releases()
	r.log.DebugContext(ctx, "listed bucket", "pages", pages, "objects", objects, "releases", len(out))
	return out, nil
}

// open reads an s3:// asset URL. The bucket and region may differ from the
// registry's; the endpoint may not, since requests carry our signature.
func (r *s3Registry) open(ctx context.Context, u *url.URL, offset int64) (io.ReadCloser, int64, error) {
	region, bucket, key, err := parseS3URL(u)
	if err != nil {
		return nil, 0, err
	}
	key = strings.TrimSuffix(key, "/") // parseS3URL treats the key as a prefix
	if key == "" {
		return nil, 0, fmt.Errorf("s3 url %s: missing object key", redactURL(u))
	}
	q := u.Query()
	endpoint := q.Get("endpoint")
	q.Del("endpoint")
	if len(q) > 0 {
		return nil, 0, fmt.Errorf("s3 url %s: unknown option %q", redactURL(u), firstOption(q))
	}
	if endpoint != "" && endpoint != r.urlEndpoint {
		return nil, 0, fmt.Errorf("s3 url %s: endpoint differs from the registry's", redactURL(u))
	}
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if offset > 0 {
		in.Range = aws.String("bytes=" + strconv.FormatInt(offset, 10) + "-")
	}
	out, err := r.client.GetObject(ctx, in, func(o *s3.Options) { o.Region = region })
	if err != nil {
		return nil, 0, s3Error("get", bucket, key, err)
	}
	size := aws.ToInt64(out.ContentLength)
	if offset > 0 {
		size, err = httpContentRange(aws.ToString(out.ContentRange), offset)
		if err != nil {
			out.Body.Close()
			return nil, 0, fmt.Errorf("s3 get %s/%s: %w", bucket, key, err)
		}
	}
	return out.Body, size, nil
}

var _ checksummer = (*s3Registry)(nil)

// checksum asks for the object's ChecksumSHA256, which S3 keeps when the
// object was uploaded with one (aws s3 cp --checksum-algorithm SHA256). A
// multipart upload's composite checksum is a digest of the parts' digests,
// not of the object, and is ignored.
func (r *s3Registry) checksum(ctx context.Context, u *url.URL) (objectChecksum, error) {
	region, bucket, key, err := parseS3URL(u)
	if err != nil {
		return objectChecksum{}, err
	}
	key = strings.TrimSuffix(key, "/")
	out, err := r.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled,
	}, func(o *s3.Options) { o.Region = region })
	if err != nil {
		return objectChecksum{}, s3Error("head", bucket, key, err)
	}
	b64 := aws.ToString(out.ChecksumSHA256)
	if b64 == "" || out.ChecksumType == types.ChecksumTypeComposite || strings.Contains(b64, "-") {
		return objectChecksum{}, nil
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != sha256.Size {
		return objectChecksum{}, fmt.Errorf("s3 head %s/%s: ChecksumSHA256 %q is not a SHA-256", bucket, key, truncate(b64, 80))
	}
	return objectChecksum{SHA256: hex.EncodeToString(raw), From: "S3 ChecksumSHA256"}, nil
}

// s3Error maps the SDK's error to the registry's sentinels and names the
// object. Only the error code is kept for denials: their messages echo the
// access key id, and some S3-compatible stores add the string to sign.
func s3Error(op, bucket, key string, err error) error {
	var code string
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	status := 0
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	switch {
	case s3DeniedCodes[code]:
		return fmt.Errorf("s3 %s %s/%s: %w (%s)", op, bucket, key, errAccessDenied, code)
	case s3NotFoundCodes[code]:
		return fmt.Errorf("s3 %s %s/%s: %w (%s)", op, bucket, key, errNotFound, code)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("s3 %s %s/%s: %w (%s)", op, bucket, key, errAccessDenied, orStatus(code, status))
	case status == http.StatusNotFound:
		return fmt.Errorf("s3 %s %s/%s: %w (%s)", op, bucket, key, errNotFound, orStatus(code, status))
	case apiErr != nil:
		return fmt.Errorf("s3 %s %s/%s: %s: %s (HTTP %d)", op, bucket, key, code, apiErr.ErrorMessage(), status)
	}
	// Transport errors and cancellations: keep the chain for errors.Is.
	return fmt.Errorf("s3 %s %s/%s: %w", op, bucket, key, err)
}

// Codes are checked before HTTP statuses because S3-compatible stores do
// not always agree with AWS on the status.
var (
	s3DeniedCodes = map[string]bool{
		"AccessDenied": true, "AllAccessDisabled": true, "InvalidAccessKeyId": true,
		"SignatureDoesNotMatch": true, "ExpiredToken": true, "InvalidToken": true,
		// versitygw's answer to an unknown access key id, with status 404.
		"XAdminUserNotFound": true,
	}
	s3NotFoundCodes = map[string]bool{"NoSuchKey": true, "NoSuchBucket": true, "NotFound": true}
)

func orStatus(code string, status int) string {
	if code != "" {
		return code
	}
	return "HTTP " + strconv.Itoa(status)
}

var _ reporter = (*s3Registry)(nil)

// report writes <prefix>/<tag>/deployed/<host>.json, so whoever owns the
// bucket sees which host runs what.
func (r *s3Registry) report(ctx context.Context, rep deployReport) error {
	body, err := reportBody(rep)
	if err != nil {
		return err
	}
	key := reportKey(r.prefix, rep.Tag, rep.Host)
	_, err = r.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(r.bucket), Key: aws.String(key),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	})
	if err != nil {
		return s3Error("put", r.bucket, key, err)
	}
	return nil
}
