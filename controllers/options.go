// Package controllers wires Riposte's reconcilers into a manager.
package controllers

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/riposte-dev/riposte/controllers/approvalgate"
	"github.com/riposte-dev/riposte/controllers/incident"
	"github.com/riposte-dev/riposte/controllers/playbook"
	"github.com/riposte-dev/riposte/internal/enrich"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/expr"
	"github.com/riposte-dev/riposte/internal/guard"
	"github.com/riposte-dev/riposte/internal/notify"
	"github.com/riposte-dev/riposte/internal/silence"
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
	// Budget is the cluster-wide limit on remediation.
	Budget guard.Budget
	// AlertmanagerURL, when set, is where Silence steps create silences.
	AlertmanagerURL string
}

// CacheOptions configure the manager's cache: managed fields are never read,
// so they are dropped to keep the cache small, and ConfigMaps (the pause
// switch) are watched in Riposte's own namespace only.
func CacheOptions(operatorNamespace string) cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{operatorNamespace: {}}},
		},
	}
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
	messages := &notify.Webhook{Attempts: 4}
	var silences executor.Silences
	if opts.AlertmanagerURL != "" {
		silences = &silence.Client{URL: opts.AlertmanagerURL}
	}
	return (&incident.Reconciler{
		Silences:            silences,
		Client:              mgr.GetClient(),
		APIReader:           mgr.GetAPIReader(),
		Recorder:            mgr.GetEventRecorder("riposte-incident"),
		Exprs:               exprs,
		OperatorNamespace:   opts.OperatorNamespace,
		ProtectedNamespaces: opts.ProtectedNamespaces,
		Impersonation:       &incident.Impersonation{Config: mgr.GetConfig(), Mapper: mgr.GetRESTMapper()},
		Budget:              opts.Budget,
		Post: func(ctx context.Context, url string, body any, key string) error {
			w := *messages
			w.URL = url
			return w.Post(ctx, body, key)
		},
	}).SetupWithManager(mgr, opts.MaxConcurrentReconciles)
}
