package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crashVariant is one artifact the crash test publishes, and what a
// complete unpack of it holds.
type crashVariant struct {
	art   []byte
	files map[string]string
}

// crashVariants builds n artifacts of about size bytes each. The bulk is
// random, and stored rather than compressed, so the artifact stays large
// and unpacking takes a while.
func crashVariants(t *testing.T, n, size int) []crashVariant {
	t.Helper()
	var out []crashVariant
	for i := range n {
		files := map[string]string{"index.html": fmt.Sprintf("variant %d", i), "bin/run.sh": "#!/bin/sh\necho " + fmt.Sprint(i)}
		for j := range 4 {
			b := make([]byte, size/4)
			rand.Read(b)
			files[fmt.Sprintf("data/part%d.bin", j)] = string(b)
		}
		var buf bytes.Buffer
		gz, _ := gzip.NewWriterLevel(&buf, gzip.NoCompression)
		tw := tar.NewWriter(gz)
		for _, name := range []string{"index.html", "bin/run.sh", "data/part0.bin", "data/part1.bin", "data/part2.bin", "data/part3.bin"} {
			if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(files[name]))
		}
		tw.Close()
		gz.Close()
		out = append(out, crashVariant{art: buf.Bytes(), files: files})
	}
	return out
}

// publishAtomic publishes a release the way the file registry recommends:
// into a dot-directory, then renamed into place.
func publishAtomic(t *testing.T, reg, tag string, files map[string][]byte) {
	t.Helper()
	publishDir(t, reg, []suiteRelease{{Tag: ".publishing-" + tag, Files: files}})
	if err := os.Rename(filepath.Join(reg, ".publishing-"+tag), filepath.Join(reg, tag)); err != nil {
		t.Fatal(err)
	}
}

// crashEnv skips the race runtime's one-second pause at exit, which would
// otherwise be most of each run and where most kills would land.
var crashEnv = []string{"GORACE=atexit_sleep_ms=0"}

// crashTag is the tag of cycle i; cycle i publishes variant i % len(variants).
func crashTag(i int) string { return fmt.Sprintf("v1.0.%d", i) }

// checkCrashCurrent verifies that current points at a release of one of
// the allowed tags and that every file of it is there with its content.
// It returns the tag.
func checkCrashCurrent(t *testing.T, root string, variants []crashVariant, allowed ...int) string {
	t.Helper()
	dir, err := currentDir(root)
	if err != nil || dir == "" {
		t.Fatalf("current: %q, %v; want a release", dir, err)
	}
	tag := tagOfDir(dir)
	cycle := -1
	for _, i := range allowed {
		if crashTag(i) == tag {
			cycle = i
		}
	}
	if cycle < 0 {
		t.Fatalf("current -> %s; want one of cycles %v", dir, allowed)
	}
	want := variants[cycle%len(variants)].files
	for name, content := range want {
		b, err := os.ReadFile(filepath.Join(root, "current", name))
		if err != nil || string(b) != content {
			t.Fatalf("current (%s) %s: %d bytes, %v; want %d bytes of the release", dir, name, len(b), err, len(content))
		}
	}
	n := 0
	filepath.WalkDir(filepath.Join(root, releasesDir, dir), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	if n != len(want) {
		t.Fatalf("current (%s) holds %d files, want %d", dir, n, len(want))
	}
	return tag
}

// crashPhase says what a killed dewy left on disk, for the log.
func crashPhase(root, before string) string {
	if dir, _ := currentDir(root); tagOfDir(dir) != before {
		return "after swap"
	}
	if m, _ := filepath.Glob(filepath.Join(root, releasesDir, "*"+tmpMarker+"*")); len(m) > 0 {
		return "unpacking"
	}
	if m, _ := filepath.Glob(filepath.Join(root, dewyDir, "tmp", "download-*")); len(m) > 0 {
		return "downloading"
	}
	return "before download"
}

// TestCrashSafety publishes a new release per cycle, SIGKILLs `dewy assets
// --once` at a random moment of its deploy, checks that current still
// points at a complete release (the old one or the new one, never a
// mixture), then restarts dewy and checks that it finishes the deploy
// and leaves nothing behind.
func TestCrashSafety(t *testing.T) {
	cycles, size := 100, 3<<20
	if testing.Short() {
		cycles = 15
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("DEWY_CRASH_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("crash: seed %d (DEWY_CRASH_SEED=%d to repeat)", seed, seed)
	rng := mrand.New(mrand.NewPCG(uint64(seed), 0))

	variants := crashVariants(t, 3, size)
	reg, root := t.TempDir(), t.TempDir()
	bin := dewyBinary(t)
	args := []string{"assets", "--registry", "file://" + reg, "--root", root, "--once", "--keep", "2", "--require-checksum"}
	publish := func(i int) {
		v := variants[i%len(variants)]
		name := fmt.Sprintf("site_%s_linux_amd64.tar.gz", strings.TrimPrefix(crashTag(i), "v"))
		publishAtomic(t, reg, crashTag(i), map[string][]byte{name: v.art, "checksums.txt": []byte(sha256Hex(v.art) + "  " + name + "\n")})
	}
	finish := func(i int) time.Duration {
		start := time.Now()
		r := runDewy(t, crashEnv, args...)
		if r.status != 0 {
			t.Fatalf("cycle %d: restarted dewy: status %d:\n%s", i, r.status, r.out)
		}
		checkCrashCurrent(t, root, variants, i)
		assertNoLeftovers(t, root)
		return time.Since(start)
	}

	// Cycle 0 deploys uninterrupted and times a deploy, so kills can be
	// spread over the whole of one.
	publish(0)
	span := finish(0)
	phases := map[string]int{}
	deadline := time.Now().Add(100 * time.Second)
	done := 0
	for i := 1; i <= cycles && time.Now().Before(deadline); i++ {
		publish(i)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), crashEnv...)
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		delay := time.Duration(rng.Int64N(int64(span) * 6 / 5))
		select {
		case <-time.After(delay):
			cmd.Process.Kill()
			<-exited
			phases[crashPhase(root, crashTag(i-1))]++
		case err := <-exited:
			if err != nil {
				t.Fatalf("cycle %d: dewy failed before it was killed: %v\n%s", i, err, out.String())
			}
			phases["finished first"]++
		}
		// Right after the kill: the old release or the new, complete.
		checkCrashCurrent(t, root, variants, i-1, i)
		d := finish(i)
		span = (span*3 + d) / 4
		done++
	}
	if done < min(cycles, 10) {
		t.Fatalf("only %d of %d cycles ran in the time allowed", done, cycles)
	}
	t.Logf("crash: %d kill/restart cycles; killed while %v", done, phases)
}
