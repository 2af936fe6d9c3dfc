package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/riposte-dev/riposte/internal/agent"
)

// runMCP is `riposte mcp`: the MCP server for AI agents, as the agent's own
// identity, never the manager's.
func runMCP(args []string) error {
	fs := flag.NewFlagSet("riposte mcp", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "The agent's kubeconfig (default: $KUBECONFIG, ~/.kube/config, or the pod's own ServiceAccount). Over stdio every call is made as its identity; over HTTP only its cluster (server and CA) is used.")
	kubeContext := fs.String("context", "", "The kubeconfig context to use.")
	httpAddr := fs.String("http-address", "", "Serve the streamable HTTP transport on this address instead of stdio; each request acts as the Kubernetes bearer token it carries.")
	certFile := fs.String("tls-cert-file", "", "Serve HTTPS with this certificate (needed on any address but loopback: requests carry tokens).")
	keyFile := fs.String("tls-key-file", "", "The key of --tls-cert-file.")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: riposte mcp [--kubeconfig FILE] [--context NAME] [--http-address ADDR [--tls-cert-file F --tls-key-file F]]")
		fmt.Fprintln(fs.Output(), "Serves Riposte's tools for AI agents over MCP: read incidents, playbooks and gates, and propose remediations people approve.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: *kubeContext}).ClientConfig()
	if err != nil {
		return fmt.Errorf("the agent's kubeconfig: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *httpAddr == "" {
		return agent.ServeStdio(ctx, cfg)
	}
	tls := *certFile != "" || *keyFile != ""
	if !tls && !loopback(*httpAddr) {
		return fmt.Errorf("--http-address %s is not loopback: requests carry Kubernetes tokens, so serve it with --tls-cert-file and --tls-key-file", *httpAddr)
	}
	handler, err := agent.HTTPHandler(cfg)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: *httpAddr, Handler: handler, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
	fmt.Fprintf(os.Stderr, "riposte mcp: serving streamable HTTP on %s\n", *httpAddr)
	return serve(ctx, srv, *certFile, *keyFile)
}

// serve runs srv until ctx ends, over TLS when a certificate is given, and
// shuts it down gracefully.
func serve(ctx context.Context, srv *http.Server, certFile, keyFile string) error {
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	var err error
	if certFile != "" || keyFile != "" {
		err = srv.ListenAndServeTLS(certFile, keyFile)
	} else {
		err = srv.ListenAndServe()
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
