package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
)

// maxRecorded bounds one change's recorded request or prior state; a change
// whose prior state does not fit is refused rather than applied without a
// way back.
const maxRecorded = 32768

// sendRequest is what a Send change records: where the URL is, and the body.
type sendRequest struct {
	Secret    riposte.SecretKeyRef `json:"secret"`
	Namespace string               `json:"namespace"`
	Body      map[string]any       `json:"body"`
}

// Commit turns an approved plan into step records that hold, for each
// change, exactly what will be written and the prior state undo needs. The
// caller persists them before the first write: from then on the plan runs
// from the records, so a restart completes it without planning again and
// without capturing a prior state that already contains Riposte's own writes.
func (e *Executor) Commit(ctx context.Context, plan *Plan) ([]riposte.StepRecord, error) {
	records := make([]riposte.StepRecord, 0, len(plan.Steps))
	for _, sp := range plan.Steps {
		rec := riposte.StepRecord{Name: sp.Step.Name, Action: sp.Step.Action, Phase: riposte.StepPending, Target: sp.Target}
		for _, c := range sp.Changes {
			cr, err := e.record(ctx, c)
			if err != nil {
				return nil, fmt.Errorf("step %s: %w", sp.Step.Name, err)
			}
			rec.Changes = append(rec.Changes, cr)
		}
		records = append(records, rec)
	}
	return records, nil
}

func (e *Executor) record(ctx context.Context, c actions.Change) (riposte.ChangeRecord, error) {
	cr := riposte.ChangeRecord{Object: c.Ref(), FieldManager: actions.FieldManager, Method: string(c.Op), Summary: c.Summary, Undo: riposte.UndoNone}
	var request any
	switch c.Op {
	case actions.Apply:
		request = c.Object.Object
	case actions.MergePatch:
		request = c.Patch
	case actions.Send:
		request = sendRequest{Secret: c.Message.URLSecret, Namespace: c.Message.SecretNamespace, Body: c.Message.Body}
		cr.Operation = riposte.OperationSend
		return cr, encode(&cr.Request, request)
	case actions.Silence:
		// Undone by expiring it; its ID is recorded once Alertmanager gives one.
		cr.Operation, cr.Undo = riposte.OperationSilence, riposte.UndoExpire
		return cr, encode(&cr.Request, c.Silence)
	}
	if request != nil {
		if err := encode(&cr.Request, request); err != nil {
			return cr, err
		}
	}
	live, err := e.live(ctx, c.Object)
	if err != nil {
		return cr, err
	}
	cr.ExistedBefore = live != nil
	switch c.Op {
	case actions.Apply:
		cr.Operation = riposte.OperationCreate
		if live != nil {
			cr.Operation = riposte.OperationPatch
			if contains(live, c.Object.Object) {
				return unchanged(cr), nil
			}
		}
		switch {
		case c.Irreversible:
		case c.Shared:
			cr.Undo = riposte.UndoKeep
		case live == nil:
			cr.Undo = riposte.UndoDelete
		default:
			cr.Undo = riposte.UndoRestore
			err = encode(&cr.Restore, prior(live, withoutIdentity(c.Object.Object)))
		}
	case actions.MergePatch:
		cr.Operation = riposte.OperationPatch
		if live == nil {
			return cr, &PermanentError{Err: fmt.Errorf("%s does not exist", c.Ref())}
		}
		if patched(live, c) {
			if c.Hold != nil {
				// The pod lists this holder already: a pass that was cut
				// off before storing its record wrote it (a hold is its
				// own record, on the pod). It is this incident's to release.
				cr.Undo, cr.Restore, cr.Done = riposte.UndoRelease, c.Hold.Holder, true
				cr.Summary = "found in place (written before a restart): " + cr.Summary
				return cr, nil
			}
			return unchanged(cr), nil
		}
		switch {
		case c.Hold != nil:
			cr.Undo, cr.Restore = riposte.UndoRelease, c.Hold.Holder
		case !c.Irreversible:
			cr.Undo = riposte.UndoRestore
			err = encode(&cr.Restore, prior(live, c.Patch))
		}
	case actions.Delete, actions.Evict:
		cr.Operation = riposte.OperationDelete
		if c.Op == actions.Evict {
			cr.Operation = riposte.OperationEvict
		}
		if live == nil || (c.UID != "" && uidOf(live) != c.UID) {
			cr.Summary = "already gone: " + c.Summary
			return unchanged(cr), nil
		}
		if c.Op == actions.Delete && !c.Irreversible {
			cr.Undo = riposte.UndoRecreate
			err = encode(&cr.Restore, recreatable(live, c.Object))
		}
	}
	return cr, err
}

// SelfRecording reports whether records need no write-ahead: a crash
// after their writes and before they are stored loses nothing, because
// planning again finds each change either in place with its own record (a
// hold names its incident on the pod) or as one nothing undoes (a shared
// object, a change already in place). Any other change is stored before it
// is made: its prior state, or the fact of a deletion or a message, would
// be lost.
func SelfRecording(records []riposte.StepRecord) bool {
	for _, rec := range records {
		for _, c := range rec.Changes {
			switch {
			case c.Operation == riposte.OperationUnchanged:
			case c.Undo == riposte.UndoRelease && c.Method == string(actions.MergePatch):
			case c.Undo == riposte.UndoKeep && c.Method == string(actions.Apply):
			default:
				return false
			}
		}
	}
	return true
}

func unchanged(cr riposte.ChangeRecord) riposte.ChangeRecord {
	cr.Operation, cr.Done, cr.Undo, cr.Restore = riposte.OperationUnchanged, true, riposte.UndoNone, ""
	if !strings.HasPrefix(cr.Summary, "already") {
		cr.Summary = "already in place: " + cr.Summary
	}
	return cr
}

func encode(into *string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxRecorded {
		return &PermanentError{Err: fmt.Errorf("the change or its prior state is %d bytes, more than the %d Riposte records; refusing a change it could not undo", len(b), maxRecorded)}
	}
	*into = string(b)
	return nil
}

// withoutIdentity drops what names the object from an apply body: those
// fields are never restored.
func withoutIdentity(body map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range body {
		switch k {
		case "apiVersion", "kind":
		case "metadata":
			md := map[string]any{}
			for mk, mv := range v.(map[string]any) {
				if mk != "name" && mk != "namespace" {
					md[mk] = mv
				}
			}
			if len(md) > 0 {
				out[k] = md
			}
		default:
			out[k] = v
		}
	}
	return out
}

// prior is the merge patch that puts back, in live, every field want sets:
// the live value where there was one, null (remove) where there was none.
func prior(live, want map[string]any) map[string]any {
	out := map[string]any{}
	for k, w := range want {
		l, has := live[k]
		wm, wIsMap := w.(map[string]any)
		lm, lIsMap := l.(map[string]any)
		switch {
		case wIsMap && (lIsMap || !has || l == nil):
			out[k] = prior(lm, wm)
		case has:
			out[k] = l
		default:
			out[k] = nil
		}
	}
	return out
}

// recreatable is the deleted object as it can be created again: without
// its status and the metadata the API server assigns.
func recreatable(live map[string]any, ref *unstructured.Unstructured) map[string]any {
	obj := map[string]any{}
	for k, v := range live {
		if k != "status" {
			obj[k] = v
		}
	}
	obj["apiVersion"], obj["kind"] = ref.GetAPIVersion(), ref.GetKind()
	if md, ok := obj["metadata"].(map[string]any); ok {
		clean := map[string]any{}
		for k, v := range md {
			switch k {
			case "uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds":
			default:
				clean[k] = v
			}
		}
		obj["metadata"] = clean
	}
	return obj
}

// webhookURL reads a Notify step's URL as the playbook's account.
func (e *Executor) webhookURL(ctx context.Context, m *actions.Message) (string, error) {
	return e.secretValue(ctx, m.SecretNamespace, m.URLSecret)
}

func (e *Executor) secretValue(ctx context.Context, namespace string, ref riposte.SecretKeyRef) (string, error) {
	var s corev1.Secret
	if err := e.Writer.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return "", &PermanentError{Err: fmt.Errorf("reading Secret %s/%s for the webhook URL: %w", namespace, ref.Name, err)}
		}
		return "", fmt.Errorf("reading Secret %s/%s: %w", namespace, ref.Name, err)
	}
	v, ok := s.Data[ref.Key]
	if !ok || len(v) == 0 {
		return "", &PermanentError{Err: fmt.Errorf("Secret %s/%s has no key %q", namespace, ref.Name, ref.Key)}
	}
	return strings.TrimSpace(string(v)), nil
}
