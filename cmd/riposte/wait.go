package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/riposte-dev/riposte/controllers"
)

// waitForAPIServer returns once the API server answers its /readyz. The
// manager cannot be built before that (it asks the API server how each kind
// it caches is scoped), and exiting would make the kubelet restart the
// process in a growing back-off that outlasts the outage. Meanwhile the
// probe address answers as the manager's would: alive (a restart would not
// help) and not ready (nothing can be stored, so no traffic).
func waitForAPIServer(ctx context.Context, cfg *rest.Config, probeAddr string, log logr.Logger) error {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 2 * time.Second
	d, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building the API server check: %w", err)
	}
	// Waiting helps only while the API server cannot serve: it is down, or
	// answers 5xx (its etcd down). Any other answer means it is there, and
	// the manager starts (and reports a wrong identity or URL itself).
	// Discovery too: building the manager asks it how each kind is scoped,
	// and a starting API server answers /readyz before it serves discovery.
	answered := func(err error) bool {
		var status apierrors.APIStatus
		return err == nil || errors.As(err, &status) && status.Status().Code < http.StatusInternalServerError
	}
	ready := func() error {
		body, err := d.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if !answered(err) {
			return fmt.Errorf("%w: %s", err, body)
		}
		if _, err := d.ServerGroups(); !answered(err) {
			return fmt.Errorf("discovery: %w", err)
		}
		return nil
	}
	err = ready()
	if err == nil {
		return nil
	}
	log.Info("waiting for the API server before starting", "reason", err.Error())
	stopProbes, perr := serveWaitingProbes(probeAddr)
	if perr != nil {
		return perr
	}
	defer stopProbes()
	lastLog := time.Now()
	for delay := 250 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		select {
		case <-ctx.Done():
			return errStoppedWaiting
		case <-time.After(delay):
		}
		if err = ready(); err == nil {
			log.Info("the API server answers; starting")
			return nil
		}
		if time.Since(lastLog) > 30*time.Second {
			log.Info("still waiting for the API server", "reason", err.Error())
			lastLog = time.Now()
		}
	}
}

// newManager builds the manager, trying again for a while when the API
// server fails it: one that has just started (or restarted) answers
// /readyz a moment before every group it serves is in its discovery, and
// the manager needs each cached kind's scope from there.
func newManager(ctx context.Context, cfg *rest.Config, opts controllers.ManagerOptions) (ctrl.Manager, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		mgr, err := controllers.NewManager(cfg, opts)
		// A failure after the probe listener was bound cannot be retried
		// in this process (the listener is not released): exit, and the
		// kubelet starts it again.
		if err == nil || time.Now().After(deadline) || strings.Contains(err.Error(), "address already in use") {
			return mgr, err
		}
		ctrl.Log.WithName("setup").Info("building the manager failed; trying again", "reason", err.Error())
		// A failed attempt may have named some controllers already.
		opts.SkipNameValidation = true
		select {
		case <-ctx.Done():
			return nil, errStoppedWaiting
		case <-time.After(time.Second):
		}
	}
}

// errStoppedWaiting: a stop signal came while waiting; main exits cleanly.
var errStoppedWaiting = errors.New("stopped while waiting for the API server")

// serveWaitingProbes answers /healthz 200 and /readyz 503 on addr until
// stopped; "0" or empty serves nothing, as for the manager. The reason
// stays in the log: the probe port is not authenticated.
func serveWaitingProbes(addr string) (stop func(), err error) {
	if addr == "" || addr == "0" {
		return func() {}, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serving probes on %s while waiting for the API server: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "waiting for the API server", http.StatusServiceUnavailable)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	return func() {
		// Closed before the manager binds the same address.
		_ = srv.Close()
		<-done
	}, nil
}
