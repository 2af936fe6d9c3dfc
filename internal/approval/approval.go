// Package approval decides an ApprovalGate's verdict from its frozen policy,
// the decisions people appended and the clock. It is pure: the gate
// controller gathers the gate, calls Decide, and writes the verdict.
package approval

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/text"
)

// maxMessage is status.message's limit in the ApprovalGate schema.
const maxMessage = 1024

// PolicyActor is how an automatic decision is attributed in decidedBy.
const PolicyActor = "policy"

// Verdict is the outcome of one evaluation.
type Verdict struct {
	Phase     riposte.GatePhase
	Reason    string
	Message   string
	Approvals int32
	DecidedBy []string
	// RecheckAfter is set while the gate is pending with an expiry ahead.
	RecheckAfter time.Duration
	// Ignored lists the decisions that were not counted, and why.
	Ignored []string
}

// Trust says which people's decisions can be counted.
type Trust struct {
	// Verified are the users whose decisions Riposte saw appear while the
	// shipped decision policy was continuously in force (see Witness). Any
	// other decision proves nothing, so it is not counted.
	Verified []string
}

// Final reports whether the verdict closes the gate.
func (v Verdict) Final() bool { return v.Phase != riposte.GatePending }

// Decide returns the gate's verdict at now. Order matters: an automatic
// policy decides first; then any reject vetoes; then a quorum of distinct
// approvers opens the gate; then expiry closes it as the policy says.
func Decide(spec *riposte.ApprovalGateSpec, now time.Time, trust Trust) Verdict {
	p := spec.Policy
	if p.Automatic {
		return Verdict{Phase: riposte.GateApproved, Reason: riposte.ReasonAutoApproved,
			Message: AutoMessage(p.AutoApproveRule), DecidedBy: []string{PolicyActor}}
	}
	var approvers, rejecters, ignored []string
	requiredRejections := max(p.RequiredRejections, 1)
	for _, d := range spec.Decisions {
		switch {
		case !slices.Contains(trust.Verified, d.User):
			ignored = append(ignored, d.User+": not counted, recorded while the admission policy riposte-approvalgate-decisions was not provably in force")
			continue
		case d.Decision == riposte.DecisionApprove && !p.AllowRequester && p.Requester != "" && d.User == p.Requester:
			// The admission policy refuses this already; kept as a second line.
			ignored = append(ignored, d.User+": opened the incident and may not approve it")
			continue
		case d.Decision == riposte.DecisionReject:
			rejecters = append(rejecters, d.User)
			if int32(len(rejecters)) >= requiredRejections {
				return Verdict{Phase: riposte.GateRejected, Reason: riposte.ReasonVetoed,
					Message: fmt.Sprintf("rejected by %s: %s", strings.Join(rejecters, ", "), d.Reason), DecidedBy: rejecters,
					Approvals: int32(len(approvers)), Ignored: ignored}
			}
			continue
		}
		approvers = append(approvers, d.User) // one decision per user is enforced by the schema
	}
	required := max(p.RequiredApprovals, 1)
	count := int32(len(approvers))
	if count >= required {
		return Verdict{Phase: riposte.GateApproved, Reason: riposte.ReasonQuorumReached,
			Message: fmt.Sprintf("approved by %d of %d required", count, required), DecidedBy: approvers, Approvals: count, Ignored: ignored}
	}
	if p.ExpiresAt != nil && !now.Before(p.ExpiresAt.Time) {
		if p.OnExpiry == riposte.ExpiryApprove {
			return Verdict{Phase: riposte.GateApproved, Reason: riposte.ReasonExpired,
				Message: "expired undecided; the policy approves on expiry", DecidedBy: []string{PolicyActor}, Approvals: count, Ignored: ignored}
		}
		return Verdict{Phase: riposte.GateExpired, Reason: riposte.ReasonExpired,
			Message: "expired undecided; the policy rejects on expiry", DecidedBy: []string{PolicyActor}, Approvals: count, Ignored: ignored}
	}
	v := Verdict{Phase: riposte.GatePending, Reason: riposte.ReasonWaitingForQuorum,
		Message: fmt.Sprintf("%d of %d approvals", count, required), Approvals: count, Ignored: ignored}
	if p.ExpiresAt != nil {
		v.RecheckAfter = p.ExpiresAt.Sub(now)
	}
	return v
}

// AutoMessage says which rule approved a plan without a person.
func AutoMessage(rule string) string {
	if rule == "" {
		return "approved automatically: the playbook approves every plan"
	}
	return fmt.Sprintf("approved automatically: %s held", rule)
}

// ExpiryFrom returns when a gate opened at now expires under a timeout.
func ExpiryFrom(now time.Time, timeout *metav1.Duration) *metav1.Time {
	if timeout == nil || timeout.Duration <= 0 {
		return nil
	}
	t := metav1.NewTime(now.Add(timeout.Duration))
	return &t
}

// Record writes a verdict into the gate's status: phase, approvals, who
// decided and when, and the Decided and Ready conditions.
func Record(gate *riposte.ApprovalGate, v Verdict, now time.Time) {
	gate.Status.ObservedGeneration = gate.Generation
	gate.Status.Phase = v.Phase
	gate.Status.Approvals = v.Approvals
	// A verdict may quote a reason or a withdrawal as long as the message
	// itself: clipped to what status.message takes, or it is never stored.
	v.Message = text.Elide(v.Message, maxMessage)
	gate.Status.Message = v.Message
	gate.Status.IgnoredDecisions = v.Ignored
	decided := metav1.ConditionFalse
	if v.Final() {
		decided = metav1.ConditionTrue
		at := metav1.NewTime(now)
		gate.Status.DecidedAt = &at
		gate.Status.DecidedBy = v.DecidedBy
	}
	meta.SetStatusCondition(&gate.Status.Conditions, metav1.Condition{Type: riposte.GateDecided, Status: decided,
		Reason: v.Reason, Message: v.Message, ObservedGeneration: gate.Generation})
	ready := metav1.ConditionFalse
	if v.Phase == riposte.GateApproved {
		ready = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&gate.Status.Conditions, metav1.Condition{Type: riposte.ConditionReady, Status: ready,
		Reason: v.Reason, Message: v.Message, ObservedGeneration: gate.Generation})
}
