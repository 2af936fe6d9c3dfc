// Package playbook reconciles Playbooks: it judges what admission cannot (CEL
// expressions, regular expressions, the kinds drift rules name and whether
// Riposte may watch them) and reports it in status. It never
// writes a playbook's spec, so GitOps tools see no drift.
package playbook

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/expr"
	"github.com/riposte-dev/riposte/internal/match"
)

// Reconciler validates Playbooks.
type Reconciler struct {
	client.Client
	Exprs *expr.Cache
	// Drift resolves drift rules' kinds against the API server.
	Drift             *drift.Resolver
	OperatorNamespace string
}

// notInstalledRecheck is how often a playbook waiting on something outside
// it (the PolicyReport API, a kind's CRD, a grant to watch it) looks again.
const notInstalledRecheck = time.Minute

// +kubebuilder:rbac:groups=riposte.dev,resources=playbooks,verbs=get;list;watch
// +kubebuilder:rbac:groups=riposte.dev,resources=playbooks/status,verbs=get;patch;update

// SetupWithManager registers the reconciler; only spec changes matter.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&riposte.Playbook{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(concurrency, 1)}).
		Named("playbook").
		Complete(r)
}

// Reconcile sets Ready, or Stalled with the author's error.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pb := &riposte.Playbook{}
	if err := r.Get(ctx, req.NamespacedName, pb); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := pb.DeepCopy()
	pb.Status.ObservedGeneration = pb.Generation
	pb.Status.Scope = "Namespace"
	if pb.Namespace == r.OperatorNamespace {
		pb.Status.Scope = "Cluster"
	}
	reason, msg := match.Validate(pb, r.Exprs)
	if reason == "" && pb.Spec.ServiceAccountName == "" && pb.Namespace != r.OperatorNamespace {
		reason, msg = riposte.ReasonNoServiceAccount, "spec.serviceAccountName is empty: a playbook outside "+r.OperatorNamespace+
			" must name the service account, in its own namespace, that its remediation runs as (Riposte impersonates it, so its RBAC bounds what the playbook can change)"
	}
	if reason == "" && r.Drift != nil && len(pb.Spec.Triggers.Drift) > 0 {
		if _, problem := r.Drift.Resolve(ctx, pb); problem != nil {
			reason, msg = problem.Reason, problem.Message
		}
	}
	var requeue time.Duration
	if reason == riposte.ReasonUnknownKind || reason == riposte.ReasonWatchForbidden {
		// Fixed outside the playbook (a CRD installed, a grant given): look again.
		requeue = notInstalledRecheck
	}
	if len(pb.Spec.Triggers.PolicyReports) == 0 || r.Drift == nil {
		meta.RemoveStatusCondition(&pb.Status.Conditions, riposte.PlaybookPolicyReports)
	} else if _, problem := r.Drift.PolicyReportKinds(ctx); problem != nil {
		// Not an error the author must fix: the playbook's other triggers work.
		set(pb, riposte.PlaybookPolicyReports, metav1.ConditionFalse, problem.Reason, problem.Message)
		requeue = notInstalledRecheck
	} else {
		set(pb, riposte.PlaybookPolicyReports, metav1.ConditionTrue, riposte.ReasonWatching, "failed PolicyReport results are read as drift")
	}
	if reason == "" {
		set(pb, riposte.ConditionReady, metav1.ConditionTrue, riposte.ReasonValid, "playbook is valid and in use ("+pb.Status.Scope+" scope)")
		meta.RemoveStatusCondition(&pb.Status.Conditions, riposte.ConditionStalled)
	} else {
		set(pb, riposte.ConditionReady, metav1.ConditionFalse, reason, msg)
		set(pb, riposte.ConditionStalled, metav1.ConditionTrue, reason, msg)
	}
	if equality.Semantic.DeepEqual(before.Status, pb.Status) {
		return ctrl.Result{RequeueAfter: requeue}, nil
	}
	return ctrl.Result{RequeueAfter: requeue}, client.IgnoreNotFound(r.Status().Patch(ctx, pb, client.MergeFrom(before)))
}

func set(pb *riposte.Playbook, t string, s metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&pb.Status.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason,
		Message: msg, ObservedGeneration: pb.Generation})
}
