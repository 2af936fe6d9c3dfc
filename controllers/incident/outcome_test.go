package incident

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestSettle(t *testing.T) {
	transient := errors.New("connection refused")
	cases := []struct {
		reason      string
		err         error
		pending     time.Duration // a timer the pass already set
		wantPhase   riposte.IncidentPhase
		wantAfter   time.Duration
		wantErr     error
		wantFailure *metav1.Condition
	}{
		{reason: "moved on", pending: time.Minute, wantPhase: riposte.PhaseDetected, wantAfter: time.Minute},
		{reason: "stalled: fails with the stage's condition", err: stalled(riposte.IncidentPlanned, riposte.ReasonPlanFailed, "playbook shop/x was deleted"),
			wantPhase:   riposte.PhaseFailed,
			wantFailure: &metav1.Condition{Type: riposte.IncidentPlanned, Status: metav1.ConditionFalse, Reason: riposte.ReasonPlanFailed, Message: "playbook shop/x was deleted"}},
		{reason: "stalled, wrapped", err: fmt.Errorf("step: %w", stalled(riposte.IncidentRemediated, riposte.ReasonStepFailed, "no")),
			wantPhase: riposte.PhaseFailed, wantFailure: &metav1.Condition{Type: riposte.IncidentRemediated, Status: metav1.ConditionFalse, Reason: riposte.ReasonStepFailed, Message: "no"}},
		{reason: "waiting: the sooner of its delay and the pass's timers", err: waitFor(5*time.Second, "held"), pending: time.Minute,
			wantPhase: riposte.PhaseDetected, wantAfter: 5 * time.Second},
		{reason: "transient: retried with backoff", err: transient, pending: time.Minute, wantPhase: riposte.PhaseDetected, wantErr: transient},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			inc := &riposte.Incident{Status: riposte.IncidentStatus{Phase: riposte.PhaseDetected}}
			p := &pass{inc: inc, requeueAfter: tc.pending}
			res, err := (&Reconciler{}).settle(p, tc.err)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if res.RequeueAfter != tc.wantAfter {
				t.Errorf("requeue after %s, want %s", res.RequeueAfter, tc.wantAfter)
			}
			if inc.Status.Phase != tc.wantPhase {
				t.Errorf("phase %s, want %s", inc.Status.Phase, tc.wantPhase)
			}
			if tc.wantFailure != nil {
				c := meta.FindStatusCondition(inc.Status.Conditions, tc.wantFailure.Type)
				if c == nil || c.Status != tc.wantFailure.Status || c.Reason != tc.wantFailure.Reason || c.Message != tc.wantFailure.Message {
					t.Errorf("condition %+v, want %+v", c, tc.wantFailure)
				}
			}
		})
	}
}
