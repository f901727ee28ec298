package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The corpus under testdata/archives is written by
// testdata/archives/gen.go; rerun it after changing a case there.
//go:generate go run ./testdata/archives/gen.go

const extractCorpus = "testdata/archives"

// extractHostileCases are archives that must be refused. entry names the
// culprit the error must quote; it is empty when the archive as a whole is
// broken and only its own name can be given.
var extractHostileCases = []struct {
	file  string
	lim   extractLimits
	entry string
	want  error
}{
	{file: "traversal.tar.gz", entry: "../../etc/passwd", want: errExtractEscape},
	{file: "traversal.tar", entry: "a/../../outside/evil", want: errExtractEscape},
	{file: "absolute.tar.gz", entry: "/etc/passwd", want: errExtractAbsolute},
	{file: "pax-traversal.tar.gz", entry: "../" + strings.Repeat("deep/", 30) + "evil", want: errExtractEscape},
	{file: "symlink-absolute.tar.gz", entry: "etc", want: errExtractAbsolute},
	{file: "symlink-escape.tar.gz", entry: "out", want: errExtractEscape},
	{file: "symlink-escape-deep.tar.gz", entry: "a/b/up", want: errExtractEscape},
	{file: "symlink-chain.tar.gz", entry: "b", want: errExtractEscape},
	{file: "symlink-dotdot-chain.tar.gz", entry: "a", want: errExtractDotDot},
	{file: "symlink-then-file.tar.gz", entry: "l/evil", want: errExtractParentSymlink},
	{file: "symlink-over-dir.tar.gz", entry: "d", want: errExtractDuplicate},
	{file: "hardlink-escape.tar.gz", entry: "pw", want: errExtractEscape},
	{file: "hardlink-absolute.tar.gz", entry: "pw", want: errExtractAbsolute},
	{file: "hardlink-to-symlink.tar.gz", entry: "h", want: errExtractHardLink},
	{file: "hardlink-forward.tar.gz", entry: "h", want: errExtractHardLink},
	{file: "hardlink-to-dir.tar.gz", entry: "h", want: errExtractHardLink},
	{file: "chardev.tar.gz", entry: "dev/null", want: errExtractType},
	{file: "blockdev.tar.gz", entry: "dev/sda", want: errExtractType},
	{file: "fifo.tar.gz", entry: "pipe", want: errExtractType},
	{file: "duplicate.tar.gz", entry: "conf", want: errExtractDuplicate},
	{file: "duplicate-cleaned.tar.gz", entry: "./a//b", want: errExtractDuplicate},
	{file: "long-name.tar.gz", entry: strings.Repeat("a/", 3000) + "f", want: errExtractLong},
	{file: "symlink-long.tar.gz", entry: "l", want: errExtractLong},
	{file: "deep-implied.tar.gz", lim: extractLimits{MaxEntries: 3}, entry: "a/b/c/d/e/f", want: errExtractTooMany},
	{file: "file-as-parent.tar.gz", entry: "a/b", want: errExtractParentNotDir},
	{file: "tar-bomb.tar.gz", lim: extractLimits{MaxBytes: 64 << 10}, entry: "bomb/3", want: errExtractTooLarge},
	{file: "lying-size.tar.gz", entry: "liar", want: io.ErrUnexpectedEOF},
	{file: "too-many.tar.gz", lim: extractLimits{MaxEntries: 3}, entry: "e4", want: errExtractTooMany},
	{file: "truncated.tar.gz", want: io.ErrUnexpectedEOF},
	{file: "corrupt.tar.gz"},
	{file: "not-gzip.tar.gz", want: gzip.ErrHeader},
	{file: "zip-dotdot.zip", entry: "../../evil.txt", want: errExtractEscape},
	{file: "zip-absolute.zip", entry: "/tmp/evil.txt", want: errExtractAbsolute},
	{file: "zip-backslash.zip", entry: `..\..\evil.txt`, want: errExtractBackslash},
	{file: "zip-symlink-escape.zip", entry: "link", want: errExtractEscape},
	{file: "zip-symlink-then-file.zip", entry: "l/evil", want: errExtractParentSymlink},
	{file: "zip-fifo.zip", entry: "pipe", want: errExtractType},
	{file: "zip-socket.zip", entry: "sock", want: errExtractType},
	{file: "zip-chardev.zip", entry: "tty", want: errExtractType},
	{file: "zip-duplicate.zip", entry: "conf", want: errExtractDuplicate},
	{file: "zip-bomb.zip", lim: extractLimits{MaxBytes: 64 << 10}, entry: "bomb", want: errExtractTooLarge},
	{file: "zip-lying-size.zip", entry: "liar", want: zip.ErrFormat},
	{file: "zip-truncated.zip", want: zip.ErrFormat},
	{file: "zip-corrupt.zip", entry: "stored", want: zip.ErrChecksum},
}

func TestExtractHostile(t *testing.T) {
	for _, tc := range extractHostileCases {
		t.Run(tc.file, func(t *testing.T) {
			dst, check := extractSandbox(t)
			err := extractArchive(filepath.Join(extractCorpus, tc.file), archiveKind(tc.file), dst, tc.lim)
			check()
			if err == nil {
				t.Fatalf("extractArchive(%s) = nil, want an error", tc.file)
			}
			msg := err.Error()
			want := "extract " + tc.file + ": "
			if tc.entry != "" {
				want += "entry " + extractQuote(tc.entry) + ": "
			}
			if !strings.HasPrefix(msg, want) {
				t.Errorf("error = %q, want prefix %q", msg, want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error = %q, want one line", msg)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error = %q, want it to wrap %q", msg, tc.want)
			}
		})
	}
}

// extractWant describes one path expected in an extracted tree.
type extractWant struct {
	mode fs.FileMode // type and permission bits, exactly
	data string      // file content, or symlink target
}

func TestExtractGood(t *testing.T) {
	tree := map[string]extractWant{
		"app":                  {mode: fs.ModeDir | 0o755},
		"app/bin":              {mode: fs.ModeDir | 0o755},
		"app/bin/server":       {mode: 0o755, data: "#!/bin/sh\necho server\n"},
		"app/bin/current":      {mode: fs.ModeSymlink, data: "server"},
		"app/share":            {mode: fs.ModeDir | 0o755},
		"app/share/doc":        {mode: fs.ModeDir | 0o755},
		"app/share/doc/README": {mode: 0o644, data: "nested, parents implied\n"},
		"app/share/doc/server": {mode: fs.ModeSymlink, data: "../../bin/server"},
		"app/empty":            {mode: fs.ModeDir | 0o755},
	}
	tarTree := map[string]extractWant{
		"app/bin/server-link": {mode: 0o755, data: "#!/bin/sh\necho server\n"},
		"app/private":         {mode: fs.ModeDir | 0o700}, // 0500 in the archive
		"app/odd":             {mode: fs.ModeDir | 0o755},
		"app/odd/name":        {mode: 0o644, data: "cleaned\n"},
	}
	for k, v := range tree {
		tarTree[k] = v
	}
	for _, tc := range []struct {
		file string
		want map[string]extractWant
	}{
		{"good.tar.gz", tarTree},
		{"good.tar", tarTree},
		{"good.zip", tree},
		{"setuid.tar.gz", map[string]extractWant{
			"bin":    {mode: fs.ModeDir | 0o755},
			"bin/su": {mode: 0o755, data: "x"},
			"tmp":    {mode: fs.ModeDir | 0o777},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dst, check := extractSandbox(t)
			if err := extractArchive(filepath.Join(extractCorpus, tc.file), archiveKind(tc.file), dst, defaultExtractLimits); err != nil {
				t.Fatalf("extractArchive(%s) = %v, want nil", tc.file, err)
			}
			check()
			got := extractTree(t, dst)
			for _, p := range slices.Sorted(extractKeys(got, tc.want)) {
				g, ok := got[p]
				w, wok := tc.want[p]
				switch {
				case !ok:
					t.Errorf("%s missing, want %v %q", p, w.mode, w.data)
				case !wok:
					t.Errorf("%s = %v %q, want no such path", p, g.mode, g.data)
				case g != w:
					t.Errorf("%s = %v %q, want %v %q", p, g.mode, g.data, w.mode, w.data)
				}
			}
		})
	}
}

// TestExtractThroughSymlink reads a file through a kept in-tree symlink,
// proving the link works and not just that it exists.
func TestExtractThroughSymlink(t *testing.T) {
	dst, _ := extractSandbox(t)
	if err := extractArchive(filepath.Join(extractCorpus, "good.tar.gz"), "tar.gz", dst, extractLimits{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "app/share/doc/server"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "#!/bin/sh\necho server\n"; string(got) != want {
		t.Errorf("content via symlink = %q, want %q", got, want)
	}
}

// TestExtractCorpusCovered keeps the corpus and the tables in step: every
// archive in testdata is exercised, and there are enough hostile ones.
func TestExtractCorpusCovered(t *testing.T) {
	used := map[string]bool{"good.tar.gz": true, "good.tar": true, "good.zip": true, "setuid.tar.gz": true}
	for _, tc := range extractHostileCases {
		used[tc.file] = true
	}
	ents, err := os.ReadDir(extractCorpus)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if archiveKind(e.Name()) == "" {
			continue
		}
		if !used[e.Name()] {
			t.Errorf("%s is in the corpus but in no test table", e.Name())
		}
		delete(used, e.Name())
	}
	for name := range used {
		t.Errorf("%s is in a test table but missing from the corpus (run gen.go)", name)
	}
	if got, want := len(extractHostileCases), 20; got < want {
		t.Errorf("hostile cases = %d, want at least %d", got, want)
	}
}

func TestArchiveKind(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"app_linux_amd64.tar.gz", "tar.gz"},
		{"APP.TGZ", "tar.gz"},
		{"app.tar", "tar"},
		{"app.zip", "zip"},
		{"app", ""},
		{"app.gz", ""},
		{"app.tar.gz.sig", ""},
		{"tar.gz", ""},
	} {
		if got := archiveKind(tc.name); got != tc.want {
			t.Errorf("archiveKind(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestExtractUnknownKind(t *testing.T) {
	dst, _ := extractSandbox(t)
	err := extractArchive(filepath.Join(extractCorpus, "good.zip"), "rar", dst, extractLimits{})
	if want := `extract good.zip: unknown archive kind "rar"`; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestExtractCleanName(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{name: "a/b", want: "a/b"},
		{name: "./a//b/", want: "a/b"},
		{name: "a/../b", want: "b"},
		{name: "./", want: "."},
		{name: "C:/x", want: "C:/x"},
		{name: "..", err: errExtractEscape},
		{name: "a/../../b", err: errExtractEscape},
		{name: "/a", err: errExtractAbsolute},
		{name: `a\b`, err: errExtractBackslash},
		{name: `C:\x`, err: errExtractBackslash},
		{name: "", err: errExtractInvalid},
		{name: "a\x00b", err: errExtractInvalid},
	} {
		got, err := extractCleanName(tc.name)
		if got != tc.want || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("extractCleanName(%q) = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestExtractSymlinkTarget(t *testing.T) {
	for _, tc := range []struct {
		link, target string
		err          error
	}{
		{link: "a", target: "b"},
		{link: "a", target: "./b/c"},
		{link: "d/a", target: "../b"},
		{link: "d/e/a", target: "../../b"},
		{link: "d/e/a", target: "./.././../b"},
		{link: "a", target: "."},
		{link: "a", target: "../b", err: errExtractEscape},
		{link: "d/a", target: "../../b", err: errExtractEscape},
		{link: "a", target: "d/l/../..", err: errExtractDotDot},
		{link: "d/a", target: "../x/../y", err: errExtractDotDot},
		{link: "a", target: "/etc", err: errExtractAbsolute},
		{link: "a", target: "", err: errExtractInvalid},
	} {
		err := extractCheckSymlink(tc.link, tc.target)
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("extractCheckSymlink(%q, %q) = %v, want %v", tc.link, tc.target, err, tc.err)
		}
	}
}

// BenchmarkExtractTarGz unpacks a 64 MiB tar.gz of incompressible files,
// the worst case for throughput per compressed byte.
func BenchmarkExtractTarGz(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "bench.tar.gz")
	const files, size = 64, 1 << 20
	extractWriteBenchArchive(b, src, files, size)
	b.SetBytes(files * size)
	i := 0
	for b.Loop() {
		dst := filepath.Join(dir, fmt.Sprint("dst", i))
		i++
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := extractArchive(src, "tar.gz", dst, defaultExtractLimits); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dst); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func extractWriteBenchArchive(b *testing.B, src string, files, size int) {
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, size)
	for i := range files {
		rng.Read(buf)
		h := &tar.Header{Name: fmt.Sprintf("data/%02d.bin", i), Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
		if _, err := tw.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// extractSandbox makes an empty dst four levels down in a fresh sandbox,
// with an "outside" directory and a sentinel file beside it, so that
// "../x" up to "../../../../x" and symlinks to "../outside" all land
// somewhere the snapshot sees. check fails the test if anything outside
// dst changed, or if a symlink inside dst leads out of it.
func extractSandbox(t testing.TB) (dst string, check func()) {
	t.Helper()
	sandbox := t.TempDir()
	base := filepath.Join(sandbox, "o1", "o2", "o3")
	dst = filepath.Join(base, "dst")
	for _, d := range []string{dst, filepath.Join(base, "outside")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(base, "outside", "sentinel"), filepath.Join(sandbox, "sentinel")} {
		if err := os.WriteFile(f, []byte("untouched"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := extractSnapshot(t, sandbox, dst)
	return dst, func() {
		t.Helper()
		after := extractSnapshot(t, sandbox, dst)
		for _, p := range slices.Sorted(extractKeys(before, after)) {
			if b, a := before[p], after[p]; a != b {
				t.Errorf("outside dst: %s = %q, was %q", p, a, b)
			}
		}
		extractCheckLinks(t, dst)
	}
}

// extractSnapshot describes every path under sandbox except dst's contents.
func extractSnapshot(t testing.TB, sandbox, dst string) map[string]string {
	t.Helper()
	m := make(map[string]string)
	err := filepath.WalkDir(sandbox, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case p == dst:
			// Its mtime moves with every entry; only its kind matters.
			m[p] = desc
			return filepath.SkipDir
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		m[p] = desc + " " + fi.ModTime().String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// extractCheckLinks fails if any symlink under dst resolves, following
// links the way the kernel would, to a place outside dst. Missing
// components are taken lexically: the application may create them later.
func extractCheckLinks(t testing.TB, dst string) {
	t.Helper()
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		rel, _ := filepath.Rel(dst, p)
		if where, ok := extractResolve(dst, filepath.ToSlash(rel)); !ok {
			target, _ := os.Readlink(p)
			t.Errorf("symlink %s -> %q leads outside dst (to %s)", rel, target, where)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// extractResolve follows rel within root and reports whether it stays
// inside; a symlink loop counts as inside, since nothing can be reached.
func extractResolve(root, rel string) (string, bool) {
	queue := strings.Split(rel, "/")
	var cur []string
	for hops := 0; len(queue) > 0; {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return path.Join(append([]string{".."}, queue...)...), false
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := append(slices.Clone(cur), c)
		fi, err := os.Lstat(filepath.Join(root, filepath.Join(next...)))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 255 {
			return path.Join(cur...), true
		}
		target, err := os.Readlink(filepath.Join(root, filepath.Join(next...)))
		if err != nil || strings.HasPrefix(target, "/") {
			return target, false
		}
		queue = append(strings.Split(target, "/"), queue...)
	}
	return path.Join(cur...), true
}

// extractTree lists everything under dst.
func extractTree(t testing.TB, dst string) map[string]extractWant {
	t.Helper()
	m := make(map[string]extractWant)
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dst {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		w := extractWant{mode: fi.Mode()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			w.mode = fs.ModeSymlink // link permissions mean nothing on Linux
			w.data, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			w.data = string(b)
		}
		m[filepath.ToSlash(rel)] = w
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// extractKeys yields the union of both maps' keys.
func extractKeys[V any](a, b map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if _, ok := a[k]; ok {
				continue
			}
			if !yield(k) {
				return
			}
		}
	}
}
