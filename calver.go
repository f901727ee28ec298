package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// calverFormat is a --calver format such as YYYY.0M.0D.MICRO: specifiers
// separated by dots, as calver.org writes them.
type calverFormat struct {
	raw   string
	specs []string
}

// calverSpec says what one specifier accepts: the fewest and most digits
// (0M needs two, so it is zero-padded), whether a leading zero is refused
// (MM means no padding), and the range.
type calverSpec struct {
	kind      string // year, month, week, day or micro: each at most once
	minDigits int
	maxDigits int
	noPadding bool
	lo, hi    int64
}

// calverSpecs follows calver.org: YY and 0Y count years since 2000 (6, 16,
// 106; 06, 16, 106), WW is the week of the year.
var calverSpecs = map[string]calverSpec{
	"YYYY": {kind: "year", minDigits: 4, maxDigits: 4, lo: 1000, hi: 9999},
	"YY":   {kind: "year", minDigits: 1, maxDigits: 3, noPadding: true, lo: 0, hi: 999},
	"0Y":   {kind: "year", minDigits: 2, maxDigits: 3, lo: 0, hi: 999},
	"MM":   {kind: "month", minDigits: 1, maxDigits: 2, noPadding: true, lo: 1, hi: 12},
	"0M":   {kind: "month", minDigits: 2, maxDigits: 2, lo: 1, hi: 12},
	"WW":   {kind: "week", minDigits: 1, maxDigits: 2, noPadding: true, lo: 1, hi: 53},
	"0W":   {kind: "week", minDigits: 2, maxDigits: 2, lo: 1, hi: 53},
	"DD":   {kind: "day", minDigits: 1, maxDigits: 2, noPadding: true, lo: 1, hi: 31},
	"0D":   {kind: "day", minDigits: 2, maxDigits: 2, lo: 1, hi: 31},
	// MICRO counts releases; leading zeros are taken as written.
	"MICRO": {kind: "micro", minDigits: 1, maxDigits: 18, lo: 0, hi: 1e18 - 1},
}

// parseCalverFormat checks a --calver value. Only the specifiers above,
// separated by dots, each kind once: anything else would make tags parse
// in more than one way.
func parseCalverFormat(s string) (*calverFormat, error) {
	if s == "" {
		return nil, errors.New("empty format (want specifiers such as YYYY.0M.0D.MICRO)")
	}
	f := &calverFormat{raw: s}
	seen := map[string]bool{}
	for _, p := range strings.Split(s, ".") {
		spec, ok := calverSpecs[p]
		if !ok {
			return nil, fmt.Errorf("unknown specifier %q (want YYYY, YY, 0Y, MM, 0M, WW, 0W, DD, 0D or MICRO, separated by dots)", p)
		}
		if seen[spec.kind] {
			return nil, fmt.Errorf("%s given twice", spec.kind)
		}
		seen[spec.kind] = true
		f.specs = append(f.specs, p)
	}
	return f, nil
}

func (f *calverFormat) String() string { return f.raw }

// calver is a tag read under a calverFormat.
type calver struct {
	segs  []int64
	pre   string // without the "-"
	build string // without the "+"
}

// parse reads tag as [v]SEGMENTS[-PRERELEASE][+BUILD]; ok is false when it
// does not fit the format.
func (f *calverFormat) parse(tag string) (c calver, ok bool) {
	s, build, hasBuild := strings.Cut(strings.TrimPrefix(tag, "v"), "+")
	if hasBuild && !validIdents(build, false) {
		return calver{}, false
	}
	s, pre, hasPre := strings.Cut(s, "-")
	if hasPre && !validIdents(pre, true) {
		return calver{}, false
	}
	c.pre, c.build = pre, build
	parts := strings.Split(s, ".")
	if len(parts) != len(f.specs) {
		return calver{}, false
	}
	for i, p := range parts {
		spec := calverSpecs[f.specs[i]]
		if len(p) < spec.minDigits || len(p) > spec.maxDigits || strings.Trim(p, "0123456789") != "" {
			return calver{}, false
		}
		if spec.noPadding && len(p) > 1 && p[0] == '0' {
			return calver{}, false
		}
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < spec.lo || n > spec.hi {
			return calver{}, false
		}
		c.segs = append(c.segs, n)
	}
	return c, true
}

// compare orders by segments, then a release above its pre-releases, then
// pre-releases as semantic versioning orders them. Build metadata does not
// order releases.
func (a calver) compare(b calver) int {
	for i := range min(len(a.segs), len(b.segs)) {
		if a.segs[i] != b.segs[i] {
			if a.segs[i] < b.segs[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a.segs) != len(b.segs):
		return cmpInt(int64(len(a.segs)), int64(len(b.segs)))
	case a.pre == b.pre:
		return 0
	case a.pre == "":
		return 1
	case b.pre == "":
		return -1
	}
	return comparePrerelease(a.pre, b.pre)
}

// comparePrerelease orders dot-separated identifiers by the rules of
// semver.org §11: numbers numerically and below words, words in ASCII
// order, a shorter list below a longer one it begins.
func comparePrerelease(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range min(len(as), len(bs)) {
		x, y := as[i], bs[i]
		if x == y {
			continue
		}
		xn, xerr := strconv.ParseInt(x, 10, 64)
		yn, yerr := strconv.ParseInt(y, 10, 64)
		switch {
		case xerr == nil && yerr == nil:
			return cmpInt(xn, yn)
		case xerr == nil:
			return -1
		case yerr == nil:
			return 1
		}
		return strings.Compare(x, y)
	}
	return cmpInt(int64(len(as)), int64(len(bs)))
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// validIdents reports whether s is dot-separated identifiers of
// [0-9A-Za-z-], as semantic versioning allows in pre-releases and build
// metadata; numeric pre-release identifiers may not have leading zeros.
func validIdents(s string, pre bool) bool {
	if s == "" {
		return false
	}
	for _, id := range strings.Split(s, ".") {
		if id == "" || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
			return false
		}
		if pre && len(id) > 1 && id[0] == '0' && strings.Trim(id, "0123456789") == "" {
			return false
		}
	}
	return true
}
