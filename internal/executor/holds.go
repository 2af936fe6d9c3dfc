package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
)

// maxGuardedAttempts bounds the read-check-write rounds of one hold write
// or restore. Each conflict means another write to the object landed, so
// rounds run out only under more concurrent writers than this; the error is
// then transient and the reconcile retries.
const maxGuardedAttempts = 16

// patched reports whether live already is as the merge patch c would make
// it. A hold is judged by its own entry: other holders may come and go.
func patched(live map[string]any, c actions.Change) bool {
	if c.Hold == nil {
		return contains(live, c.Patch)
	}
	u := unstructured.Unstructured{Object: live}
	_, inPlace := actions.HoldQuarantine(u.GetLabels(), u.GetAnnotations(), *c.Hold)
	return inPlace
}

// holdOf is the hold a change record writes, or nil for any other change.
// Records carry no separate field for it: the holder is what undo releases
// (restore) and the variant is its entry in the recorded patch, so records
// committed by earlier versions run the same way.
func holdOf(c *riposte.ChangeRecord) (*actions.Hold, error) {
	if c.Undo != riposte.UndoRelease || c.Method != string(actions.MergePatch) {
		return nil, nil
	}
	var patch map[string]any
	if err := json.Unmarshal([]byte(c.Request), &patch); err != nil {
		return nil, &PermanentError{Err: fmt.Errorf("the recorded patch of %s is unreadable: %w", c.Object, err)}
	}
	h := actions.HoldIn(patch, c.Restore)
	return &h, nil
}

// rewriteHolds changes a pod's hold set without losing another holder's
// write: it computes the patch from the pod as read and sends it with the
// resourceVersion read, so the API server refuses it (409) if anyone wrote
// the pod since; then it reads the pod directly and computes again. The
// first read is the informer cache's, which is current in the common case
// and costs no request; a cache that lags only costs the refused patch, and
// only a direct read decides that the pod is gone. It returns the patch
// written (nil when the pod already was so), or gone when the pod no longer
// exists or is not the one the change was planned for.
func (e *Executor) rewriteHolds(ctx context.Context, obj riposte.ObjectReference,
	next func(labels, annotations map[string]string) (map[string]any, bool)) (written map[string]any, gone bool, err error) {
	ref := &unstructured.Unstructured{}
	ref.SetAPIVersion(obj.APIVersion)
	ref.SetKind(obj.Kind)
	ref.SetNamespace(obj.Namespace)
	ref.SetName(obj.Name)
	gvk := ref.GroupVersionKind()
	cached := e.Cached != nil && e.Scheme != nil && e.Cached(gvk)
	for attempt := 1; ; attempt++ {
		var live client.Object
		fromCache := cached && attempt == 1
		if fromCache {
			// Typed, as the manager's informers hold it: an unstructured
			// read of the cache would start a second informer of every pod.
			if live, err = e.typed(gvk); err != nil {
				return nil, false, err
			}
			if err := e.Reader.Get(ctx, client.ObjectKeyFromObject(ref), live); err != nil ||
				(obj.UID != "" && string(live.GetUID()) != obj.UID) {
				// Not what the plan saw, or not there yet: ask the API server.
				fromCache = false
			}
		}
		if !fromCache {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(gvk)
			if err := e.Writer.Get(ctx, client.ObjectKeyFromObject(ref), u); err != nil {
				if apierrors.IsNotFound(err) {
					return nil, true, nil
				}
				return nil, false, classify(fmt.Errorf("reading %s: %w", obj, err))
			}
			if obj.UID != "" && string(u.GetUID()) != obj.UID {
				return nil, true, nil
			}
			live = u
		}
		patch, inPlace := next(live.GetLabels(), live.GetAnnotations())
		switch {
		case inPlace && fromCache:
			continue // a cache may show what has since gone: confirm it
		case inPlace:
			return nil, false, nil
		}
		guarded := maps.Clone(patch)
		md := maps.Clone(patch["metadata"].(map[string]any))
		md["resourceVersion"] = live.GetResourceVersion()
		guarded["metadata"] = md
		body, err := json.Marshal(guarded)
		if err != nil {
			return nil, false, err
		}
		err = e.Writer.Patch(ctx, ref.DeepCopy(), client.RawPatch("application/merge-patch+json", body), client.FieldOwner(actions.FieldManager))
		switch {
		case err == nil:
			return patch, false, nil
		case apierrors.IsNotFound(err) && !fromCache:
			return nil, true, nil
		case (apierrors.IsConflict(err) || apierrors.IsNotFound(err)) && attempt < maxGuardedAttempts:
			continue
		}
		return nil, false, classify(fmt.Errorf("writing the quarantine holders of %s: %w", obj, err))
	}
}

// typed is an empty object of the scheme's type for gvk.
func (e *Executor) typed(gvk schema.GroupVersionKind) (client.Object, error) {
	o, err := e.Scheme.New(gvk)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", gvk, err)
	}
	obj, ok := o.(client.Object)
	if !ok {
		return nil, fmt.Errorf("%s is not an object", gvk)
	}
	return obj, nil
}

// hold adds the change's hold to the pod as the pod is now, and records the
// patch it wrote.
func (e *Executor) hold(ctx context.Context, c *riposte.ChangeRecord, h *actions.Hold) error {
	written, gone, err := e.rewriteHolds(ctx, c.Object, func(labels, annotations map[string]string) (map[string]any, bool) {
		return actions.HoldQuarantine(labels, annotations, *h)
	})
	switch {
	case err != nil:
		return err
	case gone:
		// Never isolate a pod of the same name that was not approved.
		return &PermanentError{Err: fmt.Errorf("%s no longer exists (or was replaced) since the plan", c.Object)}
	case written != nil:
		return encode(&c.Request, written)
	}
	return nil
}

// release drops the incident's hold on a quarantined pod: the pod stays
// isolated while another incident holds it.
func (e *Executor) release(ctx context.Context, c *riposte.ChangeRecord) (string, error) {
	var stillHeld bool
	_, gone, err := e.rewriteHolds(ctx, c.Object, func(labels, annotations map[string]string) (map[string]any, bool) {
		patch, inPlace := actions.ReleaseQuarantine(labels, annotations, c.Restore)
		stillHeld = actions.StillHeld(patch)
		return patch, inPlace
	})
	switch {
	case err != nil:
		return "", err
	case gone:
		return c.Object.String() + " no longer exists; nothing to release", nil
	case stillHeld:
		return c.Object.String() + " stays isolated: another incident still holds it", nil
	}
	return "", nil
}
