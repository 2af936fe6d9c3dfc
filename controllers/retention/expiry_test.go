package retention

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestExpiry(t *testing.T) {
	closedAt := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	deleting := metav1.NewTime(closedAt.Add(time.Hour))
	for _, tc := range []struct {
		name     string
		phase    riposte.IncidentPhase
		closedAt *metav1.Time
		deleting *metav1.Time
		want     bool
	}{
		{"resolved", riposte.PhaseResolved, &closedAt, nil, true},
		{"undone", riposte.PhaseUndone, &closedAt, nil, true},
		{"rejected", riposte.PhaseRejected, &closedAt, nil, true},
		{"cancelled", riposte.PhaseCancelled, &closedAt, nil, true},
		{"dry run", riposte.PhaseDryRun, &closedAt, nil, true},
		{"unmatched", riposte.PhaseUnmatched, &closedAt, nil, true},
		{"remediated, alert still firing", riposte.PhaseRemediated, &closedAt, nil, false},
		{"failed: a person must look", riposte.PhaseFailed, &closedAt, nil, false},
		{"waiting for people", riposte.PhaseAwaitingApproval, nil, nil, false},
		{"closed before closedAt existed: stamped on its next pass", riposte.PhaseResolved, nil, nil, false},
		{"already being deleted", riposte.PhaseResolved, &closedAt, &deleting, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: tc.deleting},
				Status: riposte.IncidentStatus{Phase: tc.phase, ClosedAt: tc.closedAt}}
			at, ok := Expiry(inc, 30*24*time.Hour)
			if ok != tc.want {
				t.Fatalf("Expiry ok = %v, want %v", ok, tc.want)
			}
			if ok && !at.Equal(closedAt.Add(30*24*time.Hour)) {
				t.Errorf("expires at %s, want 30 days after %s", at, closedAt)
			}
		})
	}
}
