package main

import (
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// Object stores (S3, GCS) hold releases as <prefix>/<tag>/<file>. This file
// holds the layout rules both backends share; it has no build tag so that
// either backend can be left out.

// cleanPrefix turns the path part of a registry URL into a key prefix: no
// leading slash, and a trailing slash unless it is empty (the bucket root).
func cleanPrefix(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// objectReleases groups a listing of keys under one prefix into releases.
type objectReleases struct {
	prefix string
	locate func(key string) string // key -> asset URL
	index  map[string]int
	rels   []release
}

func newObjectReleases(prefix string, locate func(key string) string) *objectReleases {
	return &objectReleases{prefix: prefix, locate: locate, index: map[string]int{}}
}

// add files one listed object. Objects that are not <prefix>/<tag>/<file>
// are skipped: loose files beside the tags, and anything in a sub-folder of
// a tag, because <tag>/deployed/ holds deployment reports, not assets. A
// folder marker "<prefix>/<tag>/", as consoles create, makes an empty release.
// "." and ".." are refused as tags and names: they are keys, not paths, to a
// bucket, but not to whoever turns them into file names later.
func (o *objectReleases) add(key string, size int64) {
	rest, ok := strings.CutPrefix(key, o.prefix)
	if !ok {
		return
	}
	tag, name, ok := strings.Cut(rest, "/")
	if !ok || tag == "" || tag == "." || tag == ".." || name == "." || name == ".." || strings.Contains(name, "/") {
		return
	}
	i, seen := o.index[tag]
	if !seen {
		i = len(o.rels)
		o.index[tag] = i
		o.rels = append(o.rels, release{Tag: tag, ID: o.locate(o.prefix + tag + "/")})
	}
	if name == "" {
		return
	}
	o.rels[i].Assets = append(o.rels[i].Assets, asset{Name: name, URL: o.locate(key), Size: size})
}

// releases returns the releases seen so far, in listing order.
func (o *objectReleases) releases() []release {
	if o.rels == nil {
		return []release{}
	}
	return o.rels
}

// firstOption names one query option of a URL, the same one every time.
func firstOption(q url.Values) string {
	return slices.Sorted(maps.Keys(q))[0]
}

// reportKey is where a bucket registry keeps a host's deploy report:
// <prefix>/<tag>/deployed/<host>.json, beside the release it is about, in a
// folder the release listing skips.
func reportKey(prefix, tag, host string) string {
	return prefix + tag + "/deployed/" + host + ".json"
}

// reportBody is the report's content: the deploy event as JSON.
func reportBody(r deployReport) ([]byte, error) {
	b, err := json.MarshalIndent(r.Event, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
