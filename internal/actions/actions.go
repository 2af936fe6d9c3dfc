// Package actions holds Riposte's remediation catalogue. An action is a
// planner: it turns an incident and a step's parameters into changes (objects
// to apply, merge patches, deletions, evictions, messages). It never writes;
// the executor dry-runs, applies, records and undoes every change the same
// way, so adding an action means writing a planner and its tests.
package actions

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/expr"
)

// FieldManager is the field manager of every remediation write, so the
// fields Riposte set are visible in managedFields.
const FieldManager = "riposte"

// Operation is the kind of write a change makes.
type Operation string

const (
	// Apply is a server-side apply of Object (only the fields Riposte owns).
	Apply Operation = "Apply"
	// MergePatch is a JSON merge patch of Patch onto the existing Object.
	MergePatch Operation = "MergePatch"
	// Delete deletes Object, on the condition that its UID is still UID.
	Delete Operation = "Delete"
	// Evict evicts the pod Object through the eviction API, so
	// PodDisruptionBudgets are respected.
	Evict Operation = "Evict"
	// Send posts Message to a webhook outside the cluster.
	Send Operation = "Send"
	// Silence creates an Alertmanager silence for the incident's alert.
	Silence Operation = "Silence"
)

// External reports whether the change acts outside the cluster (a message,
// a silence) rather than writing a Kubernetes object.
func (c Change) External() bool { return c.Op == Send || c.Op == Silence }

// Change is one write a step wants made.
type Change struct {
	Op Operation
	// Object is the apply body for Apply; for the other operations it names
	// the object (apiVersion, kind, namespace, name).
	Object *unstructured.Unstructured
	// Patch is the merge patch for MergePatch.
	Patch map[string]any
	// UID, for Delete and Evict, is the object the plan was made for: a
	// replacement with the same name is never deleted by a retry.
	UID string
	// Message is what Send posts.
	Message *Message
	// Silence is what a Silence change asks Alertmanager for.
	Silence *SilenceRequest
	// Shared marks an object other incidents rely on too (the namespace's
	// quarantine policy): undo leaves it in place.
	Shared bool
	// Irreversible marks a change undo cannot put back (an eviction, a
	// restart, a message).
	Irreversible bool
	// Hold, on a quarantine label, is the incident's entry in the pod's hold
	// set. The executor writes it against the pod as it is when written, not
	// Patch, and undo releases just this hold (rather than restoring the
	// prior labels, which would break another incident's isolation of the
	// same pod).
	Hold *Hold
	// TakesPodOut marks a change that takes one pod out of service
	// (isolating, deleting or evicting it), for the workload budget.
	TakesPodOut bool
	// Summary says in a line what the change does, for the approver.
	Summary string
}

// Message is a notification to post.
type Message struct {
	// URLSecret holds the webhook URL, in SecretNamespace; read as the
	// playbook's service account at send time and never recorded.
	URLSecret       riposte.SecretKeyRef
	SecretNamespace string
	// Body is the JSON document posted.
	Body map[string]any
}

// Ref returns a reference to the changed object.
func (c Change) Ref() riposte.ObjectReference {
	return riposte.ObjectReference{
		APIVersion: c.Object.GetAPIVersion(), Kind: c.Object.GetKind(),
		Namespace: c.Object.GetNamespace(), Name: c.Object.GetName(), UID: c.UID,
	}
}

// Input is what a planner sees.
type Input struct {
	Incident *riposte.Incident
	Step     riposte.Step
	// Target is the incident's resolved target, with its UID.
	Target *riposte.ObjectReference
	// Reader reads the cluster as cached by the manager.
	Reader client.Reader
	Scheme *runtime.Scheme
	Mapper meta.RESTMapper
	// PlaybookNamespace is where the playbook and its Secrets live.
	PlaybookNamespace string

	incident map[string]any
}

// Render fills a template parameter from the incident.
func (in *Input) Render(template string) (string, error) {
	if in.incident == nil {
		obj, err := expr.IncidentObject(in.Incident)
		if err != nil {
			return "", err
		}
		in.incident = obj
	}
	s, err := expr.Render(template, in.incident)
	if err != nil {
		return "", userErrorf("%v", err)
	}
	return s, nil
}

// Planner computes the changes of one action.
type Planner interface {
	Plan(ctx context.Context, in *Input) ([]Change, error)
}

// PlannerFunc adapts a function to Planner.
type PlannerFunc func(ctx context.Context, in *Input) ([]Change, error)

// Plan implements Planner.
func (f PlannerFunc) Plan(ctx context.Context, in *Input) ([]Change, error) { return f(ctx, in) }

// UserError is a planning failure only the playbook's author or the
// incident's data can fix; retrying does not help.
type UserError struct{ Msg string }

func (e *UserError) Error() string { return e.Msg }

func userErrorf(format string, args ...any) error {
	return &UserError{Msg: fmt.Sprintf(format, args...)}
}

// MaxChangesPerStep is how many changes one step may make: each is recorded
// in the incident's status (status.steps[].changes, at most 128).
const MaxChangesPerStep = 128

func tooMany(what string, n int) error {
	return userErrorf("%s would need %d changes; one step records at most %d, so it is refused rather than done in part", what, n, MaxChangesPerStep)
}

// Catalogue maps each action to its planner.
var Catalogue = map[riposte.ActionType]Planner{
	riposte.ActionIsolatePod:      PlannerFunc(isolatePod),
	riposte.ActionIsolateWorkload: PlannerFunc(isolateWorkload),
	riposte.ActionDeletePod:       PlannerFunc(deletePod),
	riposte.ActionEvictPod:        PlannerFunc(evictPod),
	riposte.ActionScaleWorkload:   PlannerFunc(scaleWorkload),
	riposte.ActionRolloutRestart:  PlannerFunc(rolloutRestart),
	riposte.ActionCordonNode:      PlannerFunc(cordonNode),
	riposte.ActionDrainNode:       PlannerFunc(drainNode),
	riposte.ActionSuspendCronJob:  PlannerFunc(suspendCronJob),
	riposte.ActionSuspendJob:      PlannerFunc(suspendJob),
	riposte.ActionRevokeBinding:   PlannerFunc(revokeBinding),
	riposte.ActionLabel:           PlannerFunc(label),
	riposte.ActionAnnotate:        PlannerFunc(annotate),
	riposte.ActionTaint:           PlannerFunc(taint),
	riposte.ActionApplyManifest:   PlannerFunc(applyManifest),
	riposte.ActionPatch:           PlannerFunc(patchTarget),
	riposte.ActionNotify:          PlannerFunc(notify),
	riposte.ActionSilence:         PlannerFunc(silence),
}

// patchOf is a merge patch of ref.
func patchOf(ref *riposte.ObjectReference, patch map[string]any, summary string) Change {
	return Change{Op: MergePatch, Object: object(ref.APIVersion, ref.Kind, ref.Namespace, ref.Name), Patch: patch, Summary: summary}
}

// object builds the identity part of an unstructured object.
func object(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

func describe(t *riposte.ObjectReference) string {
	if t == nil {
		return "not resolved"
	}
	return t.String()
}
