package incident

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestGateWaits(t *testing.T) {
	past := metav1.NewTime(time.Now().Add(-time.Minute))
	gate := func(status string, policy riposte.GatePolicy) *riposte.ApprovalGate {
		return &riposte.ApprovalGate{ObjectMeta: metav1.ObjectMeta{Name: "am-1"},
			Spec: riposte.ApprovalGateSpec{Policy: policy}, Status: riposte.ApprovalGateStatus{Message: status}}
	}
	for _, tc := range []struct {
		name string
		gate *riposte.ApprovalGate
		want string
	}{
		{"not looked at yet: the verdict the gate controller will record", gate("", riposte.GatePolicy{RequiredApprovals: 2}), "gate am-1 waits: 0 of 2 approvals"},
		{"looked at: its recorded verdict", gate("1 of 2 approvals", riposte.GatePolicy{RequiredApprovals: 2}), "gate am-1 waits: 1 of 2 approvals"},
		{"not looked at and already expired: no verdict claimed", gate("", riposte.GatePolicy{RequiredApprovals: 1, ExpiresAt: &past}), "gate am-1 was opened"},
	} {
		if got := gateWaits(tc.gate); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
