package controllers

import (
	"errors"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// leaderElectionID names the Lease replicas compete for, in OperatorNamespace.
const leaderElectionID = "riposte.riposte.dev"

// ManagerOptions configure the manager: its reconcilers (Options) and what
// the process serves beside them.
type ManagerOptions struct {
	Options
	// Metrics is where and how metrics are served; BindAddress "0" serves
	// none (empty is controller-runtime's :8080).
	Metrics metricsserver.Options
	// HealthProbeBindAddress serves /healthz and /readyz; "0" or empty
	// serves none.
	HealthProbeBindAddress string
	// PprofBindAddress serves Go's /debug/pprof; "0" or empty serves none.
	PprofBindAddress string
	// LeaderElection lets only one replica reconcile at a time.
	LeaderElection bool
	// SkipNameValidation lets one process build the manager more than once
	// (the tests restart it): controller-runtime otherwise refuses a
	// controller name a process has already used.
	SkipNameValidation bool
}

// NewManager builds Riposte's manager, with every reconciler, the drift
// detector and the health checks, not yet started. main and the tests both
// build it here, so what the tests run is what ships. The intake endpoint is
// not part of it: main serves it beside the manager (it needs the bearer
// token and its own listener), and the tests post to their own.
func NewManager(cfg *rest.Config, opts ManagerOptions) (ctrl.Manager, error) {
	if opts.OperatorNamespace == "" {
		// The cache, the leader's Lease and cluster-wide playbooks all live there.
		return nil, errors.New("the manager needs Riposte's own namespace (OperatorNamespace)")
	}
	cfg = rest.CopyConfig(cfg)
	// Riposte relies on the API server's priority and fairness, not on
	// client-side throttling of its own writes.
	cfg.QPS, cfg.Burst = -1, -1
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  newScheme(),
		Client:                  clientOptions(),
		Cache:                   cacheOptions(opts.OperatorNamespace),
		Metrics:                 opts.Metrics,
		HealthProbeBindAddress:  opts.HealthProbeBindAddress,
		PprofBindAddress:        opts.PprofBindAddress,
		LeaderElection:          opts.LeaderElection,
		LeaderElectionID:        leaderElectionID,
		LeaderElectionNamespace: opts.OperatorNamespace,
		Controller:              config.Controller{SkipNameValidation: ptr.To(opts.SkipNameValidation)},
	})
	if err != nil {
		return nil, err
	}
	if err := setup(mgr, opts.Options); err != nil {
		return nil, fmt.Errorf("setting up controllers: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	// Ready once the informer caches have synced: before that an incident
	// would wait on them, so a Service should not send traffic yet.
	if err := mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informer caches have not synced yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return mgr, nil
}

// newScheme knows the built-in types and Riposte's: everything the manager
// reads or writes.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(riposte.AddToScheme(s))
	return s
}
