package testenv

import (
	"context"
	"fmt"
	"os"

	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/riposte-dev/riposte/controllers"
)

// RunManager runs Riposte's manager in this process, as its service account
// with the shipped RBAC (ManagerConfig) and the given options, until stop is
// called. It may run more than once in a process (a restart).
func (e *Env) RunManager(opts controllers.Options) (stop func(), err error) {
	cfg, err := e.ManagerConfig(context.Background())
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 e.Scheme,
		Client:                 controllers.ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(OperatorNamespace),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	if opts.OperatorNamespace == "" {
		opts.OperatorNamespace = OperatorNamespace
	}
	if err := controllers.Setup(mgr, opts); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}
