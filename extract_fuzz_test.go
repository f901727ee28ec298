package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// extractFuzzKinds maps FuzzExtract's selector byte to an archive kind; the
// committed seeds in testdata/fuzz/FuzzExtract use the same numbering.
var extractFuzzKinds = [...]string{"tar.gz", "tar", "zip"}

// FuzzExtract feeds arbitrary bytes to extractArchive. Whatever the input,
// it must return (not panic), give a one-line error, write nothing outside
// dst, and leave no symlink in dst that leads out of it.
func FuzzExtract(f *testing.F) {
	ents, err := os.ReadDir(extractCorpus)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		kind := archiveKind(e.Name())
		if kind == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(extractCorpus, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		switch kind {
		case "tar.gz":
			f.Add(data, byte(0))
			// The plain tar inside reaches the tar parser without first
			// having to get past gzip's checksum.
			if zr, err := gzip.NewReader(bytes.NewReader(data)); err == nil {
				if raw, err := io.ReadAll(zr); err == nil {
					f.Add(raw, byte(1))
				}
			}
		case "tar":
			f.Add(data, byte(1))
		case "zip":
			f.Add(data, byte(2))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, sel byte) {
		kind := extractFuzzKinds[int(sel)%len(extractFuzzKinds)]
		src := filepath.Join(t.TempDir(), "input")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dst, check := extractSandbox(t)
		err := extractArchive(src, kind, dst, extractLimits{MaxBytes: 1 << 20, MaxEntries: 256})
		check()
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error = %q, want one line", err)
		}
	})
}
