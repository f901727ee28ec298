package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(*config) string
	}{
		{"assets defaults", []string{"assets", "--registry", "file:///srv/r"}, func(c *config) string {
			if c.Command != "assets" || c.Interval != 30*time.Second || c.Keep != 5 || c.LogFormat != "text" || c.Registry.Path != "/srv/r" {
				return "defaults wrong"
			}
			return ""
		}},
		{"plain seconds interval", []string{"assets", "--registry", "file:///r", "-i", "45"}, func(c *config) string {
			if c.Interval != 45*time.Second {
				return "interval = " + c.Interval.String()
			}
			return ""
		}},
		{"go duration, double dash", []string{"assets", "--registry", "file:///r", "--interval=2m"}, func(c *config) string {
			if c.Interval != 2*time.Minute {
				return "interval = " + c.Interval.String()
			}
			return ""
		}},
		{"registry options", []string{"assets", "--registry", "ghr://o/r?pre-release=true&artifact=a.zip&track=1.4"}, func(c *config) string {
			if !c.Select.PreRelease || c.Select.Artifact != "a.zip" || c.Select.Track != "v1.4" || c.Registry.RawQuery != "" {
				return "options not taken out"
			}
			return ""
		}},
		{"server command after --", []string{"server", "--registry", "file:///r", "-p", "8000,8001", "--port", "unix:/tmp/s", "--", "/app/current/app", "-x"}, func(c *config) string {
			if strings.Join(c.Server.Command, " ") != "/app/current/app -x" || len(c.Server.Ports) != 3 {
				return "command or ports wrong"
			}
			return ""
		}},
		{"log settings", []string{"assets", "--registry", "file:///r", "-l", "debug", "-f", "json", "--keep", "0"}, func(c *config) string {
			if c.LogFormat != "json" || c.LogLevel.String() != "DEBUG" || c.Keep != 0 {
				return "log settings wrong"
			}
			return ""
		}},
		{"once", []string{"assets", "--registry", "file:///r", "--once"}, func(c *config) string {
			if !c.Once {
				return "once not set"
			}
			return ""
		}},
		{"proxy alone means http", []string{"server", "--registry", "file:///r", "-p", "8000", "--proxy", "--", "app"}, func(c *config) string {
			if c.Proxy != proxyHTTP {
				return "proxy = " + c.Proxy
			}
			return ""
		}},
		{"proxy tcp", []string{"server", "--registry", "file:///r", "-p", "8000", "--proxy=tcp", "--", "app"}, func(c *config) string {
			if c.Proxy != proxyTCP {
				return "proxy = " + c.Proxy
			}
			return ""
		}},
		{"proxy off", []string{"server", "--registry", "file:///r", "-p", "8000", "--proxy=off", "--", "app"}, func(c *config) string {
			if c.Proxy != "" {
				return "proxy = " + c.Proxy
			}
			return ""
		}},
		{"version", []string{"version"}, func(c *config) string {
			if c.Command != "version" {
				return "not version"
			}
			return ""
		}},
		{"upstream --version", []string{"--version"}, func(c *config) string {
			if c.Command != "version" {
				return "not version"
			}
			return ""
		}},
		{"slot and calver", []string{"assets", "--registry", "file:///r?track=2024", "-s", "blue", "--calver", "YYYY.0M.MICRO"}, func(c *config) string {
			if c.Select.Slot != "blue" || c.Select.CalVer == nil || c.Select.CalVer.String() != "YYYY.0M.MICRO" || c.Select.Track != "v2024" {
				return fmt.Sprintf("select = %+v", c.Select)
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseArgs(tc.args, noEnv)
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tc.args, err)
			}
			if msg := tc.check(c); msg != "" {
				t.Fatalf("parseArgs(%q): %s", tc.args, msg)
			}
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unknownKey := write("unknown.toml", "command = \"assets\"\nregistry = \"file:///r\"\nregistyr = \"x\"\n")
	syntax := write("syntax.toml", "command = \"assets\"\nregistry = \n")
	wrongType := write("type.toml", "command = \"assets\"\nregistry = \"file:///r\"\nkeep = [1]\n")
	badCommand := write("cmd.toml", "command = \"deploy\"\n")
	serverKeyInAssets := write("srv.toml", "command = \"assets\"\nregistry = \"file:///r\"\nport = [\"8000\"]\n")
	for _, tc := range []struct {
		args []string
		want string // the culprit the one-line message must name
	}{
		{[]string{"assets", "--bogus"}, "-bogus"},
		{[]string{"deploy"}, `"deploy"`},
		{[]string{"assets"}, "--registry is required"},
		{[]string{"assets", "--registry", "ftp://x/y"}, `unknown scheme "ftp"`},
		{[]string{"assets", "--registry", "::nope"}, `"::nope"`},
		{[]string{"assets", "--registry", "file:///r", "-i", "0"}, `-i "0": must be positive`},
		{[]string{"assets", "--registry", "file:///r", "--interval", "-5s"}, `--interval "-5s"`},
		{[]string{"assets", "--registry", "file:///r", "--interval", "soon"}, `"soon"`},
		{[]string{"assets", "--registry", "file:///r", "--keep", "-1"}, `--keep "-1": must not be negative`},
		{[]string{"assets", "--registry", "file:///r", "-l", "loud"}, `-l "loud"`},
		{[]string{"assets", "--registry", "file:///r", "--log-format", "xml"}, `--log-format "xml"`},
		{[]string{"assets", "--registry", "file:///r?track=latest"}, `track "latest"`},
		{[]string{"assets", "--registry", "file:///r?pre-release=maybe"}, `pre-release="maybe"`},
		{[]string{"server", "--registry", "file:///r"}, "needs the application's command"},
		{[]string{"server", "--registry", "file:///r", "-p", "70000", "--", "app"}, `70000`},
		{[]string{"server", "--registry", "file:///r", "-p", "0", "--", "app"}, `"0"`},
		{[]string{"server", "--registry", "file:///r", "--stop-signal", "SIGFOO", "--", "app"}, `--stop-signal "SIGFOO"`},
		{[]string{"assets", "--registry", "file:///r", "-p", "8000"}, "-p is not used by `dewy assets`"},
		{[]string{"server", "--registry", "file:///r", "-p", "8000", "--proxy=udp", "--", "app"}, `--proxy "udp"`},
		{[]string{"server", "--registry", "file:///r", "--proxy", "--", "app"}, "--proxy=http needs at least one --port"},
		{[]string{"server", "--registry", "file:///r", "--once", "--", "app"}, "--once is not used"},
		{[]string{"assets", "--registry", "file:///r", "--", "app"}, "runs no application"},
		{[]string{"-c", filepath.Join(dir, "missing.toml")}, "missing.toml"},
		{[]string{"-c", unknownKey}, `unknown key "registyr"`},
		{[]string{"-c", syntax}, "syntax.toml:2"},
		{[]string{"-c", wrongType}, "keep: takes one value"},
		{[]string{"-c", badCommand}, `command = deploy`},
		{[]string{"-c", serverKeyInAssets}, "port is not used by `dewy assets`"},
		{[]string{"assets", "--registry", "file:///r", "--notifier", "nope"}, `--notifier "nope"`},
		{[]string{"assets", "--registry", "file:///r", "--max-unpack-size", "lots"}, `--max-unpack-size "lots"`},
		{[]string{"assets", "--registry", "file:///r", "stray"}, `unexpected argument "stray"`},
		{[]string{"assets", "--registry", "file:///r", "--health-path", "/x"}, "not used by `dewy assets`"},
	} {
		_, err := parseArgs(tc.args, noEnv)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("parseArgs(%q) = %v, want a usage error", tc.args, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("parseArgs(%q) = %q, want one line naming %q", tc.args, msg, tc.want)
		}
	}
}

func TestConfigFileAndOverrides(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dewy.toml")
	body := `command = "server"
registry = "ghr://owner/repo?pre-release=true"
interval = 10
keep = 3
port = ["8000", "127.0.0.1:9000"]
args = ["/srv/app/current/app", "--serve"]
health_path = "/healthz"
`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DEWY_KEEP": "4"}
	c, err := parseArgs([]string{"-c", p, "-i", "1m", "-p", "9999"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("parseArgs: %v", err)
	}
	if c.Command != "server" || c.Interval != time.Minute || c.Keep != 4 || !c.Select.PreRelease {
		t.Fatalf("got command=%s interval=%s keep=%d pre=%v; want server 1m 4 true", c.Command, c.Interval, c.Keep, c.Select.PreRelease)
	}
	if strings.Join(c.Server.Ports, ",") != "9999" {
		t.Fatalf("ports = %v, want the flag's [9999] replacing the file's list", c.Server.Ports)
	}
	if strings.Join(c.Server.Command, " ") != "/srv/app/current/app --serve" || c.Server.HealthPath != "/healthz" {
		t.Fatalf("command = %q health = %q", c.Server.Command, c.Server.HealthPath)
	}
}

// The shipped example must parse as it is; TestConfigExampleDocumentsEverySetting
// checks that it documents every key.
func TestExampleConfigParses(t *testing.T) {
	if _, err := parseArgs([]string{"-c", "dewy.toml.example"}, noEnv); err != nil {
		t.Fatalf("dewy.toml.example: %v", err)
	}
}

func TestParseDurationAndSize(t *testing.T) {
	for in, want := range map[string]time.Duration{"30": 30 * time.Second, "1.5": 1500 * time.Millisecond, "2m": 2 * time.Minute} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "1e99", "NaN"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) succeeded, want error", in)
		}
	}
	for in, want := range map[string]int64{"4GiB": 4 << 30, "10MiB": 10 << 20, "123": 123, "1GB": 1e9} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "0", "99999999TiB", "GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded, want error", in)
		}
	}
}
