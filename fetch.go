package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"
)

// artifactStore reads artifacts. Which one serves a URL is decided by its scheme.
type artifactStore interface {
	// open returns the object's bytes starting at offset, and the object's
	// total size (-1 when unknown). A missing object wraps errNotFound; a
	// rejected credential wraps errAccessDenied. Errors name the object.
	open(ctx context.Context, u *url.URL, offset int64) (io.ReadCloser, int64, error)
}

// asBackend hands a backend's constructor result on as the plug point's
// interface I (registry, artifactStore, ...). On error it returns the zero
// I: a nil *T wrapped in an interface would not compare equal to nil. The
// conversion cannot fail at run time for a type with a "var _ I = (*T)(nil)"
// line, which every backend file has.
func asBackend[I any, T any](b T, err error) (I, error) {
	if err != nil {
		var zero I
		return zero, err
	}
	return any(b).(I), nil
}

// fetchResumes bounds how often one download picks up where a dropped
// connection left it before the attempt counts as failed.
const fetchResumes = 3

// maxChecksumFile caps checksum lists; real ones are a few KiB.
const maxChecksumFile = 1 << 20

// download streams the object at u into a new temporary file in dir,
// hashing it in the same pass, so memory use does not grow with the
// artifact. The caller removes the file. On error nothing is left behind.
func download(ctx context.Context, store artifactStore, u *url.URL, dir string, log *slog.Logger) (path, sum string, size int64, err error) {
	f, err := os.CreateTemp(dir, "download-*")
	if err != nil {
		return "", "", 0, fmt.Errorf("download %s: %w", redactURL(u), err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	var written int64
	buf := make([]byte, 256<<10)
	for attempt := 0; ; attempt++ {
		var total int64
		var copyErr error
		written, total, copyErr = downloadFrom(ctx, store, u, f, h, written, buf)
		if copyErr == nil {
			if total < 0 || written == total {
				break
			}
			// The object changed under us (or the server lied about its
			// length): resuming would splice two versions, so start over.
			copyErr = fmt.Errorf("got %d bytes, object has %d", written, total)
			written = 0
		}
		if ctx.Err() != nil || errors.Is(copyErr, errNotFound) || errors.Is(copyErr, errAccessDenied) || attempt >= fetchResumes {
			return "", "", 0, fmt.Errorf("download %s: %w", redactURL(u), copyErr)
		}
		log.Warn("download interrupted, resuming", "url", redactURL(u), "offset", written, "err", copyErr)
	}
	if err := f.Sync(); err != nil {
		return "", "", 0, fmt.Errorf("download %s: %w", redactURL(u), err)
	}
	if err := f.Close(); err != nil {
		return "", "", 0, fmt.Errorf("download %s: %w", redactURL(u), err)
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), written, nil
}

// downloadFrom continues a download at offset. If the store cannot resume
// it starts over, so the hash always covers exactly the bytes on disk.
func downloadFrom(ctx context.Context, store artifactStore, u *url.URL, f *os.File, h hash.Hash, offset int64, buf []byte) (int64, int64, error) {
	// A server that trickles a byte now and then would hold the poll loop
	// forever; a download that makes no progress for downloadIdle is cut
	// and resumed like a dropped connection.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(downloadIdle, func() { cancel(errDownloadIdle) })
	defer idle.Stop()
	body, total, err := store.open(ctx, u, offset)
	if err != nil && offset > 0 && !errors.Is(err, errNotFound) && !errors.Is(err, errAccessDenied) {
		offset = 0
		body, total, err = store.open(ctx, u, 0)
	}
	if err != nil {
		return offset, -1, err
	}
	defer body.Close()
	if offset == 0 {
		if err := f.Truncate(0); err != nil {
			return 0, total, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, total, err
		}
		h.Reset()
	}
	n, err := io.CopyBuffer(io.MultiWriter(f, h), &idleReader{r: body, t: idle}, buf)
	if cause := context.Cause(ctx); errors.Is(cause, errDownloadIdle) {
		err = cause
	}
	return offset + n, total, err
}

// downloadIdle is how long a download may go without receiving a byte.
var downloadIdle = 60 * time.Second

var errDownloadIdle = errors.New("no data received for a minute")

// idleReader pushes the idle deadline back on every read that brings data.
type idleReader struct {
	r io.Reader
	t *time.Timer
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(downloadIdle)
	}
	return n, err
}

// checksumMismatchError is a release whose artifact does not match its
// published digest: never retried until the release changes.
type checksumMismatchError struct {
	Asset, Want, Got, From string
	Algo                   string // "" means sha256
}

func (e *checksumMismatchError) Error() string {
	algo := orDefault(e.Algo, "sha256")
	return fmt.Sprintf("checksum mismatch for %s: %s lists %s %s, downloaded %s %s", e.Asset, e.From, algo, e.Want, algo, e.Got)
}

var errNoChecksum = errors.New("no digest published")

// expectedDigest reads the release's checksum files and returns the sha256
// they give for name, and which file said so. errNoChecksum when none does.
func expectedDigest(ctx context.Context, storeFor func(*url.URL) (artifactStore, error), files []asset, name string) (sum, from string, err error) {
	for _, a := range files {
		data, err := readSmallAsset(ctx, storeFor, a, maxChecksumFile)
		if err != nil {
			return "", "", fmt.Errorf("checksum file: %w", err)
		}
		single := a.Name == name+".sha256" || a.Name == name+".sha256sum"
		got, ok, err := parseChecksums(data, name, single)
		if err != nil {
			return "", "", fmt.Errorf("checksum file %s: %w", a.Name, err)
		}
		if ok {
			return got, a.Name, nil
		}
	}
	return "", "", errNoChecksum
}

// parseChecksums finds name in a sha256sum-style list ("<hex>  <name>" or
// "<hex> *<name>"). A per-asset file (single) may hold just the digest.
func parseChecksums(data []byte, name string, single bool) (string, bool, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), maxChecksumFile)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		sum := strings.ToLower(fields[0])
		if !isSHA256Hex(sum) {
			return "", false, fmt.Errorf("line %d: %q is not a sha256 digest", line, truncate(fields[0], 80))
		}
		if len(fields) == 1 {
			if single {
				return sum, true, nil
			}
			continue
		}
		file := strings.TrimPrefix(strings.Join(fields[1:], " "), "*")
		file = strings.TrimPrefix(file, "./")
		if file == name {
			return sum, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, err
	}
	return "", false, nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// redactURL prints a URL without credentials or query parameters, which
// may carry signatures or tokens.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

// readSmallAsset reads a signature or checksum file of a release, refusing
// one larger than limit.
func readSmallAsset(ctx context.Context, storeFor func(*url.URL) (artifactStore, error), a asset, limit int64) ([]byte, error) {
	u, err := url.Parse(a.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: bad URL", a.Name)
	}
	store, err := storeFor(u)
	if err != nil {
		return nil, err
	}
	body, _, err := store.open(ctx, u, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", a.Name, err)
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", a.Name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", errVerify, a.Name, limit)
	}
	return data, nil
}
