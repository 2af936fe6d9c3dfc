package approval

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestWitness(t *testing.T) {
	decisions := func(users ...string) []riposte.Decision {
		var out []riposte.Decision
		for _, u := range users {
			out = append(out, riposte.Decision{User: u, Decision: riposte.DecisionApprove, Reason: "ok"})
		}
		return out
	}
	type seen struct {
		Policy       string
		Verified     []string
		Unverifiable []string
	}
	cases := []struct {
		reason        string
		gate          riposte.ApprovalGate
		before, after string
		want          seen
	}{
		{
			reason: "first look, the policy in force when the gate was opened is still in force: verified",
			gate: riposte.ApprovalGate{Spec: riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{DecisionPolicy: "p1"},
				Decisions: decisions("alice")}},
			before: "p1", after: "p1",
			want: seen{Policy: "p1", Verified: []string{"alice"}},
		},
		{
			reason: "the binding was re-created since the gate was opened: what appeared meanwhile never counts",
			gate: riposte.ApprovalGate{Spec: riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{DecisionPolicy: "p1"},
				Decisions: decisions("mallory")}},
			before: "p2", after: "p2",
			want: seen{Policy: "p2", Unverifiable: []string{"mallory"}},
		},
		{
			reason: "after a gap, decisions made under the new policy count; the earlier verdicts stand",
			gate: riposte.ApprovalGate{Spec: riposte.ApprovalGateSpec{Decisions: decisions("alice", "mallory", "bob")},
				Status: riposte.ApprovalGateStatus{Phase: riposte.GatePending, DecisionPolicy: "p2",
					VerifiedDecisions: []string{"alice"}, UnverifiableDecisions: []string{"mallory"}}},
			before: "p2", after: "p2",
			want: seen{Policy: "p2", Verified: []string{"alice", "bob"}, Unverifiable: []string{"mallory"}},
		},
		{
			reason: "no policy in force: nothing counts, and nothing is in force to go on from",
			gate: riposte.ApprovalGate{Spec: riposte.ApprovalGateSpec{Decisions: decisions("mallory")},
				Status: riposte.ApprovalGateStatus{Phase: riposte.GatePending, DecisionPolicy: "p1"}},
			before: "", after: "",
			want: seen{Unverifiable: []string{"mallory"}},
		},
		{
			reason: "the policy changed while the gate was read: unverifiable, and the next look starts afresh",
			gate: riposte.ApprovalGate{Spec: riposte.ApprovalGateSpec{Decisions: decisions("carol")},
				Status: riposte.ApprovalGateStatus{Phase: riposte.GatePending, DecisionPolicy: "p1"}},
			before: "p1", after: "p1b",
			want: seen{Unverifiable: []string{"carol"}},
		},
		{
			reason: "a gate whose status says no policy was in force never verifies, even when one is now",
			gate: riposte.ApprovalGate{Spec: riposte.ApprovalGateSpec{Policy: riposte.GatePolicy{DecisionPolicy: "p1"}, Decisions: decisions("mallory")},
				Status: riposte.ApprovalGateStatus{Phase: riposte.GatePending}},
			before: "p1", after: "p1",
			want: seen{Policy: "p1", Unverifiable: []string{"mallory"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			gate := tc.gate.DeepCopy()
			Witness(gate, tc.before, tc.after)
			got := seen{Policy: gate.Status.DecisionPolicy, Verified: gate.Status.VerifiedDecisions, Unverifiable: gate.Status.UnverifiableDecisions}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			for _, d := range gate.Spec.Decisions {
				if !judged(&gate.Status, d.User) {
					t.Errorf("the decision of %s was left unjudged", d.User)
				}
			}
		})
	}
}

// An install in another namespace ships the decision policy naming its own
// manager account; Riposte compares against that, not the default.
func TestShippedPolicyFollowsTheNamespace(t *testing.T) {
	for _, ns := range []string{DefaultNamespace, "security"} {
		p := shippedIn(ns)
		want := "system:serviceaccount:" + ns + ":riposte-controller-manager"
		found := false
		for _, v := range p.policy.Validations {
			if strings.Contains(v.Expression, want) {
				found = true
			}
			if ns != DefaultNamespace && strings.Contains(v.Expression, DefaultNamespace) {
				t.Errorf("the policy for %s still names %s: %s", ns, DefaultNamespace, v.Expression)
			}
		}
		if !found {
			t.Errorf("the policy for %s does not name %s", ns, want)
		}
	}
}
