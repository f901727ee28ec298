//go:build !nogcs

package main

import (
	"context"
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

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"
)

// gcsRegistry lists releases stored as gs://<bucket>/<prefix>/<tag>/<file>
// and reads their assets. It also serves as the artifact store for gs:// URLs.
type gcsRegistry struct {
	client *storage.Client
	bucket string
	prefix string // "" or ending in "/"
	log    *slog.Logger
}

var (
	_ registry      = (*gcsRegistry)(nil)
	_ artifactStore = (*gcsRegistry)(nil)
)

// Left alone, the library retries idempotent calls with its own backoff
// until the context ends; one retry absorbs a dropped connection, and the
// poll loop's backoff governs anything longer.
const gcsMaxAttempts = 2

// newGCSRegistry, newGCSStore and checkGCSURL are gs://'s rows in the
// scheme tables; one gcsRegistry serves as either.
var newGCSRegistry, newGCSStore = bucketBackend("gcs", openGCS)

func checkGCSURL(u *url.URL, _ func(string) string) error {
	_, _, err := parseGCSRegistryURL(u)
	return err
}

// parseGCSRegistryURL is parseGCSURL for a URL that takes no options.
func parseGCSRegistryURL(u *url.URL) (bucket, prefix string, err error) {
	bucket, prefix, err = parseGCSURL(u)
	if err == nil && len(u.Query()) > 0 {
		err = fmt.Errorf("gs url %s: unknown option %q", redactURL(u), firstOption(u.Query()))
	}
	return bucket, prefix, err
}

// openGCS builds a registry from gs://<bucket>/<prefix>, with
// application default credentials. STORAGE_EMULATOR_HOST (host:port or a
// URL), read through getenv, points it at an emulator, unauthenticated, as
// the library itself would.
func openGCS(ctx context.Context, u *url.URL, getenv func(string) string, log *slog.Logger) (*gcsRegistry, error) {
	bucket, prefix, err := parseGCSRegistryURL(u)
	if err != nil {
		return nil, err
	}

	// The library's own transport bounds dialling and TLS but not the wait
	// for response headers. No overall client timeout: an artifact body may
	// take long to arrive; the caller's ctx bounds it.
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	base.TLSHandshakeTimeout = 10 * time.Second
	base.ResponseHeaderTimeout = 30 * time.Second
	opts := []option.ClientOption{storage.WithDisabledClientMetrics()}
	var rt http.RoundTripper = base
	if host := getenv("STORAGE_EMULATOR_HOST"); host != "" {
		if !strings.Contains(host, "://") {
			host = "http://" + host
		}
		// Emulators serve the JSON API at any address, but the XML API
		// that reads default to only at the host name they are told to
		// impersonate.
		opts = append(opts, option.WithEndpoint(strings.TrimSuffix(host, "/")+"/storage/v1/"), storage.WithJSONReads())
	} else {
		// Read-only scope: listing and reading objects is all dewy does.
		rt, err = htransport.NewTransport(ctx, base, option.WithScopes(storage.ScopeReadOnly))
		if err != nil {
			return nil, fmt.Errorf("gcs credentials for %s: %w", bucket, err)
		}
	}
	// rt carries the credentials; WithoutAuthentication stops the library
	// from searching for them a second time only to ignore them.
	opts = append(opts, option.WithHTTPClient(&http.Client{Transport: rt}), option.WithoutAuthentication())
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gcs client for %s: %w", bucket, err)
	}
	client.SetRetry(storage.WithMaxAttempts(gcsMaxAttempts))
	return &gcsRegistry{
		client: client,
		bucket: bucket,
		prefix: prefix,
		log:    log.With("bucket", bucket, "prefix", prefix),
	}, nil
}

// parseGCSURL splits gs://<bucket>/<prefix>, the form gsutil and gcloud use.
func parseGCSURL(u *url.URL) (bucket, key string, err error) {
	const want = "want gs://<bucket>/<prefix>"
	switch {
	case u.Scheme != "gs":
		return "", "", fmt.Errorf("gs url %s: scheme is not gs", redactURL(u))
	case u.User != nil:
		return "", "", fmt.Errorf("gs url %s: credentials in the URL are not accepted; use application default credentials", redactURL(u))
	case u.Opaque != "":
		return "", "", fmt.Errorf("gs url %s: %s", redactURL(u), want)
	case u.Host == "":
		return "", "", fmt.Errorf("gs url %s: missing bucket (%s)", redactURL(u), want)
	case u.Port() != "":
		return "", "", fmt.Errorf("gs url %s: bucket %q has a port (%s)", redactURL(u), u.Host, want)
	case u.Fragment != "":
		return "", "", fmt.Errorf("gs url %s: unexpected fragment #%s", redactURL(u), u.Fragment)
	}
	return u.Host, cleanPrefix(u.Path), nil
}

func (r *gcsRegistry) objectURL(key string) string {
	return (&url.URL{Scheme: "gs", Host: r.bucket, Path: "/" + key}).String()
}

// releases lists the whole prefix recursively and groups keys by tag, for
// the reason given at s3Registry.releases: one request per 1,000 objects
// instead of one per tag.
func (r *gcsRegistry) releases(ctx context.Context) ([]release, error) {
	rels := newObjectReleases(r.prefix, r.objectURL)
	q := &storage.Query{Prefix: r.prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size"}); err != nil {
		return nil, fmt.Errorf("gcs list %s/%s: %w", r.bucket, r.prefix, err)
	}
	it := r.client.Bucket(r.bucket).Objects(ctx, q)
	// 1,000 is the API's default and largest page; asking for it outright
	// makes emulators, which otherwise answer in one page, paginate alike.
	it.PageInfo().MaxSize = 1000
	objects := 0
	for {
		o, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, gcsError("list", r.bucket, r.prefix, err)
		}
		objects++
		rels.add(o.Name, o.Size)
	}
	out := rels.releases()
	r.log.DebugContext(ctx, "listed bucket", "objects", objects, "releases", len(out))
	return out, nil
}

// open reads a gs:// asset URL, from any bucket the credentials can read.
func (r *gcsRegistry) open(ctx context.Context, u *url.URL, offset int64) (io.ReadCloser, int64, error) {
	bucket, key, err := parseGCSURL(u)
	if err != nil {
		return nil, 0, err
	}
	key = strings.TrimSuffix(key, "/") // parseGCSURL treats the key as a prefix
	if key == "" {
		return nil, 0, fmt.Errorf("gs url %s: missing object key", redactURL(u))
	}
	if len(u.Query()) > 0 {
		return nil, 0, fmt.Errorf("gs url %s: unknown option %q", redactURL(u), firstOption(u.Query()))
	}
	if offset < 0 {
		return nil, 0, fmt.Errorf("gcs get %s/%s: negative offset %d", bucket, key, offset)
	}
	rd, err := r.client.Bucket(bucket).Object(key).NewRangeReader(ctx, offset, -1)
	if err != nil {
		return nil, 0, gcsError("get", bucket, key, err)
	}
	return rd, rd.Attrs.Size, nil
}

var _ checksummer = (*gcsRegistry)(nil)

// checksum reads the object's MD5, or its CRC32C when it has none
// (composite objects). Neither is a SHA-256: they show that the download is
// the object as stored, which is all GCS offers, and are named so.
func (r *gcsRegistry) checksum(ctx context.Context, u *url.URL) (objectChecksum, error) {
	bucket, key, err := parseGCSURL(u)
	if err != nil {
		return objectChecksum{}, err
	}
	key = strings.TrimSuffix(key, "/")
	attrs, err := r.client.Bucket(bucket).Object(key).Attrs(ctx)
	if err != nil {
		return objectChecksum{}, gcsError("stat", bucket, key, err)
	}
	if len(attrs.MD5) > 0 {
		return objectChecksum{Algo: "md5", Sum: hex.EncodeToString(attrs.MD5), From: "GCS MD5 (integrity only)"}, nil
	}
	return objectChecksum{Algo: "crc32c", Sum: crc32cHex(attrs.CRC32C), From: "GCS CRC32C (integrity only)"}, nil
}

// gcsError maps the library's errors to the registry's sentinels and names
// the object. Denials keep only the status: their messages name the
// principal and its permissions.
func gcsError(op, bucket, key string, err error) error {
	var gerr *googleapi.Error
	status := 0
	if errors.As(err, &gerr) {
		status = gerr.Code
	}
	switch {
	case errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) || status == http.StatusNotFound:
		return fmt.Errorf("gcs %s %s/%s: %w", op, bucket, key, errNotFound)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("gcs %s %s/%s: %w (HTTP %s)", op, bucket, key, errAccessDenied, strconv.Itoa(status))
	case gerr != nil:
		return fmt.Errorf("gcs %s %s/%s: HTTP %d: %s", op, bucket, key, status, gerr.Message)
	}
	return fmt.Errorf("gcs %s %s/%s: %w", op, bucket, key, err)
}

var _ reporter = (*gcsRegistry)(nil)

// report writes <prefix>/<tag>/deployed/<host>.json, so whoever owns the
// bucket sees which host runs what.
func (r *gcsRegistry) report(ctx context.Context, rep deployReport) error {
	body, err := reportBody(rep)
	if err != nil {
		return err
	}
	key := reportKey(r.prefix, rep.Tag, rep.Host)
	w := r.client.Bucket(r.bucket).Object(key).NewWriter(ctx)
	w.ContentType = "application/json"
	if _, err := w.Write(body); err != nil {
		w.Close()
		return gcsError("put", r.bucket, key, err)
	}
	if err := w.Close(); err != nil {
		return gcsError("put", r.bucket, key, err)
	}
	return nil
}
