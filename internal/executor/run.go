package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/notify"
	"github.com/riposte-dev/riposte/internal/silence"
)

// Run makes the step's changes that are not done yet, in order, from the
// record alone, marking each done. Every write is idempotent (apply and merge
// patch set absolute values; a delete or eviction carries the planned UID,
// so a retry finds the object gone rather than touching its replacement).
// Messages and silences leave the cluster, so persist stores the record right
// after each: a restart repeats at most the one a crash cut off (a message is
// sent again with the same Idempotency-Key, a silence is found again by its
// marker). idempotencyKey names the step.
func (e *Executor) Run(ctx context.Context, rec *riposte.StepRecord, idempotencyKey string, persist func(context.Context) error) error {
	for i := range rec.Changes {
		c := &rec.Changes[i]
		if c.Done {
			continue
		}
		if c.Method == string(actions.Send) || c.Method == string(actions.Silence) {
			key := fmt.Sprintf("%s/%d", idempotencyKey, i)
			if err := e.external(ctx, c, key); err != nil {
				return givingUp(rec, c, err)
			}
			wrote(key)
			c.Done = true
			if err := persist(ctx); err != nil {
				return err
			}
			continue
		}
		h, err := holdOf(c)
		if err != nil {
			return err
		}
		if h != nil {
			// Written against the pod as it is now, not as planned: another
			// incident may have added its hold since.
			if err := e.hold(ctx, c, h); err != nil {
				return fmt.Errorf("%s %s: %w", c.Method, c.Object, err)
			}
			wrote(fmt.Sprintf("%s/%d", idempotencyKey, i))
			c.Done = true
			continue
		}
		change, err := changeOf(c)
		if err != nil {
			return &PermanentError{Err: err}
		}
		// A delete or eviction that finds its object gone (or replaced) is
		// done: a retry after a crash lands here after the first attempt.
		if err := e.write(ctx, change, false); err != nil && !gone(change, err) {
			return classify(fmt.Errorf("%s %s: %w", c.Method, c.Object, err))
		}
		wrote(fmt.Sprintf("%s/%d", idempotencyKey, i))
		c.Done = true
	}
	return nil
}

// NotifyGiveUpAfter bounds how long a Notify step retries a receiver that
// keeps failing: past it the step fails, so onFailure decides what follows
// instead of the step staying Applying.
const NotifyGiveUpAfter = 10 * time.Minute

// givingUp turns a message's transient failure permanent once the step has
// tried for longer than NotifyGiveUpAfter.
func givingUp(rec *riposte.StepRecord, c *riposte.ChangeRecord, err error) error {
	if c.Method != string(actions.Send) || IsPermanent(err) || rec.StartedAt == nil || time.Since(rec.StartedAt.Time) < NotifyGiveUpAfter {
		return err
	}
	return &PermanentError{Err: fmt.Errorf("the webhook still fails %s after the step started; giving up: %w", NotifyGiveUpAfter, err)}
}

// external makes a change outside the cluster: a message or a silence.
func (e *Executor) external(ctx context.Context, c *riposte.ChangeRecord, key string) error {
	if c.Method == string(actions.Silence) {
		return e.silence(ctx, c, "riposte:"+key)
	}
	return e.send(ctx, c, key)
}

// gone reports that a delete or eviction found its object already removed,
// or replaced by a new object of the same name it must not touch.
func gone(c actions.Change, err error) bool {
	if c.Op != actions.Delete && c.Op != actions.Evict {
		return false
	}
	return apierrors.IsNotFound(err) || apierrors.IsConflict(err)
}

// changeOf rebuilds the change a record describes.
func changeOf(c *riposte.ChangeRecord) (actions.Change, error) {
	ref := &unstructured.Unstructured{}
	ref.SetAPIVersion(c.Object.APIVersion)
	ref.SetKind(c.Object.Kind)
	ref.SetNamespace(c.Object.Namespace)
	ref.SetName(c.Object.Name)
	change := actions.Change{Op: actions.Operation(c.Method), Object: ref, UID: c.Object.UID}
	switch change.Op {
	case actions.Apply:
		if err := json.Unmarshal([]byte(c.Request), &change.Object.Object); err != nil {
			return change, fmt.Errorf("the recorded apply body of %s is unreadable: %w", c.Object, err)
		}
	case actions.MergePatch:
		if err := json.Unmarshal([]byte(c.Request), &change.Patch); err != nil {
			return change, fmt.Errorf("the recorded patch of %s is unreadable: %w", c.Object, err)
		}
	}
	return change, nil
}

func (e *Executor) send(ctx context.Context, c *riposte.ChangeRecord, key string) error {
	var req sendRequest
	if err := json.Unmarshal([]byte(c.Request), &req); err != nil {
		return &PermanentError{Err: fmt.Errorf("the recorded message is unreadable: %w", err)}
	}
	if e.Post == nil {
		return &PermanentError{Err: errors.New("this manager cannot send notifications")}
	}
	url, err := e.secretValue(ctx, req.Namespace, req.Secret)
	if err != nil {
		return err
	}
	if err := e.Post(ctx, url, req.Body, key); err != nil {
		if notify.IsPermanent(err) {
			return &PermanentError{Err: err}
		}
		return err
	}
	return nil
}

// Undo puts back what the step's changes did, newest first: prior values are
// merged back, objects Riposte created are deleted, objects it deleted are
// created again. Shared objects and changes that cannot be undone (an
// eviction, a restart, a message) are left, and said so in the returned
// notes. Undoing twice is harmless: each undo write is idempotent.
func (e *Executor) Undo(ctx context.Context, rec *riposte.StepRecord) (notes []string, err error) {
	for i := len(rec.Changes) - 1; i >= 0; i-- {
		c := &rec.Changes[i]
		if !c.Done {
			continue
		}
		ref := &unstructured.Unstructured{}
		ref.SetAPIVersion(c.Object.APIVersion)
		ref.SetKind(c.Object.Kind)
		ref.SetNamespace(c.Object.Namespace)
		ref.SetName(c.Object.Name)
		switch c.Undo {
		case riposte.UndoRestore:
			var note string
			if note, err = e.restore(ctx, c, ref); note != "" {
				notes = append(notes, note)
			}
		case riposte.UndoRelease:
			var note string
			if note, err = e.release(ctx, c); note != "" {
				notes = append(notes, note)
			}
		case riposte.UndoDelete:
			err = client.IgnoreNotFound(e.Writer.Delete(ctx, ref))
		case riposte.UndoRecreate:
			obj := &unstructured.Unstructured{}
			if err = json.Unmarshal([]byte(c.Restore), &obj.Object); err == nil {
				err = e.Writer.Create(ctx, obj, client.FieldOwner(actions.FieldManager))
				if apierrors.IsAlreadyExists(err) {
					notes, err = append(notes, c.Object.String()+" exists again; left as it is"), nil
				}
			}
		case riposte.UndoExpire:
			if e.Silences == nil {
				err = &PermanentError{Err: errors.New("Riposte was started without --alertmanager-url, so it cannot expire silence " + c.Restore)}
			} else if c.Restore != "" {
				err = e.Silences.Expire(ctx, c.Restore)
			}
		case riposte.UndoKeep:
			notes = append(notes, c.Object.String()+" is shared with other incidents; left in place")
		default:
			if c.Operation != riposte.OperationUnchanged {
				notes = append(notes, string(c.Operation)+" "+c.Object.String()+" cannot be undone")
			}
		}
		if err != nil {
			return notes, classify(fmt.Errorf("undoing %s %s: %w", c.Operation, c.Object, err))
		}
	}
	return notes, nil
}

// silence creates the step's silence, unless one made before a crash is
// found by the marker in its comment: the silence exists once.
func (e *Executor) silence(ctx context.Context, c *riposte.ChangeRecord, marker string) error {
	if e.Silences == nil {
		return &PermanentError{Err: errors.New("Riposte was started without --alertmanager-url, so it cannot silence alerts")}
	}
	var req actions.SilenceRequest
	if err := json.Unmarshal([]byte(c.Request), &req); err != nil {
		return &PermanentError{Err: fmt.Errorf("the recorded silence is unreadable: %w", err)}
	}
	id, found, err := e.Silences.Find(ctx, marker)
	if err != nil {
		return classifySilence(err)
	}
	if !found {
		now := time.Now()
		var matchers []silence.Matcher
		for _, k := range sortedKeys(req.Labels) {
			matchers = append(matchers, silence.Matcher{Name: k, Value: req.Labels[k], IsEqual: true})
		}
		comment := strings.TrimSpace(req.Comment + " (Riposte handles this alert; " + marker + ")")
		if id, err = e.Silences.Create(ctx, silence.Silence{Matchers: matchers, StartsAt: now, EndsAt: now.Add(req.Duration),
			CreatedBy: "riposte", Comment: comment}); err != nil {
			return classifySilence(err)
		}
	}
	c.Restore = id
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// changedSince reports whether the object no longer holds what the change
// wrote (someone changed it afterwards), or is gone. It is read directly, as
// the playbook's account: an undo must not act on a stale cache.
// It returns the resourceVersion it read, so the restore is refused if
// the object changes after this check.
func (e *Executor) changedSince(ctx context.Context, c *riposte.ChangeRecord, ref *unstructured.Unstructured) (changed, gone bool, resourceVersion string, err error) {
	var wrote map[string]any
	if err := json.Unmarshal([]byte(c.Request), &wrote); err != nil {
		return false, false, "", &PermanentError{Err: fmt.Errorf("the recorded change to %s is unreadable: %w", c.Object, err)}
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(ref.GroupVersionKind())
	if err := e.Writer.Get(ctx, client.ObjectKeyFromObject(ref), live); err != nil {
		if apierrors.IsNotFound(err) {
			return false, true, "", nil
		}
		return false, false, "", classify(fmt.Errorf("reading %s before undoing: %w", c.Object, err))
	}
	if c.Method == string(actions.Apply) {
		wrote = withoutIdentity(wrote)
	}
	return !contains(live.Object, wrote), false, live.GetResourceVersion(), nil
}

// restore merges the prior values back, unless someone changed what
// Riposte set since. The check and the write are one: the patch carries the
// resourceVersion the check read, and a change in between (409) is checked
// again, so a later decision is never overwritten.
func (e *Executor) restore(ctx context.Context, c *riposte.ChangeRecord, ref *unstructured.Unstructured) (string, error) {
	var patch map[string]any
	if err := json.Unmarshal([]byte(c.Restore), &patch); err != nil {
		return "", &PermanentError{Err: fmt.Errorf("the recorded prior state of %s is unreadable: %w", c.Object, err)}
	}
	md, _ := patch["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		patch["metadata"] = md
	}
	for attempt := 1; ; attempt++ {
		changed, gone, rv, err := e.changedSince(ctx, c, ref)
		switch {
		case err != nil:
			return "", err
		case gone:
			return c.Object.String() + " no longer exists; nothing to restore", nil
		case changed:
			// Someone changed what Riposte set after it did: their change
			// wins, and the person undoing is told.
			return c.Object.String() + " was changed by someone else since Riposte's change; left as it is", nil
		}
		md["resourceVersion"] = rv
		body, err := json.Marshal(patch)
		if err != nil {
			return "", err
		}
		err = e.Writer.Patch(ctx, ref.DeepCopy(), client.RawPatch("application/merge-patch+json", body), client.FieldOwner(actions.FieldManager))
		switch {
		case err == nil:
			return "", nil
		case apierrors.IsNotFound(err):
			return c.Object.String() + " no longer exists; nothing to restore", nil
		case apierrors.IsConflict(err) && attempt < maxGuardedAttempts:
			continue
		}
		return "", err
	}
}
