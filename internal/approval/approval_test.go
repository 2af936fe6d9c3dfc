package approval

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestDecideCountsNoOneWithoutIdentityEnforcement(t *testing.T) {
	spec := riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 1},
		Decisions: []riposte.Decision{{User: "mallory", Decision: riposte.DecisionApprove, Reason: "trust me"}}}
	v := Decide(&spec, time.Now(), Trust{})
	if v.Phase != riposte.GatePending || v.Approvals != 0 || len(v.Ignored) != 1 {
		t.Errorf("verdict = %+v, want pending with the decision ignored", v)
	}
	if v := Decide(&spec, time.Now(), Trust{Verified: []string{"alice"}}); v.Approvals != 0 {
		t.Errorf("only verified users count, not mallory: %+v", v)
	}
	auto := riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{Automatic: true}}
	if v := Decide(&auto, time.Now(), Trust{}); v.Phase != riposte.GateApproved {
		t.Errorf("an automatic gate needs no identities: %+v", v)
	}
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	past := metav1.NewTime(now.Add(-time.Minute))
	future := metav1.NewTime(now.Add(10 * time.Minute))
	approve := func(user string) riposte.Decision {
		return riposte.Decision{User: user, Decision: riposte.DecisionApprove, Reason: "ok"}
	}
	cases := []struct {
		reason string
		spec   riposte.ApprovalGateSpec
		want   Verdict
	}{
		{
			reason: "an automatic policy approves at once, attributed to policy",
			spec:   riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{Automatic: true, AutoApproveRule: "true"}},
			want:   Verdict{Phase: riposte.GateApproved, Reason: riposte.ReasonAutoApproved, Message: "approved automatically: true held", DecidedBy: []string{"policy"}},
		},
		{
			reason: "no decisions yet: pending, with time to expiry",
			spec:   riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 2, ExpiresAt: &future}},
			want:   Verdict{Phase: riposte.GatePending, Reason: riposte.ReasonWaitingForQuorum, Message: "0 of 2 approvals", RecheckAfter: 10 * time.Minute},
		},
		{
			reason: "one of two approvals is not enough",
			spec:   riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 2}, Decisions: []riposte.Decision{approve("alice")}},
			want:   Verdict{Phase: riposte.GatePending, Reason: riposte.ReasonWaitingForQuorum, Message: "1 of 2 approvals", Approvals: 1},
		},
		{
			reason: "two distinct approvers reach a quorum of two",
			spec:   riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 2}, Decisions: []riposte.Decision{approve("alice"), approve("bob")}},
			want:   Verdict{Phase: riposte.GateApproved, Reason: riposte.ReasonQuorumReached, Message: "approved by 2 of 2 required", Approvals: 2, DecidedBy: []string{"alice", "bob"}},
		},
		{
			reason: "a reject vetoes even after approvals",
			spec: riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 2}, Decisions: []riposte.Decision{
				approve("alice"), {User: "carol", Decision: riposte.DecisionReject, Reason: "wrong pod"}}},
			want: Verdict{Phase: riposte.GateRejected, Reason: riposte.ReasonVetoed, Message: "rejected by carol: wrong pod", Approvals: 1, DecidedBy: []string{"carol"}},
		},
		{
			reason: "with two rejections required, one reject does not close the gate",
			spec: riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 2, RequiredRejections: 2}, Decisions: []riposte.Decision{
				approve("alice"), {User: "carol", Decision: riposte.DecisionReject, Reason: "unsure"}}},
			want: Verdict{Phase: riposte.GatePending, Reason: riposte.ReasonWaitingForQuorum, Message: "1 of 2 approvals", Approvals: 1},
		},
		{
			reason: "the second rejection closes it",
			spec: riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 2, RequiredRejections: 2}, Decisions: []riposte.Decision{
				{User: "carol", Decision: riposte.DecisionReject, Reason: "unsure"}, {User: "dave", Decision: riposte.DecisionReject, Reason: "no"}}},
			want: Verdict{Phase: riposte.GateRejected, Reason: riposte.ReasonVetoed, Message: "rejected by carol, dave: no", DecidedBy: []string{"carol", "dave"}},
		},
		{
			reason: "expiry rejects by default",
			spec:   riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 1, ExpiresAt: &past}},
			want:   Verdict{Phase: riposte.GateExpired, Reason: riposte.ReasonExpired, Message: "expired undecided; the policy rejects on expiry", DecidedBy: []string{"policy"}},
		},
		{
			reason: "expiry approves when the policy says so",
			spec:   riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 1, ExpiresAt: &past, OnExpiry: riposte.ExpiryApprove}},
			want:   Verdict{Phase: riposte.GateApproved, Reason: riposte.ReasonExpired, Message: "expired undecided; the policy approves on expiry", DecidedBy: []string{"policy"}},
		},
		{
			reason: "the requester's approval is not counted unless the policy allows it",
			spec: riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 1, Requester: "alice"},
				Decisions: []riposte.Decision{approve("alice")}},
			want: Verdict{Phase: riposte.GatePending, Reason: riposte.ReasonWaitingForQuorum, Message: "0 of 1 approvals",
				Ignored: []string{"alice: opened the incident and may not approve it"}},
		},
		{
			reason: "the requester may approve when the policy allows it",
			spec: riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 1, Requester: "alice", AllowRequester: true},
				Decisions: []riposte.Decision{approve("alice")}},
			want: Verdict{Phase: riposte.GateApproved, Reason: riposte.ReasonQuorumReached, Message: "approved by 1 of 1 required", Approvals: 1, DecidedBy: []string{"alice"}},
		},
		{
			reason: "a quorum reached before expiry is not undone by the clock",
			spec:   riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{RequiredApprovals: 1, ExpiresAt: &past}, Decisions: []riposte.Decision{approve("alice")}},
			want:   Verdict{Phase: riposte.GateApproved, Reason: riposte.ReasonQuorumReached, Message: "approved by 1 of 1 required", Approvals: 1, DecidedBy: []string{"alice"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Decide(&tc.spec, now, trustAll(tc.spec))); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

// trustAll verifies every decision of spec, as if the decision policy was in
// force throughout.
func trustAll(spec riposte.ApprovalGateSpec) Trust {
	var t Trust
	for _, d := range spec.Decisions {
		t.Verified = append(t.Verified, d.User)
	}
	return t
}

// A reason as long as a decision may carry still gives a verdict the
// gate's status takes: status.message holds 1024 bytes.
func TestRecordClipsALongRejectReason(t *testing.T) {
	long := strings.Repeat("r", 1024)
	gate := &riposte.ApprovalGate{Spec: riposte.ApprovalGateSpec{Decisions: []riposte.Decision{{User: "carol", Decision: riposte.DecisionReject, Reason: long}}}}
	Record(gate, Decide(&gate.Spec, time.Now(), Trust{Verified: []string{"carol"}}), time.Now())
	if gate.Status.Phase != riposte.GateRejected || len(gate.Status.Message) > 1024 || !strings.HasPrefix(gate.Status.Message, "rejected by carol: rrr") {
		t.Errorf("status %s, message of %d bytes: %.40q", gate.Status.Phase, len(gate.Status.Message), gate.Status.Message)
	}
	for _, c := range gate.Status.Conditions {
		if len(c.Message) > 1024 {
			t.Errorf("condition %s message of %d bytes", c.Type, len(c.Message))
		}
	}
}
