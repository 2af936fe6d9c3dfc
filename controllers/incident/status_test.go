package incident

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/guard"
)

func TestSetReady(t *testing.T) {
	cases := []struct {
		reason                     string
		phase                      riposte.IncidentPhase
		conditions                 []metav1.Condition
		ready, reconciling, stalls bool
		wantReason                 string
	}{
		{reason: "remediated is done", phase: riposte.PhaseRemediated, ready: true, wantReason: "Remediated"},
		{reason: "waiting for people is work in progress", phase: riposte.PhaseAwaitingApproval, reconciling: true, wantReason: "AwaitingApproval"},
		{reason: "a failure stalls, saying why the first false condition does", phase: riposte.PhaseFailed, stalls: true,
			conditions: []metav1.Condition{{Type: riposte.IncidentRemediated, Status: metav1.ConditionFalse, Reason: riposte.ReasonImpersonationNotGranted, Message: "grant it"}},
			wantReason: riposte.ReasonImpersonationNotGranted},
		{reason: "a hold says what holds it", phase: riposte.PhaseHeld, reconciling: true,
			conditions: []metav1.Condition{{Type: riposte.IncidentHeld, Status: metav1.ConditionTrue, Reason: riposte.ReasonPaused, Message: "paused"}},
			wantReason: riposte.ReasonPaused},
		{reason: "a new incident is being processed", phase: "", reconciling: true, wantReason: riposte.ReasonProgressing},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			inc := &riposte.Incident{Status: riposte.IncidentStatus{Phase: tc.phase, Conditions: tc.conditions}}
			inc.Generation = 3
			setReady(inc)
			ready := meta.FindStatusCondition(inc.Status.Conditions, riposte.ConditionReady)
			if ready == nil || (ready.Status == metav1.ConditionTrue) != tc.ready || ready.Reason != tc.wantReason || ready.ObservedGeneration != 3 {
				t.Errorf("Ready = %+v, want ready %v reason %s at generation 3", ready, tc.ready, tc.wantReason)
			}
			if got := meta.IsStatusConditionTrue(inc.Status.Conditions, riposte.ConditionReconciling); got != tc.reconciling {
				t.Errorf("Reconciling = %v, want %v", got, tc.reconciling)
			}
			if got := meta.IsStatusConditionTrue(inc.Status.Conditions, riposte.ConditionStalled); got != tc.stalls {
				t.Errorf("Stalled = %v, want %v", got, tc.stalls)
			}
		})
	}
}

func TestRemediatedBy(t *testing.T) {
	pod := &riposte.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web"}
	base := riposte.IncidentStatus{Playbook: &riposte.NamespacedName{Namespace: "shop", Name: "isolate"}, RunAs: "system:serviceaccount:shop:remediator",
		Steps: []riposte.StepRecord{{Name: "isolate", Action: riposte.ActionIsolatePod, Phase: riposte.StepApplied, Target: pod},
			{Name: "tell", Action: riposte.ActionNotify, Phase: riposte.StepSkipped, Target: pod}}}
	cases := []struct {
		reason string
		status func(*riposte.IncidentStatus)
		want   string
	}{
		{"approved by policy, with its rule", func(s *riposte.IncidentStatus) {
			s.AutoApproval = &riposte.AutoApproval{Rule: "incident.spec.severity == 'critical'"}
		}, "remediated by playbook shop/isolate as system:serviceaccount:shop:remediator, approved by policy (incident.spec.severity == 'critical'): isolate (IsolatePod) on Pod/shop/web: Applied; tell (Notify) on Pod/shop/web: Skipped"},
		{"approved by policy, every plan", func(s *riposte.IncidentStatus) { s.AutoApproval = &riposte.AutoApproval{} },
			"remediated by playbook shop/isolate as system:serviceaccount:shop:remediator, approved by policy: isolate (IsolatePod) on Pod/shop/web: Applied; tell (Notify) on Pod/shop/web: Skipped"},
		{"approved by people in a gate", func(s *riposte.IncidentStatus) { s.ApprovalGate = "am-1" },
			"remediated by playbook shop/isolate as system:serviceaccount:shop:remediator, approved in gate am-1: isolate (IsolatePod) on Pod/shop/web: Applied; tell (Notify) on Pod/shop/web: Skipped"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			inc := &riposte.Incident{Status: *base.DeepCopy()}
			tc.status(&inc.Status)
			if got := remediatedBy(inc); got != tc.want {
				t.Errorf("remediatedBy =\n %q\nwant\n %q", got, tc.want)
			}
		})
	}
}

func TestNeedsWriteAhead(t *testing.T) {
	hold := []riposte.StepRecord{{Changes: []riposte.ChangeRecord{{Method: "MergePatch", Operation: riposte.OperationPatch, Undo: riposte.UndoRelease}}}}
	scale := []riposte.StepRecord{{Changes: []riposte.ChangeRecord{{Method: "MergePatch", Operation: riposte.OperationPatch, Undo: riposte.UndoRestore}}}}
	one := int32(1)
	cases := []struct {
		reason  string
		budget  guard.Budget
		limits  *riposte.Limits
		records []riposte.StepRecord
		want    bool
	}{
		{reason: "a hold records itself", records: hold, want: false},
		{reason: "a prior value exists only in the record", records: scale, want: true},
		{reason: "the steps-per-minute budget counts stored steps", budget: guard.Budget{StepsPerMinute: 10}, records: hold, want: true},
		{reason: "a playbook's concurrency limit counts stored remediations", limits: &riposte.Limits{MaxConcurrent: &one}, records: hold, want: true},
		{reason: "the workload budget reads the pods themselves", budget: guard.Budget{MaxWorkloadFraction: 0.5}, records: hold, want: false},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			r := &Reconciler{Budget: tc.budget}
			pb := &riposte.Playbook{Spec: riposte.PlaybookSpec{Limits: tc.limits}}
			if got := r.needsWriteAhead(pb, tc.records); got != tc.want {
				t.Errorf("needsWriteAhead = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWorkOf(t *testing.T) {
	cases := []struct {
		phase          riposte.IncidentPhase
		gate, planHash string
		want           work
	}{
		{phase: "", want: detect},
		{phase: riposte.PhaseDetected, want: detect},
		{phase: riposte.PhaseUnmatched, want: detect}, // matched again when it changes
		{phase: riposte.PhaseAwaitingApproval, gate: "am-1", want: await},
		{phase: riposte.PhaseHeld, want: rehold},
		{phase: riposte.PhaseRemediating, planHash: "sha256:1", want: applySteps},
		{phase: riposte.PhaseFailed, want: detect},                                     // failed planning: planned again
		{phase: riposte.PhaseFailed, gate: "am-1", want: await},                        // failed committing a gate's plan
		{phase: riposte.PhaseFailed, gate: "am-1", planHash: "sha256:1", want: noWork}, // failed applying: final
		{phase: riposte.PhaseRemediated, planHash: "sha256:1", want: noWork},
		{phase: riposte.PhaseDryRun, want: noWork},
		{phase: riposte.PhaseRejected, gate: "am-1", want: noWork},
		{phase: riposte.PhaseCancelled, want: noWork},
		{phase: riposte.PhaseResolved, want: noWork},
		{phase: riposte.PhaseUndone, want: noWork},
	}
	for _, tc := range cases {
		inc := &riposte.Incident{Status: riposte.IncidentStatus{Phase: tc.phase, ApprovalGate: tc.gate, PlanHash: tc.planHash}}
		if got := workOf(inc); got != tc.want {
			t.Errorf("workOf(%q, gate %q, plan %q) = %d, want %d", tc.phase, tc.gate, tc.planHash, got, tc.want)
		}
	}
}

func TestHandsOn(t *testing.T) {
	for phase, want := range map[riposte.IncidentPhase]bool{
		riposte.PhaseDetected: true, riposte.PhaseAwaitingApproval: true, riposte.PhaseRemediating: true,
		riposte.PhaseHeld: false, riposte.PhaseUnmatched: false, riposte.PhaseFailed: false, riposte.PhaseRemediated: false, riposte.PhaseDryRun: false,
	} {
		if got := handsOn(phase); got != want {
			t.Errorf("handsOn(%s) = %v, want %v", phase, got, want)
		}
	}
}

func TestStampStages(t *testing.T) {
	second := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	stored := metav1.NewTime(second)                               // as read back: to the second
	fresh := metav1.NewTime(second.Add(1234567 * time.Nanosecond)) // set by this pass
	later := metav1.NewTime(second.Add(time.Second + 42*time.Microsecond))
	start := second.Add(800 * time.Microsecond)
	micro := func(t metav1.Time) *metav1.MicroTime { m := metav1.NewMicroTime(t.Time); return &m }
	cases := []struct {
		reason        string
		before, after riposte.IncidentStatus
		start         time.Time // the pass's; start when zero
		want          *riposte.StageTimes
	}{
		{reason: "a pass that reaches no stage stamps none",
			before: riposte.IncidentStatus{}, after: riposte.IncidentStatus{}, want: nil},
		{reason: "first taken up: detected at the pass's start, enriched and decided when this pass set them",
			before: riposte.IncidentStatus{},
			after:  riposte.IncidentStatus{DetectedAt: &stored, EnrichedAt: &fresh, ApprovedAt: &fresh},
			want:   &riposte.StageTimes{Detected: micro(metav1.NewTime(start)), Enriched: micro(fresh), Decided: micro(fresh)}},
		{reason: "a stage already stamped keeps its microseconds when its stored time is read back",
			before: riposte.IncidentStatus{DetectedAt: &stored, EnrichedAt: &stored, Stages: &riposte.StageTimes{Enriched: micro(fresh)}},
			after:  riposte.IncidentStatus{DetectedAt: &stored, EnrichedAt: &stored, RemediatedAt: &later, Stages: &riposte.StageTimes{Enriched: micro(fresh)}},
			want:   &riposte.StageTimes{Enriched: micro(fresh), Remediated: micro(later)}},
		{reason: "enriched again: the new time",
			before: riposte.IncidentStatus{EnrichedAt: &stored, Stages: &riposte.StageTimes{Enriched: micro(fresh)}},
			after:  riposte.IncidentStatus{EnrichedAt: &later, Stages: &riposte.StageTimes{Enriched: micro(fresh)}},
			want:   &riposte.StageTimes{Enriched: micro(later)}},
		{reason: "a superseded plan's verdict cleared clears its stage",
			before: riposte.IncidentStatus{EnrichedAt: &stored, ApprovedAt: &stored, Stages: &riposte.StageTimes{Enriched: micro(fresh), Decided: micro(fresh)}},
			after:  riposte.IncidentStatus{EnrichedAt: &stored, Stages: &riposte.StageTimes{Enriched: micro(fresh), Decided: micro(fresh)}},
			want:   &riposte.StageTimes{Enriched: micro(fresh)}},
		{reason: "a people's decision is as precise as the gate stores it",
			before: riposte.IncidentStatus{},
			after:  riposte.IncidentStatus{ApprovedAt: &stored},
			want:   &riposte.StageTimes{Decided: micro(stored)}},
		{reason: "taken up over a second after its creation (a backlog, a manager down): its creation time, not hidden",
			before: riposte.IncidentStatus{},
			after:  riposte.IncidentStatus{DetectedAt: &stored, EnrichedAt: &fresh},
			start:  second.Add(10 * time.Minute),
			want:   &riposte.StageTimes{Detected: micro(stored), Enriched: micro(fresh)}},
		{reason: "a creation stored after the pass started (clock skew) is not preceded",
			before: riposte.IncidentStatus{},
			after:  riposte.IncidentStatus{DetectedAt: &later},
			want:   &riposte.StageTimes{Detected: micro(later)}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			passStart := start
			if !tc.start.IsZero() {
				passStart = tc.start
			}
			stampStages(&tc.before, &tc.after, passStart)
			if !equality.Semantic.DeepEqual(tc.after.Stages, tc.want) {
				t.Errorf("stages %s, want %s", describeStages(tc.after.Stages), describeStages(tc.want))
			}
		})
	}
}

func describeStages(s *riposte.StageTimes) string {
	if s == nil {
		return "none"
	}
	f := func(m *metav1.MicroTime) string {
		if m == nil {
			return "-"
		}
		return m.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("detected %s enriched %s decided %s remediated %s", f(s.Detected), f(s.Enriched), f(s.Decided), f(s.Remediated))
}
