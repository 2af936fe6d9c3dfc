package approval

import (
	"slices"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Witness sorts the gate's decisions that Riposte has not judged yet into
// verified and unverifiable, and records which decision policy it saw.
//
// before and after identify the decision policy in force (its and its
// binding's UID and generation, "" when the shipped policy was not provably
// enforcing) read just before and just after the gate itself was read. A
// UID changes when an object is re-created and a generation whenever its
// spec changes, so the same identity read at two times means the policy
// was in force, unchanged, all the time between. A decision is verified
// when that identity is the one Riposte recorded at its previous look (or
// when the gate was opened), and stayed so until after this read of the
// gate: it was then appended while the API server checked it. Anything
// else (a binding deleted and restored, validationActions set to Audit and
// back, the validations swapped) makes every decision that appeared
// meanwhile unverifiable, for good.
func Witness(gate *riposte.ApprovalGate, before, after string) {
	last := gate.Status.DecisionPolicy
	if gate.Status.Phase == "" {
		// Not looked at yet: go on from the policy in force when Riposte
		// opened it.
		last = gate.Spec.Policy.DecisionPolicy
	}
	continuous := before != "" && before == after && before == last
	for _, d := range gate.Spec.Decisions {
		switch {
		case judged(&gate.Status, d.User):
		case continuous:
			gate.Status.VerifiedDecisions = append(gate.Status.VerifiedDecisions, d.User)
		default:
			gate.Status.UnverifiableDecisions = append(gate.Status.UnverifiableDecisions, d.User)
		}
	}
	if before == after {
		gate.Status.DecisionPolicy = before
	} else {
		gate.Status.DecisionPolicy = ""
	}
}

// judged reports whether Witness already sorted user's decision.
func judged(status *riposte.ApprovalGateStatus, user string) bool {
	return slices.Contains(status.VerifiedDecisions, user) || slices.Contains(status.UnverifiableDecisions, user)
}
