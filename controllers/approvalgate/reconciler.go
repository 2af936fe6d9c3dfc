// Package approvalgate reconciles ApprovalGates: it evaluates the frozen
// policy and the appended decisions and records the verdict.
package approvalgate

import (
	"context"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/approval"
)

// Reconciler decides ApprovalGates.
type Reconciler struct {
	client.Client
	Recorder recorder.EventRecorder
}

// +kubebuilder:rbac:groups=riposte.dev,resources=approvalgates,verbs=get;list;watch
// +kubebuilder:rbac:groups=riposte.dev,resources=approvalgates/status,verbs=get;patch;update

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&riposte.ApprovalGate{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(concurrency, 1)}).
		Named("approvalgate").
		Complete(r)
}

// Reconcile records the gate's verdict. A final verdict is never revisited:
// what was decided stays decided.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	gate := &riposte.ApprovalGate{}
	if err := r.Get(ctx, req.NamespacedName, gate); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if final(gate.Status.Phase) {
		return ctrl.Result{}, nil
	}
	before := gate.DeepCopy()
	v := approval.Decide(&gate.Spec, time.Now())
	approval.Record(gate, v, time.Now())

	if !equality.Semantic.DeepEqual(before.Status, gate.Status) {
		// Optimistic lock: two replicas never record two different verdicts.
		if err := r.Status().Patch(ctx, gate, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		if v.Final() {
			eventType := corev1.EventTypeNormal
			if v.Phase != riposte.GateApproved {
				eventType = corev1.EventTypeWarning
			}
			r.Recorder.Eventf(gate, nil, eventType, v.Reason, "Decide", "%s", v.Message)
		}
	}
	if v.RecheckAfter > 0 {
		// A little jitter spreads gates that expire together.
		return ctrl.Result{RequeueAfter: v.RecheckAfter + time.Duration(rand.Int64N(int64(time.Second)))}, nil
	}
	return ctrl.Result{}, nil
}

func final(p riposte.GatePhase) bool {
	return p != "" && p != riposte.GatePending
}
