// Package controllers wires Riposte's reconcilers into a manager.
package controllers

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/riposte-dev/riposte/controllers/approvalgate"
	"github.com/riposte-dev/riposte/controllers/incident"
	"github.com/riposte-dev/riposte/controllers/playbook"
	"github.com/riposte-dev/riposte/internal/expr"
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
	if err := (&approvalgate.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("riposte-approvalgate"),
	}).SetupWithManager(mgr, opts.MaxConcurrentReconciles); err != nil {
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
