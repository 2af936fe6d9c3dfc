// Package incident reconciles Incidents: enrich, match a playbook, plan and
// gate, then apply exactly the approved plan and record every step.
//
// The phase is the state machine. Reconcile first does what any phase
// needs (deletion, undo, timed containment, the alert's silence, closing a
// resolved incident), then runs the handler of the incident's phase, each
// in its own file: detected.go (learn, match, plan and ask), awaiting.go
// (a gate's verdict), execute.go (commit and apply). A handler that moves
// the incident to a phase with work of its own (an automatic verdict to
// Remediating) hands on to that phase's handler in the same pass; every
// other end of a handler is settled once, in outcome.go.
package incident

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/enrich"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/expr"
	"github.com/riposte-dev/riposte/internal/guard"
	"github.com/riposte-dev/riposte/internal/inplace"
	"github.com/riposte-dev/riposte/internal/metrics"
	"github.com/riposte-dev/riposte/internal/priority"
	"github.com/riposte-dev/riposte/internal/record"
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
	// Records stores each milestone's record in the record sink; nil keeps
	// no trail beyond the objects, their Events and the log.
	Records *record.Writer
	// Lanes, when set, lets intake's writes go first: a pass waits while
	// intake writes and enough other passes run.
	Lanes *priority.Lanes

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

// pass carries what one reconcile learned from phase to phase, so a plan
// approved by policy in this pass is applied without waiting for a watch
// event, and without planning twice.
type pass struct {
	inc *riposte.Incident
	// before is the incident as last stored, the base of the status patch.
	before *riposte.Incident
	pb     *riposte.Playbook
	gate   *riposte.ApprovalGate
	// plan was built and approved in this very pass.
	plan *executor.Plan
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
	// wroteAhead: this pass stored its plan's records before the first write.
	wroteAhead bool
	// start is when the pass began: when a new incident was first taken up.
	start time.Time
}

// Reconcile loads the incident, does what every phase needs, runs its
// phase's handler and writes the status once at the end.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (res reconcile.Result, err error) {
	asked := time.Now()
	passed, err := r.Lanes.Pass(ctx)
	if err != nil {
		return reconcile.Result{}, nil // stopping: the pass is for the next leader or process
	}
	defer passed()
	metrics.PassWaitSeconds.Observe(time.Since(asked).Seconds())
	inc := &riposte.Incident{}
	if err := r.Get(ctx, req.NamespacedName, inc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !inc.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(inc, riposte.RecordFinalizer) {
		return reconcile.Result{}, nil
	}
	p := &pass{inc: inc, before: inc.DeepCopy(), start: time.Now()}
	defer func() {
		if p.gone {
			return
		}
		releaseHold(inc)
		setReady(inc)
		stampClosed(inc, p.before.Status.Phase)
		if !equality.Semantic.DeepEqual(p.before.Status, inc.Status) {
			// Noted only with a write the pass makes anyway: a record costs
			// the remediation no write of its own.
			r.noteStoredRecord(inc)
		}
		again, patchErr := r.persistOutcome(ctx, p)
		if patchErr == nil && p.relatedRefreshed {
			r.relatedStale.Delete(client.ObjectKeyFromObject(inc))
		}
		if patchErr == nil && !again {
			patchErr = r.submitRecord(ctx, p)
		}
		if apierrors.IsConflict(patchErr) || again {
			ctrl.LoggerFrom(ctx).V(1).Info("the incident changed during the pass; requeued", "resourceVersion", p.before.ResourceVersion, "phase", inc.Status.Phase)
			res, patchErr = reconcile.Result{Requeue: true}, nil
		}
		err = kerrors.NewAggregate([]error{err, patchErr})
	}()

	p.specChanged = inc.Status.ObservedGeneration != 0 && inc.Status.ObservedGeneration != inc.Generation
	inc.Status.ObservedGeneration = inc.Generation
	if inc.Status.DetectedAt == nil {
		t := inc.CreationTimestamp
		inc.Status.DetectedAt = &t
		inc.Status.Phase = riposte.PhaseDetected
	}
	if !inc.DeletionTimestamp.IsZero() {
		return r.settle(p, r.finalize(ctx, p))
	}
	if done, err := r.everyPhase(ctx, p); err != nil || done {
		return r.settle(p, err)
	}
	return r.settle(p, r.advance(ctx, p))
}

// everyPhase does what the incident needs whatever its phase: related
// incidents listed again, the record's finalizer kept, a person's undo,
// timed containment ended, the alert's silence followed, and a resolved
// alert closing an incident with nothing left to do. done: nothing more
// happens in this pass.
func (r *Reconciler) everyPhase(ctx context.Context, p *pass) (done bool, err error) {
	inc := p.inc
	if err := r.refreshRelated(ctx, p); err != nil {
		return true, err
	}
	if inplace.Any(inc) {
		// Added before the first write; put back if it went missing.
		if err := r.keepRecord(ctx, p); err != nil {
			return true, err
		}
	}
	if inc.Spec.Undo != nil && inc.Status.Phase != riposte.PhaseUndone {
		return true, r.undoAll(ctx, p)
	}
	if p.requeueAfter, err = r.expireContainment(ctx, p); err != nil {
		return true, err
	}
	after, err := r.followSilencedAlert(ctx, p)
	if err != nil {
		return true, err
	}
	p.requeueAfter = soonest(p.requeueAfter, after)
	if inc.Status.Phase == riposte.PhaseResolved {
		if err := r.endSilences(ctx, p); err != nil {
			return true, err
		}
	}
	if inc.Spec.Status == riposte.AlertResolved && inc.Status.Phase != riposte.PhaseResolved {
		// Closed without a committed plan (failed before it, unmatched): a
		// hold a cut-off pass wrote is recorded first.
		if err := r.adoptOrphanHolds(ctx, p); err != nil {
			return true, err
		}
	}
	return r.resolveIfDone(inc), nil
}

// maxTransitions bounds the phases one pass goes through (Detected,
// Remediating, and a Detected again for a superseded plan, at most).
const maxTransitions = 6

// advance runs the handler of the incident's phase, and of each phase it
// moves to that has work to do at once, until the incident waits.
func (r *Reconciler) advance(ctx context.Context, p *pass) error {
	for range maxTransitions {
		from := p.inc.Status.Phase
		handle := r.handlerOf(p.inc)
		if handle == nil {
			return nil // closed, or waiting on nothing Riposte does
		}
		if err := handle(ctx, p); err != nil {
			return err
		}
		if to := p.inc.Status.Phase; to == from || !handsOn(to) {
			return nil
		}
	}
	return fmt.Errorf("incident %s/%s went through %d phases in one pass; looking again", p.inc.Namespace, p.inc.Name, maxTransitions)
}

// work names what a phase's handler does.
type work int

const (
	noWork     work = iota // closed, or waiting on nothing Riposte does
	detect                 // learn, match, plan and ask (detected.go)
	await                  // read the gate's verdict, commit once approved (awaiting.go)
	rehold                 // look again at a plan a guardrail holds (awaiting.go)
	applySteps             // apply the committed steps (execute.go)
)

// workOf is the work an incident's phase calls for.
func workOf(inc *riposte.Incident) work {
	switch inc.Status.Phase {
	case "", riposte.PhaseDetected, riposte.PhaseUnmatched:
		return detect
	case riposte.PhaseAwaitingApproval:
		return await
	case riposte.PhaseHeld:
		return rehold
	case riposte.PhaseRemediating:
		return applySteps
	case riposte.PhaseFailed:
		// Failed before anything was applied: planned again, so a playbook
		// or grant fixed since is taken. Failed while applying is final.
		switch {
		case inc.Status.PlanHash != "":
			return noWork
		case inc.Status.ApprovalGate != "":
			return await
		default:
			return detect
		}
	}
	return noWork
}

// handlerOf is the handler of the incident's phase; nil when it has none.
func (r *Reconciler) handlerOf(inc *riposte.Incident) func(context.Context, *pass) error {
	return map[work]func(context.Context, *pass) error{
		detect: r.detected, await: r.awaitingApproval, rehold: r.held, applySteps: r.remediating,
	}[workOf(inc)]
}

// handsOn reports whether a phase reached within a pass has work to do in
// the same pass: a new gate to read, a committed plan to apply, a plan to
// ask for again.
func handsOn(phase riposte.IncidentPhase) bool {
	switch phase {
	case riposte.PhaseDetected, riposte.PhaseAwaitingApproval, riposte.PhaseRemediating:
		return true
	}
	return false
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
	stampStages(&p.before.Status, &p.inc.Status, p.start)
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
	// Each stage is counted once, by the write that first stores it.
	metrics.ObserveStages(&p.before.Status, &p.inc.Status)
	p.inc.ResourceVersion = sent.ResourceVersion
	p.before = p.inc.DeepCopy()
	return nil
}

// persistOutcome writes the status a pass ends with. When the write
// conflicts because the spec or metadata changed meanwhile (intake stored
// the alert's resolution, a person asked for an undo), the status is put on
// the incident as it is now and written again: this reconciler is the only
// writer of the status, and what the pass did in the world (a change whose
// record exists nowhere else) must not be lost with the write. The new spec
// is the next pass's (again). If the status itself changed, the write
// conflicts and the pass is done again.
func (r *Reconciler) persistOutcome(ctx context.Context, p *pass) (again bool, err error) {
	err = r.persist(ctx, p)
	if !apierrors.IsConflict(err) || r.APIReader == nil {
		return false, err
	}
	fresh := &riposte.Incident{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(p.inc), fresh); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if !sameStored(fresh.Status, p.before.Status) {
		return false, err
	}
	p.before = fresh
	return true, r.persist(ctx, p)
}

// sameStored compares statuses as the API server stores them: times to the
// second, as their JSON says.
func sameStored(a, b riposte.IncidentStatus) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// refused runs the guardrails on the target and, once a plan is built, on
// every object it writes; a refusal stalls the incident, saying why.
func (r *Reconciler) refused(pb *riposte.Playbook, target *riposte.ObjectReference, plan *executor.Plan) error {
	reason, msg, refused := guard.Evaluate(guard.Facts{Playbook: pb, Target: target, Objects: plan.Objects(),
		OperatorNamespace: r.OperatorNamespace, ProtectedNamespaces: r.ProtectedNamespaces})
	if !refused {
		return nil
	}
	metrics.GuardrailRefusals.WithLabelValues(reason).Inc()
	return stalled(riposte.IncidentPlanned, riposte.ReasonGuardrail, reason+": "+msg)
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
