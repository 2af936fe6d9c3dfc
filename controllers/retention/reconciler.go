// Package retention deletes incidents that closed longer ago than the
// retention period, with their gates (owned by the incident, so the garbage
// collector takes them), as Kubernetes' TTL controller does for finished
// Jobs: etcd is not an archive, and a noisy alert source would fill it.
//
// An incident that did something keeps the record finalizer, so its
// deletion still writes the record out (Events and the log) before it goes.
// One whose remediation is still in place is not deleted at all: it is the
// only record undo needs, and its deletion would only wait.
package retention

import (
	"context"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/inplace"
	"github.com/riposte-dev/riposte/internal/metrics"
)

// +kubebuilder:rbac:groups=riposte.dev,resources=incidents,verbs=delete

// maxRecheck bounds how long an expired incident kept by changes in place
// waits before it is looked at again (its target may be gone by then).
const maxRecheck = time.Hour

// Reconciler deletes expired closed incidents.
type Reconciler struct {
	client.Client
	// APIReader decides on the stored incident, not the cache's copy.
	APIReader client.Reader
	// After is how long an incident is kept once closed.
	After time.Duration
	// Workers delete concurrently: a noisy source closes incidents as fast
	// as intake stores them, and retention must keep pace or etcd grows.
	Workers int
}

// Expiry is when a closed incident is due for deletion; ok is false for an
// incident retention never deletes (open, or being deleted already). An
// alert's or a drift finding's incident expires only once its source said
// it is over: deleted while its alert still fires, it would be stored anew
// by the next resend and planned again, a rejected plan asked again and an
// undone one applied again.
func Expiry(inc *riposte.Incident, after time.Duration) (at time.Time, ok bool) {
	if !inc.DeletionTimestamp.IsZero() || !inc.Status.Phase.Closed() || inc.Status.ClosedAt == nil {
		return time.Time{}, false
	}
	if inc.Spec.Source != riposte.SourceManual && inc.Spec.Status != riposte.AlertResolved {
		return time.Time{}, false
	}
	return inc.Status.ClosedAt.Add(after), true
}

// Reconcile deletes the incident once it is due, or asks to be woken then.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	inc := &riposte.Incident{}
	if err := r.Get(ctx, req.NamespacedName, inc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if wait, due := r.due(inc); !due {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	// The cache may lag an incident that opened again: decide on what is stored.
	if err := r.APIReader.Get(ctx, req.NamespacedName, inc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if wait, due := r.due(inc); !due {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	log := ctrl.LoggerFrom(ctx)
	if kept, err := r.inPlace(ctx, inc); err != nil {
		return reconcile.Result{}, err
	} else if kept {
		metrics.RetentionKept.Inc()
		log.V(1).Info("retention keeps an expired incident: its remediation is still in place; undo it to let it go", "phase", inc.Status.Phase)
		return reconcile.Result{RequeueAfter: min(r.After, maxRecheck)}, nil
	}
	// Deleted only as read: an incident changed since is judged again.
	err := r.Delete(ctx, inc, client.Preconditions{UID: &inc.UID, ResourceVersion: &inc.ResourceVersion},
		client.PropagationPolicy(metav1.DeletePropagationBackground))
	switch {
	case apierrors.IsNotFound(err):
		return reconcile.Result{}, nil
	case apierrors.IsConflict(err):
		return reconcile.Result{Requeue: true}, nil
	case err != nil:
		return reconcile.Result{}, err
	}
	metrics.RetentionDeleted.Inc()
	log.Info("incident deleted by retention", "phase", inc.Status.Phase, "closedAt", inc.Status.ClosedAt.UTC(), "retention", r.After.String())
	return reconcile.Result{}, nil
}

// due reports whether the incident is past its retention, or how long until
// it is (0: never, nothing to wait for).
func (r *Reconciler) due(inc *riposte.Incident) (wait time.Duration, due bool) {
	at, ok := Expiry(inc, r.After)
	if !ok {
		return 0, false
	}
	if wait := time.Until(at); wait > 0 {
		return wait, false
	}
	return 0, true
}

// inPlace reports whether a change of the remediation is still in the world.
func (r *Reconciler) inPlace(ctx context.Context, inc *riposte.Incident) (bool, error) {
	for i := range inc.Status.Steps {
		rec := &inc.Status.Steps[i]
		if !inplace.Step(rec) {
			continue
		}
		// A silence lives in Alertmanager, where the API server cannot
		// say it is gone: an incident whose silence was not ended keeps
		// its ID, the only way to end it.
		if slices.ContainsFunc(rec.Changes, func(c riposte.ChangeRecord) bool {
			return inplace.Kept(rec, c) && c.Undo == riposte.UndoExpire
		}) {
			return true, nil
		}
		if gone, err := inplace.Gone(ctx, r.APIReader, rec); err != nil || !gone {
			return true, err
		}
	}
	return false, nil
}

// SetupWithManager watches incidents that are closed.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	closed := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		_, ok := Expiry(obj.(*riposte.Incident), r.After)
		return ok
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&riposte.Incident{}, builder.WithPredicates(closed)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).
		Named("retention").
		Complete(r)
}
