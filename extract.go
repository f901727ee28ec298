package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// extractLimits caps what one archive may unpack to. A zero field means the
// default from defaultExtractLimits.
type extractLimits struct {
	MaxBytes   int64 // total bytes written, counted as written (not from headers); default 4 GiB
	MaxEntries int   // default 100000
}

var defaultExtractLimits = extractLimits{MaxBytes: 4 << 30, MaxEntries: 100_000}

// Reasons an entry is refused. Errors from extractArchive wrap one of these
// after the archive and entry names, so callers and tests can use errors.Is.
var (
	errExtractEscape        = errors.New("path escapes release directory")
	errExtractAbsolute      = errors.New("path is absolute")
	errExtractBackslash     = errors.New(`path contains "\" (Windows-style names are not accepted)`)
	errExtractInvalid       = errors.New("invalid path")
	errExtractLong          = fmt.Errorf("path longer than %d bytes", extractMaxPath)
	errExtractDuplicate     = errors.New("path already used by an earlier entry")
	errExtractParentSymlink = errors.New("is a symlink")
	errExtractParentNotDir  = errors.New("not a directory")
	errExtractDotDot        = errors.New(`".." may only appear at the start`)
	errExtractHardLink      = errors.New("not an earlier regular file")
	errExtractType          = errors.New("unsupported entry type")
	errExtractTooMany       = errors.New("too many entries")
	errExtractTooLarge      = errors.New("archive unpacks to more than the byte limit")
	errExtractTrailing      = errors.New("too much data after end of tar archive")
)

const (
	// Entry names and symlink targets are path names; PATH_MAX on Linux is
	// 4096. The cap also keeps per-entry work linear: a 1 MiB PAX name of
	// "a/a/a/..." would otherwise mean half a million parent checks.
	extractMaxPath = 4096
	// tar writers pad the archive to a 10 KiB record and some add more
	// zeros; reading past the tar end lets gzip verify its checksum, but a
	// hostile stream could append gigabytes, so the drain is capped.
	tarMaxTrailing = 1 << 20
	extractBufSize = 256 << 10
)

// archiveKind reports how an asset is packed, from its name: "tar.gz" (.tar.gz,
// .tgz), "tar" (.tar), "zip" (.zip), or "" (not an archive: a bare file).
func archiveKind(name string) string {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
		return "tar.gz"
	case strings.HasSuffix(n, ".tar"):
		return "tar"
	case strings.HasSuffix(n, ".zip"):
		return "zip"
	}
	return ""
}

// extractArchive unpacks the archive file src, packed as kind, into the
// existing empty directory dst. On error dst may hold partial output; the
// caller removes dst. Nothing is ever written outside dst.
//
// Every write goes through an os.Root on dst, and entries are also checked
// against what the archive itself has created so far, so a bad entry is
// reported by name instead of surfacing as a bare syscall error.
func extractArchive(src, kind, dst string, lim extractLimits) error {
	if err := extractRun(src, kind, dst, lim); err != nil {
		return fmt.Errorf("extract %s: %w", filepath.Base(src), err)
	}
	return nil
}

func extractRun(src, kind, dst string, lim extractLimits) error {
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = defaultExtractLimits.MaxBytes
	}
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = defaultExtractLimits.MaxEntries
	}
	switch kind {
	case "tar.gz", "tar", "zip":
	default:
		return fmt.Errorf("unknown archive kind %q", kind)
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	x := &extractor{
		root: root,
		lim:  lim,
		seen: make(map[string]extractNode),
		buf:  make([]byte, extractBufSize),
	}
	switch kind {
	case "tar.gz":
		gz, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		if err := x.tarEntries(gz); err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, io.LimitReader(gz, tarMaxTrailing+1))
		if err != nil {
			return fmt.Errorf("after end of tar archive: %w", err)
		}
		if n > tarMaxTrailing {
			return errExtractTrailing
		}
		return nil
	case "tar":
		return x.tarEntries(f)
	default:
		st, err := f.Stat()
		if err != nil {
			return err
		}
		return x.zipEntries(f, st.Size())
	}
}

// extractNode is what an earlier entry put at a cleaned path.
type extractNode uint8

const (
	extractImplicitDir extractNode = iota + 1 // parent of an entry, never listed itself
	extractDir
	extractFile // regular file or hard link to one
	extractSymlink
)

type extractType uint8

const (
	extractTypeFile extractType = iota + 1
	extractTypeDir
	extractTypeSymlink
	extractTypeHardLink
)

// extractEntry is one archive member, in a form shared by tar and zip.
type extractEntry struct {
	name     string // as spelled in the archive
	typ      extractType
	perm     fs.FileMode // permission bits as stored, before stripping
	linkname string      // symlink target, or hard link target (an archive path)
	body     io.Reader   // regular file content
}

type extractor struct {
	root    *os.Root
	lim     extractLimits
	entries int
	written int64
	seen    map[string]extractNode
	buf     []byte
}

func (x *extractor) tarEntries(r io.Reader) error {
	tr := tar.NewReader(r)
	prev := ""
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if prev == "" {
				return err
			}
			return fmt.Errorf("after entry %s: %w", extractQuote(prev), err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			// Global PAX records only carry defaults such as mtime or
			// charset; nothing about them shapes what is written.
			continue
		}
		prev = hdr.Name
		e := extractEntry{
			name:     hdr.Name,
			perm:     fs.FileMode(hdr.Mode),
			linkname: hdr.Linkname,
			body:     tr,
		}
		// archive/tar already reports the old TypeRegA as TypeReg or TypeDir.
		switch hdr.Typeflag {
		case tar.TypeReg:
			e.typ = extractTypeFile
		case tar.TypeDir:
			e.typ = extractTypeDir
		case tar.TypeSymlink:
			e.typ = extractTypeSymlink
		case tar.TypeLink:
			e.typ = extractTypeHardLink
		}
		if err := x.add(e, tarTypeName(hdr.Typeflag)); err != nil {
			return fmt.Errorf("entry %s: %w", extractQuote(hdr.Name), err)
		}
	}
}

func tarTypeName(flag byte) string {
	switch flag {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	case tar.TypeGNUSparse:
		return "sparse file"
	case tar.TypeCont:
		return "contiguous file"
	}
	return fmt.Sprintf("tar type %q", flag)
}

func (x *extractor) zipEntries(f io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(f, size)
	// With GODEBUG=zipinsecurepath=0 the reader flags unsafe names but is
	// still usable; those names get the same checks as every other.
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return err
	}
	for _, zf := range zr.File {
		if err := x.zipEntry(zf); err != nil {
			return fmt.Errorf("entry %s: %w", extractQuote(zf.Name), err)
		}
	}
	return nil
}

func (x *extractor) zipEntry(zf *zip.File) error {
	m := zf.Mode()
	e := extractEntry{name: zf.Name, perm: m.Perm()}
	kind := ""
	switch {
	case m&fs.ModeSymlink != 0:
		e.typ = extractTypeSymlink
	case m.IsDir():
		e.typ = extractTypeDir
	case m.IsRegular():
		e.typ = extractTypeFile
	case m&fs.ModeCharDevice != 0:
		kind = "character device"
	case m&fs.ModeDevice != 0:
		kind = "block device"
	case m&fs.ModeNamedPipe != 0:
		kind = "fifo"
	case m&fs.ModeSocket != 0:
		kind = "socket"
	default:
		kind = fmt.Sprintf("zip mode %v", m.Type())
	}
	if e.typ == extractTypeFile || e.typ == extractTypeSymlink {
		// Name checks come first, so that a bad name is what gets
		// reported rather than, say, an unsupported compression method,
		// and no symlink target is inflated for an entry already refused.
		if err := x.zipPrecheck(e); err != nil {
			return err
		}
		rc, err := zf.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		e.body = rc
		if e.typ == extractTypeSymlink {
			// zip stores a symlink's target as the entry's content.
			t, err := io.ReadAll(io.LimitReader(rc, extractMaxPath+1))
			if err != nil {
				return err
			}
			if len(t) > extractMaxPath {
				return fmt.Errorf("symlink target: %w", errExtractLong)
			}
			e.linkname = string(t)
		}
	}
	return x.add(e, kind)
}

// zipPrecheck runs add's name and place checks early; add repeats them,
// which is cheap.
func (x *extractor) zipPrecheck(e extractEntry) error {
	if x.entries+1 > x.lim.MaxEntries {
		return fmt.Errorf("%w: more than %d", errExtractTooMany, x.lim.MaxEntries)
	}
	p, err := extractCleanName(e.name)
	if err != nil {
		return err
	}
	return x.checkPlace(p, e.typ)
}

// add validates one entry against the archive so far and writes it. kind
// describes an entry whose type is unsupported (e.typ is zero).
func (x *extractor) add(e extractEntry, kind string) error {
	x.entries++
	if x.entries > x.lim.MaxEntries {
		return fmt.Errorf("%w: more than %d", errExtractTooMany, x.lim.MaxEntries)
	}
	p, err := extractCleanName(e.name)
	if err != nil {
		return err
	}
	if e.typ == 0 {
		return fmt.Errorf("%w: %s", errExtractType, kind)
	}
	if p == "." {
		// "./" is how many tar tools list the top directory itself; dst
		// already exists and its mode is the caller's business.
		if e.typ == extractTypeDir {
			return nil
		}
		return errExtractInvalid
	}
	if err := x.checkPlace(p, e.typ); err != nil {
		return err
	}
	if err := x.mkParents(p); err != nil {
		return err
	}
	switch e.typ {
	case extractTypeDir:
		return x.writeDir(p, e.perm)
	case extractTypeFile:
		return x.writeFile(p, e.perm, e.body)
	case extractTypeSymlink:
		return x.writeSymlink(p, e.linkname)
	default:
		return x.writeHardLink(p, e.linkname)
	}
}

// extractCleanName turns an archive name into a clean slash-separated path
// relative to dst, or refuses it.
//
// A backslash is refused rather than read as a separator: on Unix it is an
// ordinary file-name byte, so normalising would change what a well-formed
// archive means, and a zip written with Windows separators is a broken
// build, better reported than guessed at. A name such as "C:/x" is just a
// directory named "C:" here and needs no special case.
//
// ".." that stays inside ("a/../b") is cleaned away; since every later step
// uses the cleaned name, the filesystem never sees the "..".
func extractCleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", errExtractInvalid
	case strings.ContainsRune(name, 0):
		return "", errExtractInvalid
	case len(name) > extractMaxPath:
		return "", errExtractLong
	case strings.Contains(name, `\`):
		return "", errExtractBackslash
	case strings.HasPrefix(name, "/"):
		return "", errExtractAbsolute
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errExtractEscape
	}
	return p, nil
}

// checkPlace refuses an entry at p whose parents are not directories this
// archive made (or implied), or whose path an earlier entry already holds.
func (x *extractor) checkPlace(p string, typ extractType) error {
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		switch x.seen[dir] {
		case extractSymlink:
			return fmt.Errorf("parent %q: %w", dir, errExtractParentSymlink)
		case extractFile:
			return fmt.Errorf("parent %q: %w", dir, errExtractParentNotDir)
		}
	}
	if n, ok := x.seen[p]; ok && !(n == extractImplicitDir && typ == extractTypeDir) {
		return errExtractDuplicate
	}
	return nil
}

// mkParents creates the directories an entry implies but the archive may
// not list (zip files often omit them). They get 0755, independent of umask.
// Each counts against MaxEntries: otherwise 100000 entries with deep,
// distinct names could make hundreds of millions of directories.
func (x *extractor) mkParents(p string) error {
	var missing []string
	for dir := path.Dir(p); dir != "." && x.seen[dir] == 0; dir = path.Dir(dir) {
		missing = append(missing, dir)
	}
	x.entries += len(missing)
	if x.entries > x.lim.MaxEntries {
		return fmt.Errorf("%w: more than %d, counting implied directories", errExtractTooMany, x.lim.MaxEntries)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := x.root.Mkdir(d, 0o700); err != nil {
			return err
		}
		if err := x.root.Chmod(d, 0o755); err != nil {
			return err
		}
		x.seen[d] = extractImplicitDir
	}
	return nil
}

func (x *extractor) writeDir(p string, perm fs.FileMode) error {
	if x.seen[p] != extractImplicitDir {
		if err := x.root.Mkdir(p, 0o700); err != nil {
			return err
		}
	}
	// Owner rwx is forced so the rest of the archive can be written into
	// the directory; setuid, setgid and sticky bits are dropped.
	if err := x.root.Chmod(p, perm&0o777|0o700); err != nil {
		return err
	}
	x.seen[p] = extractDir
	return nil
}

func (x *extractor) writeFile(p string, perm fs.FileMode, body io.Reader) (err error) {
	// O_EXCL: the name is new by construction, so anything already there
	// (a symlink planted by a racing process) is an error, not a target.
	f, err := x.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	x.seen[p] = extractFile
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	// Budget the copy by bytes actually produced, one past the limit so an
	// overrun is visible; header sizes are not trusted. The anonymous
	// struct hides os.File's ReadFrom so the shared buffer is used.
	left := x.lim.MaxBytes - x.written
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, io.LimitReader(body, left+1), x.buf)
	x.written += n
	if err != nil {
		return err
	}
	if x.written > x.lim.MaxBytes {
		return fmt.Errorf("%w of %d", errExtractTooLarge, x.lim.MaxBytes)
	}
	// fchmod on the open descriptor, not a path, so no symlink swap can
	// redirect it. Only rwx bits survive: setuid, setgid and sticky go.
	if err := f.Chmod(perm & 0o777); err != nil {
		return err
	}
	return f.Sync()
}

// writeSymlink accepts a relative target of the form "../../a/b": any ".."
// must lead. A lexical check alone is not enough once links can be chained:
// with "d/l" -> "..", the target "d/l/../.." looks like "." but the kernel
// resolves it to dst's parent. With ".." only leading, the climb happens
// from the link's own directory, whose ancestors are real directories (no
// entry may sit beneath a symlink), so counting levels is exact; the rest
// only descends, and each symlink met on the way obeys the same rule.
func (x *extractor) writeSymlink(p, target string) error {
	if err := extractCheckSymlink(p, target); err != nil {
		return err
	}
	if err := x.root.Symlink(target, p); err != nil {
		return err
	}
	x.seen[p] = extractSymlink
	return nil
}

func extractCheckSymlink(p, target string) error {
	switch {
	case target == "" || strings.ContainsRune(target, 0):
		return fmt.Errorf("symlink target %s: %w", extractQuote(target), errExtractInvalid)
	case len(target) > extractMaxPath:
		return fmt.Errorf("symlink target: %w", errExtractLong)
	case strings.HasPrefix(target, "/"):
		return fmt.Errorf("symlink target %s: %w", extractQuote(target), errExtractAbsolute)
	}
	up, named := 0, false
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
		case "..":
			if named {
				return fmt.Errorf("symlink target %s: %w", extractQuote(target), errExtractDotDot)
			}
			up++
		default:
			named = true
		}
	}
	depth := 0
	if dir := path.Dir(p); dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	if up > depth {
		return fmt.Errorf("symlink target %s: %w", extractQuote(target), errExtractEscape)
	}
	return nil
}

// writeHardLink links p to an earlier regular file. Its target is an
// archive path, not relative to the link, and must not be a symlink: a hard
// link to a symlink would copy a link whose target was checked against a
// different directory.
func (x *extractor) writeHardLink(p, linkname string) error {
	t, err := extractCleanName(linkname)
	if err != nil {
		return fmt.Errorf("hard link target %s: %w", extractQuote(linkname), err)
	}
	if x.seen[t] != extractFile {
		return fmt.Errorf("hard link target %q: %w", linkname, errExtractHardLink)
	}
	if err := x.root.Link(t, p); err != nil {
		return err
	}
	x.seen[p] = extractFile
	return nil
}

// extractQuote quotes an entry name for an error message, shortened so a
// hostile multi-kilobyte name cannot flood the log.
func extractQuote(name string) string {
	const max = 200
	if len(name) <= max {
		return strconv.Quote(name)
	}
	return strconv.Quote(strings.ToValidUTF8(name[:max], "")) + "..."
}
