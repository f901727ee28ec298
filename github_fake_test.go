package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeGitHub is an in-process GitHub: the REST endpoints dewy uses, speaking
// GitHub's wire format (JSON fields, ETag/304, Link pagination, rate-limit
// headers, 302 to signed storage URLs), and a separate storage host.
//
// The API is addressed as http://localhost:PORT and the storage host as
// http://127.0.0.1:PORT, so the two are different hosts to an HTTP client.
//
// With a token the repository is private, as a token-guarded repository is on
// GitHub: no Authorization answers 404, a wrong one 401. Without a token it
// is public and any credential is accepted.
type fakeGitHub struct {
	API    *httptest.Server
	Assets *httptest.Server
	Owner  string
	Repo   string

	// Counters; safe to read while the fake serves.
	APIRequests     atomic.Int64 // every request to the API host
	Listings        atomic.Int64 // listing pages answered 200 with a body
	NotModified     atomic.Int64 // listing pages answered 304
	AssetRequests   atomic.Int64 // every request to the storage host
	AssetAuthorized atomic.Int64 // storage-host requests carrying Authorization; must stay 0
	Uploads         atomic.Int64 // release assets uploaded

	token  string
	apiURL string
	secret []byte
	repoID int64

	mu             sync.Mutex
	rels           []*fakeGHRelease // oldest first; listed newest first, as GitHub does
	nextID         int64
	created        time.Time
	reset          time.Time
	used           map[bool]int // requests charged to the rate limit, by authenticated
	failN          int
	failStatus     int
	failReset      time.Time
	failRetryAfter time.Duration
	lastHeader     http.Header
}

type fakeGHRelease struct {
	ID         int64
	Tag        string
	Prerelease bool
	Draft      bool
	Created    time.Time
	Assets     []fakeGHAsset
}

type fakeGHAsset struct {
	ID   int64
	Name string
	Data []byte
	// Digest, when set by setDigest, replaces the "sha256:<hex>" GitHub
	// computes from Data; a nil *Digest is served as null, as on assets
	// uploaded before GitHub kept digests.
	Digest *(*string)
}

// newFakeGitHub starts the fake with an empty repository dewy-test/app.
// token "" makes the repository public.
func newFakeGitHub(t *testing.T, token string) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{
		Owner:   "dewy-test",
		Repo:    "app",
		token:   token,
		secret:  []byte(fmt.Sprintf("fake-signing-key-%d", time.Now().UnixNano())),
		repoID:  424242,
		nextID:  1000,
		created: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		reset:   time.Now().Add(time.Hour).Truncate(time.Second),
		used:    map[bool]int{},
	}

	api := http.NewServeMux()
	api.HandleFunc("GET /repos/{owner}/{repo}/releases", f.handleList)
	api.HandleFunc("GET /repositories/{id}/releases", f.handleList)
	api.HandleFunc("GET /repos/{owner}/{repo}/releases/tags/{tag}", f.handleTag)
	api.HandleFunc("GET /repos/{owner}/{repo}/releases/assets/{id}", f.handleAsset)
	api.HandleFunc("GET /repos/{owner}/{repo}/releases/{id}", f.handleRelease)
	api.HandleFunc("DELETE /repos/{owner}/{repo}/releases/assets/{id}", f.handleDeleteAsset)
	// GitHub Enterprise's layout: uploads on the API's host under /api/uploads.
	api.HandleFunc("POST /api/uploads/repos/{owner}/{repo}/releases/{id}/assets", f.handleUpload)
	f.API = httptest.NewServer(f.apiMiddleware(api))
	t.Cleanup(f.API.Close)
	f.apiURL = strings.Replace(f.API.URL, "127.0.0.1", "localhost", 1)

	f.Assets = httptest.NewServer(http.HandlerFunc(f.handleDownload))
	t.Cleanup(f.Assets.Close)
	return f
}

// addRelease publishes a release; each call is newer than the previous one.
func (f *fakeGitHub) addRelease(tag string, prerelease, draft bool, files map[string][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	r := &fakeGHRelease{ID: f.nextID, Tag: tag, Prerelease: prerelease, Draft: draft, Created: f.created}
	f.created = f.created.Add(time.Minute)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f.nextID++
		r.Assets = append(r.Assets, fakeGHAsset{ID: f.nextID, Name: name, Data: bytes.Clone(files[name])})
	}
	f.rels = append(f.rels, r)
}

// setDigest makes the fake serve digest for the named asset of tag instead
// of the one GitHub computes; nil serves null.
func (f *fakeGitHub) setDigest(tag, name string, digest *string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rels {
		for i := range r.Assets {
			if r.Tag == tag && r.Assets[i].Name == name {
				r.Assets[i].Digest = &digest
				return
			}
		}
	}
	panic("setDigest: no asset " + name + " in " + tag)
}

// env is a getenv for newGitHubRegistry pointing at this fake.
func (f *fakeGitHub) env() func(string) string {
	return func(key string) string {
		switch key {
		case "GITHUB_API_URL":
			return f.apiURL
		case "GITHUB_TOKEN":
			return f.token
		}
		return ""
	}
}

// ghrURL is the registry URL of the fake's repository.
func (f *fakeGitHub) ghrURL() *url.URL {
	return &url.URL{Scheme: "ghr", Host: f.Owner, Path: "/" + f.Repo}
}

// newRegistry returns a registry over this fake whose log goes to the test output.
func (f *fakeGitHub) newRegistry(t *testing.T) *githubRegistry {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	g, err := newGitHubRegistry(f.ghrURL(), f.env(), log)
	if err != nil {
		t.Fatalf("newGitHubRegistry: %v", err)
	}
	return g
}

// rateLimitNext makes the next n API requests fail as an exhausted primary
// rate limit does: 403, X-RateLimit-Remaining: 0, X-RateLimit-Reset at reset.
func (f *fakeGitHub) rateLimitNext(n int, reset time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failN, f.failStatus, f.failReset = n, http.StatusForbidden, reset
}

// throttleNext makes the next n API requests fail as a secondary rate limit
// does: 429 with Retry-After in whole seconds.
func (f *fakeGitHub) throttleNext(n int, retryAfter time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failN, f.failStatus, f.failRetryAfter = n, http.StatusTooManyRequests, retryAfter
}

// lastAPIHeader returns the headers of the most recent API request.
func (f *fakeGitHub) lastAPIHeader() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastHeader.Clone()
}

type fakeGHAuthKey struct{}

// apiMiddleware does what GitHub does before routing: count, authenticate,
// enforce rate limits.
func (f *fakeGitHub) apiMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.APIRequests.Add(1)
		f.mu.Lock()
		f.lastHeader = r.Header.Clone()
		f.mu.Unlock()

		authed := false
		if h := r.Header.Get("Authorization"); h != "" {
			scheme, tok, _ := strings.Cut(h, " ")
			if f.token != "" && (tok != f.token || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "token"))) {
				f.rateHeaders(w, false, true)
				fakeGHError(w, http.StatusUnauthorized, "Bad credentials")
				return
			}
			authed = true
		}
		if v := r.Header.Get("X-GitHub-Api-Version"); v != "" && v != "2022-11-28" {
			fakeGHError(w, http.StatusBadRequest, fmt.Sprintf("API version %s is not supported.", v))
			return
		}

		f.mu.Lock()
		failing := f.failN > 0
		status, reset, retryAfter := f.failStatus, f.failReset, f.failRetryAfter
		if failing {
			f.failN--
		}
		exhausted := f.used[authed] >= fakeGHLimit(authed)
		f.mu.Unlock()
		switch {
		case failing && status == http.StatusTooManyRequests:
			f.rateHeaders(w, authed, false)
			w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
			fakeGHError(w, status, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
			return
		case failing:
			f.rateHeaders(w, authed, false)
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
			fakeGHError(w, status, "API rate limit exceeded for user ID 1.")
			return
		case exhausted:
			f.rateHeaders(w, authed, false)
			fakeGHError(w, http.StatusForbidden, "API rate limit exceeded.")
			return
		}
		next.ServeHTTP(w, r.WithContext(contextWithFakeGHAuth(r, authed)))
	})
}

// fakeGHLimit is GitHub's primary rate limit per hour.
func fakeGHLimit(authed bool) int {
	if authed {
		return 5000
	}
	return 60
}

func contextWithFakeGHAuth(r *http.Request, authed bool) context.Context {
	return context.WithValue(r.Context(), fakeGHAuthKey{}, authed)
}

func fakeGHAuthed(r *http.Request) bool {
	v, _ := r.Context().Value(fakeGHAuthKey{}).(bool)
	return v
}

// rateHeaders sets the X-RateLimit-* headers GitHub puts on every answer,
// charging the request first when charge is set.
func (f *fakeGitHub) rateHeaders(w http.ResponseWriter, authed, charge bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if charge {
		f.used[authed]++
	}
	limit := fakeGHLimit(authed)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(max(limit-f.used[authed], 0)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(f.reset.Unix(), 10))
	h.Set("X-RateLimit-Used", strconv.Itoa(f.used[authed]))
	h.Set("X-RateLimit-Resource", "core")
}

func fakeGHError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{
		"message":           msg,
		"documentation_url": "https://docs.github.com/rest",
		"status":            strconv.Itoa(status),
	})
}

// repoVisible checks the {owner}/{repo} (or {id}) of the path, answering 404
// as GitHub does for a repository that is missing or private to the caller.
func (f *fakeGitHub) repoVisible(w http.ResponseWriter, r *http.Request) bool {
	ok := strings.EqualFold(r.PathValue("owner"), f.Owner) && strings.EqualFold(r.PathValue("repo"), f.Repo)
	if id := r.PathValue("id"); id != "" && strings.HasPrefix(r.URL.Path, "/repositories/") {
		ok = id == strconv.FormatInt(f.repoID, 10)
	}
	if ok && (f.token == "" || fakeGHAuthed(r)) {
		return true
	}
	f.rateHeaders(w, fakeGHAuthed(r), true)
	fakeGHError(w, http.StatusNotFound, "Not Found")
	return false
}

func (f *fakeGitHub) handleList(w http.ResponseWriter, r *http.Request) {
	if !f.repoVisible(w, r) {
		return
	}
	authed := fakeGHAuthed(r)
	q := r.URL.Query()
	perPage, page := 30, 1
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		perPage = min(v, 100)
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}

	f.mu.Lock()
	var visible []*fakeGHRelease
	for i := len(f.rels) - 1; i >= 0; i-- {
		// Drafts are shown only to callers with push access.
		if !f.rels[i].Draft || authed {
			visible = append(visible, f.rels[i])
		}
	}
	lastPage := max((len(visible)+perPage-1)/perPage, 1)
	items := []fakeGHReleaseJSON{}
	for i := (page - 1) * perPage; i < len(visible) && i < page*perPage; i++ {
		items = append(items, f.releaseJSON(visible[i]))
	}
	f.mu.Unlock()

	body, _ := json.Marshal(items)
	sum := sha256.Sum256(body)
	etag := `W/"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "private, max-age=60, s-maxage=60")
	w.Header().Set("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
	if lastPage > 1 {
		w.Header().Set("Link", f.links(page, perPage, lastPage))
	}
	if fakeGHETagMatch(r.Header.Get("If-None-Match"), etag) {
		// GitHub does not charge an authorised 304 to the rate limit.
		f.rateHeaders(w, authed, !authed)
		f.NotModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	f.rateHeaders(w, authed, true)
	f.Listings.Add(1)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(body)
}

// links builds a Link header the way GitHub does, addressing the repository
// by id rather than by name.
func (f *fakeGitHub) links(page, perPage, last int) string {
	u := func(p int) string {
		return fmt.Sprintf("<%s/repositories/%d/releases?per_page=%d&page=%d>", f.apiURL, f.repoID, perPage, p)
	}
	var parts []string
	if page > 1 {
		parts = append(parts, u(page-1)+`; rel="prev"`)
	}
	if page < last {
		parts = append(parts, u(page+1)+`; rel="next"`, u(last)+`; rel="last"`)
	}
	if page > 1 {
		parts = append(parts, u(1)+`; rel="first"`)
	}
	return strings.Join(parts, ", ")
}

func fakeGHETagMatch(header, etag string) bool {
	weak := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "W/") }
	for _, cand := range strings.Split(header, ",") {
		if strings.TrimSpace(cand) == "*" || (cand != "" && weak(cand) == weak(etag)) {
			return true
		}
	}
	return false
}

func (f *fakeGitHub) handleTag(w http.ResponseWriter, r *http.Request) {
	tag := r.PathValue("tag")
	f.serveRelease(w, r, func(rel *fakeGHRelease) bool { return rel.Tag == tag && !rel.Draft })
}

// serveRelease answers the release match picks, as GitHub's single-release
// endpoints do, or 404.
func (f *fakeGitHub) serveRelease(w http.ResponseWriter, r *http.Request, match func(*fakeGHRelease) bool) {
	if !f.repoVisible(w, r) {
		return
	}
	f.mu.Lock()
	var found *fakeGHReleaseJSON
	for _, rel := range f.rels {
		if match(rel) {
			j := f.releaseJSON(rel)
			found = &j
		}
	}
	f.mu.Unlock()
	f.rateHeaders(w, fakeGHAuthed(r), true)
	if found == nil {
		fakeGHError(w, http.StatusNotFound, "Not Found")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(found)
}

// handleAsset answers asset metadata as JSON, or with Accept:
// application/octet-stream a 302 to a short-lived signed storage URL.
func (f *fakeGitHub) handleAsset(w http.ResponseWriter, r *http.Request) {
	if !f.repoVisible(w, r) {
		return
	}
	f.rateHeaders(w, fakeGHAuthed(r), true)
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	f.mu.Lock()
	var meta *fakeGHAssetJSON
	for _, rel := range f.rels {
		for _, a := range rel.Assets {
			if a.ID == id {
				j := f.assetJSON(rel, a)
				meta = &j
			}
		}
	}
	f.mu.Unlock()
	if meta == nil {
		fakeGHError(w, http.StatusNotFound, "Not Found")
		return
	}
	if r.Header.Get("Accept") != "application/octet-stream" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		json.NewEncoder(w).Encode(meta)
		return
	}
	expires := strconv.FormatInt(time.Now().Add(5*time.Minute).Unix(), 10)
	loc := fmt.Sprintf("%s/releases/%d/%d?expires=%s&sig=%s", f.Assets.URL, f.repoID, id, expires, f.sign(id, expires))
	http.Redirect(w, r, loc, http.StatusFound)
}

func (f *fakeGitHub) sign(id int64, expires string) string {
	m := hmac.New(sha256.New, f.secret)
	fmt.Fprintf(m, "%d:%s", id, expires)
	return hex.EncodeToString(m.Sum(nil))
}

// handleDownload is the storage host. Like S3 behind a presigned URL it
// refuses a second credential in an Authorization header.
func (f *fakeGitHub) handleDownload(w http.ResponseWriter, r *http.Request) {
	f.AssetRequests.Add(1)
	if r.Header.Get("Authorization") != "" {
		f.AssetAuthorized.Add(1)
		http.Error(w, "InvalidArgument: Only one auth mechanism allowed", http.StatusBadRequest)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/releases/"), "/")
	if len(parts) != 2 {
		http.NotFound(w, r)
		return
	}
	id, _ := strconv.ParseInt(parts[1], 10, 64)
	q := r.URL.Query()
	exp, _ := strconv.ParseInt(q.Get("expires"), 10, 64)
	if !hmac.Equal([]byte(q.Get("sig")), []byte(f.sign(id, q.Get("expires")))) || time.Now().Unix() > exp {
		http.Error(w, "AccessDenied: Request has expired or signature does not match", http.StatusForbidden)
		return
	}
	f.mu.Lock()
	var data []byte
	var name string
	for _, rel := range f.rels {
		for _, a := range rel.Assets {
			if a.ID == id {
				data, name = a.Data, a.Name
			}
		}
	}
	f.mu.Unlock()
	if data == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename="+strconv.Quote(name))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// fakeGHReleaseJSON and fakeGHAssetJSON follow GitHub's REST "release" and
// "release asset" objects.
type fakeGHReleaseJSON struct {
	URL             string            `json:"url"`
	HTMLURL         string            `json:"html_url"`
	AssetsURL       string            `json:"assets_url"`
	ID              int64             `json:"id"`
	NodeID          string            `json:"node_id"`
	TagName         string            `json:"tag_name"`
	TargetCommitish string            `json:"target_commitish"`
	Name            string            `json:"name"`
	Draft           bool              `json:"draft"`
	Prerelease      bool              `json:"prerelease"`
	CreatedAt       time.Time         `json:"created_at"`
	PublishedAt     *time.Time        `json:"published_at"`
	Assets          []fakeGHAssetJSON `json:"assets"`
	Body            string            `json:"body"`
	UploadURL       string            `json:"upload_url"`
}

type fakeGHAssetJSON struct {
	URL                string    `json:"url"`
	BrowserDownloadURL string    `json:"browser_download_url"`
	ID                 int64     `json:"id"`
	NodeID             string    `json:"node_id"`
	Name               string    `json:"name"`
	Label              string    `json:"label"`
	State              string    `json:"state"`
	ContentType        string    `json:"content_type"`
	Size               int64     `json:"size"`
	Digest             *string   `json:"digest"`
	DownloadCount      int       `json:"download_count"`
	CreatedAt          time.Time `json:"created_at"`
	UpdatedAt          time.Time `json:"updated_at"`
}

func (f *fakeGitHub) releaseJSON(r *fakeGHRelease) fakeGHReleaseJSON {
	repoAPI := fmt.Sprintf("%s/repos/%s/%s", f.apiURL, f.Owner, f.Repo)
	j := fakeGHReleaseJSON{
		URL:             fmt.Sprintf("%s/releases/%d", repoAPI, r.ID),
		HTMLURL:         fmt.Sprintf("https://github.com/%s/%s/releases/tag/%s", f.Owner, f.Repo, url.PathEscape(r.Tag)),
		AssetsURL:       fmt.Sprintf("%s/releases/%d/assets", repoAPI, r.ID),
		ID:              r.ID,
		NodeID:          fmt.Sprintf("RE_%d", r.ID),
		TagName:         r.Tag,
		TargetCommitish: "main",
		Name:            r.Tag,
		Draft:           r.Draft,
		Prerelease:      r.Prerelease,
		CreatedAt:       r.Created,
		Assets:          []fakeGHAssetJSON{},
		UploadURL:       fmt.Sprintf("%s/api/uploads/repos/%s/%s/releases/%d/assets{?name,label}", f.apiURL, f.Owner, f.Repo, r.ID),
	}
	if !r.Draft {
		p := r.Created.Add(time.Second)
		j.PublishedAt = &p
	}
	for _, a := range r.Assets {
		j.Assets = append(j.Assets, f.assetJSON(r, a))
	}
	return j
}

func (f *fakeGitHub) assetJSON(r *fakeGHRelease, a fakeGHAsset) fakeGHAssetJSON {
	digest := "sha256:" + sha256Hex(a.Data)
	d := &digest
	if a.Digest != nil {
		d = *a.Digest
	}
	return fakeGHAssetJSON{
		Digest:             d,
		URL:                fmt.Sprintf("%s/repos/%s/%s/releases/assets/%d", f.apiURL, f.Owner, f.Repo, a.ID),
		BrowserDownloadURL: fmt.Sprintf("https://github.com/%s/%s/releases/download/%s/%s", f.Owner, f.Repo, url.PathEscape(r.Tag), url.PathEscape(a.Name)),
		ID:                 a.ID,
		NodeID:             fmt.Sprintf("RA_%d", a.ID),
		Name:               a.Name,
		State:              "uploaded",
		ContentType:        "application/octet-stream",
		Size:               int64(len(a.Data)),
		CreatedAt:          r.Created,
		UpdatedAt:          r.Created,
	}
}

// handleRelease answers one release by id, as GET /repos/o/r/releases/{id}.
func (f *fakeGitHub) handleRelease(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.serveRelease(w, r, func(rel *fakeGHRelease) bool { return fmt.Sprint(rel.ID) == id })
}

// handleUpload adds a release asset, as GitHub's upload endpoint does:
// authorised only, 422 when the name is taken.
func (f *fakeGitHub) handleUpload(w http.ResponseWriter, r *http.Request) {
	if !fakeGHAuthed(r) {
		fakeGHError(w, http.StatusUnauthorized, "Requires authentication")
		return
	}
	name := r.URL.Query().Get("name")
	data, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rel := range f.rels {
		if fmt.Sprint(rel.ID) != r.PathValue("id") {
			continue
		}
		for _, a := range rel.Assets {
			if a.Name == name {
				fakeGHError(w, http.StatusUnprocessableEntity, "Validation Failed: already_exists")
				return
			}
		}
		f.nextID++
		a := fakeGHAsset{ID: f.nextID, Name: name, Data: data}
		rel.Assets = append(rel.Assets, a)
		f.Uploads.Add(1)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(f.assetJSON(rel, a))
		return
	}
	fakeGHError(w, http.StatusNotFound, "Not Found")
}

func (f *fakeGitHub) handleDeleteAsset(w http.ResponseWriter, r *http.Request) {
	if !fakeGHAuthed(r) {
		fakeGHError(w, http.StatusUnauthorized, "Requires authentication")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rel := range f.rels {
		for i, a := range rel.Assets {
			if fmt.Sprint(a.ID) == r.PathValue("id") {
				rel.Assets = slices.Delete(rel.Assets, i, i+1)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
	}
	fakeGHError(w, http.StatusNotFound, "Not Found")
}

// asset returns the bytes of a release's asset, for tests to read back.
func (f *fakeGitHub) asset(tag, name string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rel := range f.rels {
		for _, a := range rel.Assets {
			if rel.Tag == tag && a.Name == name {
				return a.Data, true
			}
		}
	}
	return nil, false
}
