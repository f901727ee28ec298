//go:build ignore

// gen writes the archive corpus used by extract_test.go and the fuzz seeds
// in testdata/fuzz/FuzzExtract. Run from the repository root:
//
//	go run ./testdata/archives/gen.go
//
// Output is deterministic (fixed times, no gzip name), so a rerun with the
// same Go release rewrites identical bytes.
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const dir = "testdata/archives"

var mtime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// ent is one tar member; data is written as given, whatever size says.
type ent struct {
	name, link string
	typ        byte
	mode       int64
	data       string
	size       int64 // header size when it should lie; 0 means len(data)
}

func file(name, data string) ent { return ent{name: name, typ: tar.TypeReg, mode: 0o644, data: data} }
func exe(name, data string) ent  { return ent{name: name, typ: tar.TypeReg, mode: 0o755, data: data} }
func dirent(name string) ent     { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, to string) ent {
	return ent{name: name, typ: tar.TypeSymlink, mode: 0o777, link: to}
}
func hardlink(name, to string) ent { return ent{name: name, typ: tar.TypeLink, mode: 0o644, link: to} }

func tarBytes(ents ...ent) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		size := int64(len(e.data))
		if e.size != 0 {
			size = e.size
		}
		if e.typ != tar.TypeReg {
			size = 0
		}
		h := &tar.Header{
			Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode,
			Size: size, ModTime: mtime, Format: tar.FormatPAX,
		}
		if e.typ == tar.TypeXGlobalHeader {
			h = &tar.Header{Typeflag: e.typ, Name: e.name, PAXRecords: map[string]string{"comment": e.data}, Format: tar.FormatPAX}
		}
		if err := tw.WriteHeader(h); err != nil {
			log.Fatalf("%s: %v", e.name, err)
		}
		if e.typ != tar.TypeReg {
			continue
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			log.Fatalf("%s: %v", e.name, err)
		}
		if e.size != 0 {
			// A lying header: stop here, leaving the stream short.
			return buf.Bytes()
		}
	}
	if err := tw.Close(); err != nil {
		log.Fatal(err)
	}
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	return buf.Bytes()
}

// zent is one zip member.
type zent struct {
	name   string
	mode   fs.FileMode
	data   string
	store  bool
	rawLen uint64 // when non-zero, the uncompressed size the header claims
}

func zipBytes(ents ...zent) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: mtime}
		if e.store {
			h.Method = zip.Store
		}
		h.SetMode(e.mode)
		if e.rawLen != 0 {
			writeRawZip(zw, h, e)
			continue
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			log.Fatalf("%s: %v", e.name, err)
		}
		w.Write([]byte(e.data))
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	return buf.Bytes()
}

// writeRawZip stores e.data deflated, with a true CRC but a header that
// understates the uncompressed size.
func writeRawZip(zw *zip.Writer, h *zip.FileHeader, e zent) {
	// Deflate through a throwaway writer to get the raw stream.
	var raw bytes.Buffer
	tmp := zip.NewWriter(&raw)
	w, _ := tmp.CreateHeader(&zip.FileHeader{Name: "x", Method: zip.Deflate})
	w.Write([]byte(e.data))
	tmp.Close()
	r, err := zip.NewReader(bytes.NewReader(raw.Bytes()), int64(raw.Len()))
	if err != nil {
		log.Fatal(err)
	}
	rr, err := r.File[0].OpenRaw()
	if err != nil {
		log.Fatal(err)
	}
	h.CRC32 = r.File[0].CRC32
	h.CompressedSize64 = r.File[0].CompressedSize64
	h.UncompressedSize64 = e.rawLen
	cw, err := zw.CreateRaw(h)
	if err != nil {
		log.Fatal(err)
	}
	var data bytes.Buffer
	data.ReadFrom(rr)
	cw.Write(data.Bytes())
}

func write(name string, b []byte) {
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		log.Fatal(err)
	}
}

// seed writes a fuzz seed in the go test fuzz v1 format: the archive bytes
// and the kind selector FuzzExtract takes (0 tar.gz, 1 tar, 2 zip).
func seed(name string, data []byte, kind uint8) {
	s := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nbyte(%s)\n", strconv.Quote(string(data)), strconv.QuoteRune(rune(kind)))
	if err := os.WriteFile(filepath.Join("testdata/fuzz/FuzzExtract", name), []byte(s), 0o644); err != nil {
		log.Fatal(err)
	}
}

func main() {
	if err := os.MkdirAll("testdata/fuzz/FuzzExtract", 0o755); err != nil {
		log.Fatal(err)
	}
	zeros := func(n int) string { return strings.Repeat("\x00", n) }

	// Good archives.
	goodTar := tarBytes(
		ent{name: "pax_global_header", typ: tar.TypeXGlobalHeader, data: "built for tests"},
		dirent("./"),
		dirent("app/"),
		dirent("app/bin/"),
		exe("app/bin/server", "#!/bin/sh\necho server\n"),
		hardlink("app/bin/server-link", "app/bin/server"),
		symlink("app/bin/current", "server"),
		file("app/share/doc/README", "nested, parents implied\n"),
		symlink("app/share/doc/server", "../../bin/server"),
		dirent("app/empty/"),
		ent{name: "app/private/", typ: tar.TypeDir, mode: 0o500},
		file("app/./odd//name", "cleaned\n"),
	)
	write("good.tar.gz", gz(goodTar))
	write("good.tar", goodTar)
	seed("good-targz", gz(goodTar), 0)
	seed("small-tar", tarBytes(exe("a", "x"), symlink("b", "a")), 1)
	goodZip := zipBytes(
		zent{name: "app/", mode: fs.ModeDir | 0o755},
		zent{name: "app/bin/server", mode: 0o755, data: "#!/bin/sh\necho server\n"},
		zent{name: "app/bin/current", mode: fs.ModeSymlink | 0o777, data: "server"},
		zent{name: "app/share/doc/README", mode: 0o644, data: "nested, parents implied\n"},
		zent{name: "app/share/doc/server", mode: fs.ModeSymlink | 0o777, data: "../../bin/server"},
		zent{name: "app/empty/", mode: fs.ModeDir | 0o755},
	)
	write("good.zip", goodZip)
	seed("good-zip", goodZip, 2)
	write("setuid.tar.gz", gz(tarBytes(
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o2755},
		ent{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, data: "x"},
		ent{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
	)))

	// Hostile tar.gz archives.
	write("traversal.tar.gz", gz(tarBytes(file("ok", "1"), file("../../etc/passwd", "root::0:0::/:/bin/sh\n"))))
	write("traversal.tar", tarBytes(file("a/../../outside/evil", "x")))
	write("absolute.tar.gz", gz(tarBytes(file("/etc/passwd", "x"))))
	write("pax-traversal.tar.gz", gz(tarBytes(file("../"+strings.Repeat("deep/", 30)+"evil", "x"))))
	write("symlink-absolute.tar.gz", gz(tarBytes(symlink("etc", "/etc"))))
	write("symlink-escape.tar.gz", gz(tarBytes(symlink("out", "../outside"))))
	write("symlink-escape-deep.tar.gz", gz(tarBytes(dirent("a/"), dirent("a/b/"), symlink("a/b/up", "../../../outside"))))
	write("symlink-chain.tar.gz", gz(tarBytes(symlink("a", "b"), symlink("b", "../.."))))
	tarChain := tarBytes(symlink("a", "d/l/../outside"), symlink("d/l", ".."))
	write("symlink-dotdot-chain.tar.gz", gz(tarChain))
	seed("symlink-dotdot-chain", gz(tarChain), 0)
	write("symlink-then-file.tar.gz", gz(tarBytes(dirent("real/"), symlink("l", "real"), file("l/evil", "x"))))
	write("symlink-over-dir.tar.gz", gz(tarBytes(file("d/f", "x"), symlink("d", "."))))
	write("hardlink-escape.tar.gz", gz(tarBytes(hardlink("pw", "../../etc/passwd"))))
	write("hardlink-absolute.tar.gz", gz(tarBytes(hardlink("pw", "/etc/passwd"))))
	write("hardlink-to-symlink.tar.gz", gz(tarBytes(symlink("s", "f"), file("f", "x"), hardlink("h", "s"))))
	write("hardlink-forward.tar.gz", gz(tarBytes(hardlink("h", "later"), file("later", "x"))))
	write("hardlink-to-dir.tar.gz", gz(tarBytes(dirent("d/"), hardlink("h", "d"))))
	write("chardev.tar.gz", gz(tarBytes(ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666})))
	write("blockdev.tar.gz", gz(tarBytes(ent{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660})))
	write("fifo.tar.gz", gz(tarBytes(ent{name: "pipe", typ: tar.TypeFifo, mode: 0o644})))
	write("duplicate.tar.gz", gz(tarBytes(file("conf", "first"), file("conf", "second"))))
	write("duplicate-cleaned.tar.gz", gz(tarBytes(file("a/b", "first"), file("./a//b", "second"))))
	write("long-name.tar.gz", gz(tarBytes(file(strings.Repeat("a/", 3000)+"f", "x"))))
	write("symlink-long.tar.gz", gz(tarBytes(symlink("l", strings.Repeat("./", 3000)+"f"))))
	write("deep-implied.tar.gz", gz(tarBytes(file("a/b/c/d/e/f", "x"))))
	write("file-as-parent.tar.gz", gz(tarBytes(file("a", "x"), file("a/b", "y"))))
	write("tar-bomb.tar.gz", gz(tarBytes(
		file("bomb/1", zeros(32<<10)), file("bomb/2", zeros(32<<10)), file("bomb/3", zeros(32<<10)),
	)))
	write("lying-size.tar.gz", gz(tarBytes(ent{name: "liar", typ: tar.TypeReg, mode: 0o644, data: "short", size: 1 << 20})))
	write("too-many.tar.gz", gz(tarBytes(file("e1", ""), file("e2", ""), file("e3", ""), file("e4", ""), file("e5", ""))))
	good := gz(goodTar)
	write("truncated.tar.gz", good[:len(good)/2])
	corrupt := append([]byte(nil), good...)
	for i := 40; i < 60; i++ {
		corrupt[i] ^= 0x55
	}
	write("corrupt.tar.gz", corrupt)
	write("not-gzip.tar.gz", []byte("this is not gzip data at all\n"))

	// Hostile zip archives.
	write("zip-dotdot.zip", zipBytes(zent{name: "../../evil.txt", mode: 0o644, data: "x"}))
	write("zip-absolute.zip", zipBytes(zent{name: "/tmp/evil.txt", mode: 0o644, data: "x"}))
	write("zip-backslash.zip", zipBytes(zent{name: `..\..\evil.txt`, mode: 0o644, data: "x"}))
	zipLink := zipBytes(zent{name: "link", mode: fs.ModeSymlink | 0o777, data: "../../outside"})
	write("zip-symlink-escape.zip", zipLink)
	seed("zip-symlink-escape", zipLink, 2)
	write("zip-symlink-then-file.zip", zipBytes(
		zent{name: "l", mode: fs.ModeSymlink | 0o777, data: "."},
		zent{name: "l/evil", mode: 0o644, data: "x"},
	))
	write("zip-fifo.zip", zipBytes(zent{name: "pipe", mode: fs.ModeNamedPipe | 0o644}))
	write("zip-socket.zip", zipBytes(zent{name: "sock", mode: fs.ModeSocket | 0o644}))
	write("zip-chardev.zip", zipBytes(zent{name: "tty", mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}))
	write("zip-duplicate.zip", zipBytes(zent{name: "conf", mode: 0o644, data: "1"}, zent{name: "conf", mode: 0o644, data: "2"}))
	write("zip-bomb.zip", zipBytes(zent{name: "bomb", mode: 0o644, data: zeros(1 << 20)}))
	write("zip-lying-size.zip", zipBytes(zent{name: "liar", mode: 0o644, data: zeros(100 << 10), rawLen: 10}))
	write("zip-truncated.zip", goodZip[:len(goodZip)-40])
	badCRC := zipBytes(zent{name: "stored", mode: 0o644, data: "hello, stored data", store: true})
	badCRC[bytes.Index(badCRC, []byte("hello"))] = 'j'
	write("zip-corrupt.zip", badCRC)
}
