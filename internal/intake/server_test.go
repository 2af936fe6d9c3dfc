package intake

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
)

// startServer runs s on a free port and returns its base URL and a stop
// function that returns what Start returned.
func startServer(t *testing.T, s *Server, scheme string) (string, func() error) {
	t.Helper()
	s.Addr = "127.0.0.1:0"
	addr := make(chan net.Addr, 1)
	s.listening = func(a net.Addr) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	select {
	case a := <-addr:
		return scheme + "://" + a.String(), func() error { cancel(); return <-done }
	case err := <-done:
		cancel()
		t.Fatalf("Start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the server did not start listening")
	}
	return "", nil
}

func TestServerRoutes(t *testing.T) {
	h := &Handler{Store: &memoryStore{}, Token: staticToken(testToken), DefaultNamespace: "riposte-system"}
	base, stop := startServer(t, &Server{Handler: h, Log: logr.Discard()}, "http")

	cases := []struct {
		reason   string
		method   string
		path     string
		auth     bool
		body     string
		wantCode int
	}{
		{reason: "healthz answers 200", method: http.MethodGet, path: "/healthz", wantCode: 200},
		{reason: "the webhook stores a notification", method: http.MethodPost, path: WebhookPath, auth: true, body: firingNotification, wantCode: 200},
		{reason: "the webhook's own 405 for GET", method: http.MethodGet, path: WebhookPath, wantCode: 405},
		{reason: "the webhook authenticates", method: http.MethodPost, path: WebhookPath, body: firingNotification, wantCode: 401},
		{reason: "other paths are not found", method: http.MethodPost, path: "/webhook", wantCode: 404},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			if tc.auth {
				req.Header.Set("Authorization", "Bearer "+testToken)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if diff := cmp.Diff(tc.wantCode, resp.StatusCode); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}

	if err := stop(); err != nil {
		t.Errorf("Start returned %v after a graceful stop, want nil", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the server still answers after it was stopped")
	}
}

// A request in progress when the manager stops is finished, not cut off:
// its alerts are stored and Alertmanager gets its answer.
func TestServerFinishesRequestsInProgressOnShutdown(t *testing.T) {
	store := newGatedStore()
	h := &Handler{Store: store, Token: staticToken(testToken), DefaultNamespace: "riposte-system"}
	base, stop := startServer(t, &Server{Handler: h, Log: logr.Discard()}, "http")

	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, base+WebhookPath, strings.NewReader(firingNotification))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		_ = resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-store.entered
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(50 * time.Millisecond) // let Shutdown begin while the store is held
	close(store.release)
	if code := <-answered; code != 200 {
		t.Errorf("request in progress at shutdown answered %d, want 200", code)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Start returned %v, want nil", err)
	}
}

func TestServerTLS(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	base, stop := startServer(t, &Server{Handler: http.NotFoundHandler(), CertFile: certFile, KeyFile: keyFile, Log: logr.Discard()}, "https")
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()

	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("GET /healthz over TLS: %d %q, TLS %v", resp.StatusCode, body, resp.TLS != nil)
	}
	if resp, err := http.Get("http" + strings.TrimPrefix(base, "https") + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP was served on the TLS port")
	}
}

func TestServerRefusesHalfATLSConfiguration(t *testing.T) {
	cases := []struct {
		reason        string
		cert, key     string
		wantErrSubstr string
	}{
		{reason: "a certificate without a key", cert: "tls.crt", wantErrSubstr: "both a certificate file and a key file"},
		{reason: "a key without a certificate", key: "tls.key", wantErrSubstr: "both a certificate file and a key file"},
		{reason: "files that do not exist", cert: "/nonexistent/tls.crt", key: "/nonexistent/tls.key", wantErrSubstr: "loading the TLS certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			s := &Server{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler(), CertFile: tc.cert, KeyFile: tc.key, Log: logr.Discard()}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := s.Start(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.wantErrSubstr) {
				t.Errorf("Start = %v, want an error containing %q", err, tc.wantErrSubstr)
			}
		})
	}
}

func TestServerNeedsNoLeaderElection(t *testing.T) {
	if (&Server{}).NeedLeaderElection() {
		t.Error("intake must serve on every replica")
	}
}

func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "riposte-intake"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
