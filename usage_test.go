package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The settings table in config.go is the one source of truth for options;
// `dewy help` (usageText) and dewy.toml.example are written by hand, so
// these tests hold them to it in both directions.

var usageFlag = regexp.MustCompile(`(?:^|[\s\[(])(--?[a-z][a-z0-9-]*)`)

// flagsIn lists the flags text names, as written ("--slot", "-s").
func flagsIn(text string) []string {
	var flags []string
	for _, m := range usageFlag.FindAllStringSubmatch(text, -1) {
		flags = append(flags, m[1])
	}
	return flags
}

// usageSection is the part of usageText from the line starting with from
// up to the line starting with to.
func usageSection(t *testing.T, from, to string) string {
	t.Helper()
	i := strings.Index(usageText, "\n"+from)
	j := strings.Index(usageText, "\n"+to)
	if i < 0 || j < i {
		t.Fatalf("usageText has no section %q followed by %q", from, to)
	}
	return usageText[i+1 : j]
}

// sectionOf names the usage section or example heading a setting belongs in.
func sectionOf(o setting) string {
	switch {
	case slices.Equal(o.commands, serverOnly):
		return "server"
	case slices.Equal(o.commands, assetsOnly):
		return "assets"
	}
	return "both"
}

func TestUsageDocumentsEverySetting(t *testing.T) {
	sections := map[string]string{
		"both":   usageSection(t, "Flags for both commands", "Flags for assets:"),
		"assets": usageSection(t, "Flags for assets:", "Flags for server:"),
		"server": usageSection(t, "Flags for server:", "Environment:"),
	}
	known := map[string]string{"--config": "both", "-c": "both"}
	for _, o := range settings() {
		if o.key == "args" {
			continue // TOML only: on the command line the application follows --
		}
		want := sectionOf(o)
		known["--"+o.flagName()] = want
		doc := "--" + o.flagName()
		if o.short != "" {
			known["-"+o.short] = want
			doc = "-" + o.short + ", " + doc
		}
		if !slices.Contains(flagsIn(sections[want]), "--"+o.flagName()) || o.short != "" && !strings.Contains(sections[want], "  "+doc) {
			t.Errorf("usageText: %q is not documented under the flags for %s", doc, want)
		}
	}
	for name, text := range sections {
		for _, f := range flagsIn(text) {
			if got, ok := known[f]; !ok {
				t.Errorf("usageText documents %s under the flags for %s, but no such setting exists", f, name)
			} else if got != name {
				t.Errorf("usageText documents %s under the flags for %s, but it belongs to %s", f, name, got)
			}
		}
	}
}

// Every flag on a `dewy COMMAND ...` line of the usage is one that command
// accepts.
func TestUsageCommandLinesName(t *testing.T) {
	lines := strings.Split(usageSection(t, "Usage:", "Flags for both commands"), "\n")
	for _, line := range lines[1:] {
		words := strings.Fields(line)
		if len(words) < 2 || words[0] != "dewy" {
			continue
		}
		cmd := words[1]
		if strings.HasPrefix(cmd, "-") {
			cmd = "server" // dewy -c FILE: the command comes from the file
		}
		synopsis, _, _ := strings.Cut(line, "   ") // the description may name flags of other commands
		for _, f := range flagsIn(synopsis) {
			args := []string{cmd}
			if cmd == "pin" {
				args = append(args, "v1.0.0")
			}
			_, err := parseArgs(append(args, f), noEnv)
			if err != nil && strings.Contains(err.Error(), "not defined") {
				t.Errorf("usage line %q names %s, which `dewy %s` does not accept: %v", strings.TrimSpace(line), f, cmd, err)
			}
		}
	}
}

var exampleKey = regexp.MustCompile(`^(?:# )?([a-z][a-z0-9_]*) =`)

func TestConfigExampleDocumentsEverySetting(t *testing.T) {
	data, err := os.ReadFile("dewy.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]setting{}
	for _, o := range settings() {
		known[o.key] = o
	}
	seen := map[string]bool{}
	block := "" // the comment above the key, up to the last blank line
	for line := range strings.SplitSeq(string(data), "\n") {
		m := exampleKey.FindStringSubmatch(line)
		switch {
		case strings.TrimSpace(line) == "":
			block = ""
			continue
		case m == nil:
			block += line + "\n"
			continue
		}
		key := m[1]
		seen[key] = true
		if key == "command" {
			continue // chooses server or assets; on the command line it is the first word
		}
		o, ok := known[key]
		if !ok {
			t.Errorf("dewy.toml.example documents %q, but no such setting exists", key)
			continue
		}
		server, assets := strings.Contains(block, "server only"), strings.Contains(block, "assets only")
		if got, want := map[[2]bool]string{{true, false}: "server", {false, true}: "assets", {false, false}: "both"}[[2]bool{server, assets}], sectionOf(o); got != want {
			t.Errorf("dewy.toml.example documents %q for %s, but it belongs to %s", key, got, want)
		}
	}
	for key := range known {
		if !seen[key] {
			t.Errorf("dewy.toml.example does not document %q", key)
		}
	}
}
