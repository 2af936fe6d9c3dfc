// Package actions holds Riposte's remediation catalogue. An action is a
// planner: it turns an incident's target and a step's parameters into the
// objects to apply. It never writes; the executor dry-runs, applies, records
// and (later) undoes every action the same way.
package actions

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// FieldManager is the server-side apply field manager of every remediation
// write, so undo can release exactly what Riposte set.
const FieldManager = "riposte"

// Change is one object a step wants applied with server-side apply.
type Change struct {
	// Object is the apply body: only the fields Riposte owns.
	Object *unstructured.Unstructured
	// Summary says in a line what the change does, for the approver.
	Summary string
}

// Ref returns a reference to the changed object.
func (c Change) Ref() riposte.ObjectReference {
	return riposte.ObjectReference{
		APIVersion: c.Object.GetAPIVersion(), Kind: c.Object.GetKind(),
		Namespace: c.Object.GetNamespace(), Name: c.Object.GetName(),
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
}

// Planner computes the changes of one action.
type Planner interface {
	Plan(ctx context.Context, in Input) ([]Change, error)
}

// UserError is a planning failure only the playbook's author or the
// incident's data can fix; retrying does not help.
type UserError struct{ Msg string }

func (e *UserError) Error() string { return e.Msg }

func userErrorf(format string, args ...any) error {
	return &UserError{Msg: fmt.Sprintf(format, args...)}
}

// Catalogue maps each action to its planner.
var Catalogue = map[riposte.ActionType]Planner{
	riposte.ActionIsolatePod: IsolatePod{},
}
