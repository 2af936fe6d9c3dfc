package incident

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/inplace"
	"github.com/riposte-dev/riposte/internal/text"
)

// deletionRecheck is how often a deletion that waits looks again at what
// keeps it.
const deletionRecheck = time.Minute

// keepRecord adds the finalizer that keeps the incident, and with it the
// record undo needs, for as long as its changes are in place. It is added
// while the gate is opened (keepRecordWhile), and here again before any
// write if it is missing.
func (r *Reconciler) keepRecord(ctx context.Context, p *pass) error {
	return r.keepRecordWhile(ctx, p)()
}

// keepRecordWhile starts adding the record's finalizer and returns the wait
// for it, so the write runs beside another (the gate's creation) instead of
// adding its round trip to the alert's path. p.inc must not change until
// the wait returns.
func (r *Reconciler) keepRecordWhile(ctx context.Context, p *pass) (wait func() error) {
	if controllerutil.ContainsFinalizer(p.inc, riposte.RecordFinalizer) {
		return func() error { return nil }
	}
	base := p.inc.DeepCopy()
	sent := p.inc.DeepCopy()
	controllerutil.AddFinalizer(sent, riposte.RecordFinalizer)
	done := make(chan error, 1)
	go func() {
		// Read-your-writes is left to the status write that follows, which
		// is newer: waiting for this one too would only add a round trip.
		done <- r.Patch(ctx, sent, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}), client.DisableReadYourWritesConsistency)
	}()
	return func() error {
		if err := <-done; err != nil {
			return fmt.Errorf("adding the finalizer that keeps the remediation's record: %w", err)
		}
		p.inc.Finalizers, p.inc.ResourceVersion = sent.Finalizers, sent.ResourceVersion
		p.before.Finalizers, p.before.ResourceVersion = sent.Finalizers, sent.ResourceVersion
		return nil
	}
}

// finalize runs when a person (or retention) deletes the incident. Nothing
// not yet run will run; timed containment is undone now, as its expiry
// would (unless the incident was escalated); a step every object of which
// is gone keeps nothing; anything else still in place keeps the incident,
// with the DeletionBlocked condition saying what and how to undo it. Once
// nothing is in place, the incident's last record is stored in the record
// sink (it waits, with the Recorded condition saying why, while the sink
// is behind), written out as Events and to the log, and the incident goes.
func (r *Reconciler) finalize(ctx context.Context, p *pass) error {
	inc := p.inc
	if !controllerutil.ContainsFinalizer(inc, riposte.RecordFinalizer) {
		return nil
	}
	if err := r.adoptOrphanHolds(ctx, p); err != nil {
		return err
	}
	if inc.Spec.Undo != nil && inc.Status.Phase != riposte.PhaseUndone {
		if err := r.undoAll(ctx, p); err != nil {
			return err
		}
	}
	for i := range inc.Status.Steps {
		if rec := &inc.Status.Steps[i]; rec.Phase == riposte.StepPending {
			rec.Phase, rec.Message = riposte.StepSkipped, "not run: the incident was deleted"
		}
	}
	var kept []string
	now := time.Now()
	for i := range inc.Status.Steps {
		rec := &inc.Status.Steps[i]
		if !inplace.Step(rec) {
			continue
		}
		if gone, err := inplace.Gone(ctx, r.APIReader, rec); err != nil {
			return err
		} else if gone {
			// Deleted with their namespace or by hand: nothing is left to keep.
			rec.Message = "what the step changed was gone when the incident was deleted"
			continue
		}
		if rec.UndoAt != nil && !inc.Spec.Escalated {
			if _, err := r.undoStep(ctx, inc, rec, ExpiryUndoer, "Delete"); err != nil {
				r.event(inc, corev1.EventTypeWarning, riposte.ReasonUndoFailed, "Undo", "undoing temporary step "+rec.Name+" of a deleted incident: "+err.Error())
				return err
			}
			rec.Message = "temporary containment undone when the incident was deleted, " + now.UTC().Format(time.RFC3339)
			continue
		}
		kept = append(kept, rec.Name+" ("+string(rec.Action)+" on "+describe(rec.Target)+")")
	}
	if len(kept) > 0 {
		msg := fmt.Sprintf("deletion waits: step %s is still applied and this incident is its only record; undo it first (kubectl riposte undo -n %s %s --reason ...) and the incident is then deleted",
			strings.Join(kept, ", "), inc.Namespace, inc.Name)
		if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentDeletionBlocked); c == nil || c.Message != msg {
			r.event(inc, corev1.EventTypeWarning, riposte.ReasonRemediationApplied, "Delete", msg)
		}
		setCondition(inc, riposte.IncidentDeletionBlocked, true, riposte.ReasonRemediationApplied, msg)
		// What is kept may go by itself (with its namespace): look again.
		p.requeueAfter = deletionRecheck
		return nil
	}
	if stored, err := r.recordStored(ctx, inc); err != nil || !stored {
		// The writer wakes the incident once the record is stored.
		p.requeueAfter = deletionRecheck
		return err
	}
	if err := r.writeOutRecord(ctx, inc); err != nil {
		return err
	}
	// The status changes of this pass (skipped steps, undone containment)
	// are in the record just written; the object itself is going.
	sent := inc.DeepCopy()
	controllerutil.RemoveFinalizer(sent, riposte.RecordFinalizer)
	if err := r.Patch(ctx, sent, client.MergeFromWithOptions(p.before, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(err)
	}
	p.gone = true
	if r.Records != nil {
		r.Records.Forget(inc.UID)
	}
	return nil
}

// writeOutRecord leaves what the incident did where it outlives the object:
// an Event per step and per gate (the decisions people made), which kubectl
// shows and event exporters keep, and the whole record, with its gates, in
// the manager's log. The gates go with the incident (it owns them), so they
// are read first: the finalizer stays until they could be.
func (r *Reconciler) writeOutRecord(ctx context.Context, inc *riposte.Incident) error {
	gates, err := r.ownGates(ctx, inc)
	if err != nil {
		return err
	}
	for _, rec := range inc.Status.Steps {
		var changes []string
		for _, c := range rec.Changes {
			changes = append(changes, string(c.Operation)+" "+c.Object.String()+" (undo: "+string(c.Undo)+")")
		}
		note := fmt.Sprintf("deleted incident's record: step %s (%s) %s on %s as %s", rec.Name, rec.Action, rec.Phase, describe(rec.Target), inc.Status.RunAs)
		if rec.UndoneBy != "" {
			note += ", undone by " + rec.UndoneBy
		}
		if len(changes) > 0 {
			note += ": " + strings.Join(changes, "; ")
		}
		// One Event per step and per gate: the recorder folds Events of the
		// same reason and action into one series that keeps the first note.
		r.event(inc, corev1.EventTypeNormal, "RecordKept", text.Elide("Delete/step/"+rec.Name, 128), text.Elide(note, 1000))
	}
	type gateRecord struct {
		Name   string                     `json:"name"`
		Spec   riposte.ApprovalGateSpec   `json:"spec"`
		Status riposte.ApprovalGateStatus `json:"status"`
	}
	var gateRecords []gateRecord
	for _, g := range gates {
		gateRecords = append(gateRecords, gateRecord{Name: g.Name, Spec: g.Spec, Status: g.Status})
		note := fmt.Sprintf("deleted incident's gate %s: %s", g.Name, g.Status.Phase)
		var decided []string
		for _, d := range g.Spec.Decisions {
			decided = append(decided, fmt.Sprintf("%s by %s (%s)", d.Decision, d.User, d.Reason))
		}
		if len(decided) > 0 {
			note += "; " + strings.Join(decided, "; ")
		}
		r.event(inc, corev1.EventTypeNormal, "RecordKept", text.Elide("Delete/gate/"+g.Name, 128), text.Elide(note, 1000))
	}
	record, err := json.Marshal(struct {
		Spec   riposte.IncidentSpec   `json:"spec"`
		Status riposte.IncidentStatus `json:"status"`
		Gates  []gateRecord           `json:"gates,omitempty"`
	}{inc.Spec, inc.Status, gateRecords})
	if err != nil {
		record = []byte(err.Error())
	}
	logf.FromContext(ctx).Info("incident deleted; its record", "incident", client.ObjectKeyFromObject(inc), "uid", inc.UID, "record", string(record))
	return nil
}
