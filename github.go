package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// githubRegistry lists the releases of one GitHub repository (ghr://owner/repo)
// through the REST API and opens their assets (ghr://owner/repo/tag/TAG/NAME?id=N).
type githubRegistry struct {
	api      *url.URL // API root without trailing slash: https://api.github.com or https://HOST/api/v3
	owner    string
	repo     string
	token    string // never logged, never part of an error
	reportOn bool   // report=true: publish deployment reports to the repository

	apiClient      *http.Client // follows redirects (renamed repositories answer 301)
	downloadClient *http.Client // never follows, so the token cannot travel to the storage host
	log            *slog.Logger
	now            func() time.Time

	mu             sync.Mutex
	etagLocked     string // ETag of the first listing page that produced cachedLocked
	cachedLocked   []release
	cachedAtLocked time.Time
}

var (
	_ registry      = (*githubRegistry)(nil)
	_ artifactStore = (*githubRegistry)(nil)
)

const (
	githubDefaultAPI = "https://api.github.com"

	// Listing pages hold at most 100 releases, each with its assets; 32 MiB is
	// far above any real page and bounds what a broken server can make us hold.
	githubMaxListing = 32 << 20
	githubMaxError   = 4 << 10

	// A 304 only proves the first page is unchanged. Edits further down (an
	// old release deleted or re-flagged) would stay invisible, so the cache is
	// dropped after this long and the whole list fetched again.
	githubFullRefresh = time.Hour

	// GitHub's guidance for secondary rate limits without Retry-After or
	// X-RateLimit-Reset: "wait for at least one minute before retrying".
	githubDefaultWait = time.Minute

	githubMaxRedirects = 5
)

// buildGitHubRegistry, checkGitHubURL and newGitHubStore are ghr://'s rows
// in the scheme tables. Building a GitHub registry makes no request, so
// building one is the check.
func buildGitHubRegistry(_ context.Context, u *url.URL, _ selectOptions, getenv func(string) string, log *slog.Logger) (registry, error) {
	return asBackend[registry](newGitHubRegistry(u, getenv, log.With("registry", "github")))
}

func checkGitHubURL(u *url.URL, getenv func(string) string) error {
	_, err := newGitHubRegistry(u, getenv, nil)
	return err
}

// newGitHubStore reads assets of any repository on the same API host:
// u is ghr://owner/repo/tag/<tag>/<asset>.
func newGitHubStore(_ context.Context, u *url.URL, getenv func(string) string, log *slog.Logger) (artifactStore, error) {
	base := &url.URL{Scheme: "ghr", Host: u.Host, Path: "/" + firstSegment(u.Path)}
	return asBackend[artifactStore](newGitHubRegistry(base, getenv, log.With("store", "github")))
}

func firstSegment(p string) string {
	for i := 1; i < len(p); i++ {
		if p[i] == '/' {
			return p[1:i]
		}
	}
	if len(p) > 0 {
		return p[1:]
	}
	return p
}

// newGitHubRegistry builds a registry for u (ghr://owner/repo). Shared query
// options (pre-release, artifact, track) are removed by the caller; the only
// one left for GitHub is report=true|false. getenv supplies GITHUB_TOKEN (or
// GH_TOKEN) and GITHUB_API_URL; without a token requests are unauthenticated,
// which is enough for public repositories.
func newGitHubRegistry(u *url.URL, getenv func(string) string, log *slog.Logger) (*githubRegistry, error) {
	if u.Scheme != "ghr" || u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("github registry %q: want ghr://owner/repo", u.Redacted())
	}
	if u.User != nil {
		return nil, fmt.Errorf("github registry %q: credentials in the URL are not supported, set GITHUB_TOKEN", u.Redacted())
	}
	owner, repo := u.Host, strings.Trim(u.Path, "/")
	if !githubValidName(owner) || !githubValidName(repo) {
		return nil, fmt.Errorf("github registry %q: want ghr://owner/repo", u.Redacted())
	}
	g := &githubRegistry{owner: owner, repo: repo, log: log, now: time.Now}
	for key, vals := range u.Query() {
		switch key {
		case "report":
			if len(vals) != 1 || (vals[0] != "true" && vals[0] != "false") {
				return nil, fmt.Errorf("github registry %q: report must be true or false", u.Redacted())
			}
			g.reportOn = vals[0] == "true"
		default:
			return nil, fmt.Errorf("github registry %q: unknown option %q", u.Redacted(), key)
		}
	}

	g.token = getenv("GITHUB_TOKEN")
	if g.token == "" {
		g.token = getenv("GH_TOKEN")
	}
	apiURL := strings.TrimRight(getenv("GITHUB_API_URL"), "/")
	if apiURL == "" {
		apiURL = githubDefaultAPI
	}
	api, err := url.Parse(apiURL)
	if err != nil || (api.Scheme != "https" && api.Scheme != "http") || api.Host == "" || api.User != nil {
		return nil, fmt.Errorf("github registry: GITHUB_API_URL %q: want https://HOST[/api/v3]", githubRedactURL(apiURL))
	}
	g.api = api

	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.log = g.log.With("repo", owner+"/"+repo)

	// Connection-level timeouts only: whole-call deadlines come from ctx, and a
	// large download must not be cut off by a client-wide Timeout.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 30 * time.Second
	g.apiClient = &http.Client{Transport: tr}
	g.downloadClient = &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return g, nil
}

// githubValidName reports whether s can be a GitHub owner or repository name.
func githubValidName(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// githubRedactURL hides userinfo in a URL that failed validation.
func githubRedactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

// githubRelease and githubAsset hold the fields dewy uses from GitHub's
// "release" and "release asset" REST objects.
type githubRelease struct {
	ID         int64         `json:"id"`
	TagName    string        `json:"tag_name"`
	Draft      bool          `json:"draft"`
	Prerelease bool          `json:"prerelease"`
	Assets     []githubAsset `json:"assets"`
}

type githubAsset struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Digest is "sha256:<hex>", computed by GitHub on upload; null on
	// assets uploaded before June 2025.
	Digest *string `json:"digest"`
}

// sha256 returns the asset's digest as hex, or "" when GitHub gives none
// (or one of another algorithm, which dewy cannot compare).
func (a githubAsset) sha256() string {
	if a.Digest == nil {
		return ""
	}
	sum, ok := strings.CutPrefix(*a.Digest, "sha256:")
	if sum = strings.ToLower(sum); !ok || !isSHA256Hex(sum) {
		return ""
	}
	return sum
}

// releases lists every published release, following pagination. Drafts are
// skipped: they have no stable tag and are visible only to maintainers.
func (g *githubRegistry) releases(ctx context.Context) ([]release, error) {
	etag := g.validator()
	next := g.repoURL() + "/releases?per_page=100"
	var (
		all       []release
		seen      = map[int64]bool{}
		firstETag string
	)
	for page := 1; next != ""; page++ {
		resp, err := g.getReleasesPage(ctx, next, page, etag)
		if err != nil {
			return nil, err
		}
		if page == 1 && resp.StatusCode == http.StatusNotModified {
			resp.Body.Close()
			return g.notModified(resp), nil
		}
		var rels []githubRelease
		err = g.readJSON(resp, &rels, fmt.Sprintf("list releases page %d", page))
		if err != nil {
			return nil, err
		}
		if page == 1 {
			firstETag = resp.Header.Get("ETag")
		}
		if all, err = g.collectReleases(all, seen, rels, page); err != nil {
			return nil, err
		}
		next, err = g.nextPage(resp)
		if err != nil {
			return nil, err
		}
		if page > 10000 {
			return nil, fmt.Errorf("github %s: list releases: pagination does not end", g.name())
		}
	}
	return g.cacheReleases(firstETag, all), nil
}

// validator is the ETag to send with the first page, or "" once the cache is
// older than githubFullRefresh and the whole list must be read again.
func (g *githubRegistry) validator() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.now().Sub(g.cachedAtLocked) > githubFullRefresh {
		return ""
	}
	return g.etagLocked
}

// getReleasesPage asks for one page of the list. Only the first page carries
// the validator: it alone says whether anything was published.
func (g *githubRegistry) getReleasesPage(ctx context.Context, u string, page int, etag string) (*http.Response, error) {
	req, err := g.newAPIRequest(ctx, u)
	if err != nil {
		return nil, err
	}
	if page == 1 && etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := g.apiClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("github %s: list releases: %w", g.name(), err)
	}
	return resp, nil
}

// notModified answers from the cache after a 304 on the first page.
func (g *githubRegistry) notModified(resp *http.Response) []release {
	// GitHub lists releases newest first, so a new release always
	// lands on the first page and changes its ETag: an unchanged
	// first page means nothing was published. GitHub does not count
	// a 304 against the rate limit when the request is authorised.
	// If another call refreshed the cache meanwhile, its list is at
	// least as new as the one our validator described.
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log.Debug("releases not modified", "rate_remaining", resp.Header.Get("X-RateLimit-Remaining"))
	return githubCopyReleases(g.cachedLocked)
}

// collectReleases appends the published releases of one page to all.
func (g *githubRegistry) collectReleases(all []release, seen map[int64]bool, rels []githubRelease, page int) ([]release, error) {
	for _, r := range rels {
		// A release published while we paginate shifts the pages by
		// one, so the same release can arrive twice.
		if r.Draft || seen[r.ID] {
			continue
		}
		if r.TagName == "" {
			return nil, fmt.Errorf("github %s: list releases page %d: release %d has no tag_name", g.name(), page, r.ID)
		}
		seen[r.ID] = true
		all = append(all, g.toRelease(r))
	}
	return all, nil
}

// cacheReleases keeps a full listing with the first page's ETag, so that the
// next poll can ask whether anything changed, and returns a copy of it.
func (g *githubRegistry) cacheReleases(etag string, all []release) []release {
	if all == nil {
		all = []release{}
	}
	g.mu.Lock()
	g.etagLocked, g.cachedLocked, g.cachedAtLocked = etag, all, g.now()
	g.mu.Unlock()
	g.log.Debug("releases listed", "count", len(all))
	return githubCopyReleases(all)
}

// githubCopyReleases returns a deep copy so callers cannot alter the cache.
func githubCopyReleases(rels []release) []release {
	out := make([]release, len(rels))
	for i, r := range rels {
		r.Assets = append([]asset(nil), r.Assets...)
		out[i] = r
	}
	return out
}

func (g *githubRegistry) toRelease(r githubRelease) release {
	rel := release{Tag: r.TagName, ID: strconv.FormatInt(r.ID, 10), Prerelease: r.Prerelease}
	for _, a := range r.Assets {
		x := asset{Name: a.Name, URL: githubAssetURL(g.owner, g.repo, r.TagName, a.Name, a.ID), Size: a.Size, SHA256: a.sha256()}
		if x.SHA256 != "" {
			x.SHA256From = "GitHub digest"
		}
		rel.Assets = append(rel.Assets, x)
	}
	return rel
}

// githubAssetURL is dewy's artifact URL for a GitHub release asset. The id
// saves open a lookup; tag and name identify the asset without it.
func githubAssetURL(owner, repo, tag, name string, id int64) string {
	s := "ghr://" + owner + "/" + repo + "/tag/" + url.PathEscape(tag) + "/" + url.PathEscape(name)
	if id > 0 {
		s += "?id=" + strconv.FormatInt(id, 10)
	}
	return s
}

func (g *githubRegistry) name() string { return g.owner + "/" + g.repo }

func (g *githubRegistry) repoURL() string {
	return githubRepoURL(g.api, g.owner, g.repo)
}

func githubRepoURL(api *url.URL, owner, repo string) string {
	return api.String() + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo)
}

func (g *githubRegistry) newAPIRequest(ctx context.Context, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("github %s: request %s: %w", g.name(), githubRedactURL(u), err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "dewy")
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	return req, nil
}

// nextPage returns the rel="next" target of resp's Link header, or "" on the
// last page. It must stay on the API host, which is the only one that may
// receive the token.
func (g *githubRegistry) nextPage(resp *http.Response) (string, error) {
	for _, link := range strings.Split(resp.Header.Get("Link"), ",") {
		target, params, ok := strings.Cut(link, ";")
		if !ok {
			continue
		}
		isNext := false
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "rel") && githubHasWord(strings.Trim(v, `"`), "next") {
				isNext = true
			}
		}
		if !isNext {
			continue
		}
		target = strings.TrimSpace(target)
		if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			return "", fmt.Errorf("github %s: list releases: malformed Link header", g.name())
		}
		u, err := resp.Request.URL.Parse(target[1 : len(target)-1])
		if err != nil {
			return "", fmt.Errorf("github %s: list releases: malformed Link header: %w", g.name(), err)
		}
		if u.Scheme != g.api.Scheme || u.Host != g.api.Host {
			return "", fmt.Errorf("github %s: list releases: next page %s is not on the API host %s", g.name(), u.Redacted(), g.api.Host)
		}
		return u.String(), nil
	}
	return "", nil
}

func githubHasWord(list, word string) bool {
	for _, w := range strings.Fields(list) {
		if strings.EqualFold(w, word) {
			return true
		}
	}
	return false
}

// readJSON decodes a successful API response into v, closing the body.
func (g *githubRegistry) readJSON(resp *http.Response, v any, what string) error {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return g.statusError(resp, fmt.Sprintf("github %s: %s", g.name(), what))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, githubMaxListing+1))
	if err != nil {
		return fmt.Errorf("github %s: %s: read body: %w", g.name(), what, err)
	}
	if len(body) > githubMaxListing {
		return fmt.Errorf("github %s: %s: response larger than %d MiB", g.name(), what, githubMaxListing>>20)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("github %s: %s from %s: not the JSON GitHub sends: %w", g.name(), what, resp.Request.URL.Redacted(), err)
	}
	return nil
}

// statusError turns a failed response into an error starting with context.
// Rate limits become *retryAfterError so the poll loop waits as GitHub asks
// (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api);
// nothing here retries.
func (g *githubRegistry) statusError(resp *http.Response, context string) error {
	code := resp.StatusCode
	msg := g.serverMessage(resp)
	status := fmt.Sprintf("HTTP %d", code)
	if msg != "" {
		status += ": " + msg
	}
	if code == http.StatusForbidden || code == http.StatusTooManyRequests {
		if until, ok := g.retryAt(resp, msg); ok {
			return &retryAfterError{
				Err:   fmt.Errorf("%s: rate limited until %s (%s)", context, until.UTC().Format(time.RFC3339), status),
				Until: until,
			}
		}
	}
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%s: %w (%s)", context, errAccessDenied, status)
	case http.StatusNotFound:
		hint := ""
		if g.token == "" {
			hint = "; a private repository needs GITHUB_TOKEN"
		}
		return fmt.Errorf("%s: %w (%s%s)", context, errNotFound, status, hint)
	}
	return fmt.Errorf("%s: %s", context, status)
}

// retryAt reads when GitHub allows the next request, in the order its
// documentation gives: Retry-After, then an exhausted X-RateLimit-Remaining
// with X-RateLimit-Reset, then one minute for any other rate-limit answer.
func (g *githubRegistry) retryAt(resp *http.Response, msg string) (time.Time, bool) {
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
			return g.now().Add(time.Duration(secs) * time.Second), true
		}
		if t, err := http.ParseTime(ra); err == nil {
			return t, true
		}
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return time.Unix(reset, 0), true
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests || strings.Contains(strings.ToLower(msg), "rate limit") {
		return g.now().Add(githubDefaultWait), true
	}
	return time.Time{}, false
}

// serverMessage extracts the "message" field of a GitHub error body, cut to
// one short line. The token is scrubbed in case a server echoes it.
func (g *githubRegistry) serverMessage(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, githubMaxError))
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	msg := strings.Join(strings.Fields(e.Message), " ")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if g.token != "" {
		msg = strings.ReplaceAll(msg, g.token, "[redacted]")
	}
	return msg
}

// open downloads a release asset named by u (ghr://owner/repo/tag/TAG/NAME,
// optionally with ?id=N to skip the lookup by tag). The API answers with a
// redirect to a signed URL on a storage host, which is fetched without the
// token. For offset > 0 a Range request is sent; if a server ignores it and
// sends the whole object, the first offset bytes are discarded here so the
// caller always gets what it asked for.
func (g *githubRegistry) open(ctx context.Context, u *url.URL, offset int64) (io.ReadCloser, int64, error) {
	owner, repo, tag, name, id, err := githubParseAssetURL(u)
	if err != nil {
		return nil, 0, err
	}
	obj := u.Redacted()
	base := githubRepoURL(g.api, owner, repo)
	if offset < 0 {
		return nil, 0, fmt.Errorf("open %s: negative offset %d", obj, offset)
	}
	if id == 0 {
		if id, err = g.lookupAsset(ctx, base, obj, tag, name); err != nil {
			return nil, 0, err
		}
	}

	target := base + "/releases/assets/" + strconv.FormatInt(id, 10)
	withToken := true
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return nil, 0, fmt.Errorf("open %s: %w", obj, err)
		}
		req.Header.Set("Accept", "application/octet-stream")
		req.Header.Set("User-Agent", "dewy")
		if withToken {
			req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
			if g.token != "" {
				req.Header.Set("Authorization", "Bearer "+g.token)
			}
		}
		if offset > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		}
		resp, err := g.downloadClient.Do(req)
		if err != nil {
			return nil, 0, fmt.Errorf("open %s: %w", obj, err)
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			resp.Body.Close()
			loc, err := resp.Location()
			if err != nil {
				return nil, 0, fmt.Errorf("open %s: redirect without a usable Location: %w", obj, err)
			}
			if hop >= githubMaxRedirects {
				return nil, 0, fmt.Errorf("open %s: more than %d redirects", obj, githubMaxRedirects)
			}
			// The signed URL is the credential from here on; the storage
			// host must never see the GitHub token.
			target, withToken = loc.String(), false
			continue
		}
		return g.download(resp, obj, offset)
	}
}

// download checks a final download response and positions it at offset.
func (g *githubRegistry) download(resp *http.Response, obj string, offset int64) (io.ReadCloser, int64, error) {
	switch resp.StatusCode {
	case http.StatusOK:
		if offset > 0 {
			// The server ignored Range; skip what the caller already has.
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				resp.Body.Close()
				return nil, 0, fmt.Errorf("open %s: skip to offset %d: %w", obj, offset, err)
			}
		}
		return resp.Body, resp.ContentLength, nil
	case http.StatusPartialContent:
		start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != offset {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("open %s: asked for bytes from %d, got Content-Range %q", obj, offset, resp.Header.Get("Content-Range"))
		}
		return resp.Body, total, nil
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		// "bytes */SIZE": an offset equal to the size means the caller
		// already has every byte.
		if _, total, err := parseContentRange(resp.Header.Get("Content-Range")); err == nil && total == offset {
			return io.NopCloser(strings.NewReader("")), total, nil
		}
		return nil, 0, fmt.Errorf("open %s: offset %d is beyond the end (Content-Range %q)", obj, offset, resp.Header.Get("Content-Range"))
	}
	defer resp.Body.Close()
	return nil, 0, g.statusError(resp, "open "+obj)
}

// lookupAsset finds an asset's id from its release tag and name.
func (g *githubRegistry) lookupAsset(ctx context.Context, base, obj, tag, name string) (int64, error) {
	req, err := g.newAPIRequest(ctx, base+"/releases/tags/"+url.PathEscape(tag))
	if err != nil {
		return 0, err
	}
	resp, err := g.apiClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", obj, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return 0, fmt.Errorf("open %s: release %q: %w", obj, tag, errNotFound)
	}
	var rel githubRelease
	if err := g.readJSON(resp, &rel, "release "+strconv.Quote(tag)); err != nil {
		return 0, fmt.Errorf("open %s: %w", obj, err)
	}
	for _, a := range rel.Assets {
		if a.Name == name && a.ID > 0 {
			return a.ID, nil
		}
	}
	return 0, fmt.Errorf("open %s: release %q has no asset %q: %w", obj, tag, name, errNotFound)
}

// githubParseAssetURL splits ghr://owner/repo/tag/TAG/NAME[?id=N]. Asset
// names never contain "/", so extra segments belong to the tag.
func githubParseAssetURL(u *url.URL) (owner, repo, tag, name string, id int64, err error) {
	bad := func(why string) error {
		return fmt.Errorf("open %s: %s, want ghr://owner/repo/tag/TAG/NAME[?id=N]", u.Redacted(), why)
	}
	if u.Scheme != "ghr" || u.Opaque != "" || u.User != nil {
		return "", "", "", "", 0, bad("not a GitHub asset URL")
	}
	segs := strings.Split(strings.TrimPrefix(u.EscapedPath(), "/"), "/")
	if len(segs) < 4 || segs[1] != "tag" {
		return "", "", "", "", 0, bad("malformed path")
	}
	owner = u.Host
	if repo, err = url.PathUnescape(segs[0]); err != nil {
		return "", "", "", "", 0, bad("malformed path")
	}
	if !githubValidName(owner) || !githubValidName(repo) {
		return "", "", "", "", 0, bad("bad owner or repository")
	}
	if tag, err = url.PathUnescape(strings.Join(segs[2:len(segs)-1], "/")); err != nil || tag == "" {
		return "", "", "", "", 0, bad("bad tag")
	}
	if name, err = url.PathUnescape(segs[len(segs)-1]); err != nil || name == "" {
		return "", "", "", "", 0, bad("bad asset name")
	}
	for key, vals := range u.Query() {
		if key != "id" {
			return "", "", "", "", 0, bad(fmt.Sprintf("unknown option %q", key))
		}
		if len(vals) != 1 {
			return "", "", "", "", 0, bad("more than one id")
		}
		if id, err = strconv.ParseInt(vals[0], 10, 64); err != nil || id <= 0 {
			return "", "", "", "", 0, bad(fmt.Sprintf("bad id %q", vals[0]))
		}
	}
	return owner, repo, tag, name, id, nil
}

var _ reporter = (*githubRegistry)(nil)

// report, with report=true on the registry URL, uploads the deploy event
// as the release asset deployed_<host>.json, replacing the host's previous
// one. It is opt-in because it needs a token that can write to the
// repository (contents: write), which a host that only deploys should not
// hold; and every host adds an asset to the release.
func (g *githubRegistry) report(ctx context.Context, rep deployReport) error {
	if !g.reportOn || g.token == "" {
		return nil
	}
	body, err := reportBody(rep)
	if err != nil {
		return err
	}
	name := "deployed_" + rep.Host + ".json"
	var rel struct {
		UploadURL string        `json:"upload_url"`
		Assets    []githubAsset `json:"assets"`
	}
	req, err := g.newAPIRequest(ctx, g.repoURL()+"/releases/"+url.PathEscape(rep.ID))
	if err != nil {
		return err
	}
	resp, err := g.apiClient.Do(req)
	if err != nil {
		return fmt.Errorf("github %s: report: %w", g.name(), err)
	}
	if err := g.readJSON(resp, &rel, "report: release "+rep.ID); err != nil {
		return err
	}
	upload, err := g.uploadURL(rel.UploadURL)
	if err != nil {
		return err
	}
	for _, a := range rel.Assets {
		if a.Name != name {
			continue
		}
		if err := g.send(ctx, http.MethodDelete, g.repoURL()+"/releases/assets/"+strconv.FormatInt(a.ID, 10), nil, http.StatusNoContent); err != nil {
			return err
		}
	}
	return g.send(ctx, http.MethodPost, upload+"?name="+url.QueryEscape(name), body, http.StatusCreated)
}

// uploadURL checks the release's upload_url template before the token is
// sent there: GitHub's own upload host, or the Enterprise server's.
func (g *githubRegistry) uploadURL(tmpl string) (string, error) {
	raw, _, _ := strings.Cut(tmpl, "{")
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("github %s: report: release has no usable upload_url", g.name())
	}
	apiHost := g.api.Hostname()
	ok := u.Host == g.api.Host || (apiHost == "api.github.com" && u.Hostname() == "uploads.github.com")
	if !ok || (u.Scheme != "https" && u.Scheme != g.api.Scheme) {
		return "", fmt.Errorf("github %s: report: upload_url host %q is not the API's; not sending the token there", g.name(), u.Host)
	}
	return u.String(), nil
}

// send makes one authorised write request and checks its status.
func (g *githubRegistry) send(ctx context.Context, method, target string, body []byte, want int) error {
	req, err := g.newAPIRequest(ctx, target)
	if err != nil {
		return err
	}
	req.Method = method
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.downloadClient.Do(req)
	if err != nil {
		return fmt.Errorf("github %s: report: %s: %w", g.name(), method, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return g.statusError(resp, fmt.Sprintf("github %s: report: %s %s", g.name(), method, githubRedactURL(target)))
	}
	return nil
}
