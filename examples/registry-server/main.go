// registry-server is a small dewy registry speaking the gRPC RegistryService.
// It serves the releases in a directory laid out as <dir>/<tag>/<files>,
// e.g. releases/v1.2.0/app_linux_amd64.tar.gz, and answers each host with
// the newest semantic-version tag and the file built for its platform.
//
//	go run ./examples/registry-server -dir ./releases
//	dewy server --registry 'grpc://localhost:9000?no-tls=true' -- ./app
//
// With -tls-cert and -tls-key it serves TLS, which dewy expects by default
// (add ?ca=/path/ca.pem on dewy's side for a private CA). Artifact URLs are
// file:// paths unless -base-url names where the same tree is served over
// HTTPS. Each answer carries the file's digest in artifact_digest
// ("sha256:<hex>"), which dewy verifies; clients that do not know the field
// (upstream Dewy) skip it. -sha256-fragment also appends #sha256=<digest> to
// the URL, for dewy releases older than artifact_digest; upstream Dewy then
// fails, since it takes the fragment for part of the file name.
// If REGISTRY_TOKEN is set, calls must carry it as a bearer token (dewy
// sends DEWY_GRPC_TOKEN). Reports from hosts are logged.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"dewy/dewypb"

	"golang.org/x/mod/semver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type config struct {
	addr       string
	dir        string
	baseURL    string
	certFile   string
	keyFile    string
	preRelease bool
	fragment   bool
	token      string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "localhost:9000", "address to listen on")
	flag.StringVar(&cfg.dir, "dir", "", "releases directory, laid out as <dir>/<tag>/<files> (required)")
	flag.StringVar(&cfg.baseURL, "base-url", "", "serve artifact URLs as <base-url>/<tag>/<file> instead of file:// paths")
	flag.StringVar(&cfg.certFile, "tls-cert", "", "PEM certificate chain; with -tls-key, serve TLS")
	flag.StringVar(&cfg.keyFile, "tls-key", "", "PEM private key for -tls-cert")
	flag.BoolVar(&cfg.preRelease, "pre-release", false, "offer pre-release tags such as v1.3.0-rc.1 too")
	flag.BoolVar(&cfg.fragment, "sha256-fragment", false, "also append #sha256=<digest> to artifact URLs, for old dewy clients (breaks upstream Dewy)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: registry-server -dir DIR [flags]\n\nServes the newest release in DIR to dewy's grpc:// registry.\nSet REGISTRY_TOKEN to require that bearer token.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	cfg.token = os.Getenv("REGISTRY_TOKEN")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "registry-server:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	if cfg.dir == "" {
		return errors.New("-dir is required")
	}
	dir, err := filepath.Abs(cfg.dir)
	if err != nil {
		return fmt.Errorf("-dir %s: %w", cfg.dir, err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("-dir %s: not a directory", cfg.dir)
	}
	if cfg.baseURL != "" {
		if u, err := url.Parse(cfg.baseURL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("-base-url %q: want an absolute URL such as https://dl.example.com/app", cfg.baseURL)
		}
	}
	var opts []grpc.ServerOption
	switch {
	case cfg.certFile != "" && cfg.keyFile != "":
		creds, err := credentials.NewServerTLSFromFile(cfg.certFile, cfg.keyFile)
		if err != nil {
			return fmt.Errorf("-tls-cert %s, -tls-key %s: %w", cfg.certFile, cfg.keyFile, err)
		}
		opts = append(opts, grpc.Creds(creds))
	case cfg.certFile != "" || cfg.keyFile != "":
		return errors.New("-tls-cert and -tls-key go together")
	}
	srv := &server{dir: dir, baseURL: strings.TrimSuffix(cfg.baseURL, "/"), preRelease: cfg.preRelease, fragment: cfg.fragment, token: cfg.token, log: log}
	if cfg.token != "" {
		opts = append(opts, grpc.UnaryInterceptor(srv.checkToken))
	}

	lis, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	gs := grpc.NewServer(opts...)
	dewypb.RegisterRegistryServiceServer(gs, srv)
	go func() {
		<-ctx.Done()
		gs.GracefulStop()
	}()
	log.Info("serving releases", "addr", lis.Addr().String(), "dir", dir, "tls", cfg.certFile != "", "token", cfg.token != "")
	return gs.Serve(lis)
}

type server struct {
	dewypb.UnimplementedRegistryServiceServer
	dir        string
	baseURL    string
	preRelease bool
	fragment   bool // append #sha256= to artifact URLs
	token      string
	log        *slog.Logger

	mu     sync.Mutex
	hashes map[string]fileHash // by path
}

// fileHash remembers a digest while the file looks unchanged, so a fleet
// polling every few seconds does not rehash large artifacts.
type fileHash struct {
	size    int64
	modTime time.Time
	sum     string
}

func (s *server) checkToken(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	want := "Bearer " + s.token
	for _, got := range md.Get("authorization") {
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
			return next(ctx, req)
		}
	}
	return nil, status.Error(codes.Unauthenticated, "missing or wrong bearer token")
}

func (s *server) Current(ctx context.Context, req *dewypb.CurrentRequest) (*dewypb.CurrentResponse, error) {
	tag, err := s.newestTag()
	if err != nil {
		return nil, err
	}
	tagDir := filepath.Join(s.dir, tag)
	name, err := pickArtifact(tagDir, req)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(tagDir, name)
	fi, err := os.Stat(file)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "stat %s/%s: %v", tag, name, err)
	}
	sum, err := s.sha256(file, fi)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "hash %s/%s: %v", tag, name, err)
	}
	u := (&url.URL{Scheme: "file", Path: file}).String()
	if s.baseURL != "" {
		u = s.baseURL + "/" + url.PathEscape(tag) + "/" + url.PathEscape(name)
	}
	s.log.Info("current", "peer", peerAddr(ctx), "os", req.GetOs(), "arch", req.GetArch(), "tag", tag, "artifact", name)
	if s.fragment {
		u += "#sha256=" + sum
	}
	return &dewypb.CurrentResponse{
		Id:             path.Join(tag, name),
		Tag:            tag,
		ArtifactUrl:    u,
		CreatedAt:      timestamppb.New(fi.ModTime()),
		ArtifactDigest: proto.String("sha256:" + sum),
	}, nil
}

func (s *server) Report(ctx context.Context, req *dewypb.ReportRequest) (*emptypb.Empty, error) {
	attrs := []any{"peer", peerAddr(ctx), "id", req.GetId(), "tag", req.GetTag(), "command", req.GetCommand()}
	if req.Err != nil {
		s.log.Warn("deploy failed", append(attrs, "err", req.GetErr())...)
	} else {
		s.log.Info("deployed", attrs...)
	}
	return &emptypb.Empty{}, nil
}

// newestTag is the highest semantic version among the directory's
// subdirectories; names that are not versions are ignored.
func (s *server) newestTag() (string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return "", status.Errorf(codes.Internal, "read releases: %v", err)
	}
	newest := ""
	for _, e := range entries {
		v := e.Name()
		if !e.IsDir() || !semver.IsValid(v) || (semver.Prerelease(v) != "" && !s.preRelease) {
			continue
		}
		if newest == "" || semver.Compare(v, newest) > 0 {
			newest = v
		}
	}
	if newest == "" {
		return "", status.Errorf(codes.NotFound, "no release yet: %s has no directory named like v1.2.3", s.dir)
	}
	return newest, nil
}

// archAliases are the other spellings of GOARCH names that release tools use.
var archAliases = map[string][]string{
	"amd64": {"x86_64"},
	"arm64": {"aarch64"},
	"386":   {"i386", "i686"},
}

// notArtifacts are companion files published next to artifacts.
var notArtifacts = []string{".sha256", ".sha256sum", ".sig", ".minisig", ".asc", ".pem", ".sbom", ".json", ".txt"}

// pickArtifact chooses the file for the host: the one it named, or the one
// whose name mentions its OS and architecture as whole words, as in
// app_linux_amd64.tar.gz or app_Linux_x86_64.zip.
func pickArtifact(tagDir string, req *dewypb.CurrentRequest) (string, error) {
	tag := filepath.Base(tagDir)
	if req.ArifactName != nil {
		name := req.GetArifactName()
		if name == "" || strings.ContainsAny(name, `/\`) || name == ".." {
			return "", status.Errorf(codes.InvalidArgument, "artifact name %q is not a file name", name)
		}
		if fi, err := os.Stat(filepath.Join(tagDir, name)); err != nil || !fi.Mode().IsRegular() {
			return "", status.Errorf(codes.NotFound, "release %s has no file %q", tag, name)
		}
		return name, nil
	}
	entries, err := os.ReadDir(tagDir)
	if err != nil {
		return "", status.Errorf(codes.Internal, "read release %s: %v", tag, err)
	}
	arches := append([]string{req.GetArch()}, archAliases[req.GetArch()]...)
	for _, e := range entries { // ReadDir sorts by name, so the choice is stable
		name := e.Name()
		lower := strings.ToLower(name)
		if !e.Type().IsRegular() || slices.ContainsFunc(notArtifacts, func(ext string) bool { return strings.HasSuffix(lower, ext) }) {
			continue
		}
		if containsWord(lower, strings.ToLower(req.GetOs())) && slices.ContainsFunc(arches, func(a string) bool { return containsWord(lower, a) }) {
			return name, nil
		}
	}
	return "", status.Errorf(codes.NotFound, "release %s has no artifact for %s/%s", tag, req.GetOs(), req.GetArch())
}

// containsWord reports whether w occurs in s with no letter or digit on
// either side, so "arm" does not match "arm64".
func containsWord(s, w string) bool {
	if w == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		if (start == 0 || !isAlnum(s[start-1])) && (end == len(s) || !isAlnum(s[end])) {
			return true
		}
		i = start + 1
	}
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func (s *server) sha256(file string, fi os.FileInfo) (string, error) {
	s.mu.Lock()
	h, ok := s.hashes[file]
	s.mu.Unlock()
	if ok && h.size == fi.Size() && h.modTime.Equal(fi.ModTime()) {
		return h.sum, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.Copy(d, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(d.Sum(nil))
	s.mu.Lock()
	if s.hashes == nil {
		s.hashes = map[string]fileHash{}
	}
	s.hashes[file] = fileHash{size: fi.Size(), modTime: fi.ModTime(), sum: sum}
	s.mu.Unlock()
	return sum, nil
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}
	return ""
}
