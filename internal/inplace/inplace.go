// Package inplace says which of an incident's changes are still in the
// world: those only its undo removes, for which the incident is the only
// record. Deletion waits on them, and retention leaves them alone.
package inplace

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Any reports whether any step of the incident left changes in place.
func Any(inc *riposte.Incident) bool {
	for i := range inc.Status.Steps {
		if Step(&inc.Status.Steps[i]) {
			return true
		}
	}
	return false
}

// Step reports whether a step left changes that only its undo removes.
func Step(rec *riposte.StepRecord) bool {
	switch rec.Phase {
	case riposte.StepApplied, riposte.StepApplying, riposte.StepFailed:
	default:
		return false
	}
	return slices.ContainsFunc(rec.Changes, func(c riposte.ChangeRecord) bool { return Kept(rec, c) })
}

// Kept reports whether a change is in place until it is undone. A step cut
// short while applying (a crash) may have made a write it had not yet
// marked done: it counts as in place.
func Kept(rec *riposte.StepRecord, c riposte.ChangeRecord) bool {
	return (c.Done || rec.Phase == riposte.StepApplying) && c.Undo != riposte.UndoNone && c.Undo != riposte.UndoKeep && c.Undo != ""
}

// Gone reports whether every change a step left in place is on an object
// that no longer exists or was replaced, asking the reader (the API server
// itself, not a cache): then the step keeps nothing. A deletion's record is
// what would re-create the object, so it is never gone, and an object the
// reader may not see counts as there, to be safe.
func Gone(ctx context.Context, reader client.Reader, rec *riposte.StepRecord) (bool, error) {
	for _, c := range rec.Changes {
		if !Kept(rec, c) {
			continue
		}
		if c.Undo == riposte.UndoRecreate {
			return false, nil
		}
		obj := &metav1.PartialObjectMetadata{}
		obj.SetGroupVersionKind(schema.FromAPIVersionAndKind(c.Object.APIVersion, c.Object.Kind))
		err := reader.Get(ctx, client.ObjectKey{Namespace: c.Object.Namespace, Name: c.Object.Name}, obj)
		switch {
		case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
			continue
		case apierrors.IsForbidden(err):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("reading %s: %w", c.Object.String(), err)
		}
		if c.Object.UID == "" || string(obj.UID) == c.Object.UID {
			return false, nil // still there
		}
	}
	return true, nil
}
