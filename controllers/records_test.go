package controllers_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
	"github.com/riposte-dev/riposte/internal/report"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// recordsOf reads the suite's sink, verified, and returns the records of
// one incident by milestone.
func recordsOf(ctx context.Context, uid types.UID) (map[string]record.Body, record.Report, error) {
	trusted, err := record.TrustedKeys(record.PublicPEM(recordKey.Public().(ed25519.PublicKey)))
	if err != nil {
		return nil, record.Report{}, err
	}
	rep, err := record.Verify(ctx, records, record.VerifyOptions{Trusted: trusted})
	if err != nil {
		return nil, rep, err
	}
	if !rep.OK() {
		return nil, rep, fmt.Errorf("the chain does not verify: %v", rep.Problems)
	}
	out := map[string]record.Body{}
	for _, s := range rep.Bodies {
		if s.Body.Incident.UID == string(uid) {
			out[s.Body.Milestone] = s.Body
		}
	}
	return out, rep, nil
}

// waitForRecord waits until the sink holds the incident's record of
// milestone, and returns the incident's records by milestone.
func waitForRecord(t *testing.T, uid types.UID, milestone string) map[string]record.Body {
	t.Helper()
	var byMilestone map[string]record.Body
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		var err error
		if byMilestone, _, err = recordsOf(ctx, uid); err != nil {
			return err
		}
		if _, ok := byMilestone[milestone]; !ok {
			return fmt.Errorf("no %s record of %s yet; milestones recorded: %v", milestone, uid, keys(byMilestone))
		}
		return nil
	})
	return byMilestone
}

// An auditor's questions, answered from the records alone: what triggered
// the remediation, which plan was approved by whom (not the requester),
// what was written as which identity with its prior state, the undo, and
// that the record survived the incident's deletion.
func TestRecordsOutliveTheIncident(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	mustCreate(t, isolatePlaybook(ns, "manual", "ContainerShell", nil))
	mustCreate(t, alertIncident(ns, "am-rec", "ContainerShell", ns, pod.Name))
	waitForPhase(t, ns, "am-rec", riposte.PhaseAwaitingApproval)
	appendDecision(t, ns, "am-rec", "alice", riposte.DecisionApprove)
	inc := waitForPhase(t, ns, "am-rec", riposte.PhaseRemediated)
	remediated := waitForRecord(t, inc.UID, "Remediated")["Remediated"]
	if remediated.Trigger.AlertName != "ContainerShell" || remediated.Trigger.Fingerprint != inc.Spec.Fingerprint || remediated.Trigger.Source != riposte.SourceAlertmanager {
		t.Errorf("trigger %+v", remediated.Trigger)
	}
	if remediated.Plan == nil || remediated.Plan.Hash != inc.Status.PlanHash || len(remediated.Plan.Steps) != 1 {
		t.Errorf("plan %+v, want the approved plan %s with its step", remediated.Plan, inc.Status.PlanHash)
	}
	if d := remediated.Decisions; !cmp.Equal(d.Approvers, []string{"alice"}) || d.RequesterApproved || len(d.Gates) != 1 || len(d.Gates[0].Decisions) != 1 || d.Gates[0].Decisions[0].User != "alice" {
		t.Errorf("decisions %+v, want alice's approval, counted, and no requester's", d)
	}
	if remediated.RunAs == "" || remediated.RunAs != inc.Status.RunAs {
		t.Errorf("runAs %q, want %q", remediated.RunAs, inc.Status.RunAs)
	}
	if len(remediated.Steps) != 1 || len(remediated.Steps[0].Changes) == 0 || remediated.Steps[0].Changes[0].Undo == "" {
		t.Errorf("steps %+v, want the isolation's changes with how to undo them", remediated.Steps)
	}
	if remediated.Playbook == nil || remediated.Playbook.Name != "manual" || remediated.Playbook.Generation != 1 {
		t.Errorf("playbook %+v", remediated.Playbook)
	}

	// Undone: the status write that says so also notes, at no cost of
	// its own, where the Remediated record is.
	askUndo(t, "bob", ns, "am-rec")
	inc = waitForPhase(t, ns, "am-rec", riposte.PhaseUndone)
	if r := inc.Status.Record; r == nil || r.Milestone != "Remediated" || r.Sequence < 1 {
		t.Errorf("status.record %+v, want the Remediated record", r)
	}
	if c := condition(t, inc.Status.Conditions, riposte.IncidentRecorded); c.Status != "True" || c.Reason != riposte.ReasonRecordStored {
		t.Errorf("Recorded condition %s %s %q", c.Status, c.Reason, c.Message)
	}
	waitForRecord(t, inc.UID, "Undone")

	// Deleted by a person: the incident goes only after its last record is
	// stored, and the records name the undo.
	if err := k8sClient.Delete(ctx, inc); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		if _, err := getIncident(ctx, ns, "am-rec"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the incident is still there (%v)", err)
		}
		return nil
	})
	byMilestone, _, err := recordsOf(ctx, inc.UID)
	if err != nil {
		t.Fatal(err)
	}
	deleted, ok := byMilestone[record.MilestoneDeleted]
	if !ok {
		t.Fatalf("no Deleted record; milestones recorded: %v", keys(byMilestone))
	}
	if deleted.Undo == nil || deleted.Undo.RequestedBy != "bob" || deleted.Outcome.Phase != riposte.PhaseUndone || deleted.Outcome.DeletedAt == nil {
		t.Errorf("deleted record: undo %+v, outcome %+v", deleted.Undo, deleted.Outcome)
	}
	if _, ok := byMilestone["Undone"]; !ok {
		t.Errorf("no Undone record; milestones recorded: %v", keys(byMilestone))
	}
}

// A plan approved by policy is recorded with the rule that approved it and
// no gate; a decision that changed nothing (a dry run) is recorded too.
func TestAutomaticVerdictIsRecorded(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	mustCreate(t, isolatePlaybook(ns, "auto", "ContainerShell", &riposte.AutoApprove{}))
	mustCreate(t, alertIncident(ns, "am-auto", "ContainerShell", ns, pod.Name))
	inc := waitForPhase(t, ns, "am-auto", riposte.PhaseRemediated)
	b := waitForRecord(t, inc.UID, "Remediated")["Remediated"]
	if a := b.Decisions.Automatic; a == nil || a.PlanHash != inc.Status.PlanHash || len(b.Decisions.Gates) != 0 || b.Plan == nil || b.Plan.Hash != inc.Status.PlanHash {
		t.Fatalf("an automatic verdict's record: decisions %+v, plan %+v", b.Decisions, b.Plan)
	}
	if b.Outcome.RemediatedAt == nil || b.Outcome.DetectedAt == nil {
		t.Errorf("stage times missing: %+v", b.Outcome)
	}
	// The stages to the microsecond, in order, from no earlier than the
	// incident's creation: what report splits time to remediate by.
	st := b.Outcome.Stages
	if st == nil || st.Detected == nil || st.Enriched == nil || st.Decided == nil || st.Remediated == nil {
		t.Fatalf("stage times to the microsecond missing from the record: %+v", st)
	}
	points := []time.Time{inc.CreationTimestamp.Time, st.Detected.Time, st.Enriched.Time, st.Decided.Time, st.Remediated.Time}
	for i := 1; i < len(points); i++ {
		if points[i].Before(points[i-1]) {
			t.Errorf("stage times out of order: created %s, then %v", inc.CreationTimestamp, st)
		}
	}
	rep := report.Build([]record.Body{b}, inc.CreationTimestamp.Add(-time.Hour), time.Now().Add(time.Hour))
	total := rep.Stages[0].Percentiles["total"]
	want := st.Remediated.Sub(st.Detected.Time).Seconds()
	t.Logf("stages: detected to enriched %v, to decided %v, to remediated %v", st.Enriched.Sub(st.Detected.Time), st.Decided.Sub(st.Enriched.Time), st.Remediated.Sub(st.Decided.Time))
	if total.N != 1 || total.P50 != want || total.P50 <= 0 {
		t.Errorf("report's time to remediate %+v, want %gs, from the stage times to the microsecond", total, want)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Where an incident's record landed is Riposte's word: neither a namespace
// editor nor an approver may write it (so nobody points an auditor's
// --expect-head at a record that is not the incident's), nor release a
// deleted incident before its record is stored.
func TestAttackForgingWhereARecordIs(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	mustCreate(t, isolatePlaybook(ns, "auto", "ContainerShell", &riposte.AutoApprove{}))
	mustCreate(t, alertIncident(ns, "am-forge", "ContainerShell", ns, pod.Name))
	inc := waitForPhase(t, ns, "am-forge", riposte.PhaseRemediated)
	for who, c := range map[string]client.Client{"a namespace editor": namespaceEditor(t, "mallory-rec", ns), "an approver": people["alice"]} {
		forged := inc.DeepCopy()
		forged.Status.Record = &riposte.RecordReference{Milestone: "Deleted", Sequence: 1, Hash: "sha256:00", StoredAt: metav1.Now()}
		expectForbidden(t, who+" writing status.record", c.Status().Update(ctx, forged), `cannot update resource "incidents/status"`)
	}
}
