package incident

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// resolveIfDone closes an incident whose alert resolved once nothing is left
// to do for it.
func (r *Reconciler) resolveIfDone(inc *riposte.Incident) bool {
	switch inc.Status.Phase {
	case riposte.PhaseResolved:
		return true
	case riposte.PhaseUndone:
		return true
	case riposte.PhaseRemediated, riposte.PhaseUnmatched, riposte.PhaseRejected, riposte.PhaseFailed, riposte.PhaseDryRun, riposte.PhaseCancelled:
		if inc.Spec.Status != riposte.AlertResolved {
			return inc.Status.Phase != riposte.PhaseUnmatched && inc.Status.Phase != riposte.PhaseFailed
		}
		r.resolve(inc)
		return true
	}
	return false
}

// resolve closes the incident: its source declared it over.
func (r *Reconciler) resolve(inc *riposte.Incident) {
	at := metav1.Now()
	if inc.Spec.EndsAt != nil {
		at = *inc.Spec.EndsAt
	}
	inc.Status.ResolvedAt = &at
	inc.Status.Phase = riposte.PhaseResolved
	reason, why := resolvedBecause(inc)
	r.event(inc, corev1.EventTypeNormal, reason, "Resolve", why)
}

// resolvedBecause says why an incident's source declared it over: the alert
// resolved, or for drift, the detector's resolution.
func resolvedBecause(inc *riposte.Incident) (reason, message string) {
	d := inc.Spec.Drift
	if d == nil {
		return riposte.ReasonAlertResolved, "the alert resolved"
	}
	switch d.Resolution {
	case riposte.DriftObjectDeleted:
		return d.Resolution, "the object was deleted"
	case riposte.DriftNotSelected:
		return d.Resolution, "rule " + d.Rule + " no longer applies to the object (its labels or its namespace's changed, or the rule's selectors did)"
	case riposte.DriftReportRemoved:
		return d.Resolution, "the PolicyReport " + d.Source.Namespace + "/" + d.Source.Name + " that reported it was deleted"
	case riposte.DriftRuleRemoved:
		return d.Resolution, "rule " + d.Rule + " was removed from playbook " + d.Playbook.String()
	case riposte.DriftPlaybookRemoved:
		return d.Resolution, "playbook " + d.Playbook.String() + " was removed"
	default:
		return riposte.DriftComplies, "the object complies with rule " + d.Rule + " again"
	}
}
