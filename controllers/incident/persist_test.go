package incident

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// What a pass did in the world is stored even when the incident's spec
// changed during the pass: the status is put on the incident as it is now.
// A status changed by someone else is never overwritten.
func TestPersistOutcomeKeepsWhatThePassDid(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := riposte.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		reason       string
		statusToo    bool // the stored status changed as well as the spec
		wantRecorded bool
	}{
		{reason: "the spec changed (the alert resolved) during the pass", wantRecorded: true},
		{reason: "the status changed under the pass", statusToo: true, wantRecorded: false},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			ctx := context.Background()
			stored := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-1", Namespace: "shop"},
				Spec:   riposte.IncidentSpec{Source: riposte.SourceAlertmanager, Status: riposte.AlertFiring},
				Status: riposte.IncidentStatus{Phase: riposte.PhaseDetected}}
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(stored).WithStatusSubresource(&riposte.Incident{}).Build()
			before := &riposte.Incident{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(stored), before); err != nil {
				t.Fatal(err)
			}
			// Meanwhile intake stores the resolution.
			changed := before.DeepCopy()
			changed.Spec.Status = riposte.AlertResolved
			if err := c.Update(ctx, changed); err != nil {
				t.Fatal(err)
			}
			if tc.statusToo {
				changed.Status.Phase = riposte.PhaseFailed
				if err := c.Status().Update(ctx, changed); err != nil {
					t.Fatal(err)
				}
			}
			// The pass isolated the pod and records it.
			inc := before.DeepCopy()
			inc.Status.Phase = riposte.PhaseRemediated
			inc.Status.Steps = []riposte.StepRecord{{Name: "isolate", Phase: riposte.StepApplied}}
			p := &pass{inc: inc, before: before}
			again, err := (&Reconciler{Client: c, APIReader: c}).persistOutcome(ctx, p)
			if !again && !apierrors.IsConflict(err) || again && err != nil {
				t.Fatalf("persistOutcome = %v, %v: want another pass asked for", again, err)
			}
			got := &riposte.Incident{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(stored), got); err != nil {
				t.Fatal(err)
			}
			if recorded := len(got.Status.Steps) == 1 && got.Status.Phase == riposte.PhaseRemediated; recorded != tc.wantRecorded {
				t.Errorf("stored status %s with %d steps: recorded %v, want %v", got.Status.Phase, len(got.Status.Steps), recorded, tc.wantRecorded)
			}
			if got.Spec.Status != riposte.AlertResolved {
				t.Errorf("the spec's change was lost: %s", got.Spec.Status)
			}
		})
	}
}
