package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The settings table in config.go is the one source of truth for options;
// `dewy help` (usageText, but for its URL lists) and dewy.toml.example are
// written by hand, so these tests hold them to it in both directions.

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

// The scheme tables are the one source of truth for URL forms too: each
// README table of URLs lists exactly the documented rows of its plug point.
func TestReadmeListsEveryScheme(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	checkReadmeForms(t, "## Registries", readmeURLColumn(t, readme, "## Registries"), registrySchemes)
	checkReadmeForms(t, "## Cache and fleets", readmeURLColumn(t, readme, "## Cache and fleets"), cacheSchemes)
	notes := "## Notifications, audit log and hooks"
	checkReadmeForms(t, notes, readmeURLColumn(t, readme, notes), notifierSchemes)

	// What a gRPC server's artifact_url may be is one sentence.
	_, rest, ok := strings.Cut(readme, "`artifact_url` may be ")
	sentence, _, ok2 := strings.Cut(rest, ";")
	if !ok || !ok2 {
		t.Fatal("README: no sentence saying what `artifact_url` may be")
	}
	var forms []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(sentence, -1) {
		forms = append(forms, m[1])
	}
	checkReadmeForms(t, "the artifact_url sentence", forms, artifactSchemes)
}

// readmeURLColumn is the first column, without backquotes, of the first
// "| URL |" table under heading.
func readmeURLColumn(t *testing.T, readme, heading string) []string {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n"+heading+"\n")
	_, table, ok2 := strings.Cut(section, "\n| URL |")
	if !ok || !ok2 {
		t.Fatalf("README: no | URL | table under %q", heading)
	}
	var cells []string
	for i, line := range strings.Split(table, "\n") {
		if i < 2 {
			continue // the rest of the header line, and |---|
		}
		if !strings.HasPrefix(line, "| `") {
			break
		}
		cell, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "` |")
		cells = append(cells, cell)
	}
	return cells
}

func checkReadmeForms[R schemeRow](t *testing.T, where string, listed []string, rows []R) {
	t.Helper()
	want := schemeForms(rows)
	for _, form := range want {
		if !slices.Contains(listed, form) {
			t.Errorf("README %s does not list %s", where, form)
		}
	}
	for _, form := range listed {
		scheme, _, _ := strings.Cut(form, "://")
		switch _, err := lookupScheme(rows, scheme); {
		case err != nil:
			t.Errorf("README %s lists %s, but no row has scheme %q", where, form, scheme)
		case !slices.Contains(want, form):
			t.Errorf("README %s lists %s; the %s row's form is one of %q", where, form, scheme, want)
		}
	}
}
