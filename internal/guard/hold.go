package guard

import (
	"fmt"
	"time"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Budget is the cluster-wide limit on remediation, set by the operator.
type Budget struct {
	// StepsPerMinute caps the steps all playbooks start in any minute; 0 is no cap.
	StepsPerMinute int
	// MaxWorkloadFraction caps the share of one workload's pods that may be
	// isolated, deleted or evicted at once; 0 is no cap.
	MaxWorkloadFraction float64
}

// Load is how much remediation is under way, counted from the incidents'
// own status records, so it survives restarts and is the same on every
// replica.
type Load struct {
	// Paused holds the pause switch's reason when a person paused Riposte.
	Paused      bool
	PauseReason string
	// StartedLastHour counts this playbook's remediations started in the last hour.
	StartedLastHour int
	// Open counts this playbook's remediations applied or being applied whose
	// incident is not closed yet.
	Open int
	// StepsLastMinute counts the steps every playbook started in the last minute.
	StepsLastMinute int
}

// Measure counts the load an incident of playbook pb would add to, over all
// incidents but self.
func Measure(incidents []riposte.Incident, pb riposte.NamespacedName, self *riposte.Incident, now time.Time) Load {
	var l Load
	for i := range incidents {
		inc := &incidents[i]
		if inc.Namespace == self.Namespace && inc.Name == self.Name {
			continue
		}
		for _, s := range inc.Status.Steps {
			if s.StartedAt != nil && now.Sub(s.StartedAt.Time) < time.Minute {
				l.StepsLastMinute++
			}
		}
		if inc.Status.Playbook == nil || *inc.Status.Playbook != pb || len(inc.Status.Steps) == 0 {
			continue
		}
		if first := inc.Status.Steps[0].StartedAt; first != nil && now.Sub(first.Time) < time.Hour {
			l.StartedLastHour++
		}
		if inc.Status.Phase == riposte.PhaseRemediating || inc.Status.Phase == riposte.PhaseRemediated {
			l.Open++
		}
	}
	return l
}

// Hold says whether an approved plan must wait: paused, over the playbook's
// limits, or over the cluster's budget. Unlike a refusal it is temporary;
// the plan runs once the hold lifts.
func Hold(pb *riposte.Playbook, steps int, l Load, b Budget) (reason, message string, held bool) {
	if l.Paused {
		msg := "Riposte is paused; nothing is applied until it is resumed (kubectl riposte resume)"
		if l.PauseReason != "" {
			msg += ": " + l.PauseReason
		}
		return riposte.ReasonPaused, msg, true
	}
	if lim := pb.Spec.Limits; lim != nil {
		if lim.MaxPerHour != nil && l.StartedLastHour >= int(*lim.MaxPerHour) {
			return riposte.ReasonRateLimited, fmt.Sprintf("playbook %s/%s already started %d remediation(s) in the last hour, its limit (limits.maxPerHour)",
				pb.Namespace, pb.Name, l.StartedLastHour), true
		}
		if lim.MaxConcurrent != nil && l.Open >= int(*lim.MaxConcurrent) {
			return riposte.ReasonConcurrencyLimit, fmt.Sprintf("playbook %s/%s has %d open remediation(s), its limit (limits.maxConcurrent)",
				pb.Namespace, pb.Name, l.Open), true
		}
	}
	// A plan bigger than the whole budget runs alone rather than never.
	if b.StepsPerMinute > 0 && l.StepsLastMinute > 0 && l.StepsLastMinute+steps > b.StepsPerMinute {
		return riposte.ReasonBudgetExhausted, fmt.Sprintf("the cluster's budget is %d remediation steps a minute; %d started in the last minute and this plan has %d",
			b.StepsPerMinute, l.StepsLastMinute, steps), true
	}
	return "", "", false
}

// Workload is one controller's pods as a plan would leave them.
type Workload struct {
	// Name is Kind/namespace/name of the pods' controller.
	Name string
	// Total pods of the workload, Out of service already (quarantined or
	// terminating), and Planned to be taken out by this plan.
	Total, Out, Planned int
}

// WorkloadBudget holds a plan that would take more than the budget's
// fraction of any workload's pods out of service at once, counting those
// already out, like a minimum-healthy rule. A fraction of 0 is no budget.
func WorkloadBudget(workloads []Workload, fraction float64) (reason, message string, held bool) {
	if fraction <= 0 {
		return "", "", false
	}
	for _, w := range workloads {
		if w.Planned == 0 || w.Total == 0 {
			continue
		}
		if float64(w.Out+w.Planned) > fraction*float64(w.Total) {
			return riposte.ReasonBudgetExhausted, fmt.Sprintf("the plan would leave %d of the %d pods of %s out of service (%d already), more than the budget's %.0f%% (--budget-max-workload-fraction)",
				w.Out+w.Planned, w.Total, w.Name, w.Out, 100*fraction), true
		}
	}
	return "", "", false
}
