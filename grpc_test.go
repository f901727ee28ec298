//go:build !nogrpc

package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"google.golang.org/protobuf/proto"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"dewy/dewypb"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeRegistryServer is an in-process RegistryService. current answers
// Current; every request and its metadata are passed on over channels.
type fakeRegistryServer struct {
	dewypb.UnimplementedRegistryServiceServer
	current  func(context.Context, *dewypb.CurrentRequest) (*dewypb.CurrentResponse, error)
	requests chan *dewypb.CurrentRequest
	reports  chan *dewypb.ReportRequest
	metadata chan metadata.MD
}

func newFakeRegistryServer(current func(context.Context, *dewypb.CurrentRequest) (*dewypb.CurrentResponse, error)) *fakeRegistryServer {
	return &fakeRegistryServer{
		current:  current,
		requests: make(chan *dewypb.CurrentRequest, 16),
		reports:  make(chan *dewypb.ReportRequest, 16),
		metadata: make(chan metadata.MD, 16),
	}
}

func (s *fakeRegistryServer) Current(ctx context.Context, req *dewypb.CurrentRequest) (*dewypb.CurrentResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.metadata <- md
	s.requests <- req
	return s.current(ctx, req)
}

func (s *fakeRegistryServer) Report(ctx context.Context, req *dewypb.ReportRequest) (*emptypb.Empty, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.metadata <- md
	s.reports <- req
	return &emptypb.Empty{}, nil
}

func answer(res *dewypb.CurrentResponse, err error) func(context.Context, *dewypb.CurrentRequest) (*dewypb.CurrentResponse, error) {
	return func(context.Context, *dewypb.CurrentRequest) (*dewypb.CurrentResponse, error) { return res, err }
}

// startGRPCServer serves srv on a loopback port, over TLS when tlsCfg is
// set, and returns host:port.
func startGRPCServer(t *testing.T, srv dewypb.RegistryServiceServer, tlsCfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	gs := grpc.NewServer(opts...)
	dewypb.RegisterRegistryServiceServer(gs, srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-served
	})
	return lis.Addr().String()
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemFile string // the CA certificate, for ?ca=
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pemFile: file}
}

// serverTLS is a server configuration with a certificate for the loopback
// address, signed by ca.
func (ca *testCA) serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "registry"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// newTestGRPCRegistry builds a registry for raw with the given environment.
func newTestGRPCRegistry(t *testing.T, raw, artifact string, env map[string]string) *grpcRegistry {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	r, err := openGRPC(t.Context(), u, artifact, func(k string) string { return env[k] }, discardLogger())
	if err != nil {
		t.Fatalf("openGRPC(%s): %v", raw, err)
	}
	t.Cleanup(func() { r.close() })
	return r
}

// tlsRegistry starts srv behind TLS from a fresh CA and returns a registry
// that trusts that CA.
func tlsRegistry(t *testing.T, srv dewypb.RegistryServiceServer, artifact string, env map[string]string) *grpcRegistry {
	t.Helper()
	ca := newTestCA(t, "ca")
	addr := startGRPCServer(t, srv, ca.serverTLS(t))
	return newTestGRPCRegistry(t, "grpc://"+addr+"?ca="+url.QueryEscape(ca.pemFile), artifact, env)
}

const testDigest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestGRPCCurrent(t *testing.T) {
	tests := []struct {
		name, artifactURL   string
		digest              *string // artifact_digest
		wantName, wantURL   string
		wantSHA256          string
		artifact            string
		wantArtifactRequest bool
	}{
		{name: "file", artifactURL: "file:///srv/releases/v1.2.3/app_linux_amd64.tar.gz",
			wantName: "app_linux_amd64.tar.gz", wantURL: "file:///srv/releases/v1.2.3/app_linux_amd64.tar.gz"},
		{name: "https with digest and signed query", artifactURL: "https://dl.example.com/v1.2.3/app.tar.gz?X-Amz-Signature=abc&X-Amz-Expires=60#sha256=" + testDigest,
			wantName: "app.tar.gz", wantURL: "https://dl.example.com/v1.2.3/app.tar.gz?X-Amz-Signature=abc&X-Amz-Expires=60", wantSHA256: testDigest},
		{name: "digest field", artifactURL: "https://dl.example.com/v1.2.3/app.tar.gz", digest: proto.String("sha256:" + testDigest),
			wantName: "app.tar.gz", wantURL: "https://dl.example.com/v1.2.3/app.tar.gz", wantSHA256: testDigest},
		{name: "digest field and the same fragment", artifactURL: "https://dl.example.com/app.tar.gz#sha256=" + testDigest, digest: proto.String("sha256:" + strings.ToUpper(testDigest)),
			wantName: "app.tar.gz", wantURL: "https://dl.example.com/app.tar.gz", wantSHA256: testDigest},
		{name: "ghr", artifactURL: "ghr://owner/repo/tag/v1.2.3/app_linux_amd64.zip?id=42",
			wantName: "app_linux_amd64.zip", wantURL: "ghr://owner/repo/tag/v1.2.3/app_linux_amd64.zip?id=42"},
		{name: "s3 with upper-case digest", artifactURL: "s3://ap-northeast-1/bucket/app/v1.2.3/app.tar.gz#sha256=" + strings.ToUpper(testDigest),
			wantName: "app.tar.gz", wantURL: "s3://ap-northeast-1/bucket/app/v1.2.3/app.tar.gz", wantSHA256: testDigest},
		{name: "gs with artifact name", artifactURL: "gs://bucket/app/v1.2.3/custom.tgz",
			wantName: "custom.tgz", wantURL: "gs://bucket/app/v1.2.3/custom.tgz", artifact: "custom.tgz", wantArtifactRequest: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeRegistryServer(answer(&dewypb.CurrentResponse{Id: "rel-7", Tag: "v1.2.3", ArtifactUrl: tt.artifactURL, ArtifactDigest: tt.digest}, nil))
			r := tlsRegistry(t, srv, tt.artifact, nil)
			got, err := r.releases(t.Context())
			if err != nil {
				t.Fatalf("releases: %v", err)
			}
			if len(got) != 1 || len(got[0].Assets) != 1 {
				t.Fatalf("releases = %+v, want one release with one asset", got)
			}
			if got[0].Tag != "v1.2.3" || got[0].ID != "rel-7" {
				t.Errorf("release tag, id = %q, %q, want v1.2.3, rel-7", got[0].Tag, got[0].ID)
			}
			want := asset{Name: tt.wantName, URL: tt.wantURL, Size: -1, SHA256: tt.wantSHA256}
			if want.SHA256 != "" {
				want.SHA256From = "gRPC registry digest"
			}
			if a := got[0].Assets[0]; a != want {
				t.Errorf("asset = %+v, want %+v", a, want)
			}
			req := <-srv.requests
			if req.GetArch() != runtime.GOARCH || req.GetOs() != runtime.GOOS {
				t.Errorf("request arch, os = %q, %q, want %q, %q", req.GetArch(), req.GetOs(), runtime.GOARCH, runtime.GOOS)
			}
			if got := req.ArifactName != nil; got != tt.wantArtifactRequest {
				t.Errorf("request has arifact_name = %v, want %v", got, tt.wantArtifactRequest)
			}
			if req.GetArifactName() != tt.artifact {
				t.Errorf("request arifact_name = %q, want %q", req.GetArifactName(), tt.artifact)
			}
			md := <-srv.metadata
			if ua := strings.Join(md.Get("user-agent"), " "); !strings.Contains(ua, "dewy/") {
				t.Errorf("user-agent = %q, want it to name dewy", ua)
			}
		})
	}
}

func TestGRPCCurrentBadAnswer(t *testing.T) {
	tests := []struct {
		name    string
		res     *dewypb.CurrentResponse
		wantErr string
	}{
		{"no tag", &dewypb.CurrentResponse{ArtifactUrl: "file:///a/app.tgz"}, "no tag"},
		{"no url", &dewypb.CurrentResponse{Tag: "v1.0.0"}, "no artifact_url"},
		{"malformed url", &dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "https://exa mple.com/%zz"}, "not a URL"},
		{"relative url", &dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "releases/app.tgz"}, "not an absolute URL"},
		{"no file", &dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "https://example.com/"}, "names no file"},
		{"short digest", &dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "https://example.com/app.tgz#sha256=abc"}, "want sha256=<64 hex digits>"},
		{"not hex", &dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "https://example.com/app.tgz#sha256=" + strings.Repeat("g", 64)}, "want sha256=<64 hex digits>"},
		{"other fragment", &dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "https://example.com/app.tgz#md5=abc"}, `fragment "md5=abc"`},
		{"digest field without algorithm", &dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "https://example.com/app.tgz", ArtifactDigest: proto.String(testDigest)}, "artifact_digest"},
		{"digest field of another algorithm", &dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "https://example.com/app.tgz", ArtifactDigest: proto.String("md5:abc")}, "want sha256:<64 hex digits>"},
		{"digest field and fragment disagree", &dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "https://example.com/app.tgz#sha256=" + strings.Repeat("0", 64), ArtifactDigest: proto.String("sha256:" + testDigest)}, "disagree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeRegistryServer(answer(tt.res, nil))
			addr := startGRPCServer(t, srv, nil)
			r := newTestGRPCRegistry(t, "grpc://"+addr+"?no-tls=true", "", nil)
			got, err := r.releases(t.Context())
			if err == nil {
				t.Fatalf("releases = %+v, want an error containing %q", got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), addr) {
				t.Errorf("releases error = %q, want it to contain %q and %s", err, tt.wantErr, addr)
			}
		})
	}
}

func TestGRPCReport(t *testing.T) {
	tests := []struct {
		name    string
		rep     deployReport
		wantErr string // empty: the field must be unset
	}{
		{"success", deployReport{ID: "rel-7", Tag: "v1.2.3", Command: "server", Host: "web1"}, ""},
		{"failure", deployReport{ID: "rel-8", Tag: "v1.2.4", Command: "assets", Host: "web1", Err: "extract: bad archive"}, "extract: bad archive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeRegistryServer(nil)
			r := tlsRegistry(t, srv, "", nil)
			if err := r.report(t.Context(), tt.rep); err != nil {
				t.Fatalf("report: %v", err)
			}
			got := <-srv.reports
			if got.GetId() != tt.rep.ID || got.GetTag() != tt.rep.Tag || got.GetCommand() != tt.rep.Command {
				t.Errorf("report id, tag, command = %q, %q, %q, want %q, %q, %q",
					got.GetId(), got.GetTag(), got.GetCommand(), tt.rep.ID, tt.rep.Tag, tt.rep.Command)
			}
			switch {
			case tt.wantErr == "" && got.Err != nil:
				t.Errorf("report err = %q, want it unset", got.GetErr())
			case tt.wantErr != "" && (got.Err == nil || *got.Err != tt.wantErr):
				t.Errorf("report err = %v, want %q", got.Err, tt.wantErr)
			}
		})
	}
}

func TestGRPCStatusCodes(t *testing.T) {
	tests := []struct {
		code     codes.Code
		wantIs   error
		wantText string
	}{
		{codes.NotFound, errNotFound, "no release for this platform"},
		{codes.Unauthenticated, errAccessDenied, "Unauthenticated"},
		{codes.PermissionDenied, errAccessDenied, "PermissionDenied"},
		{codes.Unavailable, nil, "unavailable"},
		{codes.Internal, nil, "Internal"},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			srv := newFakeRegistryServer(answer(nil, status.Error(tt.code, "no release for this platform")))
			addr := startGRPCServer(t, srv, nil)
			r := newTestGRPCRegistry(t, "grpc://"+addr+"?no-tls=true", "", nil)
			_, err := r.releases(t.Context())
			if err == nil {
				t.Fatal("releases: no error, want one")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("releases error = %q, want it to wrap %q", err, tt.wantIs)
			}
			if tt.wantIs == nil && (errors.Is(err, errNotFound) || errors.Is(err, errAccessDenied)) {
				t.Errorf("releases error = %q, want it to wrap no sentinel", err)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), addr) {
				t.Errorf("releases error = %q, want it to contain %q and %s", err, tt.wantText, addr)
			}
		})
	}
}

func TestGRPCTLSByDefault(t *testing.T) {
	srv := newFakeRegistryServer(answer(&dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "file:///a/app.tgz"}, nil))
	addr := startGRPCServer(t, srv, nil)

	r := newTestGRPCRegistry(t, "grpc://"+addr, "", nil)
	r.timeout = 10 * time.Second
	start := time.Now()
	_, err := r.releases(t.Context())
	if err == nil {
		t.Fatal("releases from a plaintext server without no-tls=true: no error, want one")
	}
	t.Logf("releases error: %v", err)
	if !strings.Contains(err.Error(), "no-tls=true") || !strings.Contains(err.Error(), addr) {
		t.Errorf("releases error = %q, want it to name %s and suggest no-tls=true", err, addr)
	}
	if d := time.Since(start); d >= r.timeout {
		t.Errorf("releases took %s, want a failure before the %s deadline", d, r.timeout)
	}

	plain := newTestGRPCRegistry(t, "grpc://"+addr+"?no-tls=true", "", nil)
	if _, err := plain.releases(t.Context()); err != nil {
		t.Errorf("releases with no-tls=true: %v", err)
	}
}

func TestGRPCPlaintextClientToTLSServer(t *testing.T) {
	ca := newTestCA(t, "ca")
	addr := startGRPCServer(t, newFakeRegistryServer(nil), ca.serverTLS(t))
	r := newTestGRPCRegistry(t, "grpc://"+addr+"?no-tls=true", "", nil)
	r.timeout = 10 * time.Second
	_, err := r.releases(t.Context())
	if err == nil {
		t.Fatal("releases over plaintext from a TLS server: no error, want one")
	}
	t.Logf("releases error: %v", err)
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("releases error = %q, want it to name %s and suggest TLS", err, addr)
	}
}

func TestGRPCUntrustedCertificate(t *testing.T) {
	serverCA := newTestCA(t, "server-ca")
	otherCA := newTestCA(t, "other-ca")
	addr := startGRPCServer(t, newFakeRegistryServer(nil), serverCA.serverTLS(t))
	for raw, hint := range map[string]string{
		"grpc://" + addr + "?ca=" + url.QueryEscape(otherCA.pemFile): otherCA.pemFile,
		"grpc://" + addr: "?ca=", // system roots do not know the test CA either
	} {
		r := newTestGRPCRegistry(t, raw, "", nil)
		_, err := r.releases(t.Context())
		if err == nil {
			t.Fatalf("releases via %s: no error, want a refused certificate", raw)
		}
		t.Logf("releases error: %v", err)
		if !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), hint) {
			t.Errorf("releases via %s: error = %q, want it to name %s, mention the certificate and %s", raw, err, addr, hint)
		}
	}
}

func TestGRPCBearerToken(t *testing.T) {
	const token = "tok-5f0c1e9a-not-for-logs"
	env := map[string]string{"DEWY_GRPC_TOKEN": token}

	t.Run("sent as metadata", func(t *testing.T) {
		srv := newFakeRegistryServer(answer(&dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "file:///a/app.tgz"}, nil))
		r := tlsRegistry(t, srv, "", env)
		if _, err := r.releases(t.Context()); err != nil {
			t.Fatalf("releases: %v", err)
		}
		if got, want := (<-srv.metadata).Get("authorization"), []string{"Bearer " + token}; len(got) != 1 || got[0] != want[0] {
			t.Errorf("authorization metadata on Current = %q, want %q", got, want)
		}
		if err := r.report(t.Context(), deployReport{ID: "1", Tag: "v1.0.0", Command: "server"}); err != nil {
			t.Fatalf("report: %v", err)
		}
		if got := (<-srv.metadata).Get("authorization"); len(got) != 1 || got[0] != "Bearer "+token {
			t.Errorf("authorization metadata on Report = %q, want the bearer token", got)
		}
	})

	t.Run("kept out of errors", func(t *testing.T) {
		// A careless server echoes what it was sent.
		srv := newFakeRegistryServer(func(ctx context.Context, _ *dewypb.CurrentRequest) (*dewypb.CurrentResponse, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			return nil, status.Errorf(codes.Unauthenticated, "token %q revoked", md.Get("authorization"))
		})
		r := tlsRegistry(t, srv, "", env)
		_, err := r.releases(t.Context())
		if !errors.Is(err, errAccessDenied) {
			t.Fatalf("releases error = %v, want errAccessDenied", err)
		}
		if strings.Contains(err.Error(), token) {
			t.Errorf("releases error = %q, want the token left out", err)
		}
	})

	t.Run("plaintext when asked", func(t *testing.T) {
		srv := newFakeRegistryServer(answer(&dewypb.CurrentResponse{Tag: "v1.0.0", ArtifactUrl: "file:///a/app.tgz"}, nil))
		addr := startGRPCServer(t, srv, nil)
		r := newTestGRPCRegistry(t, "grpc://"+addr+"?no-tls=true", "", env)
		if _, err := r.releases(t.Context()); err != nil {
			t.Fatalf("releases: %v", err)
		}
		if got := (<-srv.metadata).Get("authorization"); len(got) != 1 || got[0] != "Bearer "+token {
			t.Errorf("authorization metadata = %q, want the bearer token", got)
		}
	})
}

func TestGRPCServerDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	r := newTestGRPCRegistry(t, "grpc://"+addr+"?no-tls=true", "", nil)
	r.timeout = 10 * time.Second
	start := time.Now()
	_, err = r.releases(t.Context())
	if err == nil {
		t.Fatal("releases from a closed port: no error, want one")
	}
	t.Logf("releases error: %v", err)
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("releases error = %q, want it to name %s as unavailable", err, addr)
	}
	if d := time.Since(start); d >= r.timeout {
		t.Errorf("releases took %s, want a failure before the %s deadline", d, r.timeout)
	}
}

func TestGRPCSlowServer(t *testing.T) {
	unblock := make(chan struct{})
	srv := newFakeRegistryServer(func(context.Context, *dewypb.CurrentRequest) (*dewypb.CurrentResponse, error) {
		<-unblock // deaf to the deadline, like a wedged server
		return nil, status.Error(codes.Internal, "too late")
	})
	addr := startGRPCServer(t, srv, nil)
	t.Cleanup(func() { close(unblock) }) // runs before the server stops
	r := newTestGRPCRegistry(t, "grpc://"+addr+"?no-tls=true", "", nil)
	r.timeout = 200 * time.Millisecond

	done := make(chan error, 1)
	go func() {
		_, err := r.releases(t.Context())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no answer within 200ms") || !strings.Contains(err.Error(), addr) {
			t.Errorf("releases error = %v, want a deadline error naming %s", err, addr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("releases still waiting 10s after a 200ms deadline")
	}
}

func TestGRPCCanceled(t *testing.T) {
	srv := newFakeRegistryServer(func(ctx context.Context, _ *dewypb.CurrentRequest) (*dewypb.CurrentResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	addr := startGRPCServer(t, srv, nil)
	r := newTestGRPCRegistry(t, "grpc://"+addr+"?no-tls=true", "", nil)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-srv.requests
		cancel()
	}()
	if _, err := r.releases(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("releases error = %v, want context.Canceled", err)
	}
}

func TestGRPCRegistryURL(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		raw     string
		token   string
		wantErr string // empty: accepted
	}{
		{"grpc://registry.example.com:443", "", ""},
		{"grpc://registry.example.com:443", "hunter2", ""},
		{"grpc://registry.example.com:443", "hunter2\n", "DEWY_GRPC_TOKEN holds spaces"},
		{"grpc://127.0.0.1:9000?no-tls=true", "hunter2", ""},
		{"grpc://[::1]:9000?no-tls=false", "", ""},
		{"grpc://registry.example.com", "", "want grpc://host:port"},
		{"grpc://registry.example.com:443/v1", "", "no path"},
		{"grpc://user:hunter2@registry.example.com:443", "", "DEWY_GRPC_TOKEN"},
		{"grpc://registry.example.com:443?tls=false", "", `unknown option "tls"`},
		{"grpc://registry.example.com:443?no-tls=maybe", "", `no-tls="maybe"`},
		{"grpc://registry.example.com:443?ca=" + missing, "", "ca " + missing},
		{"grpc://registry.example.com:443?ca=" + notPEM, "", "ca " + notPEM + ": no PEM certificate"},
		{"grpc://registry.example.com:443?ca=" + notPEM + "&no-tls=true", "", "contradict"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := url.Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			r, err := openGRPC(t.Context(), u, "", func(string) string { return tt.token }, discardLogger())
			if err == nil {
				r.close()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("openGRPC: %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("openGRPC error = %v, want it to contain %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Errorf("openGRPC error = %q, want the password left out", err)
			}
		})
	}
}

// TestGRPCExampleServer runs examples/registry-server, as a person trying
// dewy would, and talks to it over TLS with a token.
func TestGRPCExampleServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/registry-server; skipped with -short")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "registry-server")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./examples/registry-server").CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/registry-server: %v\n%s", err, out)
	}

	dir := filepath.Join(tmp, "releases")
	artifact := "app_" + runtime.GOOS + "_" + runtime.GOARCH + ".tar.gz"
	files := map[string]string{
		"v1.0.0/" + artifact:        "old",
		"v1.2.0/" + artifact:        "new",
		"v1.2.0/app_plan9_mips.zip": "other platform",
		"v1.2.0/checksums.txt":      "not an artifact",
		"v1.3.0-rc.1/" + artifact:   "pre-release",
		"not-a-version/" + artifact: "ignored",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ca := newTestCA(t, "ca")
	certFile, keyFile := filepath.Join(tmp, "cert.pem"), filepath.Join(tmp, "key.pem")
	writeServerKeyPair(t, ca.serverTLS(t), certFile, keyFile)

	const token = "example-token"
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-dir", dir, "-tls-cert", certFile, "-tls-key", keyFile)
	cmd.Env = append(os.Environ(), "REGISTRY_TOKEN="+token)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	// waitLine returns the first log line containing s.
	waitLine := func(s string) string {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("registry-server exited before logging %q", s)
				}
				if strings.Contains(line, s) {
					return line
				}
			case <-timeout:
				t.Fatalf("registry-server did not log %q within 30s", s)
			}
		}
	}
	_, addr, _ := strings.Cut(waitLine("serving releases"), "addr=")
	addr, _, _ = strings.Cut(addr, " ")

	raw := "grpc://" + addr + "?ca=" + url.QueryEscape(ca.pemFile)
	anon := newTestGRPCRegistry(t, raw, "", nil)
	if _, err := anon.releases(t.Context()); !errors.Is(err, errAccessDenied) {
		t.Errorf("releases without a token: error = %v, want errAccessDenied", err)
	}

	r := newTestGRPCRegistry(t, raw, "", map[string]string{"DEWY_GRPC_TOKEN": token})
	got, err := r.releases(t.Context())
	if err != nil {
		t.Fatalf("releases: %v", err)
	}
	want := asset{
		Name:       artifact,
		URL:        (&url.URL{Scheme: "file", Path: filepath.Join(dir, "v1.2.0", artifact)}).String(),
		Size:       -1,
		SHA256:     sha256Hex([]byte("new")),
		SHA256From: "gRPC registry digest",
	}
	if len(got) != 1 || got[0].Tag != "v1.2.0" || len(got[0].Assets) != 1 || got[0].Assets[0] != want {
		t.Fatalf("releases = %+v, want v1.2.0 with %+v", got, want)
	}
	// On the wire: a plain URL, which upstream Dewy can use as it is, and
	// the digest in its own field.
	res, err := r.client.Current(t.Context(), &dewypb.CurrentRequest{Os: runtime.GOOS, Arch: runtime.GOARCH})
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	if res.GetArtifactUrl() != want.URL || res.GetArtifactDigest() != "sha256:"+want.SHA256 {
		t.Errorf("answer artifact_url, artifact_digest = %q, %q; want %q without a fragment, %q", res.GetArtifactUrl(), res.GetArtifactDigest(), want.URL, "sha256:"+want.SHA256)
	}

	named := newTestGRPCRegistry(t, raw, "app_plan9_mips.zip", map[string]string{"DEWY_GRPC_TOKEN": token})
	if got, err := named.releases(t.Context()); err != nil || got[0].Assets[0].Name != "app_plan9_mips.zip" {
		t.Errorf("releases asking for app_plan9_mips.zip = %+v, %v, want that file", got, err)
	}

	if err := r.report(t.Context(), deployReport{ID: got[0].ID, Tag: "v1.2.0", Command: "server", Err: "health check failed"}); err != nil {
		t.Fatalf("report: %v", err)
	}
	if line := waitLine("deploy failed"); !strings.Contains(line, "v1.2.0") || !strings.Contains(line, "health check failed") {
		t.Errorf("registry-server logged %q, want the tag and the error", line)
	}
}

// writeServerKeyPair writes cfg's first certificate and key as PEM files.
func writeServerKeyPair(t *testing.T, cfg *tls.Config, certFile, keyFile string) {
	t.Helper()
	c := cfg.Certificates[0]
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}
