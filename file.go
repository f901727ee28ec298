package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// fileRegistry reads releases from a local directory laid out as
// <dir>/<tag>/<asset files>: a USB stick, an NFS mount or an rsync target.
type fileRegistry struct {
	dir string
	// settle is how long a release's directory must have been left alone
	// before it is offered: a release still being copied in by cp, rsync
	// or scp would otherwise be deployed half-written, or before its
	// checksum file arrives.
	settle time.Duration
	now    func() time.Time

	mu    sync.Mutex
	looks map[string]fileLook // by tag: the directory as last seen
}

// fileLook is what a release directory looked like at one look.
type fileLook struct {
	sum   [sha256.Size]byte // every entry's name, type, size, times and inode
	since time.Time         // when it was last seen to change
	at    time.Time         // when the look was taken
}

// fileSettle is the default settle window. cp and rsync write a file
// without pause, so two seconds of stillness means the copy is done; a
// link that stalls for longer wants a longer settle= on the URL.
const fileSettle = 2 * time.Second

var (
	_ registry      = (*fileRegistry)(nil)
	_ artifactStore = (*fileRegistry)(nil)
)

// buildFileRegistry, checkFileURL and newFileStore are file://'s rows in
// the scheme tables. Building a file registry touches nothing, so building
// one is the check.
func buildFileRegistry(_ context.Context, u *url.URL, _ selectOptions, _ func(string) string, _ *slog.Logger) (registry, error) {
	return asBackend[registry](newFileRegistry(u))
}

func checkFileURL(u *url.URL, _ func(string) string) error {
	_, err := newFileRegistry(u)
	return err
}

// newFileStore reads file:// artifacts at the path their URL names.
func newFileStore(context.Context, *url.URL, func(string) string, *slog.Logger) (artifactStore, error) {
	return &fileRegistry{}, nil
}

// newFileRegistry accepts file:///abs/dir, with settle=DURATION as its
// only option. Relative paths are refused because dewy may run from any
// working directory.
func newFileRegistry(u *url.URL) (*fileRegistry, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("file URL %q: host %q not supported, want file:///absolute/path", u.Redacted(), u.Host)
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return nil, fmt.Errorf("file URL %q: want an absolute path such as file:///srv/releases", u.Redacted())
	}
	r := &fileRegistry{dir: filepath.Clean(u.Path), settle: fileSettle, now: time.Now}
	for k, v := range u.Query() {
		if k != "settle" {
			return nil, fmt.Errorf("file URL %q: unknown option %q", u.Redacted(), k)
		}
		d, err := time.ParseDuration(v[0])
		if err != nil || d < 0 {
			return nil, fmt.Errorf("file URL %q: settle=%q: want a duration such as 2s or 1m", u.Redacted(), v[0])
		}
		r.settle = d
	}
	return r, nil
}

// releases reports every tag directory. One whose contents changed within
// the settle window comes back with SettlingUntil set. Change is judged by
// inode change times, which cp -p, cp -a, rsync -a and scp -p cannot set
// back as they do modification times, and by comparing each look with the
// one before, which also catches a file system whose change times lag.
func (r *fileRegistry) releases(ctx context.Context) ([]release, error) {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fileErr("list releases in "+r.dir, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	looks := map[string]fileLook{}
	var out []release
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue // dot-directories are releases being published
		}
		tagDir := filepath.Join(r.dir, e.Name())
		rel, scan, err := scanRelease(tagDir)
		if errors.Is(err, errNotFound) {
			continue // moved or removed since the listing
		}
		if err != nil {
			return nil, err
		}
		rel.Tag, rel.ID = e.Name(), e.Name()
		look := r.stillSince(r.looks[e.Name()], scan, now)
		looks[e.Name()] = look
		if until := look.since.Add(r.settle); until.After(now) {
			rel.SettlingUntil = until
		}
		out = append(out, rel)
	}
	r.looks = looks // forgets tags that are gone
	return out, nil
}

// stillSince works out since when a release directory has been still,
// given the previous look (zero on the first) and this one.
func (r *fileRegistry) stillSince(prev fileLook, scan releaseScan, now time.Time) fileLook {
	look := fileLook{sum: scan.sum, at: now, since: scan.changed}
	switch {
	case scan.vanished:
		look.since = now // a file came and went under our eyes
	case !prev.at.IsZero() && prev.sum == scan.sum:
		look.since = prev.since
	case !prev.at.IsZero() && !scan.changed.After(prev.at):
		// Changed since the last look, yet no change time says so:
		// count from now.
		look.since = now
	}
	// A change time ahead of this clock (an NFS server's) counts from now.
	if look.since.After(now) {
		look.since = now
	}
	return look
}

// releaseScan is one walk over a release directory.
type releaseScan struct {
	sum      [sha256.Size]byte
	changed  time.Time // newest inode change time of any entry, the directory's own included
	vanished bool      // an entry disappeared during the walk
}

// entryStat is what a release directory's fingerprint records of one entry.
type entryStat struct {
	mode         uint32
	size         int64
	ino          uint64
	mtime, ctime time.Time
}

// scanRelease lists a release's assets (its plain files; subdirectories
// and links ride along but are never artifacts) and fingerprints the whole
// tree, subdirectories included.
func scanRelease(tagDir string) (release, releaseScan, error) {
	var rel release
	var scan releaseScan
	h := sha256.New()
	err := filepath.WalkDir(tagDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == tagDir {
				return fileErr("list release "+tagDir, err)
			}
			if errors.Is(err, fs.ErrNotExist) {
				scan.vanished = true
			}
			return nil // an unreadable subdirectory still counts by its own times
		}
		st, err := lstatEntry(p)
		if errors.Is(err, fs.ErrNotExist) {
			scan.vanished = true
			return nil
		}
		if err != nil {
			return fileErr("look at "+p, err)
		}
		fmt.Fprintf(h, "%q %o %d %d %d %d\n", p, st.mode, st.size, st.ino, st.mtime.UnixNano(), st.ctime.UnixNano())
		if st.ctime.After(scan.changed) {
			scan.changed = st.ctime
		}
		if filepath.Dir(p) == tagDir && d.Type().IsRegular() {
			rel.Assets = append(rel.Assets, asset{Name: d.Name(), URL: (&url.URL{Scheme: "file", Path: p}).String(), Size: st.size})
		}
		return nil
	})
	h.Sum(scan.sum[:0])
	return rel, scan, err
}

func (r *fileRegistry) open(ctx context.Context, u *url.URL, offset int64) (io.ReadCloser, int64, error) {
	f, err := os.Open(u.Path)
	if err != nil {
		return nil, -1, fileErr("open "+u.Path, err)
	}
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, -1, fmt.Errorf("open %s: not a regular file", u.Path)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, -1, fmt.Errorf("open %s: %w", u.Path, err)
		}
	}
	return f, info.Size(), nil
}

func fileErr(what string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %w", what, errNotFound)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: %w", what, errAccessDenied)
	}
	return fmt.Errorf("%s: %w", what, err)
}
