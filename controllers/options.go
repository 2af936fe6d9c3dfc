// Package controllers wires Riposte's reconcilers into a manager.
package controllers

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/riposte-dev/riposte/controllers/approvalgate"
	"github.com/riposte-dev/riposte/controllers/incident"
	"github.com/riposte-dev/riposte/controllers/playbook"
	"github.com/riposte-dev/riposte/internal/enrich"
	"github.com/riposte-dev/riposte/internal/expr"
	"github.com/riposte-dev/riposte/internal/notify"
)

// Options configure every reconciler.
type Options struct {
	// OperatorNamespace is where cluster-wide playbooks live.
	OperatorNamespace string
	// ProtectedNamespaces are never acted in.
	ProtectedNamespaces []string
	// MaxConcurrentReconciles per controller; writes are not throttled
	// client-side, so this is what uses the cores.
	MaxConcurrentReconciles int
	// NotifyURL, when set, receives a JSON message for every gate that waits
	// for people.
	NotifyURL string
}

// ClientOptions configure the manager's client. Reads from the cache wait
// until the cache has seen this process's own writes, so a reconcile never
// acts on a status older than the one it just wrote (which would repeat a
// step and its Events). Writes of unstructured objects opt out, so they do
// not start a second, unstructured cache of the same kinds.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{
		EnableReadYourWritesConsistency: ptr.To(true),
		// Optional APIs (the Gateway API's routes) are read as unstructured
		// objects; serve those from the cache too, not a list per incident.
		Unstructured: true,
	}}
}

// Setup registers the Incident, ApprovalGate and Playbook reconcilers.
func Setup(mgr ctrl.Manager, opts Options) error {
	exprs := &expr.Cache{}
	if err := (&playbook.Reconciler{
		Client:            mgr.GetClient(),
		Exprs:             exprs,
		OperatorNamespace: opts.OperatorNamespace,
	}).SetupWithManager(mgr, opts.MaxConcurrentReconciles); err != nil {
		return err
	}
	gates := &approvalgate.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("riposte-approvalgate"),
	}
	if opts.NotifyURL != "" {
		gates.Notifier = &notify.Webhook{URL: opts.NotifyURL}
	}
	if err := gates.SetupWithManager(mgr, opts.MaxConcurrentReconciles); err != nil {
		return err
	}
	for _, c := range []prometheus.Collector{approvalgate.NewPendingCollector(mgr.GetClient()), incident.NewIncidentCollector(mgr.GetClient())} {
		if err := metrics.Registry.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	// Start every informer enrichment reads before the first alert, so the
	// first incident does not pay for listing the cluster.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		for _, obj := range enrich.CachedKinds() {
			if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
				return fmt.Errorf("starting the informer for %T: %w", obj, err)
			}
		}
		return nil
	})); err != nil {
		return err
	}
	return (&incident.Reconciler{
		Client:              mgr.GetClient(),
		APIReader:           mgr.GetAPIReader(),
		Recorder:            mgr.GetEventRecorder("riposte-incident"),
		Exprs:               exprs,
		OperatorNamespace:   opts.OperatorNamespace,
		ProtectedNamespaces: opts.ProtectedNamespaces,
	}).SetupWithManager(mgr, opts.MaxConcurrentReconciles)
}
