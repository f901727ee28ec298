package main

import (
	"slices"
	"testing"
)

func TestCalverFormat(t *testing.T) {
	for _, ok := range []string{"YYYY.0M.0D.MICRO", "YYYY.MM.DD", "YY.0W", "0Y.0M.MICRO", "MICRO", "YYYY.WW.MICRO"} {
		if _, err := parseCalverFormat(ok); err != nil {
			t.Errorf("parseCalverFormat(%q) = %v, want ok", ok, err)
		}
	}
	for _, bad := range []string{"", "YYYY..MM", "YYYY.MM.", "YYYY.YY", "MM.0M", "YYYY-MM", "YYYY.0M.0D.MICRO.MICRO", "yyyy", "v.YYYY", "YYYY.0M.0D.PATCH"} {
		if _, err := parseCalverFormat(bad); err == nil {
			t.Errorf("parseCalverFormat(%q) accepted, want an error", bad)
		}
	}
}

func TestCalverParse(t *testing.T) {
	for _, tc := range []struct {
		format, tag string
		ok          bool
		segs        []int64
		pre, build  string
	}{
		{"YYYY.0M.0D.MICRO", "2024.01.15.3", true, []int64{2024, 1, 15, 3}, "", ""},
		{"YYYY.0M.0D.MICRO", "v2024.01.15.3-beta.2+green", true, []int64{2024, 1, 15, 3}, "beta.2", "green"},
		{"YYYY.0M.0D.MICRO", "2024.1.15.3", false, nil, "", ""},        // 0M wants two digits
		{"YYYY.0M.0D.MICRO", "2024.13.15.3", false, nil, "", ""},       // no 13th month
		{"YYYY.0M.0D.MICRO", "2024.01.32.0", false, nil, "", ""},       // no 32nd day
		{"YYYY.0M.0D.MICRO", "2024.01.15", false, nil, "", ""},         // a segment short
		{"YYYY.0M.0D.MICRO", "2024.01.15.3.1", false, nil, "", ""},     // a segment long
		{"YYYY.0M.0D.MICRO", "2024.01.15.3-", false, nil, "", ""},      // empty pre-release
		{"YYYY.0M.0D.MICRO", "2024.01.15.3-rc.01", false, nil, "", ""}, // leading zero in a numeric identifier
		{"YYYY.0M.0D.MICRO", "2024.01.15.3+", false, nil, "", ""},
		{"YYYY.0M.0D.MICRO", "2024.01.15.x", false, nil, "", ""},
		{"YYYY.0M.0D.MICRO", "V2024.01.15.3", false, nil, "", ""},
		{"YYYY.0M.0D.MICRO", "2024.01.15.+3", false, nil, "", ""},
		{"YYYY.MM.DD", "2024.1.9", true, []int64{2024, 1, 9}, "", ""},
		{"YYYY.MM.DD", "2024.01.09", false, nil, "", ""}, // MM is not padded
		{"YY.MM.MICRO", "24.6.0", true, []int64{24, 6, 0}, "", ""},
		{"YY.MM.MICRO", "106.6.0", true, []int64{106, 6, 0}, "", ""},
		{"0Y.0W", "06.09", true, []int64{6, 9}, "", ""},
		{"0Y.0W", "6.09", false, nil, "", ""},
		{"0Y.0W", "06.54", false, nil, "", ""},
		{"YYYY.0M.MICRO", "2024.06.3-rc.1+blue", true, []int64{2024, 6, 3}, "rc.1", "blue"},
		{"YYYY.0M.MICRO", "2024.06.99999999999999999999", false, nil, "", ""},
	} {
		f, err := parseCalverFormat(tc.format)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := f.parse(tc.tag)
		if ok != tc.ok || (ok && (!slices.Equal(c.segs, tc.segs) || c.pre != tc.pre || c.build != tc.build)) {
			t.Errorf("%s parse(%q) = %v %q %q, %v; want %v %q %q, %v", tc.format, tc.tag, c.segs, c.pre, c.build, ok, tc.segs, tc.pre, tc.build, tc.ok)
		}
	}
}

func TestCalverOrder(t *testing.T) {
	f, _ := parseCalverFormat("YYYY.0M.0D.MICRO")
	// Each tag is older than the next.
	ordered := []string{
		"2023.12.31.9",
		"2024.01.02.0-alpha",
		"2024.01.02.0-alpha.1",
		"2024.01.02.0-alpha.beta",
		"2024.01.02.0-beta.2",
		"2024.01.02.0-beta.11",
		"2024.01.02.0-rc.1",
		"2024.01.02.0",
		"2024.01.02.1",
		"2024.01.02.10",
		"2024.01.10.0",
		"2024.10.01.0",
	}
	for i := range ordered {
		for j := range ordered {
			a, _ := f.parse(ordered[i])
			b, ok := f.parse(ordered[j])
			if !ok {
				t.Fatalf("parse(%q) failed", ordered[j])
			}
			if got, want := a.compare(b), cmpInt(int64(i), int64(j)); got != want {
				t.Errorf("compare(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	a, _ := f.parse("2024.01.02.0+blue")
	b, _ := f.parse("v2024.01.02.0+green")
	if c := a.compare(b); c != 0 {
		t.Errorf("build metadata ordered releases: compare = %d, want 0", c)
	}
}
