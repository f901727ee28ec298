package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// diskFullRoot returns a --root on a 2 MiB tmpfs, or "" when this process
// may not mount one (not root, or no mount permission in the container).
func diskFullRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("DEWY_TEST_DISKFULL_FALLBACK") != "" {
		return ""
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Logf("mount tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
		return ""
	}
	// Registered after TempDir's own cleanup, so it runs first.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func diskFree(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// TestDiskFull fills the file system under --root: once while unpacking
// (an artifact of a few KiB that unpacks to 4 MiB) and once while
// downloading (3 MiB of noise). Each deploy fails cleanly with the
// system's error, frees what it wrote, leaves v1.0.0 serving, and a
// release that fits deploys afterwards.
func TestDiskFull(t *testing.T) {
	root := diskFullRoot(t)
	if root == "" {
		testDiskFullFileSizeLimit(t)
		return
	}
	dir := t.TempDir()
	reg := settledFileRegistry(t, dir)
	publishDir(t, dir, []suiteRelease{{Tag: "v1.0.0", Files: siteRelease(t, "v1.0.0")}})
	d := newTestDeployer(t, reg, root)
	if _, err := d.check(t.Context()); err != nil {
		t.Fatalf("deploy v1.0.0 onto the tmpfs: %v", err)
	}
	base := diskFree(t, root)

	zeros := strings.Repeat("\x00", 4<<20)
	noise := make([]byte, 3<<20)
	rand.Read(noise)
	for _, tc := range []struct {
		tag   string
		files map[string][]byte
		stage string
	}{
		{"v2.0.0", diskFullRelease(t, "v2.0.0", map[string]string{"index.html": "site v2.0.0", "big.bin": zeros}), "unpack"},
		{"v2.1.0", map[string][]byte{"tool_2.1.0_linux_amd64": noise, "tool_2.1.0_linux_amd64.sha256": []byte(sha256Hex(noise))}, "download"},
	} {
		publishDir(t, dir, []suiteRelease{{Tag: tc.tag, Files: tc.files}})
		_, err := d.check(t.Context())
		if err == nil || !strings.Contains(err.Error(), "no space left on device") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s (%s fills the disk): check = %v; want one line saying no space left", tc.tag, tc.stage, err)
		}
		if !strings.Contains(err.Error(), tc.tag) {
			t.Errorf("%s: error %q does not name the release", tc.tag, err)
		}
		assertServing(t, root, "v1.0.0")
		assertNoLeftovers(t, root)
		if _, err := os.Stat(filepath.Join(root, releasesDir, tc.tag)); err == nil {
			t.Fatalf("%s: releases/%s exists after the disk filled", tc.tag, tc.tag)
		}
		// The failed deploy's bytes are gone (state.json may have grown by
		// a few hundred bytes recording the failure: allow one page).
		if free := diskFree(t, root); free < base-4096 {
			t.Fatalf("%s: %d bytes free after the failure, %d before: the deploy left data behind", tc.tag, free, base)
		}
	}

	// Room enough for a normal release: the failures did not wedge anything.
	publishDir(t, dir, []suiteRelease{{Tag: "v3.0.0", Files: siteRelease(t, "v3.0.0")}})
	if _, err := d.check(t.Context()); err != nil {
		t.Fatalf("v3.0.0 after the disk-full failures: %v", err)
	}
	assertServing(t, root, "v3.0.0")
	t.Logf("disk full: 2 fills on a 2 MiB tmpfs, then a deploy that fits")
}

func diskFullRelease(t *testing.T, tag string, files map[string]string) map[string][]byte {
	art := e2eTarGz(t, files)
	name := fmt.Sprintf("site_%s_linux_amd64.tar.gz", strings.TrimPrefix(tag, "v"))
	return map[string][]byte{name: art, "checksums.txt": []byte(sha256Hex(art) + "  " + name + "\n")}
}

// testDiskFullFileSizeLimit is the fallback without a tmpfs: the real
// binary runs under a 1 MiB file size limit (RLIMIT_FSIZE; the Go runtime
// ignores SIGXFSZ, so a write past it fails with EFBIG instead of killing
// the process), which makes the extractor's writes fail the way a full
// disk does.
func testDiskFullFileSizeLimit(t *testing.T) {
	t.Log("no tmpfs: injecting write errors with a file size limit instead")
	reg, root := t.TempDir(), t.TempDir()
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: siteRelease(t, "v1.0.0")}})
	args := []string{"assets", "--registry", "file://" + reg, "--root", root, "--once"}
	if r := runDewy(t, nil, args...); r.status != 0 {
		t.Fatalf("v1.0.0: status %d:\n%s", r.status, r.out)
	}
	publishDir(t, reg, []suiteRelease{{Tag: "v2.0.0", Files: diskFullRelease(t, "v2.0.0", map[string]string{"index.html": "x", "big.bin": strings.Repeat("\x00", 4<<20)})}})
	// ulimit -f counts 1024-byte blocks in bash and 512-byte ones in dash;
	// either way the 4 MiB file does not fit.
	cmd := exec.Command("sh", append([]string{"-c", `ulimit -f 1024 && exec "$0" "$@"`, dewyBinary(t)}, args...)...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "file too large") {
		t.Fatalf("v2.0.0 under a file size limit: %v, want a failure saying file too large:\n%s", err, out)
	}
	assertServing(t, root, "v1.0.0")
	assertNoLeftovers(t, root)
	t.Logf("disk full: 1 write failure injected with RLIMIT_FSIZE")
}
