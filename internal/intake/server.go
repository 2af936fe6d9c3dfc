package intake

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// WebhookPath is where Alertmanager posts notifications.
const WebhookPath = "/webhook/alertmanager"

const shutdownTimeout = 10 * time.Second

// Server serves the intake endpoint. It runs on every replica, leader or
// not: writing incidents by deterministic name needs no leadership.
type Server struct {
	Addr    string
	Handler http.Handler
	// CertFile and KeyFile, when both set, make the server speak TLS; the
	// files are re-read when they change, so rotated certificates apply
	// without a restart.
	CertFile, KeyFile string
	Log               logr.Logger

	// listening, when set, receives the bound address; tests use it with ":0".
	listening func(net.Addr)
}

var (
	_ manager.Runnable               = (*Server)(nil)
	_ manager.LeaderElectionRunnable = (*Server)(nil)
)

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx is done, then shuts down gracefully, letting
// requests in progress finish storing their alerts.
func (s *Server) Start(ctx context.Context) error {
	if (s.CertFile == "") != (s.KeyFile == "") {
		// Refuse rather than silently serving the token in plain text.
		return errors.New("intake: TLS needs both a certificate file and a key file")
	}
	mux := http.NewServeMux()
	// Any method reaches the Handler, which answers a JSON 405 for non-POST.
	mux.Handle(WebhookPath, s.Handler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	useTLS := s.CertFile != ""
	if useTLS {
		watcher, err := certwatcher.New(s.CertFile, s.KeyFile)
		if err != nil {
			return fmt.Errorf("intake: loading the TLS certificate: %w", err)
		}
		go func() {
			if err := watcher.Start(ctx); err != nil {
				s.Log.Error(err, "watching the TLS certificate for changes")
			}
		}()
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: watcher.GetCertificate}
	}

	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("intake: listening on %s: %w", s.Addr, err)
	}
	s.Log.Info("serving the Alertmanager webhook", "address", ln.Addr().String(), "path", WebhookPath, "tls", useTLS)
	if s.listening != nil {
		s.listening(ln.Addr())
	}

	errc := make(chan error, 1)
	go func() {
		if useTLS {
			// The certificate comes from TLSConfig.GetCertificate.
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("intake: serving: %w", err)
	case <-ctx.Done():
		shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancelShutdown()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("intake: shutting down: %w", err)
		}
		s.Log.Info("stopped serving the Alertmanager webhook")
		return nil
	}
}
