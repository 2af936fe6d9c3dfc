// Package approvalgate reconciles ApprovalGates: it evaluates the frozen
// policy and the appended decisions and records the verdict.
package approvalgate

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/approval"
	"github.com/riposte-dev/riposte/internal/chat"
	"github.com/riposte-dev/riposte/internal/metrics"
	"github.com/riposte-dev/riposte/internal/notify"
)

// Reconciler decides ApprovalGates.
type Reconciler struct {
	client.Client
	// APIReader checks the admission policy directly, without caching every
	// policy in the cluster.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	// OperatorNamespace is Riposte's namespace, which the shipped decision
	// policy names.
	OperatorNamespace string
	// Notifier, when set, tells people a gate waits for them.
	Notifier *notify.Webhook
	// ChatButtons adds Slack buttons to the message, for the chat bridge
	// (riposte slack-bridge) to receive the clicks.
	ChatButtons bool
	// notified remembers, by gate UID, the notifications this process sent,
	// so a pass retried after a conflicting status write does not send twice.
	notified sync.Map
}

// +kubebuilder:rbac:groups=riposte.dev,resources=approvalgates,verbs=get;list;watch
// +kubebuilder:rbac:groups=riposte.dev,resources=approvalgates/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingadmissionpolicies;validatingadmissionpolicybindings,verbs=get;list;watch,resourceNames=riposte-approvalgate-decisions

// SetupWithManager registers the reconciler. A change to the decision policy
// or its binding wakes every gate people decide, so each notes which policy
// is in force before the next decision arrives; an incident that withdraws
// its plan from a gate wakes that gate, which this controller then closes.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		// A gate changes for this controller only by its spec (decisions),
		// its incident's withdrawal, the decision policy or its expiry
		// timer: its own status writes would only wake it to find nothing
		// new, at the cost of the witness's five reads.
		For(&riposte.ApprovalGate{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&riposte.Incident{}, handler.EnqueueRequestsFromMapFunc(withdrawnGates), builder.WithPredicates(withdrawing)).
		Watches(&admissionv1.ValidatingAdmissionPolicy{}, handler.EnqueueRequestsFromMapFunc(r.gatesPeopleDecide)).
		Watches(&admissionv1.ValidatingAdmissionPolicyBinding{}, handler.EnqueueRequestsFromMapFunc(r.gatesPeopleDecide)).
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
	if closed(gate.Status.Phase) {
		return ctrl.Result{}, nil
	}
	if w, err := r.withdrawal(ctx, gate); err != nil || w != nil {
		if err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.close(ctx, gate, w)
	}
	if final(gate.Status.Phase) {
		return ctrl.Result{}, nil
	}
	base := gate.DeepCopy() // the status patch is computed from what was read
	switch {
	case gate.Spec.Policy.Automatic:
	case gate.Status.Phase == "" && len(gate.Spec.Decisions) == 0 && r.cachedPolicyIs(ctx, gate.Spec.Policy.DecisionPolicy):
		// First look, nothing decided, and the policy the incident saw
		// when it opened the gate is still the one cached: the witness
		// would only record it again. That claims no more than it did: a
		// decision is counted only if the same policy is read around the
		// gate later, which proves it was in force from the opening on.
		// Should a decision be in the gate and not yet in the cache, the
		// status write fails its optimistic lock and the gate is looked at
		// again; a policy changed since is read live, as below.
		gate.Status.DecisionPolicy = gate.Spec.Policy.DecisionPolicy
	default:
		// People decide this gate: see whether the API server checked the
		// decisions, reading the policy before and after a fresh read of
		// the gate (the order is what approval.Witness relies on). With no
		// new decision this renews the record of the policy in force, so
		// the first decision after a reinstall counts.
		policyBefore, _, err := approval.Enforcement(ctx, r.APIReader, r.OperatorNamespace)
		if err != nil {
			return ctrl.Result{}, err
		}
		fresh := &riposte.ApprovalGate{}
		if err := r.APIReader.Get(ctx, req.NamespacedName, fresh); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		policyAfter, why, err := approval.Enforcement(ctx, r.APIReader, r.OperatorNamespace)
		if err != nil {
			return ctrl.Result{}, err
		}
		if final(fresh.Status.Phase) {
			return ctrl.Result{}, nil
		}
		gate, base = fresh, fresh.DeepCopy()
		approval.Witness(gate, policyBefore, policyAfter)
		if added := newlyUnverifiable(base, gate); len(added) > 0 {
			r.Recorder.Eventf(gate, nil, corev1.EventTypeWarning, riposte.ReasonDecisionsUnverifiable, "Decide",
				"decisions of %s are never counted: they were recorded while %s", strings.Join(added, ", "), unverifiedBecause(why))
		}
	}
	now := time.Now()
	v := approval.Decide(&gate.Spec, now, approval.Trust{Verified: gate.Status.VerifiedDecisions})
	approval.Record(gate, v, now)
	notifyFailed := false
	if !v.Final() && gate.Status.NotifiedAt == nil && r.Notifier != nil {
		if at, sent := r.notified.Load(gate.UID); sent {
			// Sent by an earlier pass whose status write conflicted.
			gate.Status.NotifiedAt = at.(*metav1.Time)
		} else if err := r.Notifier.Send(ctx, r.message(gate)); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "telling people the gate waits")
			r.Recorder.Eventf(gate, nil, corev1.EventTypeWarning, "NotificationFailed", "Notify", "%s", err.Error())
			notifyFailed = !notify.IsPermanent(err)
		} else {
			at := metav1.NewTime(now)
			gate.Status.NotifiedAt = &at
			r.notified.Store(gate.UID, &at)
		}
	}

	if !equality.Semantic.DeepEqual(base.Status, gate.Status) {
		// Optimistic lock: two replicas never record two different verdicts,
		// and the decisions witnessed are exactly those of the gate read.
		if err := r.Status().Patch(ctx, gate, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		r.notified.Delete(gate.UID) // stored now
		r.observe(gate, base, v)
	}
	var after time.Duration
	if v.RecheckAfter > 0 {
		// A little jitter spreads gates that expire together.
		after = v.RecheckAfter + time.Duration(rand.Int64N(int64(time.Second)))
	}
	if retry := notifyRetry(gate, now); notifyFailed && (after == 0 || after > retry) {
		// Nothing else wakes a gate nobody was told about.
		after = retry
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// notifyRetry is how soon a notification that failed is tried again: 10 s
// at first, then half the gate's age, at most 10 minutes, so a webhook that
// stays down is not flooded.
func notifyRetry(gate *riposte.ApprovalGate, now time.Time) time.Duration {
	return min(max(10*time.Second, now.Sub(gate.CreationTimestamp.Time)/2), 10*time.Minute)
}

// cachedPolicyIs says whether the decision policy in the cache is in force
// with the identity want: reading it costs no request.
func (r *Reconciler) cachedPolicyIs(ctx context.Context, want string) bool {
	id, _, err := approval.Enforcement(ctx, r.Client, r.OperatorNamespace)
	return err == nil && id != "" && id == want
}

// withdrawal is the incident's withdrawal of its plan from the gate, or nil.
// Only the incident that owns the gate (by UID) withdraws from it.
func (r *Reconciler) withdrawal(ctx context.Context, gate *riposte.ApprovalGate) (*riposte.WithdrawnGate, error) {
	owner := metav1.GetControllerOf(gate)
	if owner == nil {
		return nil, nil
	}
	inc := &riposte.Incident{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: gate.Namespace, Name: gate.Spec.Incident}, inc); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if inc.UID != owner.UID {
		return nil, nil
	}
	for i, w := range inc.Status.WithdrawnGates {
		if w.UID == string(gate.UID) {
			return &inc.Status.WithdrawnGates[i], nil
		}
	}
	return nil, nil
}

// close records that Riposte closed the gate, as its incident asked: a
// pending gate takes no more decisions, an approved one's approval no
// longer stands for anything.
func (r *Reconciler) close(ctx context.Context, gate *riposte.ApprovalGate, w *riposte.WithdrawnGate) error {
	base := gate.DeepCopy()
	v := approval.Verdict{Phase: w.Phase, Reason: w.Reason, Message: w.Message, DecidedBy: []string{"riposte"}, Approvals: gate.Status.Approvals}
	approval.Record(gate, v, time.Now())
	if err := r.Status().Patch(ctx, gate, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(err)
	}
	r.observe(gate, base, v)
	return nil
}

// withdrawing selects incidents that withdrew from a gate since last seen.
var withdrawing = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return len(e.Object.(*riposte.Incident).Status.WithdrawnGates) > 0 },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return !equality.Semantic.DeepEqual(e.ObjectOld.(*riposte.Incident).Status.WithdrawnGates, e.ObjectNew.(*riposte.Incident).Status.WithdrawnGates)
	},
}

// withdrawnGates are the gates an incident withdrew from.
func withdrawnGates(_ context.Context, obj client.Object) []reconcile.Request {
	inc := obj.(*riposte.Incident)
	reqs := make([]reconcile.Request, 0, len(inc.Status.WithdrawnGates))
	for _, w := range inc.Status.WithdrawnGates {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: inc.Namespace, Name: w.Name}})
	}
	return reqs
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

func newlyUnverifiable(before, after *riposte.ApprovalGate) []string {
	return after.Status.UnverifiableDecisions[len(before.Status.UnverifiableDecisions):]
}

func unverifiedBecause(why string) string {
	if why == "" {
		return "the decision policy changed or was re-created since Riposte last looked"
	}
	return why
}

// gatesPeopleDecide lists the gates still waiting for people.
func (r *Reconciler) gatesPeopleDecide(ctx context.Context, _ client.Object) []reconcile.Request {
	var gates riposte.ApprovalGateList
	if err := r.List(ctx, &gates, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing gates after a change to the decision policy")
		return nil
	}
	var reqs []reconcile.Request
	for i := range gates.Items {
		if g := &gates.Items[i]; !g.Spec.Policy.Automatic && !final(g.Status.Phase) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(g)})
		}
	}
	return reqs
}

func final(p riposte.GatePhase) bool {
	return p != "" && p != riposte.GatePending
}

// closed: no decision and no withdrawal changes the gate any more. An
// approved gate is final but can still be withdrawn from (superseded).
func closed(p riposte.GatePhase) bool {
	return final(p) && p != riposte.GateApproved
}

// message is the notification of a waiting gate.
func (r *Reconciler) message(gate *riposte.ApprovalGate) notify.Message {
	m := notify.GateWaiting(gate)
	if r.ChatButtons {
		m.Blocks = chat.GateBlocks(gate)
	}
	return m
}
