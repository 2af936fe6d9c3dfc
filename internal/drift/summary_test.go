package drift

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestSummaryOnly(t *testing.T) {
	base := func() *riposte.Playbook {
		return &riposte.Playbook{
			ObjectMeta: metav1.ObjectMeta{Name: "pb", Namespace: "riposte-system", UID: "u1", Generation: 2, ResourceVersion: "10",
				Labels: map[string]string{"team": "sec"}},
			Spec: riposte.PlaybookSpec{Triggers: riposte.Triggers{Drift: []riposte.DriftRule{{Name: "r", Rule: "true"}}}},
			Status: riposte.PlaybookStatus{
				Conditions: []metav1.Condition{{Type: riposte.ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: 2}},
				Drift:      &riposte.PlaybookDriftStatus{OpenIncidents: 1, Watching: []string{"Pod"}},
			},
		}
	}
	tests := []struct {
		name   string
		change func(*riposte.Playbook)
		want   bool
	}{
		{"nothing", func(*riposte.Playbook) {}, true},
		{"the open count", func(pb *riposte.Playbook) { pb.Status.Drift.OpenIncidents = 2; pb.ResourceVersion = "11" }, true},
		{"the summary removed", func(pb *riposte.Playbook) { pb.Status.Drift = nil; pb.ResourceVersion = "11" }, true},
		{"managed fields", func(pb *riposte.Playbook) {
			pb.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "riposte"}}
			pb.Status.Drift.Watching = []string{"Pod", "Namespace"}
		}, true},
		{"the spec", func(pb *riposte.Playbook) { pb.Generation = 3; pb.Spec.Triggers.Drift[0].Rule = "false" }, false},
		{"the Ready condition", func(pb *riposte.Playbook) { pb.Status.Conditions[0].Status = metav1.ConditionFalse }, false},
		{"the condition's generation", func(pb *riposte.Playbook) { pb.Status.Conditions[0].ObservedGeneration = 3 }, false},
		{"deletion", func(pb *riposte.Playbook) { now := metav1.Now(); pb.DeletionTimestamp = &now }, false},
		{"recreated under the same name", func(pb *riposte.Playbook) { pb.UID = "u2" }, false},
		{"labels", func(pb *riposte.Playbook) { pb.Labels = map[string]string{"team": "ops"} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, after := base(), base()
			tt.change(after)
			if got := SummaryOnly(before, after); got != tt.want {
				t.Errorf("SummaryOnly = %v, want %v", got, tt.want)
			}
			if before.Status.Drift == nil || before.ResourceVersion != "10" {
				t.Error("SummaryOnly changed its argument")
			}
		})
	}
}
