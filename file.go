package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fileRegistry reads releases from a local directory laid out as
// <dir>/<tag>/<asset files>: a USB stick, an NFS mount or an rsync target.
type fileRegistry struct {
	dir string
	// settle is how long a release's files must have been left alone
	// before it is offered: a release still being copied in by cp or
	// rsync would otherwise be deployed half-written, or before its
	// checksum file arrives. Publishing into a dot-directory and renaming
	// it into place avoids the wait.
	settle time.Duration
	now    func() time.Time
}

const fileSettle = 2 * time.Second

var (
	_ registry      = (*fileRegistry)(nil)
	_ artifactStore = (*fileRegistry)(nil)
)

// newFileRegistry accepts file:///abs/dir. Relative paths are refused
// because dewy may run from any working directory.
func newFileRegistry(u *url.URL) (*fileRegistry, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("file URL %q: host %q not supported, want file:///absolute/path", u.Redacted(), u.Host)
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return nil, fmt.Errorf("file URL %q: want an absolute path such as file:///srv/releases", u.Redacted())
	}
	if len(u.Query()) > 0 {
		for k := range u.Query() {
			return nil, fmt.Errorf("file URL %q: unknown option %q", u.Redacted(), k)
		}
	}
	return &fileRegistry{dir: filepath.Clean(u.Path), settle: fileSettle, now: time.Now}, nil
}

func (r *fileRegistry) releases(ctx context.Context) ([]release, error) {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fileErr("list releases in "+r.dir, err)
	}
	var out []release
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue // dot-directories are releases being published
		}
		tagDir := filepath.Join(r.dir, e.Name())
		files, err := os.ReadDir(tagDir)
		if err != nil {
			return nil, fileErr("list release "+tagDir, err)
		}
		rel := release{Tag: e.Name(), ID: e.Name()}
		settling := false
		for _, f := range files {
			if !f.Type().IsRegular() {
				// A release being copied in by hand may still hold
				// directories or links; only plain files are artifacts.
				continue
			}
			info, err := f.Info()
			if err != nil {
				continue
			}
			if r.now().Sub(info.ModTime()) < r.settle {
				settling = true
			}
			p := filepath.Join(tagDir, f.Name())
			rel.Assets = append(rel.Assets, asset{Name: f.Name(), URL: (&url.URL{Scheme: "file", Path: p}).String(), Size: info.Size()})
		}
		if settling {
			continue // offered on a later poll, once the copy is done
		}
		out = append(out, rel)
	}
	return out, nil
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
