package main

import (
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/semver"
)

// selectOptions decide which release is the newest: the query options every
// registry URL accepts, and --slot and --calver.
type selectOptions struct {
	PreRelease bool          // pre-release=true
	Artifact   string        // artifact=NAME: exact asset name
	Track      string        // track=v1 or track=v1.4, canonical form
	Slot       string        // --slot: only tags whose build metadata is exactly this
	CalVer     *calverFormat // --calver: tags are calendar versions; nil = semantic versioning
	GOOS       string
	GOARCH     string
}

// canonicalVersion turns a tag into a semver string with a leading "v",
// or returns "" when the tag is not semantic versioning.
func canonicalVersion(tag string) string {
	v := tag
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	// semver accepts v1 and v1.2 as shorthands; a release tag needs all three parts.
	core, _, _ := strings.Cut(strings.SplitN(v, "+", 2)[0], "-")
	if !semver.IsValid(v) || strings.Count(core, ".") != 2 {
		return ""
	}
	return v
}

var trackRe = regexp.MustCompile(`^v?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?$`)

// parseTrack validates a track= value and returns it with a leading "v".
func parseTrack(s string) (string, error) {
	if !trackRe.MatchString(s) {
		return "", fmt.Errorf("track %q: want a major or major.minor version such as v1 or v1.4", s)
	}
	if !strings.HasPrefix(s, "v") {
		s = "v" + s
	}
	return s, nil
}

// tagVersion is a tag read under the configured scheme. Semantic versions
// go through x/mod/semver; calendar versions never do.
type tagVersion struct {
	name  string // the canonical semver form, or the tag itself for CalVer
	cal   calver
	isCal bool
}

// parseTag reads tag as semantic versioning or, with --calver, as a
// calendar version of that format; ok is false when it is neither.
func (o selectOptions) parseTag(tag string) (v tagVersion, ok bool) {
	if o.CalVer != nil {
		c, ok := o.CalVer.parse(tag)
		return tagVersion{name: tag, cal: c, isCal: true}, ok
	}
	s := canonicalVersion(tag)
	return tagVersion{name: s}, s != ""
}

func (v tagVersion) prerelease() bool {
	if v.isCal {
		return v.cal.pre != ""
	}
	return semver.Prerelease(v.name) != ""
}

// build is the build metadata without its "+": the deployment slot.
func (v tagVersion) build() string {
	if v.isCal {
		return v.cal.build
	}
	return strings.TrimPrefix(semver.Build(v.name), "+")
}

func (v tagVersion) compare(w tagVersion) int {
	if v.isCal {
		return v.cal.compare(w.cal)
	}
	return semver.Compare(v.name, w.name)
}

// inTrack reports whether v belongs to track: the same major (v1) or
// major.minor (v1.4) for semantic versions; for calendar versions the same
// leading segments, compared as numbers (track=2024, track=2024.6).
func (v tagVersion) inTrack(track string) bool {
	if track == "" {
		return true
	}
	if v.isCal {
		parts := strings.Split(strings.TrimPrefix(track, "v"), ".")
		if len(parts) > len(v.cal.segs) {
			return false
		}
		for i, p := range parts {
			if n, err := strconv.ParseInt(p, 10, 64); err != nil || n != v.cal.segs[i] {
				return false
			}
		}
		return true
	}
	if !strings.Contains(track, ".") {
		return semver.Major(v.name) == track
	}
	return semver.MajorMinor(v.name) == track
}

// wants applies pre-release=, --slot and track= to one release. A slot
// narrows the candidates before anything else: pre-release=true then admits
// the slot's pre-releases, and track= picks a line within the slot.
func (o selectOptions) wants(rel release, v tagVersion) bool {
	if !o.PreRelease && (rel.Prerelease || v.prerelease()) {
		return false
	}
	if o.Slot != "" && v.build() != o.Slot {
		return false
	}
	return v.inTrack(o.Track)
}

// newest returns the newest release that the options allow and its
// version (canonical semver, or the tag under --calver); ok is false when
// none qualifies. Build metadata does not order releases; among equal
// versions the greatest tag wins so the choice is the same on every host.
func newest(rels []release, o selectOptions, log *slog.Logger) (rel release, version string, ok bool) {
	var best tagVersion
	for _, r := range rels {
		v, vok := o.parseTag(r.Tag)
		if !vok {
			if o.CalVer != nil {
				log.Debug("ignoring tag that does not fit --calver "+o.CalVer.String(), "tag", r.Tag)
			} else {
				log.Debug("ignoring tag that is not semantic versioning", "tag", r.Tag)
			}
			continue
		}
		if !o.wants(r, v) {
			continue
		}
		if !ok {
			rel, best, ok = r, v, true
			continue
		}
		switch c := v.compare(best); {
		case c > 0, c == 0 && r.Tag > rel.Tag:
			rel, best = r, v
		}
	}
	return rel, best.name, ok
}

// isChecksumName reports whether an asset is a checksum list rather than an artifact.
func isChecksumName(name string) bool {
	n := strings.ToLower(name)
	switch {
	case n == "checksums.txt", n == "sha256sums", n == "sha256sums.txt",
		strings.HasSuffix(n, "_checksums.txt"), strings.HasSuffix(n, "-checksums.txt"),
		strings.HasSuffix(n, ".sha256"), strings.HasSuffix(n, ".sha256sum"):
		return true
	}
	return false
}

// notArtifactExt lists suffixes of files that ride along with releases but
// are never what dewy deploys: checksums, signatures, SBOMs, OS packages and
// compressions the standard library cannot unpack.
var notArtifactExt = []string{
	".sig", ".minisig", ".asc", ".pem", ".crt", ".cert", ".sbom", ".json", ".jsonl",
	".deb", ".rpm", ".apk", ".msi", ".dmg", ".pkg", ".txt", ".md", ".xz", ".zst", ".bz2", ".7z",
}

func isArtifactName(name string) bool {
	if !isPlainFileName(name) || isChecksumName(name) {
		return false
	}
	n := strings.ToLower(name)
	for _, ext := range notArtifactExt {
		if strings.HasSuffix(n, ext) {
			return false
		}
	}
	return true
}

var (
	osAliases = map[string][]string{
		"darwin": {"darwin", "macos"},
	}
	archAliases = map[string][]string{
		"amd64": {"amd64", "x86_64", "x64"},
		"arm64": {"arm64", "aarch64"},
		"386":   {"386", "i386"},
		"arm":   {"arm", "armv5", "armv6", "armv7", "armhf"},
	}
)

// nameTokens splits an asset name like goreleaser builds them. x86_64 is
// kept whole because its own underscore would otherwise split it.
func nameTokens(name string) []string {
	n := strings.ToLower(name)
	n = strings.ReplaceAll(n, "x86_64", "x86@64")
	n = strings.ReplaceAll(n, "x86-64", "x86@64")
	toks := strings.FieldsFunc(n, func(r rune) bool { return r == '_' || r == '-' || r == '.' })
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(t, "x86@64", "x86_64")
	}
	return toks
}

func aliases(m map[string][]string, key string) []string {
	if a, ok := m[key]; ok {
		return a
	}
	return []string{key}
}

func hasAnyToken(toks, want []string) bool {
	for _, w := range want {
		if slices.Contains(toks, w) {
			return true
		}
	}
	return false
}

// pickAsset chooses the artifact of a release for this host.
func pickAsset(rel release, o selectOptions) (asset, error) {
	if o.Artifact != "" {
		for _, a := range rel.Assets {
			if a.Name == o.Artifact && isPlainFileName(a.Name) {
				return a, nil
			}
		}
		return asset{}, fmt.Errorf("release %s has no asset named %q (assets: %s)", rel.Tag, o.Artifact, assetNames(rel.Assets))
	}
	osToks, archToks := aliases(osAliases, o.GOOS), aliases(archAliases, o.GOARCH)
	var candidates, found []asset
	for _, a := range rel.Assets {
		if !isArtifactName(a.Name) {
			continue
		}
		candidates = append(candidates, a)
		toks := nameTokens(a.Name)
		if hasAnyToken(toks, osToks) && hasAnyToken(toks, archToks) {
			found = append(found, a)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return asset{}, fmt.Errorf("release %s has several assets for %s/%s (%s); set artifact= on the registry URL", rel.Tag, o.GOOS, o.GOARCH, assetNames(found))
	case len(candidates) == 1 && !namesPlatform(candidates[0].Name):
		// A static site, a JAR, a script bundle: content with no
		// platform runs on every host.
		return candidates[0], nil
	case len(candidates) == 0:
		return asset{}, fmt.Errorf("release %s has no asset for %s/%s (assets: %s); set artifact= on the registry URL", rel.Tag, o.GOOS, o.GOARCH, assetNames(rel.Assets))
	}
	return asset{}, fmt.Errorf("release %s has no asset for %s/%s (candidates: %s); set artifact= on the registry URL", rel.Tag, o.GOOS, o.GOARCH, assetNames(candidates))
}

// namesPlatform reports whether an asset name has an OS or architecture word.
func namesPlatform(name string) bool {
	return slices.ContainsFunc(nameTokens(name), isPlatformToken)
}

// isPlainFileName reports whether a name the registry gave can be used as
// a file name as it is: no directories, no way up, nothing hidden.
func isPlainFileName(name string) bool {
	return name != "" && len(name) <= 255 && !strings.HasPrefix(name, ".") &&
		!strings.ContainsAny(name, "/\\\x00") && strings.ToValidUTF8(name, "") == name
}

// assetNames lists assets for an error message, bounded: a hostile
// registry answer must not turn into a megabyte log line.
func assetNames(as []asset) string {
	if len(as) == 0 {
		return "none"
	}
	const most = 20
	names := make([]string, 0, min(len(as), most)+1)
	for i, a := range as {
		if i == most {
			names = append(names, fmt.Sprintf("and %d more", len(as)-most))
			break
		}
		names = append(names, fmt.Sprintf("%q", truncate(a.Name, 80)))
	}
	return strings.Join(names, ", ")
}

// checksumAssets returns the files of a release that may list the digest of name.
func checksumAssets(rel release, name string) []asset {
	var out []asset
	for _, a := range rel.Assets {
		n := strings.ToLower(a.Name)
		if strings.HasSuffix(n, ".sha256") || strings.HasSuffix(n, ".sha256sum") {
			if strings.TrimSuffix(strings.TrimSuffix(a.Name, ".sha256sum"), ".sha256") != name {
				continue
			}
		}
		if isChecksumName(a.Name) {
			out = append(out, a)
		}
	}
	return out
}

// bareName is the file name a bare executable gets in its release
// directory: the asset name cut before its first version, OS or arch token,
// so myapp_1.2.0_linux_amd64 becomes myapp and the command line stays the
// same across releases.
func bareName(name string) string {
	ext := ""
	if strings.HasSuffix(strings.ToLower(name), ".exe") {
		ext, name = name[len(name)-4:], name[:len(name)-4]
	}
	cut := len(name)
	pos := 0
	for pos < len(name) {
		end := strings.IndexAny(name[pos:], "_-")
		tok := name[pos:]
		if end >= 0 {
			tok = name[pos : pos+end]
		}
		if pos == 0 && isPlatformOrVersionToken(tok) {
			break // nothing but platform words: keep the name whole
		}
		if pos > 0 && isPlatformOrVersionToken(tok) {
			cut = pos - 1
			break
		}
		if end < 0 {
			break
		}
		pos += end + 1
	}
	if cut <= 0 {
		return name + ext
	}
	return name[:cut] + ext
}

func isPlatformOrVersionToken(tok string) bool {
	t := strings.ToLower(tok)
	return canonicalVersion(t) != "" || (len(t) > 0 && t[0] >= '0' && t[0] <= '9') || isPlatformToken(t) || t == "all"
}

// isPlatformToken reports whether a lower-case name word is an OS or
// architecture as release names spell them.
func isPlatformToken(t string) bool {
	for _, m := range []map[string][]string{osAliases, archAliases} {
		for _, as := range m {
			if slices.Contains(as, t) {
				return true
			}
		}
	}
	switch t {
	case "linux", "windows", "freebsd", "openbsd", "netbsd", "dragonfly", "illumos", "solaris", "aix", "android", "ios",
		"x86", "mac", "universal", "riscv64", "ppc64", "ppc64le", "s390x", "mips", "mipsle", "mips64", "mips64le", "loong64", "wasm":
		return true
	}
	return false
}
