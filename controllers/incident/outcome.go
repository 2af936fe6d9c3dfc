package incident

import (
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// A phase ends in one of three ways besides moving on: stalled (only a
// person can move the incident on: the playbook's author, an admin),
// waiting (time will), or a transient error (retried with backoff). They
// are typed here and turned into conditions, Events and requeues in one
// place, settle.

// stalledError fails the incident: its condition says why, with a Warning
// Event, and nothing retries it until the incident changes.
type stalledError struct{ condition, reason, message string }

func (e *stalledError) Error() string { return e.reason + ": " + e.message }

// stalled says the incident cannot go on: condition is the stage that
// refused (Planned, Remediated), reason and message what the user sees.
func stalled(condition, reason, message string) error {
	return &stalledError{condition: condition, reason: reason, message: message}
}

// waitingError asks to look again after a while: a hold, a cache lagging
// behind the API server.
type waitingError struct {
	after time.Duration
	why   string
}

func (e *waitingError) Error() string { return "waiting " + e.after.String() + ": " + e.why }

func waitFor(after time.Duration, why string) error { return &waitingError{after: after, why: why} }

// settle turns what a pass ended with into the reconcile's result.
func (r *Reconciler) settle(p *pass, err error) (reconcile.Result, error) {
	var stall *stalledError
	var wait *waitingError
	switch {
	case err == nil:
		return reconcile.Result{RequeueAfter: p.requeueAfter}, nil
	case errors.As(err, &stall):
		r.fail(p.inc, stall.condition, stall.reason, stall.message)
		return reconcile.Result{RequeueAfter: p.requeueAfter}, nil
	case errors.As(err, &wait):
		return reconcile.Result{RequeueAfter: soonest(p.requeueAfter, wait.after)}, nil
	default:
		return reconcile.Result{}, err
	}
}

// fail marks the incident Failed with a condition that says why.
func (r *Reconciler) fail(inc *riposte.Incident, condType, reason, msg string) {
	inc.Status.Phase = riposte.PhaseFailed
	setCondition(inc, condType, false, reason, msg)
	r.event(inc, corev1.EventTypeWarning, reason, "Remediate", msg)
}
