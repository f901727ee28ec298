package main

import (
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it is read from the build information Go records.
var version = buildVersion(debug.ReadBuildInfo)

// buildVersion names this build: the module version `go install` records
// (v1.2.3, or a pseudo-version), else the VCS revision `go build` in a
// checkout records, with "+dirty" for uncommitted changes, else "dev".
func buildVersion(read func() (*debug.BuildInfo, bool)) string {
	bi, ok := read()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	return "dev-" + rev[:min(12, len(rev))] + dirty
}

// versionLine is what `dewy version` prints: the version, and the revision
// when the version does not already say it.
func versionLine(read func() (*debug.BuildInfo, bool)) string {
	line := "dewy " + version
	bi, ok := read()
	if !ok {
		return line
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && !strings.Contains(version, s.Value[:min(12, len(s.Value))]) {
			line += " (" + s.Value + ")"
		}
	}
	return line + " " + bi.GoVersion
}
