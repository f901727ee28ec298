package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
)

// Each plug point (registry, artifact store, cache, notifier) has one
// scheme table. A backend is one file plus one row: the row feeds
// construction, config-time validation, `dewy help` and the README's lists
// (usage_test.go holds the README to the tables). A backend a build tag
// leaves out keeps its row; its _off file's functions say so.

// schemeRow is what every table's rows share. usage is the URL's form in
// `dewy help`, in messages and in the README; "" marks an alias or a
// refusal that the README mentions beside its main scheme, if at all.
type schemeRow interface{ names() (scheme, usage string) }

// lookupScheme is every plug point's one lookup: the row for scheme, or an
// error that lists the documented schemes.
func lookupScheme[R schemeRow](rows []R, scheme string) (R, error) {
	for _, r := range rows {
		if s, _ := r.names(); s == scheme {
			return r, nil
		}
	}
	var zero R
	return zero, fmt.Errorf("unknown scheme %q (want %s)", scheme, orList(schemeNames(rows)))
}

// schemeForms lists the documented URL forms, as in file:///abs/dir.
func schemeForms[R schemeRow](rows []R) []string {
	return documented(rows, func(_, usage string) string { return usage })
}

// schemeNames lists the documented schemes, as in file.
func schemeNames[R schemeRow](rows []R) []string {
	return documented(rows, func(scheme, _ string) string { return scheme })
}

func documented[R schemeRow](rows []R, pick func(scheme, usage string) string) []string {
	var out []string
	for _, r := range rows {
		if scheme, usage := r.names(); usage != "" {
			out = append(out, pick(scheme, usage))
		}
	}
	return out
}

// orList writes "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// registryScheme is one row of registrySchemes.
type registryScheme struct {
	scheme string
	usage  string
	// build makes the registry. The shared options (pre-release, artifact,
	// track) are already off u and in sel.
	build registryBuilder
	// check refuses what build would refuse about u and getenv, without
	// network or disk I/O, so that a bad URL stops dewy before it
	// touches the disk.
	check urlCheck
}

type (
	registryBuilder = func(ctx context.Context, u *url.URL, sel selectOptions, getenv func(string) string, log *slog.Logger) (registry, error)
	storeBuilder    = func(ctx context.Context, u *url.URL, getenv func(string) string, log *slog.Logger) (artifactStore, error)
	urlCheck        = func(u *url.URL, getenv func(string) string) error
)

// bucketBackend makes the registry and store rows' constructors of a
// backend whose one value serves as either, from its open function.
func bucketBackend[T interface {
	registry
	artifactStore
}](name string, open func(context.Context, *url.URL, func(string) string, *slog.Logger) (T, error)) (registryBuilder, storeBuilder) {
	return func(ctx context.Context, u *url.URL, _ selectOptions, getenv func(string) string, log *slog.Logger) (registry, error) {
			return asBackend[registry](open(ctx, u, getenv, log.With("registry", name)))
		}, func(ctx context.Context, u *url.URL, getenv func(string) string, log *slog.Logger) (artifactStore, error) {
			return asBackend[artifactStore](open(ctx, u, getenv, log.With("store", name)))
		}
}

// leftOut is the row functions of a backend a build tag leaves out: each
// refuses with err, so that its scheme stays in the tables and in `dewy
// help`, and a URL naming it exits 2 when the configuration is checked.
func leftOut(err error) (registryBuilder, storeBuilder, urlCheck) {
	return func(context.Context, *url.URL, selectOptions, func(string) string, *slog.Logger) (registry, error) {
			return nil, err
		},
		func(context.Context, *url.URL, func(string) string, *slog.Logger) (artifactStore, error) {
			return nil, err
		},
		func(*url.URL, func(string) string) error { return err }
}

func (r registryScheme) names() (string, string) { return r.scheme, r.usage }

var registrySchemes = []registryScheme{
	{scheme: "file", usage: "file:///abs/dir", build: buildFileRegistry, check: checkFileURL},
	{scheme: "ghr", usage: "ghr://owner/repo", build: buildGitHubRegistry, check: checkGitHubURL},
	{scheme: "s3", usage: "s3://region/bucket/prefix", build: newS3Registry, check: checkS3URL},
	{scheme: "gs", usage: "gs://bucket/prefix", build: newGCSRegistry, check: checkGCSURL},
	{scheme: "grpc", usage: "grpc://host:port", build: newGRPCRegistry, check: checkGRPCURL},
}

// newRegistry is the one place a registry backend is chosen.
func newRegistry(ctx context.Context, u *url.URL, sel selectOptions, getenv func(string) string, log *slog.Logger) (registry, error) {
	row, err := lookupScheme(registrySchemes, u.Scheme)
	if err != nil {
		return nil, err
	}
	return row.build(ctx, u, sel, getenv, log)
}

// checkRegistryURL judges a registry URL from parseRegistryURL as
// newRegistry would, without building anything.
func checkRegistryURL(u *url.URL, getenv func(string) string) error {
	row, err := lookupScheme(registrySchemes, u.Scheme)
	if err != nil {
		return err
	}
	return row.check(u, getenv)
}

// artifactScheme is one row of artifactSchemes. Artifact URLs come from
// the registry, not the operator, so they are judged when fetched.
type artifactScheme struct {
	scheme string
	usage  string // as the README lists what a gRPC server's artifact_url may be
	build  storeBuilder
}

func (r artifactScheme) names() (string, string) { return r.scheme, r.usage }

var artifactSchemes = []artifactScheme{
	{scheme: "file", usage: "file://", build: newFileStore},
	{scheme: "ghr", usage: "ghr://owner/repo/tag/<tag>/<asset>", build: newGitHubStore},
	{scheme: "s3", usage: "s3://region/bucket/key", build: newS3Store},
	{scheme: "gs", usage: "gs://bucket/key", build: newGCSStore},
	{scheme: "https", usage: "https://", build: newHTTPStoreFor},
	{scheme: "http", build: newHTTPStoreFor},
}

// newArtifactStore is the one place an artifact store is chosen.
func newArtifactStore(ctx context.Context, u *url.URL, getenv func(string) string, log *slog.Logger) (artifactStore, error) {
	row, err := lookupScheme(artifactSchemes, u.Scheme)
	if err != nil {
		return nil, err
	}
	return row.build(ctx, u, getenv, log)
}

// storeSet creates artifact stores on first use, one per scheme, reusing
// the registry when it can read its own assets.
type storeSet struct {
	mu        sync.Mutex
	reg       registry
	regScheme string
	getenv    func(string) string
	log       *slog.Logger
	ctx       context.Context
	byKey     map[string]artifactStore
}

func (s *storeSet) storeFor(u *url.URL) (artifactStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.reg.(artifactStore); ok && u.Scheme == s.regScheme {
		return st, nil
	}
	key := u.Scheme + "://" + u.Host
	if st, ok := s.byKey[key]; ok {
		return st, nil
	}
	st, err := newArtifactStore(s.ctx, u, s.getenv, s.log)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", redactURL(u), err)
	}
	if s.byKey == nil {
		s.byKey = map[string]artifactStore{}
	}
	s.byKey[key] = st
	return st, nil
}
