package incident

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
)

// noteStoredRecord puts on the incident the record the writer stored for
// it since the incident was last written: the status says which milestone
// is in the sink, so a restart hands in only those that are not. It rides
// on a status write the incident needs anyway; a milestone stored and not
// yet noted when the manager restarts is stored again, and readers count
// its body once.
func (r *Reconciler) noteStoredRecord(inc *riposte.Incident) {
	if r.Records == nil {
		return
	}
	s, ok := r.Records.Last(inc.UID)
	if !ok || inc.Status.Record != nil && inc.Status.Record.Sequence >= s.Sequence {
		return
	}
	inc.Status.Record = &riposte.RecordReference{Milestone: s.Milestone, Sequence: s.Sequence, Hash: s.Hash, StoredAt: metav1.NewTime(s.At)}
	setCondition(inc, riposte.IncidentRecorded, true, riposte.ReasonRecordStored,
		fmt.Sprintf("the record of milestone %s is record %d in %s", s.Milestone, s.Sequence, r.Records.Sink))
}

// recordDue is the milestone whose record the incident has not yet had
// stored, or "".
func recordDue(inc *riposte.Incident) string {
	m := record.MilestoneOf(inc)
	if m == "" || inc.Status.Record != nil && inc.Status.Record.Milestone == m {
		return ""
	}
	return m
}

// submitRecord hands the record of the milestone the incident reached to
// the writer, after the status that reached it is stored: the remediation
// never waits on the sink. The incident is kept by its finalizer until its
// last record is stored.
func (r *Reconciler) submitRecord(ctx context.Context, p *pass) error {
	inc := p.inc
	m := recordDue(inc)
	if r.Records == nil || m == "" || !inc.DeletionTimestamp.IsZero() {
		return nil
	}
	if !controllerutil.ContainsFinalizer(inc, riposte.RecordFinalizer) {
		// A decision that changed nothing (a dry run) is recorded too.
		if err := r.keepRecord(ctx, p); err != nil {
			return err
		}
	}
	body, err := r.recordBody(ctx, inc, m)
	if err != nil {
		return err
	}
	r.Records.Submit(client.ObjectKeyFromObject(inc), record.Key{UID: inc.UID, Milestone: m}, body)
	return nil
}

// recordStored reports whether the deleted incident's last record is in
// the sink, handing it in if not. While it waits, the Recorded condition
// says so, and why.
func (r *Reconciler) recordStored(ctx context.Context, inc *riposte.Incident) (bool, error) {
	if r.Records == nil || !record.Decided(inc) {
		return true, nil
	}
	if s, ok := r.Records.Last(inc.UID); ok && s.Milestone == record.MilestoneDeleted {
		return true, nil
	}
	body, err := r.recordBody(ctx, inc, record.MilestoneDeleted)
	if err != nil {
		return false, err
	}
	r.Records.Submit(client.ObjectKeyFromObject(inc), record.Key{UID: inc.UID, Milestone: record.MilestoneDeleted}, body)
	msg := "deletion waits until the incident's record is stored in " + r.Records.Sink.String()
	if err := r.Records.Behind(); err != nil {
		msg += "; the sink fails: " + err.Error()
	}
	setCondition(inc, riposte.IncidentRecorded, false, riposte.ReasonRecordPending, msg)
	return false, nil
}

// recordBody gathers what a record says: the incident, its gates and its
// playbook as the cache holds them.
func (r *Reconciler) recordBody(ctx context.Context, inc *riposte.Incident, milestone string) (record.Body, error) {
	gates, err := r.ownGates(ctx, inc)
	if err != nil {
		return record.Body{}, err
	}
	facts := record.Facts{Incident: inc, Milestone: milestone, Gates: gates}
	if ref := inc.Status.Playbook; ref != nil {
		pb := &riposte.Playbook{}
		switch err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, pb); {
		case err == nil:
			facts.Playbook = pb
		case !apierrors.IsNotFound(err):
			return record.Body{}, fmt.Errorf("reading the playbook for the incident's record: %w", err)
		}
	}
	return record.Build(facts), nil
}

// ownGates are the gates the incident opened: by spec.incident
// (immutable), not the label an approver may edit, and with the incident
// as controller (a gate left by an earlier incident of the name has
// another).
func (r *Reconciler) ownGates(ctx context.Context, inc *riposte.Incident) ([]riposte.ApprovalGate, error) {
	var list riposte.ApprovalGateList
	if err := r.List(ctx, &list, client.InNamespace(inc.Namespace), client.MatchingFields{gateIncidentIndex: inc.Name}); err != nil {
		return nil, fmt.Errorf("reading the incident's gates for its record: %w", err)
	}
	var gates []riposte.ApprovalGate
	for _, g := range list.Items {
		if owner := metav1.GetControllerOf(&g); g.Spec.Incident == inc.Name && (owner == nil || owner.UID == inc.UID) {
			gates = append(gates, g)
		}
	}
	return gates, nil
}
