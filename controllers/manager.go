package controllers

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
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
	// LeaderElectionTiming tunes the Lease; zero fields keep
	// controller-runtime's defaults (15s, 10s, 2s).
	LeaderElectionTiming LeaseTiming
	// SkipNameValidation lets one process build the manager more than once
	// (the tests restart it): controller-runtime otherwise refuses a
	// controller name a process has already used.
	SkipNameValidation bool
}

// LeaseTiming is how the leader's Lease is held. A leader that dies holds
// it until LeaseDuration passes: that is the longest a takeover waits. A
// leader that cannot renew within RenewDeadline (the API server unreachable)
// stops and exits, so it cannot act beside a new leader. Candidates retry
// every RetryPeriod.
type LeaseTiming struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Validate refuses timings the leader elector would reject once started,
// and negative ones; zero fields are the defaults.
func (l LeaseTiming) Validate() error {
	if l.LeaseDuration < 0 || l.RenewDeadline < 0 || l.RetryPeriod < 0 {
		return fmt.Errorf("lease duration %s, renew deadline %s, retry period %s: none may be negative", l.LeaseDuration, l.RenewDeadline, l.RetryPeriod)
	}
	d, r, p := l.or()
	switch {
	case d < time.Second || d%time.Second != 0:
		// The Lease stores whole seconds, and the other replicas count
		// from what is stored: 2.5s would be read as 2s, shorter than the
		// renew deadline, and two leaders would act at once.
		return fmt.Errorf("the lease duration %s must be a whole number of seconds", d)
	case d <= r:
		return fmt.Errorf("the lease duration %s must be longer than the renew deadline %s", d, r)
	case float64(r) <= 1.2*float64(p):
		return fmt.Errorf("the renew deadline %s must be longer than 1.2 times the retry period %s", r, p)
	}
	return nil
}

// or fills zero fields with controller-runtime's defaults.
func (l LeaseTiming) or() (duration, renew, retry time.Duration) {
	duration, renew, retry = 15*time.Second, 10*time.Second, 2*time.Second
	if l.LeaseDuration > 0 {
		duration = l.LeaseDuration
	}
	if l.RenewDeadline > 0 {
		renew = l.RenewDeadline
	}
	if l.RetryPeriod > 0 {
		retry = l.RetryPeriod
	}
	return duration, renew, retry
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
	if err := opts.LeaderElectionTiming.Validate(); err != nil {
		return nil, err
	}
	leaseDuration, renewDeadline, retryPeriod := opts.LeaderElectionTiming.or()
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
		LeaseDuration:           &leaseDuration,
		RenewDeadline:           &renewDeadline,
		RetryPeriod:             &retryPeriod,
		// The process exits once the manager stops (main returns), so a
		// replica stopped on purpose (a rollout, a drain) hands the Lease
		// over at once instead of making the next leader wait it out.
		LeaderElectionReleaseOnCancel: true,
		Controller:                    config.Controller{SkipNameValidation: ptr.To(opts.SkipNameValidation)},
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
	// Not ready while the API server cannot serve (down, or its etcd down):
	// intake could store nothing and answers 503, so a Service should route
	// Alertmanager elsewhere. Liveness stays up: a restart would not help.
	apiServer, err := apiServerReadyz(cfg)
	if err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("apiserver", apiServer); err != nil {
		return nil, err
	}
	return mgr, nil
}

// apiServerReadyz asks the API server's own /readyz (readable by every
// identity through system:public-info-viewer), within a second.
func apiServerReadyz(cfg *rest.Config) (healthz.Checker, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = time.Second
	d, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the API server readiness check: %w", err)
	}
	return func(req *http.Request) error {
		body, err := d.RESTClient().Get().AbsPath("/readyz").DoRaw(req.Context())
		if err != nil && !apierrors.IsForbidden(err) { // a cluster that does not let every identity read /readyz still answered
			return fmt.Errorf("the API server is not ready: %w: %s", err, body)
		}
		return nil
	}, nil
}

// newScheme knows the built-in types and Riposte's: everything the manager
// reads or writes.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(riposte.AddToScheme(s))
	return s
}
