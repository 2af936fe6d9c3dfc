package incident

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/guard"
	"github.com/riposte-dev/riposte/internal/impersonation"
	"github.com/riposte-dev/riposte/internal/metrics"
	"github.com/riposte-dev/riposte/internal/text"
)

// holdRecheck is how soon a held plan is looked at again when no event
// (the pause switch) wakes it sooner.
const holdRecheck = 5 * time.Second

// remediating is the work of a committed plan: apply its steps.
func (r *Reconciler) remediating(ctx context.Context, p *pass) error {
	if err := r.loadPlaybook(ctx, p); err != nil {
		return err
	}
	return r.runSteps(ctx, p)
}

// commit turns the approved plan into its step records, before the first
// write: re-planned and compared with a gate's approved hash (what runs is
// what was approved), held back by any guardrail that says "not now", and
// recorded with every write and the prior state undo needs. From then on it
// runs from those records alone (Remediating), so a restart on any replica
// completes it without repeating or losing a step.
func (r *Reconciler) commit(ctx context.Context, p *pass) error {
	inc, pb, gate := p.inc, p.pb, p.gate
	exe, err := r.executorFor(pb)
	if err != nil {
		return stalled(riposte.IncidentRemediated, riposte.ReasonNoServiceAccount, err.Error())
	}
	plan := p.plan
	if plan == nil && gate == nil {
		return errors.New("no verdict to commit: neither a gate nor an automatic approval in this pass")
	}
	if plan == nil {
		target, gone, err := r.currentTarget(ctx, inc)
		if err != nil {
			return err
		}
		if gone {
			return stalled(riposte.IncidentRemediated, riposte.ReasonTargetGone, "the target "+describe(targetOf(inc))+" no longer exists; nothing was applied")
		}
		if plan, err = exe.Build(ctx, inc, pb, target, executor.HashOnly); err != nil {
			if refusal := r.impersonationRefused(riposte.IncidentRemediated, pb, err); refusal != nil {
				return refusal
			}
			if executor.IsPermanent(err) {
				return stalled(riposte.IncidentRemediated, riposte.ReasonStepFailed, "re-planning before apply: "+err.Error())
			}
			return err
		}
		if plan.Hash != gate.Spec.Plan.Hash {
			return r.supersede(ctx, p, target, plan)
		}
	}
	if pb.Spec.Mode == riposte.ModeDryRun {
		inc.Status.PlanHash = plan.Hash
		// What would have been written, as the dry run accepted it: with no
		// gate (approved by policy), the record is where a person reviews it.
		for _, ps := range plan.PlannedSteps() {
			rec := riposte.StepRecord{Name: ps.Name, Action: ps.Action, Phase: riposte.StepSkipped,
				Target: ps.Target, Message: "playbook is in DryRun mode: planned and approved, not applied"}
			for _, c := range ps.Changes {
				rec.Changes = append(rec.Changes, riposte.ChangeRecord{Operation: c.Operation, Object: c.Object, Summary: c.Summary, Undo: c.Undo})
			}
			inc.Status.Steps = append(inc.Status.Steps, rec)
			metrics.ActionsTotal.WithLabelValues(string(ps.Action), string(riposte.StepSkipped)).Inc()
		}
		inc.Status.Phase = riposte.PhaseDryRun
		setCondition(inc, riposte.IncidentRemediated, false, riposte.ReasonDryRun, "playbook is in DryRun mode; nothing was applied")
		return nil
	}
	if err := r.refused(pb, plan.Steps[0].Target, plan); err != nil {
		return err
	}
	if err := r.hold(ctx, p, plan); err != nil {
		return err
	}
	if err := r.keepRecord(ctx, p); err != nil {
		return err
	}
	records, err := exe.Commit(ctx, plan)
	if err != nil {
		if executor.IsPermanent(err) {
			return stalled(riposte.IncidentRemediated, riposte.ReasonStepFailed, "recording the plan: "+err.Error())
		}
		return err
	}
	inc.Status.PlanHash = plan.Hash
	inc.Status.RunAs, _ = RunsAs(pb, r.OperatorNamespace)
	inc.Status.Steps = records
	inc.Status.Phase = riposte.PhaseRemediating
	setCondition(inc, riposte.IncidentRemediated, false, riposte.ReasonProgressing, fmt.Sprintf("plan %s committed; applying %d step(s) as %s", plan.Hash, len(records), inc.Status.RunAs))
	if !r.needsWriteAhead(pb, records) {
		// Stored with the outcome: a crash before that plans again and
		// finds every change with its own record.
		return nil
	}
	// The records must be stored before the first write: a crash after it
	// resumes from them. A conflict means another pass or replica moved first.
	p.wroteAhead = true
	if err := r.persist(ctx, p); err != nil {
		if apierrors.IsInvalid(err) || apierrors.IsRequestEntityTooLargeError(err) {
			// The record does not fit the incident: nothing is written
			// without it.
			inc.Status.PlanHash, inc.Status.RunAs, inc.Status.Steps = "", "", nil
			return stalled(riposte.IncidentRemediated, riposte.ReasonStepFailed, "the plan's record does not fit in the incident, so nothing was applied: "+text.Elide(err.Error(), 500))
		}
		return err
	}
	return nil
}

// needsWriteAhead reports whether the records must be stored before the
// first write. Not when every change carries its own record
// (executor.SelfRecording) and no guardrail counts stored remediations
// (a playbook's limits, the steps-per-minute budget), which must see this
// one before the next is let through.
func (r *Reconciler) needsWriteAhead(pb *riposte.Playbook, records []riposte.StepRecord) bool {
	counted := r.Budget.StepsPerMinute > 0 || (pb.Spec.Limits != nil && (pb.Spec.Limits.MaxPerHour != nil || pb.Spec.Limits.MaxConcurrent != nil))
	return counted || !executor.SelfRecording(records)
}

// hold checks the guardrails that delay rather than refuse: the global
// pause, the playbook's rate and concurrency limits and the cluster's budget.
// A hold leaves the incident Held and asks to look again (holdRecheck).
func (r *Reconciler) hold(ctx context.Context, p *pass, plan *executor.Plan) error {
	inc, pb := p.inc, p.pb
	load := guard.Load{}
	var pause corev1.ConfigMap
	switch err := r.Get(ctx, client.ObjectKey{Namespace: r.OperatorNamespace, Name: riposte.PauseConfigMapName}, &pause); {
	case err == nil:
		load.Paused, load.PauseReason = true, pause.Data["reason"]
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("reading the pause switch: %w", err)
	}
	limited := pb.Spec.Limits != nil && (pb.Spec.Limits.MaxPerHour != nil || pb.Spec.Limits.MaxConcurrent != nil)
	if !load.Paused && (limited || r.Budget.StepsPerMinute > 0) {
		// Read-only walk over the cache: no deep copy of every incident.
		var incidents riposte.IncidentList
		if err := r.List(ctx, &incidents, client.UnsafeDisableDeepCopy); err != nil {
			return fmt.Errorf("listing incidents: %w", err)
		}
		measured := guard.Measure(incidents.Items, riposte.NamespacedName{Namespace: pb.Namespace, Name: pb.Name}, inc, time.Now())
		measured.Paused = false
		load = measured
	}
	reason, msg, held := guard.Hold(pb, len(plan.Steps), load, r.Budget)
	if !held && r.Budget.MaxWorkloadFraction > 0 {
		workloads, err := r.workloadsTakenOut(ctx, plan)
		if err != nil {
			return err
		}
		reason, msg, held = guard.WorkloadBudget(workloads, r.Budget.MaxWorkloadFraction)
	}
	if !held {
		if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentHeld); c != nil && c.Status == metav1.ConditionTrue {
			setCondition(inc, riposte.IncidentHeld, false, riposte.ReasonNotHeld, "no guardrail holds the plan any more")
		}
		return nil
	}
	if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentHeld); c == nil || c.Reason != reason {
		metrics.GuardrailRefusals.WithLabelValues(reason).Inc()
		r.event(inc, corev1.EventTypeWarning, reason, "Hold", msg)
	}
	setCondition(inc, riposte.IncidentHeld, true, reason, msg)
	inc.Status.Phase = riposte.PhaseHeld
	return waitFor(holdRecheck, msg)
}

// releaseHold ends a hold once its plan no longer waits: committed, undone,
// cancelled, resolved or failed while held. Only an approved plan waiting to
// start can be held.
func releaseHold(inc *riposte.Incident) {
	if isHeld(inc) && inc.Status.Phase != riposte.PhaseHeld {
		setCondition(inc, riposte.IncidentHeld, false, riposte.ReasonNotHeld, "no plan waits any more: the incident is "+string(inc.Status.Phase))
	}
}

func isHeld(inc *riposte.Incident) bool {
	return meta.IsStatusConditionTrue(inc.Status.Conditions, riposte.IncidentHeld)
}

// runSteps applies every committed step not yet finished, in order.
func (r *Reconciler) runSteps(ctx context.Context, p *pass) error {
	inc := p.inc
	exe, err := r.executorAs(inc.Status.RunAs)
	if err != nil {
		return err
	}
	log := ctrl.LoggerFrom(ctx)
	failedStep := ""
	var notImpersonated error
	for i := range inc.Status.Steps {
		rec := &inc.Status.Steps[i]
		switch rec.Phase {
		case riposte.StepApplied, riposte.StepSkipped, riposte.StepUndone:
			continue
		case riposte.StepFailed:
			if failedStep == "" && stepOf(p.pb, rec.Name).OnFailure != riposte.OnFailureContinue {
				failedStep = rec.Name
			}
			continue
		}
		if failedStep != "" {
			rec.Phase, rec.Message = riposte.StepSkipped, "not run: step "+failedStep+" failed"
			continue
		}
		step := stepOf(p.pb, rec.Name)
		now := metav1.Now()
		if rec.StartedAt == nil {
			rec.StartedAt = &now
		}
		rec.Phase = riposte.StepApplying
		log.V(1).Info("applying step", "step", rec.Name, "action", rec.Action)
		err := exe.Run(ctx, rec, inc.Namespace+"/"+inc.Name+"/"+rec.Name, func(ctx context.Context) error { return r.persist(ctx, p) })
		done := metav1.Now()
		if err != nil && !executor.IsPermanent(err) {
			// Transient: what is done is marked so; the retry, with backoff,
			// goes on from there.
			return err
		}
		rec.CompletedAt = &done
		if err != nil {
			if impersonation.Refused(err) && notImpersonated == nil {
				notImpersonated = err
			}
			rec.Phase, rec.Message = riposte.StepFailed, text.Elide(err.Error(), 1000)
			metrics.ActionsTotal.WithLabelValues(string(rec.Action), string(riposte.StepFailed)).Inc()
			metrics.ActionSeconds.WithLabelValues(string(rec.Action)).Observe(done.Sub(rec.StartedAt.Time).Seconds())
			r.event(inc, corev1.EventTypeWarning, riposte.ReasonStepFailed, "Remediate", "step "+rec.Name+" failed: "+rec.Message)
			if step.OnFailure != riposte.OnFailureContinue {
				failedStep = rec.Name
			}
			continue
		}
		rec.Phase = riposte.StepApplied
		if step.Duration != nil {
			rec.UndoAt = &metav1.Time{Time: done.Add(step.Duration.Duration)}
		}
		metrics.ActionsTotal.WithLabelValues(string(rec.Action), string(riposte.StepApplied)).Inc()
		metrics.ActionSeconds.WithLabelValues(string(rec.Action)).Observe(done.Sub(rec.StartedAt.Time).Seconds())
		// Record each finished step before the next one writes, so a restart
		// never runs it again; the last is recorded with the outcome.
		if i < len(inc.Status.Steps)-1 {
			if err := r.persist(ctx, p); err != nil {
				return err
			}
		}
	}
	if failedStep != "" || anyFailed(inc) {
		failed := failedSteps(inc)
		why := failed + "; see status.steps (what was applied can be undone: kubectl riposte undo)"
		if uncommitted(p) {
			why = failed + "; nothing was applied, and the plan is made again when the incident is next looked at"
		}
		if notImpersonated != nil {
			// The API server would not let Riposte act as the account at
			// all: the author is told the grant that is missing.
			if refusal := r.impersonationRefused(riposte.IncidentRemediated, p.pb, notImpersonated); refusal != nil {
				return refusal
			}
		}
		return stalled(riposte.IncidentRemediated, riposte.ReasonStepFailed, why)
	}
	now := metav1.Now()
	inc.Status.RemediatedAt = &now
	inc.Status.Phase = riposte.PhaseRemediated
	setCondition(inc, riposte.IncidentRemediated, true, riposte.ReasonStepsApplied,
		fmt.Sprintf("%d step(s) of plan %s applied as %s", len(inc.Status.Steps), inc.Status.PlanHash, inc.Status.RunAs))
	// One Event tells the whole remediation: a person reads what was done,
	// not each internal step (a failed step has its own Warning).
	r.event(inc, corev1.EventTypeNormal, riposte.ReasonStepsApplied, "Remediate", text.Elide(remediatedBy(inc), 1000))
	metrics.ObserveRemediated(inc, inc.Status.AutoApproval != nil || (p.gate != nil && p.gate.Spec.Policy.Automatic))
	p.requeueAfter = untilNextUndo(inc, now.Time)
	return nil
}

// remediatedBy says what the remediation did and who decided it.
func remediatedBy(inc *riposte.Incident) string {
	steps := make([]string, 0, len(inc.Status.Steps))
	for _, s := range inc.Status.Steps {
		steps = append(steps, fmt.Sprintf("%s (%s) on %s: %s", s.Name, s.Action, describe(s.Target), s.Phase))
	}
	by := "approved in gate " + inc.Status.ApprovalGate
	if a := inc.Status.AutoApproval; a != nil {
		by = "approved by policy"
		if a.Rule != "" {
			by += " (" + a.Rule + ")"
		}
	}
	return fmt.Sprintf("remediated by playbook %s as %s, %s: %s", inc.Status.Playbook.String(), inc.Status.RunAs, by, strings.Join(steps, "; "))
}

// uncommitted forgets a plan approved by policy that failed with nothing
// applied (its one write refused: a missing grant, a disruption budget), as
// a refused dry run would have been: the incident then counts as failed
// before anything was applied, and is planned again when it is next looked
// at, so a grant fixed since is taken. Only a plan committed in this pass
// and never stored: a stored record is what a restart resumes from (a write
// it made may have landed unmarked), and forgetting it would be a status
// write of its own, waking the incident to plan again at once. A gate's
// plan stays committed: people approved that plan.
func uncommitted(p *pass) bool {
	inc := p.inc
	if inc.Status.AutoApproval == nil || inc.Status.ApprovalGate != "" || p.plan == nil || p.wroteAhead {
		return false
	}
	for _, s := range inc.Status.Steps {
		for _, c := range s.Changes {
			if c.Done && c.Operation != riposte.OperationUnchanged {
				return false
			}
		}
	}
	inc.Status.PlanHash, inc.Status.RunAs, inc.Status.Steps = "", "", nil
	forgetVerdict(inc)
	return true
}

// failedSteps names each failed step and why it failed.
func failedSteps(inc *riposte.Incident) string {
	var failed []string
	for _, s := range inc.Status.Steps {
		if s.Phase == riposte.StepFailed {
			failed = append(failed, "step "+s.Name+" failed: "+s.Message)
		}
	}
	if len(failed) == 0 {
		return "a step failed"
	}
	return text.Elide(strings.Join(failed, "; "), 4000)
}

func anyFailed(inc *riposte.Incident) bool {
	for _, s := range inc.Status.Steps {
		if s.Phase == riposte.StepFailed {
			return true
		}
	}
	return false
}

// stepOf finds a step of the playbook by name; a step the playbook no
// longer has runs with the defaults.
func stepOf(pb *riposte.Playbook, name string) riposte.Step {
	if pb != nil {
		for _, s := range pb.Spec.Steps {
			if s.Name == name {
				return s
			}
		}
	}
	return riposte.Step{Name: name}
}

// workloadsTakenOut groups the pods the plan takes out of service by their
// controller, with how many of its pods are out already.
func (r *Reconciler) workloadsTakenOut(ctx context.Context, plan *executor.Plan) ([]guard.Workload, error) {
	byOwner := map[types.UID]*guard.Workload{}
	planned := map[types.UID]bool{}
	var order []types.UID
	for _, sp := range plan.Steps {
		for _, c := range sp.Changes {
			if !c.TakesPodOut {
				continue
			}
			var pod corev1.Pod
			if err := r.Get(ctx, client.ObjectKey{Namespace: c.Object.GetNamespace(), Name: c.Object.GetName()}, &pod); err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return nil, err
			}
			owner := metav1.GetControllerOf(&pod)
			if owner == nil || planned[pod.UID] {
				continue // a bare pod is a workload of one: isolating it is the point
			}
			planned[pod.UID] = true
			w, ok := byOwner[owner.UID]
			if !ok {
				var siblings corev1.PodList
				if err := r.List(ctx, &siblings, client.InNamespace(pod.Namespace)); err != nil {
					return nil, err
				}
				w = &guard.Workload{Name: owner.Kind + "/" + pod.Namespace + "/" + owner.Name}
				for i := range siblings.Items {
					s := &siblings.Items[i]
					if o := metav1.GetControllerOf(s); o == nil || o.UID != owner.UID {
						continue
					}
					w.Total++
					if s.DeletionTimestamp != nil || s.Labels[actions.QuarantineLabel] != "" {
						w.Out++
					}
				}
				byOwner[owner.UID] = w
				order = append(order, owner.UID)
			}
			if pod.DeletionTimestamp == nil && pod.Labels[actions.QuarantineLabel] == "" {
				w.Planned++
			}
		}
	}
	out := make([]guard.Workload, 0, len(order))
	for _, uid := range order {
		out = append(out, *byOwner[uid])
	}
	return out, nil
}
