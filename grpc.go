//go:build !nogrpc

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"

	"dewy/dewypb"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// grpcRegistry asks a server speaking upstream Dewy's RegistryService which
// release to run, and reports deploys back to it. Unlike upstream it talks
// TLS unless told otherwise.
type grpcRegistry struct {
	addr         string // host:port, for messages
	artifactName string // sent as arifact_name when the operator chose one
	token        string // bearer token, kept only to scrub it from server messages
	noTLS        bool
	caFile       string // the private CA, if one was given
	conn         *grpc.ClientConn
	client       dewypb.RegistryServiceClient
	// timeout bounds each call; tests shorten it.
	timeout time.Duration
	log     *slog.Logger
}

var (
	_ registry = (*grpcRegistry)(nil)
	_ reporter = (*grpcRegistry)(nil)
)

// grpcCallTimeout bounds one Current or Report call: generous for a server
// under load, short enough that a hung server never stalls the poll loop.
const grpcCallTimeout = 30 * time.Second

// grpcTokenEnv holds the bearer token sent with every call.
const grpcTokenEnv = "DEWY_GRPC_TOKEN"

// newGRPCRegistry and checkGRPCURL are grpc://'s row in the registry
// scheme table.
func newGRPCRegistry(ctx context.Context, u *url.URL, sel selectOptions, getenv func(string) string, log *slog.Logger) (registry, error) {
	return asBackend[registry](openGRPC(ctx, u, sel.Artifact, getenv, log.With("registry", "grpc")))
}

func checkGRPCURL(u *url.URL, getenv func(string) string) error {
	if _, err := parseGRPCURL(u); err != nil {
		return err
	}
	_, err := grpcToken(u, getenv)
	return err
}

// openGRPC reads grpc://host:port[?no-tls=true|?ca=/path/ca.pem].
// The shared options (pre-release, artifact, track) are removed by the
// caller, which passes the artifact choice on as artifactName. No connection
// is made here: the first call dials, so a server that is down at start-up
// is only a failed poll.
func openGRPC(ctx context.Context, u *url.URL, artifactName string, getenv func(string) string, log *slog.Logger) (*grpcRegistry, error) {
	r, err := parseGRPCURL(u)
	if err != nil {
		return nil, err
	}
	where := redactURL(u)
	r.artifactName, r.log = artifactName, log
	var transport credentials.TransportCredentials
	if r.noTLS {
		transport = insecure.NewCredentials()
	} else {
		// RootCAs nil means the system roots.
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if r.caFile != "" {
			pool, err := loadCAFile(r.caFile)
			if err != nil {
				return nil, fmt.Errorf("grpc registry %s: %w", where, err)
			}
			cfg.RootCAs = pool
		}
		transport = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithUserAgent("dewy/" + version),
		// grpc's default backoff grows to two minutes; dewy's poll loop
		// already backs off, so keep the channel ready to answer sooner
		// once the server is back.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 30 * time.Second},
			MinConnectTimeout: 10 * time.Second,
		}),
	}
	tok, err := grpcToken(u, getenv)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		r.token = tok
		if r.noTLS {
			log.Warn("sending the bearer token without TLS because of no-tls=true", "registry_addr", r.addr, "env", grpcTokenEnv)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: tok, secure: !r.noTLS}))
	}
	conn, err := grpc.NewClient(r.addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("grpc registry %s: %w", where, err)
	}
	r.conn = conn
	r.client = dewypb.NewRegistryServiceClient(conn)
	return r, nil
}

// grpcToken reads the bearer token, if any.
func grpcToken(u *url.URL, getenv func(string) string) (string, error) {
	tok := getenv(grpcTokenEnv)
	// grpc would refuse such a header on every call; say so once, here.
	if strings.ContainsFunc(tok, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return "", fmt.Errorf("grpc registry %s: %s holds spaces or non-printable characters", redactURL(u), grpcTokenEnv)
	}
	return tok, nil
}

// parseGRPCURL is openGRPC short of reading the CA file and the token: the
// URL's own checks.
func parseGRPCURL(u *url.URL) (*grpcRegistry, error) {
	where := redactURL(u)
	if u.User != nil {
		return nil, fmt.Errorf("grpc registry %s: credentials do not belong in the URL; set %s", where, grpcTokenEnv)
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("grpc registry %s: want grpc://host:port with no path", where)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return nil, fmt.Errorf("grpc registry %s: want grpc://host:port", where)
	}
	r := &grpcRegistry{addr: u.Host, timeout: grpcCallTimeout}
	for key, vals := range u.Query() {
		switch key {
		case "no-tls":
			b, err := strconv.ParseBool(vals[0])
			if err != nil {
				return nil, fmt.Errorf("grpc registry %s: no-tls=%q: want true or false", where, vals[0])
			}
			r.noTLS = b
		case "ca":
			if vals[0] == "" {
				return nil, fmt.Errorf("grpc registry %s: ca: want the path of a PEM file", where)
			}
			r.caFile = vals[0]
		default:
			return nil, fmt.Errorf("grpc registry %s: unknown option %q (want no-tls or ca)", where, key)
		}
	}
	if r.noTLS && r.caFile != "" {
		return nil, fmt.Errorf("grpc registry %s: ca and no-tls=true contradict each other", where)
	}
	return r, nil
}

func loadCAFile(name string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", name, errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca %s: no PEM certificate in it", name)
	}
	return pool, nil
}

// bearerToken sends the token as "authorization: Bearer …" on every call.
type bearerToken struct {
	token  string
	secure bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity makes grpc refuse to send the token in the clear,
// unless the operator said no-tls=true.
func (b bearerToken) RequireTransportSecurity() bool { return b.secure }

// close releases the connection. dewy keeps its registry for its whole
// life, so only tests call it.
func (r *grpcRegistry) close() error { return r.conn.Close() }

// releases asks for the one release this host should run. A server that has
// none for this platform answers NotFound, which wraps errNotFound.
func (r *grpcRegistry) releases(ctx context.Context) ([]release, error) {
	callCtx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req := &dewypb.CurrentRequest{Arch: runtime.GOARCH, Os: runtime.GOOS}
	if r.artifactName != "" {
		req.ArifactName = &r.artifactName
	}
	res, err := r.client.Current(callCtx, req)
	if err != nil {
		return nil, r.callError(ctx, "current", err)
	}
	rel, err := releaseFromCurrent(res)
	if err != nil {
		return nil, fmt.Errorf("grpc registry %s: current: %w", r.addr, err)
	}
	return []release{rel}, nil
}

// releaseFromCurrent turns the server's answer into a release of one asset.
// The artifact URL is kept as the server wrote it, less the fragment, so
// presigned query strings survive.
func releaseFromCurrent(res *dewypb.CurrentResponse) (release, error) {
	tag := res.GetTag()
	if tag == "" {
		return release{}, errors.New("answer has no tag")
	}
	raw := res.GetArtifactUrl()
	if raw == "" {
		return release{}, fmt.Errorf("release %s: answer has no artifact_url", tag)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, which may carry a signature.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return release{}, fmt.Errorf("release %s: artifact_url is not a URL: %v", tag, err)
	}
	if u.Scheme == "" || u.Opaque != "" {
		return release{}, fmt.Errorf("release %s: artifact_url %s is not an absolute URL", tag, redactURL(u))
	}
	name := path.Base(u.Path)
	if name == "." || name == "/" {
		return release{}, fmt.Errorf("release %s: artifact_url %s names no file", tag, redactURL(u))
	}
	a := asset{Name: name, Size: -1}
	a.URL, _, _ = strings.Cut(raw, "#")
	if res.ArtifactDigest != nil {
		d := res.GetArtifactDigest()
		sum, ok := strings.CutPrefix(d, "sha256:")
		sum = strings.ToLower(sum)
		if !ok || !isSHA256Hex(sum) {
			return release{}, fmt.Errorf("release %s: artifact_digest %q: want sha256:<64 hex digits>", tag, truncate(d, 80))
		}
		a.SHA256, a.SHA256From = sum, "gRPC registry digest"
	}
	// The fragment is how dewy's registry servers sent the digest before
	// artifact_digest existed; servers of that age still send it.
	if u.Fragment != "" {
		sum, ok := strings.CutPrefix(u.Fragment, "sha256=")
		sum = strings.ToLower(sum)
		if !ok || !isSHA256Hex(sum) {
			return release{}, fmt.Errorf("release %s: artifact_url %s: fragment %q: want sha256=<64 hex digits>", tag, redactURL(u), truncate(u.Fragment, 80))
		}
		if a.SHA256 != "" && a.SHA256 != sum {
			return release{}, fmt.Errorf("release %s: artifact_digest sha256 %s and the artifact_url fragment sha256 %s disagree", tag, a.SHA256, sum)
		}
		a.SHA256, a.SHA256From = sum, "gRPC registry digest"
	}
	return release{Tag: tag, ID: res.GetId(), Assets: []asset{a}}, nil
}

// report tells the server how a deploy went.
func (r *grpcRegistry) report(ctx context.Context, d deployReport) error {
	callCtx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req := &dewypb.ReportRequest{Id: d.ID, Tag: d.Tag, Command: d.Command}
	if d.Err != "" {
		req.Err = &d.Err
	}
	if _, err := r.client.Report(callCtx, req); err != nil {
		return r.callError(ctx, "report", err)
	}
	return nil
}

// callError maps a failed call's status onto dewy's sentinels and names the
// server. ctx is the caller's, to tell dewy stopping from a slow server.
func (r *grpcRegistry) callError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("grpc registry %s: %s: %w", r.addr, op, ctx.Err())
	}
	st := status.Convert(err)
	msg := st.Message()
	if r.token != "" {
		// A server may echo what it was sent; the token must not reach a log.
		msg = strings.ReplaceAll(msg, r.token, "xxxxx")
	}
	switch st.Code() {
	case codes.NotFound:
		return fmt.Errorf("grpc registry %s: %s: %w: %s", r.addr, op, errNotFound, msg)
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("grpc registry %s: %s: %w (%s): %s", r.addr, op, errAccessDenied, st.Code(), msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("grpc registry %s: %s: no answer within %s", r.addr, op, r.timeout)
	case codes.Unavailable:
		return fmt.Errorf("grpc registry %s: %s: unavailable: %s%s", r.addr, op, msg, r.transportHint(msg))
	}
	return fmt.Errorf("grpc registry %s: %s: %s: %s", r.addr, op, st.Code(), msg)
}

// transportHint guesses, from grpc's connection error, which option the
// operator is missing; a TLS mismatch otherwise reads as a bare EOF.
func (r *grpcRegistry) transportHint(msg string) string {
	switch {
	case r.noTLS && strings.Contains(msg, "preface"):
		return " (does the server want TLS? then drop no-tls=true)"
	case r.noTLS || !strings.Contains(msg, "handshake"):
		return ""
	case (strings.Contains(msg, "x509:") || strings.Contains(msg, "certificate")) && r.caFile != "":
		return " (server certificate not signed by the CA in " + r.caFile + ")"
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "certificate"):
		return " (server certificate not trusted: for a private CA add ?ca=/path/ca.pem)"
	}
	return " (TLS handshake failed: for a plaintext server add ?no-tls=true)"
}
