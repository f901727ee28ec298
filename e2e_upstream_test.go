package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The features people switching from upstream Dewy rely on, through the
// binary: --slot, --calver and the smtp:// notifier.

func TestE2ESlot(t *testing.T) {
	reg, root := t.TempDir(), t.TempDir()
	for _, tag := range []string{"v1.0.0+blue", "v1.1.0+green", "v1.2.0"} {
		publishDir(t, reg, []suiteRelease{{Tag: tag, Files: siteRelease(t, tag)}})
	}
	args := []string{"assets", "--registry", "file://" + reg, "--root", root, "--once", "--slot", "blue"}
	r := runDewy(t, nil, args...)
	if r.status != 0 || readCurrent(t, root, "index.html") != "site v1.0.0+blue" {
		t.Fatalf("--slot blue: status %d, output:\n%s", r.status, r.out)
	}

	// A newer release of the other slot, and one without a slot, change nothing.
	publishDir(t, reg, []suiteRelease{{Tag: "v2.0.0+green", Files: siteRelease(t, "v2.0.0+green")}})
	if r = runDewy(t, nil, args...); r.status != 0 || strings.Contains(r.out, "deploying") {
		t.Fatalf("--slot blue deployed another slot's release (status %d):\n%s", r.status, r.out)
	}
	publishDir(t, reg, []suiteRelease{{Tag: "v1.3.0+blue", Files: siteRelease(t, "v1.3.0+blue")}})
	if r = runDewy(t, nil, args...); r.status != 0 || readCurrent(t, root, "index.html") != "site v1.3.0+blue" {
		t.Fatalf("--slot blue missed v1.3.0+blue: status %d, output:\n%s", r.status, r.out)
	}

	events, err := readAudit(filepath.Join(root, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var deployed []string
	for _, e := range events {
		if e.Slot != "blue" {
			t.Errorf("audit record %s %s names slot %q, want blue", e.Kind, e.Version, e.Slot)
		}
		if e.Kind == eventDeployed {
			deployed = append(deployed, e.Version)
		}
	}
	if want := []string{"v1.0.0+blue", "v1.3.0+blue"}; !slices.Equal(deployed, want) {
		t.Errorf("audit log: deployed %v, want %v", deployed, want)
	}
}

func TestE2ECalVer(t *testing.T) {
	reg, root := t.TempDir(), t.TempDir()
	publish := func(tags ...string) {
		for _, tag := range tags {
			publishDir(t, reg, []suiteRelease{{Tag: tag, Files: siteRelease(t, tag)}})
		}
	}
	// v9.9.9 would win as a semantic version; under --calver it does not fit.
	publish("2024.01.15.0", "2024.02.01.0", "v9.9.9", "2024.03.01.0-rc.1")
	args := []string{"assets", "--registry", "file://" + reg, "--root", root, "--once",
		"--calver", "YYYY.0M.0D.MICRO", "--keep", "1", "-l", "debug"}
	r := runDewy(t, nil, args...)
	if r.status != 0 || readCurrent(t, root, "index.html") != "site 2024.02.01.0" {
		t.Fatalf("--calver: status %d, output:\n%s", r.status, r.out)
	}
	// One debug line per look at the registry (--once looks again while a
	// fresh release settles), never a warning.
	lines := strings.Count(r.out, "tag=v9.9.9")
	debug := strings.Count(r.out, `level=DEBUG msg="ignoring tag that does not fit --calver YYYY.0M.0D.MICRO" tag=v9.9.9`)
	if lines == 0 || debug != lines {
		t.Errorf("want only debug lines for v9.9.9 naming the format, got %d of %d in:\n%s", debug, lines, r.out)
	}

	// Calendar order, not string order or semver: MICRO 10 after 9.
	publish("2024.02.01.9")
	if r = runDewy(t, nil, args...); readCurrent(t, root, "index.html") != "site 2024.02.01.9" {
		t.Fatalf("status %d, output:\n%s", r.status, r.out)
	}
	publish("2024.02.01.10")
	if r = runDewy(t, nil, args...); readCurrent(t, root, "index.html") != "site 2024.02.01.10" {
		t.Fatalf("status %d, output:\n%s", r.status, r.out)
	}
	// --keep 1 keeps current and previous; the oldest calendar release goes.
	dirs, _ := os.ReadDir(filepath.Join(root, "releases"))
	var names []string
	for _, d := range dirs {
		names = append(names, tagOfDir(d.Name()))
	}
	if want := []string{"2024.02.01.10", "2024.02.01.9"}; !slices.Equal(names, want) {
		t.Errorf("releases on disk = %v, want %v", names, want)
	}

	// Pre-releases need pre-release=true, as for semantic versions.
	args[2] += "?pre-release=true"
	if r = runDewy(t, nil, args...); readCurrent(t, root, "index.html") != "site 2024.03.01.0-rc.1" {
		t.Fatalf("pre-release=true: status %d, output:\n%s", r.status, r.out)
	}

	if r = runDewy(t, nil, "assets", "--registry", "file://"+reg, "--calver", "YYYY.0M.QQ"); r.status != 2 ||
		!strings.Contains(r.out, `--calver "YYYY.0M.QQ"`) || strings.Count(strings.TrimSpace(r.out), "\n") != 0 {
		t.Errorf("bad --calver: status %d, output %q; want status 2 and one line naming it", r.status, r.out)
	}
}

// One deploy through the binary reaches a real SMTP server as a mail that
// names the slot.
func TestE2EMailNotifier(t *testing.T) {
	addr := backendAddr(t, "smtp", "DEWY_TEST_SMTP_STARTTLS_ADDR")
	reg, root := t.TempDir(), t.TempDir()
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0+green", Files: siteRelease(t, "v1.0.0+green")}})
	marker := "e2e-mail-" + time.Now().Format("150405.000000000")
	ca, err := filepath.Abs(testMailCA)
	if err != nil {
		t.Fatal(err)
	}
	r := runDewy(t, []string{"MAIL_USERNAME=" + testMailUser, "MAIL_PASSWORD=" + testMailPassword},
		"assets", "--registry", "file://"+reg, "--root", root, "--once", "--slot", "green", "--host-id", marker,
		"--notifier", "smtp://"+addr+"/ops@example.com?from=dewy@example.com&ca="+ca)
	if r.status != 0 {
		t.Fatalf("status %d, output:\n%s", r.status, r.out)
	}
	if strings.Contains(r.out, testMailPassword) {
		t.Errorf("the password is in dewy's output")
	}
	var kinds []string
	for _, m := range mailsFor(t, marker) {
		kinds = append(kinds, m.header.Get("X-Dewy-Event"))
		if m.header.Get("X-Dewy-Event") == eventDeployed && !strings.Contains(m.body, "slot:     green\r\n") {
			t.Errorf("deployed mail does not name the slot:\n%s", m.body)
		}
	}
	slices.Sort(kinds)
	if want := []string{eventDeployed, eventStarted}; !slices.Equal(kinds, want) {
		t.Errorf("mails received: %v, want %v", kinds, want)
	}
}
