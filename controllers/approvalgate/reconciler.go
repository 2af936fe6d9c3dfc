// Package approvalgate reconciles ApprovalGates: it evaluates the frozen
// policy and the appended decisions and records the verdict.
package approvalgate

import (
	"context"
	"math/rand/v2"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/approval"
	"github.com/riposte-dev/riposte/internal/metrics"
	"github.com/riposte-dev/riposte/internal/notify"
)

// DecisionPolicy is the admission policy that makes people's decisions
// trustworthy; without it installed and bound, none is counted.
const DecisionPolicy = "riposte-approvalgate-decisions"

// Reconciler decides ApprovalGates.
type Reconciler struct {
	client.Client
	// APIReader checks the admission policy directly, without caching every
	// policy in the cluster.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	// Notifier, when set, tells people a gate waits for them.
	Notifier *notify.Webhook
}

// +kubebuilder:rbac:groups=riposte.dev,resources=approvalgates,verbs=get;list;watch
// +kubebuilder:rbac:groups=riposte.dev,resources=approvalgates/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=get,resourceNames=riposte-approvalgate-decisions

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
	trust := approval.Trust{}
	if len(gate.Spec.Decisions) > 0 {
		enforced, err := r.identitiesEnforced(ctx)
		if err != nil {
			return ctrl.Result{}, err
		}
		trust.IdentitiesEnforced = enforced
	}
	before := gate.DeepCopy()
	now := time.Now()
	v := approval.Decide(&gate.Spec, now, trust)
	approval.Record(gate, v, now)
	if !v.Final() && gate.Status.NotifiedAt == nil && r.Notifier != nil {
		if err := r.Notifier.Send(ctx, notify.GateWaiting(gate)); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "telling people the gate waits")
			r.Recorder.Eventf(gate, nil, corev1.EventTypeWarning, "NotificationFailed", "Notify", "%s", err.Error())
		} else {
			at := metav1.NewTime(now)
			gate.Status.NotifiedAt = &at
		}
	}

	if !equality.Semantic.DeepEqual(before.Status, gate.Status) {
		// Optimistic lock: two replicas never record two different verdicts.
		if err := r.Status().Patch(ctx, gate, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		r.observe(gate, before, v)
	}
	if v.RecheckAfter > 0 {
		// A little jitter spreads gates that expire together.
		return ctrl.Result{RequeueAfter: v.RecheckAfter + time.Duration(rand.Int64N(int64(time.Second)))}, nil
	}
	return ctrl.Result{}, nil
}

// observe emits the Event and metric of a verdict just recorded.
func (r *Reconciler) observe(gate, before *riposte.ApprovalGate, v approval.Verdict) {
	switch {
	case v.Final():
		eventType := corev1.EventTypeNormal
		if v.Phase != riposte.GateApproved {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(gate, nil, eventType, v.Reason, "Decide", "%s", v.Message)
		metrics.ObserveDecision(gate)
	case before.Status.Phase == "":
		r.Recorder.Eventf(gate, nil, corev1.EventTypeNormal, riposte.ReasonAwaitingApproval, "Wait",
			"waits for %d approval(s): kubectl riposte approve -n %s %s --reason ...", gate.Spec.Policy.RequiredApprovals, gate.Namespace, gate.Name)
	}
}

// identitiesEnforced reports whether the decision policy and its binding are
// installed, so that the API server has checked every decision's author.
func (r *Reconciler) identitiesEnforced(ctx context.Context) (bool, error) {
	key := client.ObjectKey{Name: DecisionPolicy}
	for _, obj := range []client.Object{&admissionv1.ValidatingAdmissionPolicy{}, &admissionv1.ValidatingAdmissionPolicyBinding{}} {
		if err := r.APIReader.Get(ctx, key, obj); err != nil {
			// Absent, not readable, or a cluster without the API at all
			// (before Kubernetes 1.30): no decision can be trusted.
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || meta.IsNoMatchError(err) {
				return false, nil
			}
			return false, err
		}
	}
	return true, nil
}

func final(p riposte.GatePhase) bool {
	return p != "" && p != riposte.GatePending
}
