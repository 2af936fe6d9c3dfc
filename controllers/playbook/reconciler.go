// Package playbook reconciles Playbooks: it judges what admission cannot (CEL
// expressions, regular expressions, the kinds drift rules name and whether
// Riposte may watch them, whether Riposte may impersonate the playbook's
// account) and reports it in status. It never
// writes a playbook's spec, so GitOps tools see no drift.
package playbook

import (
	"context"
	"fmt"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/expr"
	"github.com/riposte-dev/riposte/internal/impersonation"
	"github.com/riposte-dev/riposte/internal/match"
)

// Reconciler validates Playbooks.
type Reconciler struct {
	client.Client
	Exprs *expr.Cache
	// Drift resolves drift rules' kinds against the API server.
	Drift *drift.Resolver
	// CanImpersonate asks the API server whether Riposte itself may
	// impersonate namespace/account (nil: not checked).
	CanImpersonate    func(ctx context.Context, namespace, account string) (bool, error)
	OperatorNamespace string

	// bindingChanged holds, by namespace, when a RoleBinding naming Riposte
	// last changed there.
	bindingChanged sync.Map
}

// authorizerLag is how long after a RoleBinding's change a refused
// impersonation is asked again every authorizerRecheck: the API server's
// authorizer sees a binding a moment after the watch event that woke the
// pass, so the first answer can predate the grant.
const (
	authorizerLag     = 30 * time.Second
	authorizerRecheck = time.Second
)

// notInstalledRecheck is how often a playbook waiting on something outside
// it (the PolicyReport API, a kind's CRD, a grant to watch it) looks again.
const notInstalledRecheck = time.Minute

// grantRecheck is how often a Ready playbook asks again whether Riposte may
// still impersonate its account: a RoleBinding's change wakes it at once,
// but an edit of the Role or ClusterRole it binds does not.
const grantRecheck = 10 * time.Minute

// +kubebuilder:rbac:groups=riposte.dev,resources=playbooks,verbs=get;list;watch
// +kubebuilder:rbac:groups=riposte.dev,resources=playbooks/status,verbs=get;patch;update

// SetupWithManager registers the reconciler. Spec changes matter, and
// RoleBindings that name Riposte's account: granting or revoking
// impersonation changes whether a playbook in that namespace is Ready.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&riposte.Playbook{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&rbacv1.RoleBinding{}, handler.EnqueueRequestsFromMapFunc(r.playbooksInNamespace), builder.WithPredicates(r.bindsManager())).
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
	if reason == "" {
		var err error
		if reason, msg, err = r.checkIdentity(ctx, pb); err != nil {
			return ctrl.Result{}, err
		}
	}
	var requeue time.Duration
	if reason == riposte.ReasonUnknownKind || reason == riposte.ReasonWatchForbidden || reason == riposte.ReasonImpersonationNotGranted {
		// Fixed outside the playbook (a CRD installed, a grant given): look again.
		requeue = notInstalledRecheck
		if at, ok := r.bindingChanged.Load(pb.Namespace); ok && reason == riposte.ReasonImpersonationNotGranted && time.Since(at.(time.Time)) < authorizerLag {
			requeue = authorizerRecheck
		}
	} else if reason == "" && r.CanImpersonate != nil {
		requeue = grantRecheck
	}
	if len(pb.Spec.Triggers.PolicyReports) == 0 || r.Drift == nil {
		meta.RemoveStatusCondition(&pb.Status.Conditions, riposte.PlaybookPolicyReports)
	} else if kinds, says, problem := r.Drift.ReportKinds(ctx); problem != nil {
		// Not an error the author must fix: the playbook's other triggers work.
		set(pb, riposte.PlaybookPolicyReports, metav1.ConditionFalse, problem.Reason, problem.Message)
		requeue = notInstalledRecheck
	} else {
		// The condition names the formats read, so it is never True about
		// one that is not.
		set(pb, riposte.PlaybookPolicyReports, metav1.ConditionTrue, riposte.ReasonWatching, says)
		if len(kinds) < 2*len(drift.ReportAPIs) && (requeue == 0 || requeue > notInstalledRecheck) {
			requeue = notInstalledRecheck // to say so once the other format is installed
		}
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

// checkIdentity refuses Riposte's own account and asks the API server
// whether Riposte may impersonate the playbook's account, so the author
// learns of a missing grant now, with the command that gives it, rather
// than from the first incident's failed dry run.
func (r *Reconciler) checkIdentity(ctx context.Context, pb *riposte.Playbook) (reason, msg string, err error) {
	account := impersonation.Account(pb.Namespace, pb.Spec.ServiceAccountName, r.OperatorNamespace)
	if account == "" {
		return "", "", nil // refused above as NoServiceAccount
	}
	if impersonation.IsManager(pb.Namespace, account, r.OperatorNamespace) {
		return riposte.ReasonServiceAccountForbidden, "spec.serviceAccountName names Riposte's own account " + pb.Namespace + "/" + account +
			"; no playbook may run as it: name an account that holds only what the playbook needs", nil
	}
	if r.CanImpersonate == nil {
		return "", "", nil
	}
	allowed, err := r.CanImpersonate(ctx, pb.Namespace, account)
	if err != nil {
		return "", "", fmt.Errorf("checking whether Riposte may impersonate %s/%s: %w", pb.Namespace, account, err)
	}
	if !allowed {
		return riposte.ReasonImpersonationNotGranted, impersonation.NotGrantedMessage(pb.Namespace, account, r.OperatorNamespace), nil
	}
	return "", "", nil
}

// bindsManager selects RoleBindings that name Riposte's account, before or
// after the change (a binding that stops naming it revokes a grant).
func (r *Reconciler) bindsManager() predicate.Funcs {
	names := func(obj client.Object) bool {
		rb, ok := obj.(*rbacv1.RoleBinding)
		if !ok {
			return false
		}
		for _, s := range rb.Subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Name == riposte.ManagerServiceAccountName && s.Namespace == r.OperatorNamespace {
				return true
			}
		}
		return false
	}
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return names(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return names(e.ObjectOld) || names(e.ObjectNew) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return names(e.Object) },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// playbooksInNamespace wakes the playbooks a RoleBinding's grant may concern.
func (r *Reconciler) playbooksInNamespace(ctx context.Context, rb client.Object) []reconcile.Request {
	r.bindingChanged.Store(rb.GetNamespace(), time.Now())
	var playbooks riposte.PlaybookList
	if err := r.List(ctx, &playbooks, client.InNamespace(rb.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "finding playbooks a RoleBinding concerns")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(playbooks.Items))
	for i := range playbooks.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&playbooks.Items[i])})
	}
	return reqs
}

func set(pb *riposte.Playbook, t string, s metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&pb.Status.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason,
		Message: msg, ObservedGeneration: pb.Generation})
}
