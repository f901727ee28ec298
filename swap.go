package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Layout under --root:
//
//	current -> releases/<dir>   the live release (a relative symlink)
//	releases/<dir>/             one unpacked release per directory
//	.dewy/                      dewy's own state and temporary files
const (
	releasesDir = "releases"
	currentLink = "current"
	dewyDir     = ".dewy"
	tmpMarker   = ".tmp-"
)

// installRelease renames a fully written, synced release directory into
// releases/. The name is the tag, unless a directory of that name is live
// (a release republished under the same tag), in which case the digest
// keeps the two apart.
func installRelease(root, tmpDir, tag, sum string) (string, error) {
	rel := filepath.Join(root, releasesDir)
	name := tag
	if live, _ := currentDir(root); live == name {
		name = tag + "+" + sum[:12]
	}
	final := filepath.Join(rel, name)
	if _, err := os.Lstat(final); err == nil {
		// An earlier, unused copy: move it aside first so the final
		// path never holds a mixture of two releases.
		trash, err := os.MkdirTemp(rel, name+tmpMarker+"old-")
		if err != nil {
			return "", fmt.Errorf("install %s: %w", name, err)
		}
		if err := os.Rename(final, filepath.Join(trash, "x")); err != nil {
			return "", fmt.Errorf("install %s: %w", name, err)
		}
		defer os.RemoveAll(trash)
	}
	if err := syncTree(tmpDir); err != nil {
		return "", fmt.Errorf("install %s: %w", name, err)
	}
	if err := os.Rename(tmpDir, final); err != nil {
		return "", fmt.Errorf("install %s: %w", name, err)
	}
	if err := syncDir(rel); err != nil {
		return "", fmt.Errorf("install %s: %w", name, err)
	}
	return name, nil
}

// pointCurrent makes root/current point at releases/<dir> in one rename, so
// at no instant is current missing or half-made. dir == "" removes it.
func pointCurrent(root, dir string) error {
	link := filepath.Join(root, currentLink)
	if dir == "" {
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", link, err)
		}
		return syncDir(root)
	}
	tmp := filepath.Join(root, "."+currentLink+tmpMarker+randomSuffix())
	if err := os.Symlink(filepath.Join(releasesDir, dir), tmp); err != nil {
		return fmt.Errorf("point current at %s: %w", dir, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("point current at %s: %w", dir, err)
	}
	if err := syncDir(root); err != nil {
		return fmt.Errorf("point current at %s: %w", dir, err)
	}
	return nil
}

// currentDir returns the release directory current points at, "" if none.
func currentDir(root string) (string, error) {
	t, err := os.Readlink(filepath.Join(root, currentLink))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", filepath.Join(root, currentLink), err)
	}
	return filepath.Base(t), nil
}

// pruneReleases keeps the newest keep release directories and never the
// ones named in protect (current and previous). Unknown entries stay.
func pruneReleases(root string, keep int, sel selectOptions, protect ...string) ([]string, error) {
	dir := filepath.Join(root, releasesDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("prune %s: %w", dir, err)
	}
	type rel struct {
		name string
		v    tagVersion
	}
	var rels []rel
	for _, e := range ents {
		if !e.IsDir() || strings.Contains(e.Name(), tmpMarker) {
			continue
		}
		// Ordered as the registry's tags are; directories of another
		// scheme (from before --calver was set) are left alone.
		if v, ok := sel.parseTag(tagOfDir(e.Name())); ok {
			rels = append(rels, rel{e.Name(), v})
		}
	}
	slices.SortFunc(rels, func(a, b rel) int {
		if c := b.v.compare(a.v); c != 0 {
			return c
		}
		return strings.Compare(b.name, a.name)
	})
	var removed []string
	for i, r := range rels {
		if i < keep || slices.Contains(protect, r.name) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, r.name)); err != nil {
			return removed, fmt.Errorf("prune %s: %w", r.name, err)
		}
		removed = append(removed, r.name)
	}
	return removed, nil
}

// cleanLeftovers removes temporary files a killed dewy may have left.
func cleanLeftovers(root string) error {
	for _, pattern := range []string{
		filepath.Join(root, releasesDir, "*"+tmpMarker+"*"),
		filepath.Join(root, "."+currentLink+tmpMarker+"*"),
		filepath.Join(root, dewyDir, "tmp", "*"),
	} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return fmt.Errorf("remove leftover %s: %w", m, err)
			}
		}
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// syncTree fsyncs every directory of a freshly unpacked release so that
// after a crash the rename never reveals entries that were not written.
// Files were synced as they were written.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return syncDir(p)
		}
		return nil
	})
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it into place: readers see the old content or the new, never half.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+tmpMarker+"*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
