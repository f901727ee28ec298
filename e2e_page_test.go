package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The status page in a real browser: headless chromium loads it from a
// running dewy, the test reads what it shows, presses Pause and sees the
// page and dewy's status change. A screenshot stays in the test's
// artifact directory.
func TestE2EStatusPageChromium(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed: the status page test needs the chromium browser backend (scripts/test installs it)")
	}
	reg, root := t.TempDir(), t.TempDir()
	publishDir(t, reg, []suiteRelease{{Tag: "v1.0.0", Files: siteRelease(t, "v1.0.0")}})
	admin := freeAddr(t)
	d := startDewy(t, nil, "assets", "--registry", "file://"+reg, "--root", root, "--admin", admin, "-i", "1h")
	waitFor(t, d.out, "deployed v1.0.0")
	publishDir(t, reg, []suiteRelease{{Tag: "v1.1.0", Files: siteRelease(t, "v1.1.0")}})
	ctl(t, "pause", "--admin", admin, "--reason", "before the page")
	ctl(t, "resume", "--admin", admin)
	waitFor(t, d.out, "deployed v1.1.0")
	ctl(t, "rollback", "--admin", admin)
	d.cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, d.out, "not deploying v1.1.0")

	cdp := startChromium(t, browser)
	page := cdp.open(t, "http://"+admin+"/")
	text := func() string { return page.eval(t, `document.body.innerText`) }
	waitText(t, text, "v1.0.0")
	got := text()
	for _, want := range []string{"release\tv1.0.0", "deploys\trunning", "v1.1.0 — held back", "rollback", "resumed", "paused"} {
		if !strings.Contains(got, want) {
			t.Errorf("page lacks %q:\n%s", want, got)
		}
	}
	if marked := page.eval(t, `String(document.querySelectorAll('#timeline tr.rb').length)`); marked != "1" {
		t.Errorf("%s rollbacks marked in the timeline, want 1", marked)
	}

	page.eval(t, `document.querySelector('input[name=reason]').value = 'seen in the browser'; document.getElementById('pause').click(); 'ok'`)
	waitText(t, text, "seen in the browser")
	if got := text(); !strings.Contains(got, "deploys\tpaused by 127.0.0.1") || !strings.Contains(got, "paused: polling goes on") {
		t.Errorf("after pressing Pause the page shows:\n%s", got)
	}
	if s := adminStatus(t, admin); s.Paused == nil || s.Paused.Reason != "seen in the browser" {
		t.Errorf("after pressing Pause dewy's status has paused = %+v", s.Paused)
	}

	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	png, err := base64.StdEncoding.DecodeString(page.call(t, "Page.captureScreenshot", map[string]any{"format": "png"})["data"].(string))
	if err != nil || len(png) < 1000 {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the status page: %s", shot)
}

func waitText(t *testing.T, text func() string, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(text(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("page never showed %q:\n%s", want, text())
		}
		time.Sleep(50 * time.Millisecond) // a page load has no signal the test can wait on here
	}
}

// chromium speaks the DevTools protocol over --remote-debugging-pipe:
// JSON messages ended by NUL, written to its fd 3 and read from its fd 4.
type chromium struct {
	mu      sync.Mutex
	w       *os.File
	nextID  int
	waiting map[int]chan map[string]any
}

func startChromium(t *testing.T, bin string) *chromium {
	t.Helper()
	toR, toW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "--window-size=1100,900", "about:blank")
	cmd.ExtraFiles = []*os.File{toR, fromW} // fd 3, fd 4
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toR.Close()
	fromW.Close()
	t.Cleanup(func() {
		toW.Close()
		cmd.Process.Kill()
		cmd.Wait()
		fromR.Close()
	})
	c := &chromium{w: toW, waiting: map[int]chan map[string]any{}}
	go func() {
		r := bufio.NewReader(fromR)
		for {
			msg, err := r.ReadBytes(0)
			if err != nil {
				return
			}
			var m struct {
				ID     int            `json:"id"`
				Result map[string]any `json:"result"`
				Error  map[string]any `json:"error"`
			}
			if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
				continue // events
			}
			c.mu.Lock()
			ch := c.waiting[m.ID]
			delete(c.waiting, m.ID)
			c.mu.Unlock()
			if m.Error != nil {
				m.Result = map[string]any{"error": fmt.Sprint(m.Error)}
			}
			if ch != nil {
				ch <- m.Result
			}
		}
	}()
	return c
}

type cdpPage struct {
	c       *chromium
	session string
}

// send runs one DevTools command and returns its result.
func (c *chromium) send(t *testing.T, session, method string, params map[string]any) map[string]any {
	t.Helper()
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	ch := make(chan map[string]any, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	if _, err := c.w.Write(append(data, 0)); err != nil {
		t.Fatalf("devtools %s: %v", method, err)
	}
	select {
	case res := <-ch:
		return res
	case <-time.After(60 * time.Second):
		t.Fatalf("devtools %s: no answer", method)
	}
	return nil
}

func (c *chromium) open(t *testing.T, url string) *cdpPage {
	t.Helper()
	// A browser-level error here means chromium itself is broken: fail loudly.
	target := c.send(t, "", "Target.createTarget", map[string]any{"url": url})["targetId"]
	session := c.send(t, "", "Target.attachToTarget", map[string]any{"targetId": target, "flatten": true})["sessionId"].(string)
	return &cdpPage{c: c, session: session}
}

func (p *cdpPage) call(t *testing.T, method string, params map[string]any) map[string]any {
	t.Helper()
	res := p.c.send(t, p.session, method, params)
	if e, ok := res["error"]; ok {
		t.Fatalf("devtools %s: %v", method, e)
	}
	return res
}

// eval runs expr in the page and returns its value as a string ("" when
// the page is between documents).
func (p *cdpPage) eval(t *testing.T, expr string) string {
	t.Helper()
	// Not call: between two documents the page has no context to run in.
	res := p.c.send(t, p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if r, ok := res["result"].(map[string]any); ok {
		if s, ok := r["value"].(string); ok {
			return s
		}
	}
	return ""
}
