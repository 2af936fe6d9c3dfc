package incident

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/text"
)

func setCondition(inc *riposte.Incident, condType string, ok bool, reason, message string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&inc.Status.Conditions, metav1.Condition{
		Type: condType, Status: status, Reason: reason, Message: text.Elide(message, 32768),
		ObservedGeneration: inc.Generation,
	})
}

// stampClosed records when the incident reached the phase it ends in, once
// per arrival (Unmatched then Resolved is closed again, later), and clears it
// when the incident opens again: retention counts from it.
func stampClosed(inc *riposte.Incident, before riposte.IncidentPhase) {
	switch {
	case !inc.Status.Phase.Closed():
		inc.Status.ClosedAt = nil
	case inc.Status.ClosedAt == nil || inc.Status.Phase != before:
		now := metav1.Now()
		inc.Status.ClosedAt = &now
	}
}

// stampStages notes to the microsecond the stages this pass reached or
// left: each stage time the pass set or changed (held in memory to the
// nanosecond, though stored to the second) is copied, and one it cleared
// clears its stage. An incident is detected when it was stored; its
// creation time is to the second, so the first pass's start stands in for
// it when that pass began within a second of it: a backlog, or a manager
// that was down, longer than that is measured to the second, not hidden.
func stampStages(before, after *riposte.IncidentStatus, start time.Time) {
	st := after.Stages
	if st == nil {
		st = &riposte.StageTimes{}
	}
	if before.DetectedAt == nil && after.DetectedAt != nil {
		created := after.DetectedAt.Time
		at := metav1.NewMicroTime(start)
		if start.Before(created) || start.Sub(created) >= time.Second {
			at = metav1.NewMicroTime(created)
		}
		st.Detected = &at
	}
	for _, s := range []struct {
		was, is *metav1.Time
		stage   **metav1.MicroTime
	}{
		{before.EnrichedAt, after.EnrichedAt, &st.Enriched},
		{before.ApprovedAt, after.ApprovedAt, &st.Decided},
		{before.RemediatedAt, after.RemediatedAt, &st.Remediated},
	} {
		switch {
		case s.is == nil:
			*s.stage = nil
		case s.was == nil || !s.was.Time.Equal(s.is.Time):
			at := metav1.NewMicroTime(s.is.Time)
			*s.stage = &at
		}
	}
	if *st == (riposte.StageTimes{}) {
		st = nil
	}
	after.Stages = st
}

// setReady summarises the incident for kstatus-style health checks: Ready
// once handled, Reconciling while Riposte works on it or waits, Stalled when
// only a person can move it on.
func setReady(inc *riposte.Incident) {
	var ready, reconciling, stalled bool
	reason, msg := string(inc.Status.Phase), "incident is "+string(inc.Status.Phase)
	switch inc.Status.Phase {
	case riposte.PhaseRemediated, riposte.PhaseResolved, riposte.PhaseDryRun, riposte.PhaseRejected, riposte.PhaseUnmatched, riposte.PhaseCancelled, riposte.PhaseUndone:
		ready = true
	case riposte.PhaseFailed:
		stalled = true
		if c := firstFalse(inc); c != nil {
			reason, msg = c.Reason, c.Message
		}
	default:
		reconciling = true
		if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentHeld); c != nil && c.Status == metav1.ConditionTrue {
			reason, msg = c.Reason, "held: "+c.Message
		}
	}
	if reason == "" {
		reason, msg = riposte.ReasonProgressing, "incident is being processed"
	}
	setCondition(inc, riposte.ConditionReady, ready, reason, msg)
	toggle(inc, riposte.ConditionReconciling, reconciling, reason, msg)
	toggle(inc, riposte.ConditionStalled, stalled, reason, msg)
}

// toggle sets an abnormal-true condition when on and removes it when off, as
// kstatus expects of Reconciling and Stalled.
func toggle(inc *riposte.Incident, condType string, on bool, reason, msg string) {
	if !on {
		meta.RemoveStatusCondition(&inc.Status.Conditions, condType)
		return
	}
	setCondition(inc, condType, true, reason, msg)
}

func firstFalse(inc *riposte.Incident) *metav1.Condition {
	for _, t := range []string{riposte.IncidentPlanned, riposte.IncidentRemediated, riposte.IncidentApproved} {
		if c := meta.FindStatusCondition(inc.Status.Conditions, t); c != nil && c.Status == metav1.ConditionFalse {
			return c
		}
	}
	return nil
}
