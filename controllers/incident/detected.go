package incident

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/approval"
	"github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/expr"
	"github.com/riposte-dev/riposte/internal/match"
	"github.com/riposte-dev/riposte/internal/metrics"
)

// detected is the work of a new incident (and of one unmatched, or failed
// before anything was applied, when it is looked at again): learn what it
// touches, find the playbook that answers it, plan, and ask for the
// verdict. A plan the playbook's own rule approves is committed here and
// goes on to Remediating in the same pass; one people decide waits in a
// gate (AwaitingApproval).
func (r *Reconciler) detected(ctx context.Context, p *pass) error {
	if err := r.enrich(ctx, p); err != nil {
		return err
	}
	if err := r.match(ctx, p); err != nil || p.inc.Status.Playbook == nil {
		return err
	}
	if err := r.loadPlaybook(ctx, p); err != nil {
		return err
	}
	return r.ask(ctx, p)
}

// enrich resolves the target and its context once.
// It is learned again when the spec changed (a person set spec.target).
func (r *Reconciler) enrich(ctx context.Context, p *pass) error {
	inc := p.inc
	if inc.Status.EnrichedAt != nil && !p.specChanged {
		return nil
	}
	start := time.Now()
	res, err := r.enricher().Enrich(ctx, inc)
	if err != nil {
		return err
	}
	if res.Reason == riposte.ReasonTargetNotFound && time.Since(inc.CreationTimestamp.Time) < cacheLagLimit && r.existsUncached(ctx, res.Context.Target) {
		// The alert came before the cache saw its target: look again shortly
		// rather than fail an incident about an object that exists.
		return waitFor(cacheLagRetry, "the cache has not seen the target yet")
	}
	metrics.EnrichSeconds.Observe(time.Since(start).Seconds())
	inc.Status.Context = res.Context
	now := metav1.Now()
	inc.Status.EnrichedAt = &now
	setCondition(inc, riposte.IncidentEnriched, res.Reason == riposte.ReasonTargetResolved, res.Reason, res.Message)
	if len(res.Context.Truncated) > 0 {
		setCondition(inc, riposte.IncidentContextTruncated, true, riposte.ReasonTruncated,
			"context cut to keep the incident small: "+strings.Join(res.Context.Truncated, "; "))
	} else {
		meta.RemoveStatusCondition(&inc.Status.Conditions, riposte.IncidentContextTruncated)
	}
	return nil
}

// refreshRelated lists the related incidents again when a newer one found
// this one related: alerts that arrive together are enriched at the same
// time, and the first enriched may not have seen the others yet.
// The flag is dropped only once the refreshed list is stored (see
// Reconcile), so a conflicting write or an error refreshes again.
func (r *Reconciler) refreshRelated(ctx context.Context, p *pass) error {
	if _, stale := r.relatedStale.Load(client.ObjectKeyFromObject(p.inc)); !stale || p.inc.Status.EnrichedAt == nil {
		return nil
	}
	if err := r.enricher().RefreshRelated(ctx, p.inc); err != nil {
		return err
	}
	p.relatedRefreshed = true
	return nil
}

// cacheLagRetry is how soon an incident whose target the cache has not seen
// yet is looked at again.
const cacheLagRetry = 200 * time.Millisecond

// cacheLagLimit bounds that wait: a cache that still has not seen the
// target after this long is not lagging, and the incident says so.
const cacheLagLimit = 30 * time.Second

// existsUncached asks the API server itself whether ref exists; only called
// when the cache says it does not.
func (r *Reconciler) existsUncached(ctx context.Context, ref *riposte.ObjectReference) bool {
	if ref == nil || r.APIReader == nil {
		return false
	}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind))
	return r.APIReader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, meta) == nil
}

// match picks the playbook that answers the incident, once.
// None leaves the incident Unmatched, to be matched again when it changes.
func (r *Reconciler) match(ctx context.Context, p *pass) error {
	inc := p.inc
	if inc.Status.Playbook != nil {
		return nil
	}
	var playbooks riposte.PlaybookList
	if err := r.List(ctx, &playbooks); err != nil {
		return fmt.Errorf("listing playbooks: %w", err)
	}
	chosen, broken := match.Select(playbooks.Items, inc, r.OperatorNamespace, r.Exprs)
	for _, b := range broken {
		ctrl.LoggerFrom(ctx).Info("playbook skipped", "playbook", client.ObjectKeyFromObject(b.Playbook), "error", b.Err.Error())
	}
	if chosen == nil {
		inc.Status.Phase = riposte.PhaseUnmatched
		setCondition(inc, riposte.IncidentMatched, false, riposte.ReasonNoPlaybook,
			fmt.Sprintf("no playbook in namespace %s or %s answers alert %s", inc.Namespace, r.OperatorNamespace, inc.Spec.AlertName))
		return nil
	}
	inc.Status.Playbook = &riposte.NamespacedName{Namespace: chosen.Namespace, Name: chosen.Name}
	setCondition(inc, riposte.IncidentMatched, true, riposte.ReasonPlaybookMatched, "playbook "+inc.Status.Playbook.String()+" answers this incident")
	return nil
}

// loadPlaybook reads the matched playbook, once a pass. One deleted since
// stalls the incident: nothing is planned or applied without it.
func (r *Reconciler) loadPlaybook(ctx context.Context, p *pass) error {
	if p.pb != nil {
		return nil
	}
	pb := &riposte.Playbook{}
	key := client.ObjectKey{Namespace: p.inc.Status.Playbook.Namespace, Name: p.inc.Status.Playbook.Name}
	if err := r.Get(ctx, key, pb); err != nil {
		if apierrors.IsNotFound(err) {
			return stalled(riposte.IncidentPlanned, riposte.ReasonPlanFailed, "playbook "+key.String()+" was deleted")
		}
		return fmt.Errorf("reading playbook %s: %w", key, err)
	}
	p.pb = pb
	return nil
}

// ask builds the plan and asks for its verdict. A plan the playbook's
// autoApprove rule approves is approved here and runs in the same pass: it
// is not dry-run (its writes are checked by the same API server, as the
// same account, when they are made) and no gate object is written; the
// verdict is recorded with the plan (status.autoApproval). A plan people
// decide is dry-run and held in a gate, whose name is the incident's, so a
// retry after a crash finds the gate it already made.
func (r *Reconciler) ask(ctx context.Context, p *pass) error {
	// An automatic verdict binds only the plan it committed: one not
	// committed (held, or failed before anything was applied) is decided
	// again here, and a plan people now decide carries no trace of it.
	prior := p.inc.Status.AutoApproval
	p.inc.Status.AutoApproval, p.inc.Status.ApprovedAt = nil, nil
	err := r.askFor(ctx, p, prior)
	if prior != nil && p.inc.Status.AutoApproval == nil {
		forgetVerdict(p.inc)
	}
	return err
}

func (r *Reconciler) askFor(ctx context.Context, p *pass, prior *riposte.AutoApproval) error {
	inc, pb := p.inc, p.pb
	if inc.Spec.Status == riposte.AlertResolved {
		// Over before anything was asked for (the resolution arrived
		// first, or before a playbook answered): a remediation now would
		// act on something that has ended. A plan already asked for goes
		// on: people may still be deciding on what happened.
		if err := r.adoptOrphanHolds(ctx, p); err != nil {
			return err
		}
		why := "the alert had resolved before a plan was asked for; nothing was planned or applied"
		if len(inc.Status.Steps) > 0 {
			why = "the alert had resolved before a plan was asked for; nothing was planned, and the holds found in place are recorded for undo"
		}
		setCondition(inc, riposte.IncidentPlanned, false, riposte.ReasonAlertResolved, why)
		r.resolve(inc)
		return nil
	}
	target := targetOf(inc)
	if err := r.refused(pb, target, nil); err != nil {
		return err
	}
	asker := requester(inc)
	if asker != "" {
		if err := r.refusedAsker(pb, asker); err != nil {
			return err
		}
	}
	exe, err := r.executorFor(pb)
	if err != nil {
		return stalled(riposte.IncidentPlanned, riposte.ReasonNoServiceAccount, err.Error())
	}
	policy, err := r.gatePolicy(ctx, inc, pb, asker)
	if err != nil {
		if isUserError(err) {
			return stalled(riposte.IncidentPlanned, riposte.ReasonPlanFailed, err.Error())
		}
		return err
	}
	automatic := policy.Automatic
	checks := executor.WithDryRun
	if automatic && pb.Spec.Mode != riposte.ModeDryRun {
		checks = executor.DryRunIfSeveral
	}
	plan, err := exe.Build(ctx, inc, pb, target, checks)
	if err != nil {
		if refusal := r.impersonationRefused(riposte.IncidentPlanned, pb, err); refusal != nil {
			return refusal
		}
		if executor.IsPermanent(err) {
			return stalled(riposte.IncidentPlanned, riposte.ReasonPlanFailed, err.Error())
		}
		return err
	}
	if err := r.refused(pb, target, plan); err != nil {
		return err
	}
	if asker != "" {
		if err := r.lacksAccess(ctx, inc, pb, plan, asker); err != nil {
			return err
		}
	}
	if automatic {
		r.approveByPolicy(p, plan, policy.AutoApproveRule, prior)
		return r.commit(ctx, p)
	}
	return r.openGate(ctx, p, plan, policy)
}

// openGate holds a plan people decide in a new gate, after the API server's
// dry run of it, and leaves the incident AwaitingApproval.
func (r *Reconciler) openGate(ctx context.Context, p *pass, plan *executor.Plan, policy riposte.GatePolicy) error {
	inc, pb := p.inc, p.pb
	revision := inc.Status.GateRevision + 1
	if revision > maxGateRevisions {
		return stalled(riposte.IncidentPlanned, riposte.ReasonPlanChanged,
			fmt.Sprintf("Riposte asked again %d times (the plan changed after approval, or a gate was deleted or held decisions that could not be verified); giving up rather than asking again", maxGateRevisions))
	}
	gate := &riposte.ApprovalGate{
		ObjectMeta: metav1.ObjectMeta{Name: gateName(inc.Name, revision), Namespace: inc.Namespace,
			Labels: map[string]string{gateIncidentLabel: inc.Name}},
		Spec: riposte.ApprovalGateSpec{
			Incident: inc.Name,
			Playbook: riposte.NamespacedName{Namespace: pb.Namespace, Name: pb.Name},
			Plan:     riposte.Plan{Steps: plan.PlannedSteps(), Hash: plan.Hash},
			Policy:   policy,
		},
	}
	if err := controllerutil.SetControllerReference(inc, gate, r.Scheme()); err != nil {
		return err
	}
	var finalizerAdded func() error
	if pb.Spec.Mode != riposte.ModeDryRun {
		finalizerAdded = r.keepRecordWhile(ctx, p)
	}
	err := r.Create(ctx, gate)
	if finalizerAdded != nil {
		if ferr := finalizerAdded(); ferr != nil {
			return ferr // the gate, if made, is found again by the next pass
		}
	}
	switch {
	case err == nil:
		p.plan = plan
		p.gate = gate
	case apierrors.IsAlreadyExists(err):
		// Made by an earlier pass whose status write was lost, or by someone
		// else. It is taken only if it is exactly the gate this pass would
		// open; otherwise the next name is used.
		existing, ours, err := r.existingGate(ctx, gate)
		if err != nil {
			return err
		}
		if !ours {
			inc.Status.GateRevision = revision
			r.event(inc, corev1.EventTypeWarning, riposte.ReasonGateMissing, "Plan",
				"gate "+gate.Name+" exists but is not the one Riposte would open for this plan; asking again under another name")
			return waitFor(time.Millisecond, "gate "+gate.Name+" is taken")
		}
		gate = existing
	default:
		return fmt.Errorf("creating gate %s: %w", gate.Name, err)
	}
	inc.Status.ApprovalGate = gate.Name
	inc.Status.ApprovalGateUID = string(gate.UID)
	inc.Status.GateRevision = revision
	inc.Status.Phase = riposte.PhaseAwaitingApproval
	// Said as whilePending will say it once the gate controller records
	// the gate's first verdict, so that verdict costs the incident no write.
	waits := gateWaits(gate)
	setCondition(inc, riposte.IncidentPlanned, true, riposte.ReasonPlanReady,
		fmt.Sprintf("%d step(s) planned and accepted by the API server's dry run; plan %s", len(plan.Steps), plan.Hash))
	// A person has to act: say so where kubectl describe shows it.
	note := "plan " + plan.Hash + " waits for approval in gate " + gate.Name
	if why := r.notAutomatic(inc, pb); why != "" {
		waits += "; " + why
		note += "; " + why
	}
	setCondition(inc, riposte.IncidentApproved, false, riposte.ReasonAwaitingApproval, waits)
	r.event(inc, corev1.EventTypeNormal, riposte.ReasonAwaitingApproval, "Plan", note)
	return nil
}

// approveByPolicy records the automatic verdict with the plan it approves.
// It binds only once the plan is committed: a plan held back by a
// guardrail is planned and decided again when the hold lifts, against the
// playbook and the world as they are then.
func (r *Reconciler) approveByPolicy(p *pass, plan *executor.Plan, rule string, prior *riposte.AutoApproval) {
	inc, pb := p.inc, p.pb
	p.plan = plan
	if sameVerdict(prior, pb, rule, plan.Hash) {
		// The same verdict on the same plan, decided again after a hold:
		// it keeps its time, and is counted once.
		at := prior.DecidedAt
		inc.Status.AutoApproval, inc.Status.ApprovedAt = prior, &at
		return
	}
	now := metav1.Now()
	inc.Status.AutoApproval = &riposte.AutoApproval{PlaybookGeneration: pb.Generation, Rule: rule, PlanHash: plan.Hash, DecidedAt: now}
	inc.Status.ApprovedAt = &now
	checked := "accepted by the API server's dry run"
	if !plan.DryRun {
		checked = "one write, which the API server checks as it is made, as the playbook's account"
	}
	setCondition(inc, riposte.IncidentPlanned, true, riposte.ReasonPlanReady,
		fmt.Sprintf("%d step(s) planned, %s; plan %s", len(plan.Steps), checked, plan.Hash))
	setCondition(inc, riposte.IncidentApproved, true, riposte.ReasonAutoApproved,
		fmt.Sprintf("%s (playbook %s/%s generation %d)", approval.AutoMessage(rule), pb.Namespace, pb.Name, pb.Generation))
	metrics.DecisionSeconds.WithLabelValues(string(riposte.GateApproved), approval.PolicyActor).Observe(now.Sub(inc.CreationTimestamp.Time).Seconds())
}

// forgetVerdict drops an automatic verdict that binds no committed plan,
// and the condition that told of it.
func forgetVerdict(inc *riposte.Incident) {
	inc.Status.AutoApproval, inc.Status.ApprovedAt = nil, nil
	if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentApproved); c != nil && c.Reason == riposte.ReasonAutoApproved {
		meta.RemoveStatusCondition(&inc.Status.Conditions, riposte.IncidentApproved)
	}
}

// sameVerdict reports whether an earlier automatic verdict was the same
// rule of the same playbook generation on the same plan.
func sameVerdict(prior *riposte.AutoApproval, pb *riposte.Playbook, rule, planHash string) bool {
	return prior != nil && prior.PlaybookGeneration == pb.Generation && prior.Rule == rule && prior.PlanHash == planHash
}

// autoApproveError is an autoApprove expression that cannot be evaluated:
// its author must fix it.
type autoApproveError struct{ err error }

func (e *autoApproveError) Error() string { return "approval.autoApprove.when: " + e.err.Error() }

func isUserError(err error) bool {
	var ae *autoApproveError
	return errors.As(err, &ae)
}

// gatePolicy freezes how the gate is decided: by the playbook's
// autoApprove rule when it holds and nobody asked, else by people, with
// the decision policy in force now noted so that only decisions made while
// it stays in force count. What a person asked for is decided by people:
// autoApprove would rest on fields the requester wrote, and an expiry that
// approves would let nobody decide.
func (r *Reconciler) gatePolicy(ctx context.Context, inc *riposte.Incident, pb *riposte.Playbook, asker string) (riposte.GatePolicy, error) {
	a := pb.Spec.Approval
	policy := riposte.GatePolicy{
		RequiredApprovals:  max(a.RequiredApprovals, 1),
		RequiredRejections: max(a.RequiredRejections, 1),
		OnExpiry:           a.OnExpiry,
		AllowRequester:     a.AllowRequester,
		Requester:          asker,
	}
	if asker != "" || reportWriterDecides(inc, pb, r.OperatorNamespace) {
		policy.OnExpiry = riposte.ExpiryReject
	} else {
		automatic, rule, err := r.autoApproves(inc, pb)
		if err != nil {
			return policy, &autoApproveError{err}
		}
		if automatic {
			policy.Automatic, policy.AutoApproveRule = true, rule
			return policy, nil // decided now; nothing to wait for
		}
	}
	policy.ExpiresAt = approval.ExpiryFrom(time.Now(), a.Timeout)
	id, _, err := approval.Enforcement(ctx, r.APIReader, r.OperatorNamespace)
	policy.DecisionPolicy = id
	return policy, err
}

// reportWriterDecides reports whether automatic approval would rest on a
// namespaced report, which anyone who may create reports in its namespace
// wrote, and the playbook does not accept that (namespacedReports).
func reportWriterDecides(inc *riposte.Incident, pb *riposte.Playbook, operatorNamespace string) bool {
	return inc.Spec.Drift != nil && drift.IsNamespacedReport(inc.Spec.Drift.Source) &&
		match.NamespacedReportsOf(pb, operatorNamespace) == riposte.NamespacedReportsRequirePerson
}

// notAutomatic says why autoApprove, which the playbook sets, does not
// decide the incident's gate; "" when nothing keeps it from deciding.
func (r *Reconciler) notAutomatic(inc *riposte.Incident, pb *riposte.Playbook) string {
	if pb == nil || pb.Spec.Approval.AutoApprove == nil || !reportWriterDecides(inc, pb, r.OperatorNamespace) {
		return ""
	}
	src := inc.Spec.Drift.Source
	return fmt.Sprintf("not approved automatically: the finding comes from %s %s/%s, which anyone who may create reports in %s could have written (playbook %s/%s, spec.approval.namespacedReports: RequirePerson)",
		src.Kind, src.Namespace, src.Name, src.Namespace, pb.Namespace, pb.Name)
}

// autoApproves evaluates the playbook's autoApprove expression for the incident.
func (r *Reconciler) autoApproves(inc *riposte.Incident, pb *riposte.Playbook) (bool, string, error) {
	auto := pb.Spec.Approval.AutoApprove
	if auto == nil {
		return false, "", nil
	}
	if auto.When == "" {
		return true, "", nil
	}
	prg, err := r.Exprs.Get(auto.When)
	if err != nil {
		return false, auto.When, err
	}
	obj, err := expr.IncidentObject(inc)
	if err != nil {
		return false, auto.When, err
	}
	ok, err := prg.Eval(obj)
	return ok, auto.When, err
}

// existingGate reads the gate that stands under want's name, and reports
// whether it is exactly the gate Riposte would open now: owned by this
// incident, with the same playbook, plan and policy. Only then is it taken
// as the gate an earlier pass opened.
func (r *Reconciler) existingGate(ctx context.Context, want *riposte.ApprovalGate) (*riposte.ApprovalGate, bool, error) {
	got := &riposte.ApprovalGate{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
		return nil, false, client.IgnoreNotFound(err)
	}
	owner, wantOwner := metav1.GetControllerOf(got), metav1.GetControllerOf(want)
	gotPolicy, wantPolicy := got.Spec.Policy, want.Spec.Policy
	gotPolicy.ExpiresAt, wantPolicy.ExpiresAt = nil, nil // computed from the time of each pass
	ours := owner != nil && wantOwner != nil && owner.UID == wantOwner.UID &&
		got.Spec.Incident == want.Spec.Incident && got.Spec.Playbook == want.Spec.Playbook &&
		got.Spec.Plan.Hash == want.Spec.Plan.Hash && equality.Semantic.DeepEqual(gotPolicy, wantPolicy)
	return got, ours, nil
}

// maxGateRevisions bounds how often one incident asks again.
const maxGateRevisions = 5

func gateName(incident string, revision int32) string {
	if revision <= 1 {
		return incident
	}
	return fmt.Sprintf("%s-%d", incident, revision)
}

// gateIncidentLabel names a gate's incident, for selecting gates with kubectl.
const gateIncidentLabel = "riposte.dev/incident"
