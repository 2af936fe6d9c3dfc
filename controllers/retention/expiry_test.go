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
		source   riposte.IncidentSource
		alert    riposte.AlertStatus
		phase    riposte.IncidentPhase
		closedAt *metav1.Time
		deleting *metav1.Time
		want     bool
	}{
		{"resolved", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseResolved, &closedAt, nil, true},
		{"undone", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseUndone, &closedAt, nil, true},
		{"rejected", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseRejected, &closedAt, nil, true},
		{"cancelled", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseCancelled, &closedAt, nil, true},
		{"dry run", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseDryRun, &closedAt, nil, true},
		{"unmatched", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseUnmatched, &closedAt, nil, true},
		{"remediated: its changes are in place", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseRemediated, &closedAt, nil, false},
		{"failed: a person must look", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseFailed, &closedAt, nil, false},
		{"waiting for people", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseAwaitingApproval, nil, nil, false},
		{"closed before closedAt existed: stamped on its next pass", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseResolved, nil, nil, false},
		{"rejected, its alert still firing", riposte.SourceAlertmanager, riposte.AlertFiring, riposte.PhaseRejected, &closedAt, nil, false},
		{"undone, its alert still firing", riposte.SourceAlertmanager, riposte.AlertFiring, riposte.PhaseUndone, &closedAt, nil, false},
		{"unmatched drift, still violating", riposte.SourceDrift, riposte.AlertFiring, riposte.PhaseUnmatched, &closedAt, nil, false},
		{"manual, rejected", riposte.SourceManual, "", riposte.PhaseRejected, &closedAt, nil, true},
		{"already being deleted", riposte.SourceAlertmanager, riposte.AlertResolved, riposte.PhaseResolved, &closedAt, &deleting, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: tc.deleting},
				Spec:   riposte.IncidentSpec{Source: tc.source, Status: tc.alert},
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
