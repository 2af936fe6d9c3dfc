package testenv

import (
	"context"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// RunManager runs the manager newManager builds in this process, as Riposte's
// service account with the shipped RBAC (ManagerConfig), until stop is
// called. It may run more than once in a process (a restart), if newManager
// lets controller names repeat. Tests pass a newManager calling
// controllers.NewManager, the constructor main uses, so what they run is
// what ships and testenv does not depend on the controllers.
func (e *Env) RunManager(newManager func(cfg *rest.Config) (manager.Manager, error)) (stop func(), err error) {
	cfg, err := e.ManagerConfig(context.Background())
	if err != nil {
		return nil, err
	}
	mgr, err := newManager(cfg)
	if err != nil {
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
