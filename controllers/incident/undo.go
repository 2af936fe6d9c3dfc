package incident

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/intake"
	"github.com/riposte-dev/riposte/internal/metrics"
	"github.com/riposte-dev/riposte/internal/text"
)

// ExpiryUndoer is who a timed undo is recorded as.
const ExpiryUndoer = "riposte"

// undoAll answers a person's undo request: steps not yet run are skipped, a
// waiting gate is cancelled, and every applied step is undone newest first,
// as the same account that applied it.
func (r *Reconciler) undoAll(ctx context.Context, p *pass) error {
	inc := p.inc
	by := inc.Spec.Undo.RequestedBy
	if err := r.adoptOrphanHolds(ctx, p); err != nil {
		return err
	}
	if inc.Status.ApprovalGate != "" && len(inc.Status.Steps) == 0 && inc.Status.Phase == riposte.PhaseAwaitingApproval {
		if err := r.cancelPendingGate(ctx, inc, "undo requested by "+by); err != nil {
			return err
		}
	}
	for i := range inc.Status.Steps {
		if rec := &inc.Status.Steps[i]; rec.Phase == riposte.StepPending {
			rec.Phase, rec.Message = riposte.StepSkipped, "not run: undo requested by "+by
		}
	}
	var notes []string
	for i := len(inc.Status.Steps) - 1; i >= 0; i-- {
		rec := &inc.Status.Steps[i]
		switch rec.Phase {
		case riposte.StepApplied, riposte.StepFailed, riposte.StepApplying:
		default:
			continue
		}
		n, err := r.undoStep(ctx, inc, rec, by, "Request")
		if err != nil {
			setCondition(inc, riposte.IncidentUndone, false, riposte.ReasonUndoFailed, "undoing step "+rec.Name+": "+err.Error())
			r.event(inc, corev1.EventTypeWarning, riposte.ReasonUndoFailed, "Undo", "undoing step "+rec.Name+": "+err.Error())
			if executor.IsPermanent(err) {
				return nil // a person must look; the condition says why
			}
			return err
		}
		notes = append(notes, n...)
	}
	msg := "undone at the request of " + by
	if inc.Spec.Undo.Reason != "" {
		msg += " (" + inc.Spec.Undo.Reason + ")"
	}
	if len(notes) > 0 {
		msg += "; " + strings.Join(notes, "; ")
	}
	inc.Status.Phase = riposte.PhaseUndone
	setCondition(inc, riposte.IncidentUndone, true, riposte.ReasonUndone, text.Elide(msg, 1000))
	r.event(inc, corev1.EventTypeNormal, riposte.ReasonUndone, "Undo", text.Elide(msg, 1000))
	return nil
}

// undoStep undoes one step and records who did it and when.
func (r *Reconciler) undoStep(ctx context.Context, inc *riposte.Incident, rec *riposte.StepRecord, by, trigger string) ([]string, error) {
	exe, err := r.executorAs(inc.Status.RunAs)
	if err != nil {
		return nil, err
	}
	notes, err := exe.Undo(ctx, rec)
	if err != nil {
		return notes, err
	}
	now := metav1.Now()
	rec.Phase, rec.UndoneAt, rec.UndoneBy, rec.UndoAt = riposte.StepUndone, &now, by, nil
	if len(notes) > 0 {
		rec.Message = text.Elide(strings.Join(notes, "; "), 1000)
	}
	metrics.UndoneTotal.WithLabelValues(string(rec.Action), trigger).Inc()
	return notes, nil
}

// expireContainment undoes the steps whose duration ran out, unless the
// incident was escalated, and says when to look again.
func (r *Reconciler) expireContainment(ctx context.Context, p *pass) (time.Duration, error) {
	inc := p.inc
	if inc.Spec.Escalated || inc.Status.Phase == riposte.PhaseRemediating {
		return 0, nil
	}
	now := time.Now()
	for i := range inc.Status.Steps {
		rec := &inc.Status.Steps[i]
		if rec.Phase != riposte.StepApplied || rec.UndoAt == nil || rec.UndoAt.After(now) {
			continue
		}
		if _, err := r.undoStep(ctx, inc, rec, ExpiryUndoer, "Expiry"); err != nil {
			r.event(inc, corev1.EventTypeWarning, riposte.ReasonUndoFailed, "Undo", "undoing expired step "+rec.Name+": "+err.Error())
			return 0, err
		}
		r.event(inc, corev1.EventTypeNormal, riposte.ReasonContainmentExpired, "Undo",
			fmt.Sprintf("step %s (%s) was temporary containment; its duration ran out and it was undone", rec.Name, rec.Action))
	}
	return untilNextUndo(inc, now), nil
}

// untilNextUndo is how long until the next timed undo is due; 0 for none.
func untilNextUndo(inc *riposte.Incident, now time.Time) time.Duration {
	if inc.Spec.Escalated {
		return 0
	}
	var next time.Duration
	for _, s := range inc.Status.Steps {
		if s.Phase != riposte.StepApplied || s.UndoAt == nil {
			continue
		}
		d := max(s.UndoAt.Sub(now), time.Second)
		if next == 0 || d < next {
			next = d
		}
	}
	return next
}

// cancelPendingGate withdraws a plan nobody has decided yet.
func (r *Reconciler) cancelPendingGate(ctx context.Context, inc *riposte.Incident, why string) error {
	gate := &riposte.ApprovalGate{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: inc.Namespace, Name: inc.Status.ApprovalGate}, gate); err != nil {
		return client.IgnoreNotFound(err)
	}
	if gate.Status.Phase != "" && gate.Status.Phase != riposte.GatePending {
		return nil
	}
	r.withdraw(inc, gate, riposte.GateCancelled, riposte.ReasonUndone, why)
	return nil
}

// endSilences expires the silences of a resolved incident: the alert is
// over, so nothing about it should stay muted.
func (r *Reconciler) endSilences(ctx context.Context, p *pass) error {
	inc := p.inc
	for i := range inc.Status.Steps {
		rec := &inc.Status.Steps[i]
		if rec.Phase != riposte.StepApplied || rec.Action != riposte.ActionSilence {
			continue
		}
		if _, err := r.undoStep(ctx, inc, rec, ExpiryUndoer, "Resolved"); err != nil {
			r.event(inc, corev1.EventTypeWarning, riposte.ReasonUndoFailed, "Undo", "expiring the silence of step "+rec.Name+": "+err.Error())
			return err
		}
		rec.Message = "the alert resolved; its silence was expired"
	}
	return nil
}

// silenceRecheck is how often Riposte asks Alertmanager about an alert it
// silenced.
const silenceRecheck = 15 * time.Second

// followSilencedAlert asks Alertmanager whether an alert Riposte silenced
// still fires: a silenced alert's resolution reaches no receiver, so without
// asking the incident would never close and its silence never end. When the
// alert is gone the incident's spec is marked resolved, as intake would on
// Alertmanager's notification, under intake's field manager.
func (r *Reconciler) followSilencedAlert(ctx context.Context, p *pass) (time.Duration, error) {
	inc := p.inc
	if r.Silences == nil || inc.Spec.Status == riposte.AlertResolved || inc.Spec.Fingerprint == "" || !holdsSilence(inc) {
		return 0, nil
	}
	// By the alertname label itself, not spec.alertName, which intake may
	// have read from another label (Falco's rule); "" finds the alerts
	// without one.
	firing, err := r.Silences.AlertFiring(ctx, inc.Spec.Labels["alertname"], inc.Spec.Fingerprint)
	ctrl.LoggerFrom(ctx).V(1).Info("asked Alertmanager about the silenced alert", "firing", firing, "error", err)
	if err != nil {
		ctrl.LoggerFrom(ctx).Info("cannot ask Alertmanager about a silenced alert; will ask again", "error", err.Error())
		return silenceRecheck, nil
	}
	if firing {
		return silenceRecheck, nil
	}
	patch := client.MergeFrom(inc.DeepCopy())
	now := metav1.Now()
	inc.Spec.Status, inc.Spec.EndsAt = riposte.AlertResolved, &now
	if err := r.Patch(ctx, inc, patch, client.FieldOwner(intake.DefaultFieldOwner)); err != nil {
		return 0, fmt.Errorf("recording that silenced alert %s resolved: %w", inc.Spec.Fingerprint, err)
	}
	p.before.Spec, p.before.ResourceVersion = inc.Spec, inc.ResourceVersion
	r.event(inc, corev1.EventTypeNormal, riposte.ReasonAlertResolved, "Resolve", "Alertmanager no longer holds the silenced alert: it resolved")
	return 0, nil
}

func holdsSilence(inc *riposte.Incident) bool {
	for _, s := range inc.Status.Steps {
		if s.Action == riposte.ActionSilence && s.Phase == riposte.StepApplied {
			return true
		}
	}
	return false
}
