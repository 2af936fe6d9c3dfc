// Package incident reconciles Incidents: enrich, match a playbook, plan and
// gate, then apply exactly the approved plan and record every step.
package incident

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/approval"
	"github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/enrich"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/expr"
	"github.com/riposte-dev/riposte/internal/guard"
	"github.com/riposte-dev/riposte/internal/match"
	"github.com/riposte-dev/riposte/internal/metrics"
)

// Reconciler drives one Incident from detection to remediation.
type Reconciler struct {
	client.Client
	// APIReader reads around the cache where a stale read would be wrong.
	APIReader           client.Reader
	Recorder            recorder.EventRecorder
	Exprs               *expr.Cache
	OperatorNamespace   string
	ProtectedNamespaces []string

	// Impersonation builds the clients that write as each playbook's account.
	Impersonation *Impersonation
	// Budget is the cluster-wide limit on remediation.
	Budget guard.Budget
	// Post sends Notify messages.
	Post func(ctx context.Context, url string, body any, idempotencyKey string) error
	// Silences is Alertmanager's API, when Riposte was given its URL.
	Silences executor.Silences

	enricherOnce   sync.Once
	sharedEnricher *enrich.Enricher
	cachedOnce     sync.Once
	cachedKinds    map[schema.GroupVersionKind]bool
	// relatedStale holds the incidents a newer incident found related
	// after they were enriched: their next pass lists it too.
	relatedStale sync.Map
}

func (r *Reconciler) enricher() *enrich.Enricher {
	r.enricherOnce.Do(func() { r.sharedEnricher = &enrich.Enricher{Reader: r.Client} })
	return r.sharedEnricher
}

// pass carries what one reconcile learned from phase to phase, so a gate
// opened and approved by policy in this pass is executed without waiting for
// its own watch event, and without planning twice.
type pass struct {
	inc *riposte.Incident
	// before is the incident as last stored, the base of the status patch.
	before *riposte.Incident
	pb     *riposte.Playbook
	gate   *riposte.ApprovalGate
	// plan was built and approved in this very pass.
	plan *executor.Plan
	// automatic: the playbook's autoApprove rule approved plan in this
	// pass; there is no gate to wait on.
	automatic bool
	// requeueAfter asks for another pass later (a hold, timed containment).
	requeueAfter time.Duration
	// gone: the incident's finalizer was released; it is being deleted and
	// there is no status left to write.
	gone bool
	// specChanged: what the incident is about may have changed (a person set
	// spec.target), so it is learned again; a waiting plan is re-planned
	// before it runs and superseded if it no longer matches.
	specChanged bool
	// relatedRefreshed: the related incidents were listed again, for
	// relatedStale; the flag goes once the list is stored.
	relatedRefreshed bool
}

// Reconcile loads the incident, runs the phases in order and patches the
// status once at the end.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (res reconcile.Result, err error) {
	inc := &riposte.Incident{}
	if err := r.Get(ctx, req.NamespacedName, inc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !inc.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(inc, riposte.RecordFinalizer) {
		return reconcile.Result{}, nil
	}
	p := &pass{inc: inc, before: inc.DeepCopy()}
	defer func() {
		if p.gone {
			return
		}
		releaseHold(inc)
		setReady(inc)
		patchErr := r.persist(ctx, p)
		if patchErr == nil && p.relatedRefreshed {
			r.relatedStale.Delete(client.ObjectKeyFromObject(inc))
		}
		if apierrors.IsConflict(patchErr) {
			ctrl.LoggerFrom(ctx).V(1).Info("status write conflicted; requeued", "resourceVersion", p.before.ResourceVersion, "phase", inc.Status.Phase)
			res, patchErr = reconcile.Result{Requeue: true}, nil
		}
		err = kerrors.NewAggregate([]error{err, patchErr})
	}()

	specChanged := inc.Status.ObservedGeneration != 0 && inc.Status.ObservedGeneration != inc.Generation
	inc.Status.ObservedGeneration = inc.Generation
	if inc.Status.DetectedAt == nil {
		t := inc.CreationTimestamp
		inc.Status.DetectedAt = &t
		inc.Status.Phase = riposte.PhaseDetected
	}
	p.specChanged = specChanged
	if !inc.DeletionTimestamp.IsZero() {
		err := r.finalize(ctx, p)
		return reconcile.Result{RequeueAfter: p.requeueAfter}, err
	}
	if err := r.refreshRelated(ctx, p); err != nil {
		return reconcile.Result{}, err
	}
	if anyInPlace(inc) {
		// Added before the first write; put back if it went missing.
		if err := r.keepRecord(ctx, p); err != nil {
			return reconcile.Result{}, err
		}
	}
	if inc.Spec.Undo != nil && inc.Status.Phase != riposte.PhaseUndone {
		return reconcile.Result{}, r.undoAll(ctx, p)
	}
	if p.requeueAfter, err = r.expireContainment(ctx, p); err != nil {
		return reconcile.Result{}, err
	}
	after, err := r.followSilencedAlert(ctx, p)
	if err != nil {
		return reconcile.Result{}, err
	}
	p.requeueAfter = soonest(p.requeueAfter, after)
	if inc.Status.Phase == riposte.PhaseResolved {
		if err := r.endSilences(ctx, p); err != nil {
			return reconcile.Result{}, err
		}
	}
	if r.resolveIfDone(inc) {
		return reconcile.Result{RequeueAfter: p.requeueAfter}, nil
	}
	for _, phase := range []func(context.Context, *pass) (bool, error){
		r.enrich, r.match, r.loadPlaybook, r.openGate, r.awaitVerdict, r.execute,
	} {
		if done, err := phase(ctx, p); err != nil || done {
			return reconcile.Result{RequeueAfter: p.requeueAfter}, err
		}
	}
	return reconcile.Result{RequeueAfter: p.requeueAfter}, nil
}

// soonest is the earlier of two requeue delays, 0 meaning none.
func soonest(a, b time.Duration) time.Duration {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// persist writes the status if it changed. Optimistic locking: a status
// written from a stale cache must not overwrite a newer one; the conflict
// requeues with fresh data. It is called at the end of every pass, and in
// the middle of one where a record must be stored before a write.
//
// The whole status is sent (an update of the status subresource, not a
// patch): this reconciler is its only writer, the resourceVersion guards
// it, and the API server then spends nothing on applying a patch to the
// stored object, which costs as much as the object is large.
func (r *Reconciler) persist(ctx context.Context, p *pass) error {
	if equality.Semantic.DeepEqual(p.before.Status, p.inc.Status) {
		return nil
	}
	// Sent from a copy: decoding the answer into p.inc would swap the
	// slices that a running step holds pointers into.
	sent := p.inc.DeepCopy()
	sent.ResourceVersion = p.before.ResourceVersion
	if err := r.Status().Update(ctx, sent); err != nil {
		return err
	}
	p.inc.ResourceVersion = sent.ResourceVersion
	p.before = p.inc.DeepCopy()
	return nil
}

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

// enrich resolves the target and its context once.
func (r *Reconciler) enrich(ctx context.Context, p *pass) (bool, error) {
	inc := p.inc
	if inc.Status.EnrichedAt != nil && !p.specChanged {
		return false, nil
	}
	start := time.Now()
	res, err := r.enricher().Enrich(ctx, inc)
	if err != nil {
		return true, err
	}
	if res.Reason == riposte.ReasonTargetNotFound && time.Since(inc.CreationTimestamp.Time) < cacheLagLimit && r.existsUncached(ctx, res.Context.Target) {
		// The alert came before the cache saw its target: look again shortly
		// rather than fail an incident about an object that exists.
		p.requeueAfter = cacheLagRetry
		return true, nil
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
	return false, nil
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
func (r *Reconciler) match(ctx context.Context, p *pass) (bool, error) {
	inc := p.inc
	if inc.Status.Playbook != nil {
		return false, nil
	}
	var playbooks riposte.PlaybookList
	if err := r.List(ctx, &playbooks); err != nil {
		return true, fmt.Errorf("listing playbooks: %w", err)
	}
	chosen, broken := match.Select(playbooks.Items, inc, r.OperatorNamespace, r.Exprs)
	for _, b := range broken {
		ctrl.LoggerFrom(ctx).Info("playbook skipped", "playbook", client.ObjectKeyFromObject(b.Playbook), "error", b.Err.Error())
	}
	if chosen == nil {
		inc.Status.Phase = riposte.PhaseUnmatched
		setCondition(inc, riposte.IncidentMatched, false, riposte.ReasonNoPlaybook,
			fmt.Sprintf("no playbook in namespace %s or %s answers alert %s", inc.Namespace, r.OperatorNamespace, inc.Spec.AlertName))
		return true, nil
	}
	inc.Status.Playbook = &riposte.NamespacedName{Namespace: chosen.Namespace, Name: chosen.Name}
	setCondition(inc, riposte.IncidentMatched, true, riposte.ReasonPlaybookMatched, "playbook "+inc.Status.Playbook.String()+" answers this incident")
	return false, nil
}

func (r *Reconciler) loadPlaybook(ctx context.Context, p *pass) (bool, error) {
	if p.inc.Status.Phase == riposte.PhaseRemediated || p.inc.Status.Phase == riposte.PhaseDryRun {
		return true, nil
	}
	pb := &riposte.Playbook{}
	key := client.ObjectKey{Namespace: p.inc.Status.Playbook.Namespace, Name: p.inc.Status.Playbook.Name}
	if err := r.Get(ctx, key, pb); err != nil {
		if apierrors.IsNotFound(err) {
			r.fail(p.inc, riposte.IncidentPlanned, riposte.ReasonPlanFailed, "playbook "+key.String()+" was deleted")
			return true, nil
		}
		return true, fmt.Errorf("reading playbook %s: %w", key, err)
	}
	p.pb = pb
	return false, nil
}

// openGate builds the plan and asks for its verdict. A plan the playbook's
// autoApprove rule approves is approved here and runs in the same pass: it
// is not dry-run (its writes are checked by the same API server, as the
// same account, when they are made) and no gate object is written; the
// verdict is recorded with the plan (status.autoApproval). A plan people
// decide is dry-run and held in a gate, whose name is the incident's, so a
// retry after a crash finds the gate it already made.
func (r *Reconciler) openGate(ctx context.Context, p *pass) (bool, error) {
	inc, pb := p.inc, p.pb
	if inc.Status.ApprovalGate != "" || inc.Status.PlanHash != "" {
		return false, nil // asked already, or committed
	}
	if inc.Spec.Status == riposte.AlertResolved {
		// Over before anything was asked for (the resolution arrived
		// first, or before a playbook answered): a remediation now would
		// act on something that has ended. A plan already asked for goes
		// on: people may still be deciding on what happened.
		setCondition(inc, riposte.IncidentPlanned, false, riposte.ReasonAlertResolved, "the alert had resolved before a plan was asked for; nothing was planned or applied")
		r.resolve(inc)
		return true, nil
	}
	target := targetOf(inc)
	if r.refused(inc, pb, target, nil) {
		return true, nil
	}
	asker := requester(inc)
	if asker != "" && r.refusedAsker(inc, pb, asker) {
		return true, nil
	}
	exe, err := r.executorFor(pb)
	if err != nil {
		r.fail(inc, riposte.IncidentPlanned, riposte.ReasonNoServiceAccount, err.Error())
		return true, nil
	}
	policy, err := r.gatePolicy(ctx, inc, pb, asker)
	if err != nil {
		if isUserError(err) {
			r.fail(inc, riposte.IncidentPlanned, riposte.ReasonPlanFailed, err.Error())
			return true, nil
		}
		return true, err
	}
	automatic := policy.Automatic
	checks := executor.WithDryRun
	if automatic && pb.Spec.Mode != riposte.ModeDryRun {
		checks = executor.DryRunIfSeveral
	}
	plan, err := exe.Build(ctx, inc, pb, target, checks)
	if err != nil {
		if r.impersonationRefused(inc, riposte.IncidentPlanned, pb, err) {
			return true, nil
		}
		if executor.IsPermanent(err) {
			r.fail(inc, riposte.IncidentPlanned, riposte.ReasonPlanFailed, err.Error())
			return true, nil
		}
		return true, err
	}
	if r.refused(inc, pb, target, plan) {
		return true, nil
	}
	if asker != "" {
		if refused, err := r.lacksAccess(ctx, inc, pb, plan, asker); err != nil || refused {
			return true, err
		}
	}
	if automatic {
		r.approveByPolicy(p, plan, policy.AutoApproveRule)
		return false, nil
	}
	revision := inc.Status.GateRevision + 1
	if revision > maxGateRevisions {
		r.fail(inc, riposte.IncidentPlanned, riposte.ReasonPlanChanged,
			fmt.Sprintf("Riposte asked again %d times (the plan changed after approval, or a gate was deleted or held decisions that could not be verified); giving up rather than asking again", maxGateRevisions))
		return true, nil
	}
	gate := &riposte.ApprovalGate{
		ObjectMeta: metav1.ObjectMeta{Name: gateName(inc.Name, revision), Namespace: inc.Namespace,
			Labels: map[string]string{"riposte.dev/incident": inc.Name}},
		Spec: riposte.ApprovalGateSpec{
			Incident: inc.Name,
			Playbook: riposte.NamespacedName{Namespace: pb.Namespace, Name: pb.Name},
			Plan:     riposte.Plan{Steps: plan.PlannedSteps(), Hash: plan.Hash},
			Policy:   policy,
		},
	}
	if err := controllerutil.SetControllerReference(inc, gate, r.Scheme()); err != nil {
		return true, err
	}
	var finalizerAdded func() error
	if pb.Spec.Mode != riposte.ModeDryRun {
		finalizerAdded = r.keepRecordWhile(ctx, p)
	}
	err = r.Create(ctx, gate)
	if finalizerAdded != nil {
		if ferr := finalizerAdded(); ferr != nil {
			return true, ferr // the gate, if made, is found again by the next pass
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
			return true, err
		}
		if !ours {
			inc.Status.GateRevision = revision
			r.event(inc, corev1.EventTypeWarning, riposte.ReasonGateMissing, "Plan",
				"gate "+gate.Name+" exists but is not the one Riposte would open for this plan; asking again under another name")
			p.requeueAfter = time.Millisecond
			return true, nil
		}
		gate = existing
	default:
		return true, fmt.Errorf("creating gate %s: %w", gate.Name, err)
	}
	inc.Status.ApprovalGate = gate.Name
	inc.Status.ApprovalGateUID = string(gate.UID)
	inc.Status.GateRevision = revision
	inc.Status.Phase = riposte.PhaseAwaitingApproval
	setCondition(inc, riposte.IncidentApproved, false, riposte.ReasonAwaitingApproval, "gate "+gate.Name+" was opened")
	setCondition(inc, riposte.IncidentPlanned, true, riposte.ReasonPlanReady,
		fmt.Sprintf("%d step(s) planned and accepted by the API server's dry run; plan %s", len(plan.Steps), plan.Hash))
	// A person has to act: say so where kubectl describe shows it.
	note := "plan " + plan.Hash + " waits for approval in gate " + gate.Name
	if why := r.notAutomatic(inc, pb); why != "" {
		setCondition(inc, riposte.IncidentApproved, false, riposte.ReasonAwaitingApproval, "gate "+gate.Name+" was opened; "+why)
		note += "; " + why
	}
	r.event(inc, corev1.EventTypeNormal, riposte.ReasonAwaitingApproval, "Plan", note)
	return false, nil
}

// approveByPolicy records the automatic verdict with the plan it approves.
// It binds only once the plan is committed: a plan held back by a
// guardrail is planned and decided again when the hold lifts, against the
// playbook and the world as they are then.
func (r *Reconciler) approveByPolicy(p *pass, plan *executor.Plan, rule string) {
	inc, pb := p.inc, p.pb
	now := metav1.Now()
	inc.Status.AutoApproval = &riposte.AutoApproval{PlaybookGeneration: pb.Generation, Rule: rule, PlanHash: plan.Hash, DecidedAt: now}
	inc.Status.ApprovedAt = &now
	p.plan, p.automatic = plan, true
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

// awaitVerdict reads the gate's verdict: approved goes on, anything else
// stops here until the gate changes.
func (r *Reconciler) awaitVerdict(ctx context.Context, p *pass) (bool, error) {
	inc := p.inc
	if p.automatic || inc.Status.ApprovalGate == "" {
		return false, nil // approved by policy in this pass, or committed under that verdict
	}
	if p.gate == nil {
		gate, missing, err := r.incidentGate(ctx, inc)
		switch {
		case err != nil:
			return true, err
		case gate != nil:
			p.gate = gate
		case inc.Status.PlanHash != "":
			return false, nil // committed: the step records run, whatever became of the gate
		case missing == "":
			return true, nil // just created: the cache has not seen it yet; its watch event wakes us
		default:
			return true, r.reopenGate(ctx, p, missing)
		}
	}
	gate := p.gate
	switch gate.Status.Phase {
	case riposte.GateApproved:
		if inc.Status.ApprovedAt == nil {
			inc.Status.ApprovedAt = gate.Status.DecidedAt
		}
		setCondition(inc, riposte.IncidentApproved, true, riposte.ReasonApproved, gate.Status.Message)
		return false, nil
	case riposte.GateRejected, riposte.GateExpired:
		inc.Status.Phase = riposte.PhaseRejected
		setCondition(inc, riposte.IncidentApproved, false, riposte.ReasonRejected, gate.Status.Message)
		return true, nil
	case riposte.GateCancelled:
		// Closed by Riposte itself. The pass that closed it moves the incident
		// on too; if that pass could not store the incident (a write that
		// conflicted with a change to its spec), the gate's record does it now.
		if inc.Status.Phase == riposte.PhaseAwaitingApproval {
			reason := riposte.ReasonTargetGone
			if c := meta.FindStatusCondition(gate.Status.Conditions, riposte.GateDecided); c != nil {
				reason = c.Reason
			}
			inc.Status.Phase = riposte.PhaseCancelled
			setCondition(inc, riposte.IncidentApproved, false, reason, "gate "+gate.Name+" was cancelled: "+gate.Status.Message)
			r.resolveIfDone(inc)
		}
		return true, nil
	case riposte.GateSuperseded:
		// Closed by Riposte itself, which names the new gate in the same
		// pass; if that pass could not store the incident, ask again here
		// (the new gate is found and taken if it is the one this would open).
		return true, r.askAgain(ctx, p)
	default:
		return true, r.whilePending(ctx, p)
	}
}

// whilePending withdraws a waiting plan that became moot: the alert resolved
// or the target is gone. Otherwise the incident keeps waiting.
func (r *Reconciler) whilePending(ctx context.Context, p *pass) error {
	inc, gate := p.inc, p.gate
	if inc.Spec.Status == riposte.AlertResolved {
		reason, why := resolvedBecause(inc)
		if err := r.closeGate(ctx, gate, riposte.GateCancelled, reason, why+" before a decision"); err != nil {
			return err
		}
		at := metav1.Now()
		if inc.Spec.EndsAt != nil {
			at = *inc.Spec.EndsAt
		}
		inc.Status.ResolvedAt = &at
		inc.Status.Phase = riposte.PhaseResolved
		setCondition(inc, riposte.IncidentApproved, false, reason, "gate "+gate.Name+" was cancelled: "+why)
		r.event(inc, corev1.EventTypeNormal, reason, "Cancel", why+"; gate "+gate.Name+" was cancelled")
		return nil
	}
	if _, gone, err := r.currentTarget(ctx, inc); err != nil || gone {
		if err != nil {
			return err
		}
		return r.cancelForGoneTarget(ctx, inc, gate)
	}
	if unverifiable := gate.Status.UnverifiableDecisions; len(unverifiable) > 0 && gate.Status.DecisionPolicy != "" {
		// Only once the policy is in force again can a new gate take real
		// decisions; without it (before Kubernetes 1.30) none ever counts
		// and the gate waits and expires as its policy says.
		// Decisions recorded in those people's names while nothing checked
		// them would keep the real people from deciding (one decision per
		// person): a new gate lets them.
		msg := fmt.Sprintf("gate %s holds decisions in the names of %s recorded while the decision policy was not in force; they never count",
			gate.Name, strings.Join(unverifiable, ", "))
		if err := r.closeGate(ctx, gate, riposte.GateSuperseded, riposte.ReasonDecisionsUnverifiable, msg); err != nil {
			return err
		}
		r.event(inc, corev1.EventTypeWarning, riposte.ReasonDecisionsUnverifiable, "Replan", msg+"; a new gate asks again")
		return r.askAgain(ctx, p)
	}
	inc.Status.Phase = riposte.PhaseAwaitingApproval
	msg := fmt.Sprintf("gate %s waits: %s", gate.Name, gate.Status.Message)
	if why := r.notAutomatic(inc, p.pb); why != "" && !gate.Spec.Policy.Automatic {
		msg += "; " + why
	}
	setCondition(inc, riposte.IncidentApproved, false, riposte.ReasonAwaitingApproval, msg)
	return nil
}

func (r *Reconciler) cancelForGoneTarget(ctx context.Context, inc *riposte.Incident, gate *riposte.ApprovalGate) error {
	msg := "the target " + describe(targetOf(inc)) + " no longer exists"
	if err := r.closeGate(ctx, gate, riposte.GateCancelled, riposte.ReasonTargetGone, msg); err != nil {
		return err
	}
	inc.Status.Phase = riposte.PhaseCancelled
	setCondition(inc, riposte.IncidentApproved, false, riposte.ReasonTargetGone, "gate "+gate.Name+" was cancelled: "+msg)
	r.event(inc, corev1.EventTypeNormal, riposte.ReasonTargetGone, "Cancel", msg+"; gate "+gate.Name+" was cancelled")
	return nil
}

// closeGate records that Riposte itself closed a gate, and why.
func (r *Reconciler) closeGate(ctx context.Context, gate *riposte.ApprovalGate, phase riposte.GatePhase, reason, msg string) error {
	before := gate.DeepCopy()
	now := time.Now()
	approval.Record(gate, approval.Verdict{Phase: phase, Reason: reason, Message: msg, DecidedBy: []string{"riposte"},
		Approvals: gate.Status.Approvals}, now)
	if err := r.Status().Patch(ctx, gate, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("closing gate %s: %w", gate.Name, err)
	}
	return nil
}

// currentTarget re-reads the target by name: the object the plan would act
// on now, with its current UID. gone is true when it no longer exists.
func (r *Reconciler) currentTarget(ctx context.Context, inc *riposte.Incident) (*riposte.ObjectReference, bool, error) {
	t := targetOf(inc)
	if t == nil || t.Kind == "" {
		return t, false, nil
	}
	gvk := schema.FromAPIVersionAndKind(t.APIVersion, t.Kind)
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(gvk)
	obj, err := r.Scheme().New(gvk)
	var target client.Object = meta
	if err == nil {
		target = obj.(client.Object)
	}
	if err := r.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.Name}, target); err != nil {
		if apierrors.IsNotFound(err) {
			return t, true, nil
		}
		return nil, false, fmt.Errorf("reading target %s: %w", t, err)
	}
	current := *t
	current.UID = string(target.GetUID())
	return &current, false, nil
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

// supersede closes an approved gate whose plan no longer matches the world
// and asks again with the new plan: what runs is only ever what was approved.
func (r *Reconciler) supersede(ctx context.Context, p *pass, target *riposte.ObjectReference, plan *executor.Plan) (bool, error) {
	inc, old := p.inc, p.gate
	msg := fmt.Sprintf("the world changed since approval: the plan is now %s, not the approved %s", plan.Hash, old.Spec.Plan.Hash)
	if err := r.closeGate(ctx, old, riposte.GateSuperseded, riposte.ReasonPlanChanged, msg); err != nil {
		return true, err
	}
	r.event(inc, corev1.EventTypeWarning, riposte.ReasonPlanChanged, "Replan", msg+"; gate "+old.Name+" is superseded")
	inc.Status.Context.Target = target
	return true, r.askAgain(ctx, p)
}

// reopenGate asks again when the incident's gate is gone (deleted) or is
// not the one Riposte opened: an incident never waits on a gate that cannot
// decide, and never takes a verdict from one it did not create.
func (r *Reconciler) reopenGate(ctx context.Context, p *pass, why string) error {
	r.event(p.inc, corev1.EventTypeWarning, riposte.ReasonGateMissing, "Replan", why+"; a new gate asks again")
	setCondition(p.inc, riposte.IncidentApproved, false, riposte.ReasonGateMissing, why)
	return r.askAgain(ctx, p)
}

// askAgain opens the next gate for the incident and goes on from there.
func (r *Reconciler) askAgain(ctx context.Context, p *pass) error {
	inc := p.inc
	inc.Status.ApprovalGate, inc.Status.ApprovalGateUID = "", ""
	inc.Status.ApprovedAt = nil
	p.gate, p.plan = nil, nil
	for _, phase := range []func(context.Context, *pass) (bool, error){r.openGate, r.awaitVerdict, r.execute} {
		if done, err := phase(ctx, p); err != nil || done {
			return err
		}
	}
	return nil
}

// incidentGate reads the incident's own gate. With no gate it returns why
// (deleted, or re-created by someone other than Riposte), or "" when the
// gate was just created and is not readable yet.
func (r *Reconciler) incidentGate(ctx context.Context, inc *riposte.Incident) (*riposte.ApprovalGate, string, error) {
	key := client.ObjectKey{Namespace: inc.Namespace, Name: inc.Status.ApprovalGate}
	gate := &riposte.ApprovalGate{}
	err := r.Get(ctx, key, gate)
	if apierrors.IsNotFound(err) {
		// The cache may lag a gate just created; the API server knows.
		err = r.APIReader.Get(ctx, key, gate)
		if apierrors.IsNotFound(err) {
			return nil, "gate " + key.Name + " was deleted before the plan ran", nil
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading gate %s: %w", key.Name, err)
	}
	if inc.Status.ApprovalGateUID != "" && string(gate.UID) != inc.Status.ApprovalGateUID {
		return nil, "gate " + key.Name + " was deleted and re-created by someone other than Riposte; its verdict counts for nothing", nil
	}
	return gate, "", nil
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

// refused runs the guardrails on the target and, once a plan is built, on
// every object it writes; a refusal fails the incident and says why.
func (r *Reconciler) refused(inc *riposte.Incident, pb *riposte.Playbook, target *riposte.ObjectReference, plan *executor.Plan) bool {
	reason, msg, refused := guard.Evaluate(guard.Facts{Playbook: pb, Target: target, Objects: plan.Objects(),
		OperatorNamespace: r.OperatorNamespace, ProtectedNamespaces: r.ProtectedNamespaces})
	if refused {
		metrics.GuardrailRefusals.WithLabelValues(reason).Inc()
		r.fail(inc, riposte.IncidentPlanned, riposte.ReasonGuardrail, reason+": "+msg)
	}
	return refused
}

// fail marks the incident Failed with a condition that says why.
func (r *Reconciler) fail(inc *riposte.Incident, condType, reason, msg string) {
	inc.Status.Phase = riposte.PhaseFailed
	setCondition(inc, condType, false, reason, msg)
	r.event(inc, corev1.EventTypeWarning, reason, "Remediate", msg)
}

func (r *Reconciler) event(inc *riposte.Incident, eventType, reason, action, note string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(inc, nil, eventType, reason, action, "%s", note)
	}
}

func targetOf(inc *riposte.Incident) *riposte.ObjectReference {
	if inc.Status.Context == nil {
		return nil
	}
	return inc.Status.Context.Target
}

func describe(t *riposte.ObjectReference) string {
	if t == nil {
		return "no target"
	}
	return t.String()
}
