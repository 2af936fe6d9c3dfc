package guard

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestMeasure(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(-ago)} }
	pb := riposte.NamespacedName{Namespace: "shop", Name: "isolate"}
	other := riposte.NamespacedName{Namespace: "shop", Name: "scale"}
	inc := func(name string, playbook riposte.NamespacedName, phase riposte.IncidentPhase, started ...*metav1.Time) riposte.Incident {
		i := riposte.Incident{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
		i.Status.Playbook, i.Status.Phase = &playbook, phase
		for _, s := range started {
			i.Status.Steps = append(i.Status.Steps, riposte.StepRecord{Name: "s", StartedAt: s})
		}
		return i
	}
	self := inc("self", pb, riposte.PhaseRemediating, at(time.Second))
	incidents := []riposte.Incident{
		self, // never counts itself
		inc("a", pb, riposte.PhaseRemediated, at(10*time.Minute)),
		inc("b", pb, riposte.PhaseResolved, at(30*time.Second), at(20*time.Second)),
		inc("c", pb, riposte.PhaseRemediating, at(2*time.Hour)),
		inc("d", other, riposte.PhaseRemediated, at(5*time.Second)),
		inc("e", pb, riposte.PhaseAwaitingApproval),
	}
	got := Measure(incidents, pb, &self, now)
	want := Load{StartedLastHour: 2, Open: 2, StepsLastMinute: 3}
	if got != want {
		t.Errorf("Measure = %+v, want %+v", got, want)
	}
}

func TestHold(t *testing.T) {
	pb := &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "isolate"}}
	limited := pb.DeepCopy()
	limited.Spec.Limits = &riposte.Limits{MaxPerHour: ptr.To[int32](5), MaxConcurrent: ptr.To[int32](2)}
	cases := []struct {
		reason     string
		playbook   *riposte.Playbook
		steps      int
		load       Load
		budget     Budget
		wantReason string
	}{
		{reason: "nothing holds an unlimited playbook", playbook: pb, steps: 1, load: Load{StartedLastHour: 100, Open: 100}},
		{reason: "a pause holds everything", playbook: pb, steps: 1, load: Load{Paused: true}, wantReason: riposte.ReasonPaused},
		{reason: "under every limit", playbook: limited, steps: 1, load: Load{StartedLastHour: 4, Open: 1}},
		{reason: "the hourly limit reached", playbook: limited, steps: 1, load: Load{StartedLastHour: 5}, wantReason: riposte.ReasonRateLimited},
		{reason: "the concurrency cap reached", playbook: limited, steps: 1, load: Load{Open: 2}, wantReason: riposte.ReasonConcurrencyLimit},
		{reason: "within the cluster's budget", playbook: pb, steps: 2, load: Load{StepsLastMinute: 8}, budget: Budget{StepsPerMinute: 10}},
		{reason: "over the cluster's budget", playbook: pb, steps: 3, load: Load{StepsLastMinute: 8}, budget: Budget{StepsPerMinute: 10}, wantReason: riposte.ReasonBudgetExhausted},
		{reason: "a plan bigger than the budget runs alone rather than never", playbook: pb, steps: 20, budget: Budget{StepsPerMinute: 10}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			reason, msg, held := Hold(tc.playbook, tc.steps, tc.load, tc.budget)
			if reason != tc.wantReason || held != (tc.wantReason != "") || (held && msg == "") {
				t.Errorf("Hold = %q (%q, held %v), want %q", reason, msg, held, tc.wantReason)
			}
		})
	}
}

func TestWorkloadBudget(t *testing.T) {
	cases := []struct {
		reason    string
		workloads []Workload
		fraction  float64
		held      bool
	}{
		{reason: "no budget", workloads: []Workload{{Name: "w", Total: 1, Planned: 1}}},
		{reason: "one of four is within half", workloads: []Workload{{Name: "w", Total: 4, Planned: 1}}, fraction: 0.5},
		{reason: "a third pod out of four is over half", workloads: []Workload{{Name: "w", Total: 4, Out: 2, Planned: 1}}, fraction: 0.5, held: true},
		{reason: "the only pod of a workload is over any fraction below 1", workloads: []Workload{{Name: "w", Total: 1, Planned: 1}}, fraction: 0.9, held: true},
		{reason: "a workload the plan does not touch does not count", workloads: []Workload{{Name: "w", Total: 2, Out: 2}}, fraction: 0.5},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			reason, msg, held := WorkloadBudget(tc.workloads, tc.fraction)
			if held != tc.held || (held && (reason != riposte.ReasonBudgetExhausted || msg == "")) {
				t.Errorf("WorkloadBudget = %q %q %v, want held %v", reason, msg, held, tc.held)
			}
		})
	}
}
