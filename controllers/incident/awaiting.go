package incident

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/approval"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/text"
)

// awaitingApproval is the work of a plan in a gate: read the gate's
// verdict, and commit the plan once people approved it.
func (r *Reconciler) awaitingApproval(ctx context.Context, p *pass) error {
	if err := r.enrich(ctx, p); err != nil { // only when the spec changed: the plan is then built again before it runs
		return err
	}
	if err := r.loadPlaybook(ctx, p); err != nil {
		return err
	}
	approved, err := r.awaitVerdict(ctx, p)
	if err != nil || !approved {
		return err
	}
	return r.commit(ctx, p)
}

// held is the work of an approved plan a guardrail holds back: a gate's is
// committed once the hold lifts, checked against the approved hash; an
// automatic verdict binds only once committed, so the plan is made and
// decided again, against the playbook and the world as they are then.
func (r *Reconciler) held(ctx context.Context, p *pass) error {
	if p.inc.Status.ApprovalGate != "" {
		return r.awaitingApproval(ctx, p)
	}
	return r.detected(ctx, p)
}

// awaitVerdict reads the gate's verdict: approved goes on, anything else
// stops here until the gate changes.
func (r *Reconciler) awaitVerdict(ctx context.Context, p *pass) (approved bool, err error) {
	inc := p.inc
	if p.gate == nil {
		gate, missing, err := r.incidentGate(ctx, inc)
		switch {
		case err != nil:
			return false, err
		case gate != nil:
			p.gate = gate
		case missing == "":
			return false, nil // just created: the cache has not seen it yet; its watch event wakes us
		default:
			return false, r.reopenGate(ctx, p, missing)
		}
	}
	gate := p.gate
	switch gate.Status.Phase {
	case riposte.GateApproved:
		if inc.Status.ApprovedAt == nil {
			inc.Status.ApprovedAt = gate.Status.DecidedAt
		}
		setCondition(inc, riposte.IncidentApproved, true, riposte.ReasonApproved, gate.Status.Message)
		return true, nil
	case riposte.GateRejected, riposte.GateExpired:
		if err := r.adoptOrphanHolds(ctx, p); err != nil { // a hold an automatic verdict wrote before the playbook changed
			return false, err
		}
		inc.Status.Phase = riposte.PhaseRejected
		setCondition(inc, riposte.IncidentApproved, false, riposte.ReasonRejected, gate.Status.Message)
		return false, nil
	case riposte.GateCancelled:
		// Closed by Riposte itself. The pass that closed it moves the incident
		// on too; if that pass could not store the incident (a write that
		// conflicted with a change to its spec), the gate's record does it now.
		if inc.Status.Phase == riposte.PhaseAwaitingApproval {
			reason := riposte.ReasonTargetGone
			if c := meta.FindStatusCondition(gate.Status.Conditions, riposte.GateDecided); c != nil {
				reason = c.Reason
			}
			inc.Status.Phase = riposte.PhaseCancelled
			setCondition(inc, riposte.IncidentApproved, false, reason, "gate "+gate.Name+" was cancelled: "+gate.Status.Message)
			r.resolveIfDone(inc)
		}
		return false, nil
	case riposte.GateSuperseded:
		// Closed by Riposte itself, which names the new gate in the same
		// pass; if that pass could not store the incident, ask again here
		// (the new gate is found and taken if it is the one this would open).
		r.askAgain(p)
		return false, nil
	default:
		return false, r.whilePending(ctx, p)
	}
}

// whilePending withdraws a waiting plan that became moot: the alert resolved
// or the target is gone. Otherwise the incident keeps waiting.
func (r *Reconciler) whilePending(ctx context.Context, p *pass) error {
	inc, gate := p.inc, p.gate
	if inc.Spec.Status == riposte.AlertResolved {
		if err := r.adoptOrphanHolds(ctx, p); err != nil {
			return err
		}
		reason, why := resolvedBecause(inc)
		r.withdraw(inc, gate, riposte.GateCancelled, reason, why+" before a decision")
		at := metav1.Now()
		if inc.Spec.EndsAt != nil {
			at = *inc.Spec.EndsAt
		}
		inc.Status.ResolvedAt = &at
		inc.Status.Phase = riposte.PhaseResolved
		setCondition(inc, riposte.IncidentApproved, false, reason, "gate "+gate.Name+" was cancelled: "+why)
		r.event(inc, corev1.EventTypeNormal, reason, "Cancel", why+"; gate "+gate.Name+" was cancelled")
		return nil
	}
	if _, gone, err := r.currentTarget(ctx, inc); err != nil || gone {
		if err != nil {
			return err
		}
		return r.cancelForGoneTarget(ctx, inc, gate)
	}
	if unverifiable := gate.Status.UnverifiableDecisions; len(unverifiable) > 0 && gate.Status.DecisionPolicy != "" {
		// Only once the policy is in force again can a new gate take real
		// decisions; without it (before Kubernetes 1.30) none ever counts
		// and the gate waits and expires as its policy says.
		// Decisions recorded in those people's names while nothing checked
		// them would keep the real people from deciding (one decision per
		// person): a new gate lets them.
		msg := fmt.Sprintf("gate %s holds decisions in the names of %s recorded while the decision policy was not in force; they never count",
			gate.Name, strings.Join(unverifiable, ", "))
		r.withdraw(inc, gate, riposte.GateSuperseded, riposte.ReasonDecisionsUnverifiable, msg)
		r.event(inc, corev1.EventTypeWarning, riposte.ReasonDecisionsUnverifiable, "Replan", msg+"; a new gate asks again")
		r.askAgain(p)
		return nil
	}
	inc.Status.Phase = riposte.PhaseAwaitingApproval
	msg := gateWaits(gate)
	if why := r.notAutomatic(inc, p.pb); why != "" && !gate.Spec.Policy.Automatic {
		msg += "; " + why
	}
	setCondition(inc, riposte.IncidentApproved, false, riposte.ReasonAwaitingApproval, msg)
	return nil
}

// gateWaits says what a waiting gate waits for: its verdict as the gate
// controller recorded it, or, before it looked, the verdict it will record.
func gateWaits(gate *riposte.ApprovalGate) string {
	verdict := gate.Status.Message
	if verdict == "" {
		v := approval.Decide(&gate.Spec, time.Now(), approval.Trust{})
		if v.Final() {
			return "gate " + gate.Name + " was opened"
		}
		verdict = v.Message
	}
	return fmt.Sprintf("gate %s waits: %s", gate.Name, verdict)
}

func (r *Reconciler) cancelForGoneTarget(ctx context.Context, inc *riposte.Incident, gate *riposte.ApprovalGate) error {
	msg := "the target " + describe(targetOf(inc)) + " no longer exists"
	r.withdraw(inc, gate, riposte.GateCancelled, riposte.ReasonTargetGone, msg)
	inc.Status.Phase = riposte.PhaseCancelled
	setCondition(inc, riposte.IncidentApproved, false, riposte.ReasonTargetGone, "gate "+gate.Name+" was cancelled: "+msg)
	r.event(inc, corev1.EventTypeNormal, riposte.ReasonTargetGone, "Cancel", msg+"; gate "+gate.Name+" was cancelled")
	return nil
}

// withdraw withdraws the incident's plan from a gate, and says why, in the
// incident's status. The ApprovalGate controller, the only writer of gates'
// status, closes the gate once the incident is stored: a gate is never
// closed for an incident whose write was lost.
func (r *Reconciler) withdraw(inc *riposte.Incident, gate *riposte.ApprovalGate, phase riposte.GatePhase, reason, msg string) {
	for _, w := range inc.Status.WithdrawnGates {
		if w.UID == string(gate.UID) {
			return
		}
	}
	inc.Status.WithdrawnGates = append(inc.Status.WithdrawnGates, riposte.WithdrawnGate{
		Name: gate.Name, UID: string(gate.UID), Phase: phase, Reason: reason, Message: text.Elide(msg, 4096)})
	if n := len(inc.Status.WithdrawnGates); n > maxWithdrawnGates {
		// The oldest are closed long since.
		inc.Status.WithdrawnGates = inc.Status.WithdrawnGates[n-maxWithdrawnGates:]
	}
}

// maxWithdrawnGates bounds status.withdrawnGates (the CRD's maxItems): one
// per gate an incident may open, and one more.
const maxWithdrawnGates = maxGateRevisions + 1

// currentTarget re-reads the target by name: the object the plan would act
// on now, with its current UID. gone is true when it no longer exists.
func (r *Reconciler) currentTarget(ctx context.Context, inc *riposte.Incident) (*riposte.ObjectReference, bool, error) {
	t := targetOf(inc)
	if t == nil || t.Kind == "" {
		return t, false, nil
	}
	gvk := schema.FromAPIVersionAndKind(t.APIVersion, t.Kind)
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(gvk)
	obj, err := r.Scheme().New(gvk)
	var target client.Object = meta
	if err == nil {
		target = obj.(client.Object)
	}
	if err := r.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.Name}, target); err != nil {
		if apierrors.IsNotFound(err) {
			return t, true, nil
		}
		return nil, false, fmt.Errorf("reading target %s: %w", t, err)
	}
	current := *t
	current.UID = string(target.GetUID())
	return &current, false, nil
}

// supersede closes an approved gate whose plan no longer matches the world
// and asks again with the new plan: what runs is only ever what was approved.
func (r *Reconciler) supersede(ctx context.Context, p *pass, target *riposte.ObjectReference, plan *executor.Plan) error {
	inc, old := p.inc, p.gate
	msg := fmt.Sprintf("the world changed since approval: the plan is now %s, not the approved %s", plan.Hash, old.Spec.Plan.Hash)
	r.withdraw(inc, old, riposte.GateSuperseded, riposte.ReasonPlanChanged, msg)
	r.event(inc, corev1.EventTypeWarning, riposte.ReasonPlanChanged, "Replan", msg+"; gate "+old.Name+" is superseded")
	inc.Status.Context.Target = target
	r.askAgain(p)
	return nil
}

// reopenGate asks again when the incident's gate is gone (deleted) or is
// not the one Riposte opened: an incident never waits on a gate that cannot
// decide, and never takes a verdict from one it did not create.
func (r *Reconciler) reopenGate(ctx context.Context, p *pass, why string) error {
	r.event(p.inc, corev1.EventTypeWarning, riposte.ReasonGateMissing, "Replan", why+"; a new gate asks again")
	setCondition(p.inc, riposte.IncidentApproved, false, riposte.ReasonGateMissing, why)
	r.askAgain(p)
	return nil
}

// askAgain sends the incident back to Detected, without a gate: the next
// handler plans it and asks for a verdict again, in this pass.
func (r *Reconciler) askAgain(p *pass) {
	inc := p.inc
	inc.Status.ApprovalGate, inc.Status.ApprovalGateUID = "", ""
	inc.Status.ApprovedAt, inc.Status.AutoApproval = nil, nil
	inc.Status.Phase = riposte.PhaseDetected
	p.gate, p.plan = nil, nil
}

// incidentGate reads the incident's own gate. With no gate it returns why
// (deleted, or re-created by someone other than Riposte), or "" when the
// gate was just created and is not readable yet.
func (r *Reconciler) incidentGate(ctx context.Context, inc *riposte.Incident) (*riposte.ApprovalGate, string, error) {
	key := client.ObjectKey{Namespace: inc.Namespace, Name: inc.Status.ApprovalGate}
	gate := &riposte.ApprovalGate{}
	err := r.Get(ctx, key, gate)
	if apierrors.IsNotFound(err) {
		// The cache may lag a gate just created; the API server knows.
		err = r.APIReader.Get(ctx, key, gate)
		if apierrors.IsNotFound(err) {
			return nil, "gate " + key.Name + " was deleted before the plan ran", nil
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading gate %s: %w", key.Name, err)
	}
	if inc.Status.ApprovalGateUID != "" && string(gate.UID) != inc.Status.ApprovalGateUID {
		return nil, "gate " + key.Name + " was deleted and re-created by someone other than Riposte; its verdict counts for nothing", nil
	}
	return gate, "", nil
}
