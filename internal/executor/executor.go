// Package executor turns a playbook's steps into a plan the API server has
// dry-run, commits it with the prior state of everything it will change,
// applies it change by change as the playbook's service account, and undoes
// it. It is the one place where remediation writes happen, for every action.
package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/silence"
)

// StepPlan is one step with the changes its action computed.
type StepPlan struct {
	Step    riposte.Step
	Target  *riposte.ObjectReference
	Changes []actions.Change
	// existed records, per change, whether the object was there at plan time.
	existed []bool
	// unchanged records, per change, that the live object already is as the
	// change would make it: there is nothing to dry-run or apply.
	unchanged []bool
}

// Plan is the full set of changes for an incident, and its hash.
type Plan struct {
	Steps []StepPlan
	Hash  string
	// DryRun: the API server accepted every write of the plan in a dry run.
	DryRun bool
}

// Executor plans, applies and undoes remediation steps.
type Executor struct {
	// Reader is the manager's cached reader, for planning and prior state.
	Reader client.Reader
	// Writer sends dry runs, writes and Secret reads as the playbook's
	// service account, so that account's RBAC bounds what a playbook does.
	Writer client.Client
	Scheme *runtime.Scheme
	Mapper meta.RESTMapper
	// Cached reports the kinds the manager watches; others are read directly
	// as the playbook's account rather than starting an informer the
	// manager's RBAC may not allow.
	Cached func(schema.GroupVersionKind) bool
	// Post sends a Notify message to url; nil refuses Notify steps.
	Post func(ctx context.Context, url string, body any, idempotencyKey string) error
	// Silences is Alertmanager's API; nil refuses Silence steps.
	Silences Silences
}

// Silences is what the executor needs of Alertmanager.
type Silences interface {
	Ready(ctx context.Context) error
	Create(ctx context.Context, s silence.Silence) (string, error)
	Find(ctx context.Context, marker string) (string, bool, error)
	Expire(ctx context.Context, id string) error
	AlertFiring(ctx context.Context, alertName, fingerprint string) (bool, error)
}

// BuildMode says whether planning asks the API server for a dry run.
type BuildMode int

const (
	// WithDryRun has the API server accept every change without persisting
	// it: the plan a gate shows.
	WithDryRun BuildMode = iota
	// HashOnly recomputes the plan to compare it with the approved hash just
	// before committing it; the writes themselves are then the API server's check.
	HashOnly
	// DryRunIfSeveral is for a plan approved by policy, which runs at once:
	// a plan of one write is checked by that write itself, as the same
	// account, so it is not dry-run; a plan of several is, so that one the
	// API server would refuse part of never runs in part.
	DryRunIfSeveral
)

// Build plans every step. An *actions.UserError or a PermanentError means the
// plan cannot be built until something changes.
func (e *Executor) Build(ctx context.Context, inc *riposte.Incident, pb *riposte.Playbook, target *riposte.ObjectReference, mode BuildMode) (*Plan, error) {
	plan := &Plan{}
	for _, step := range pb.Spec.Steps {
		planner, ok := actions.Catalogue[step.Action]
		if !ok {
			return nil, &actions.UserError{Msg: fmt.Sprintf("step %s: unknown action %q", step.Name, step.Action)}
		}
		in := &actions.Input{Incident: inc, Step: step, Target: target, Reader: e.Reader,
			Scheme: e.Scheme, Mapper: e.Mapper, PlaybookNamespace: pb.Namespace}
		changes, err := planner.Plan(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("step %s: %w", step.Name, err)
		}
		sp := StepPlan{Step: step, Target: target, Changes: changes}
		for _, c := range changes {
			checkMode := mode
			if mode == DryRunIfSeveral {
				checkMode = HashOnly
			}
			existed, unchanged, err := e.check(ctx, c, checkMode)
			if err != nil {
				return nil, fmt.Errorf("step %s: %w", step.Name, err)
			}
			sp.existed = append(sp.existed, existed)
			sp.unchanged = append(sp.unchanged, unchanged)
		}
		plan.Steps = append(plan.Steps, sp)
	}
	if mode == DryRunIfSeveral && plan.Writes() > 1 {
		for _, sp := range plan.Steps {
			for i, c := range sp.Changes {
				if sp.unchanged[i] {
					continue
				}
				if _, _, err := e.check(ctx, c, WithDryRun); err != nil {
					return nil, fmt.Errorf("step %s: %w", sp.Step.Name, err)
				}
			}
		}
	}
	plan.DryRun = mode == WithDryRun || (mode == DryRunIfSeveral && plan.Writes() > 1)
	hash, err := hashOf(plan.Steps)
	if err != nil {
		return nil, err
	}
	plan.Hash = hash
	return plan, nil
}

// Writes counts the changes the plan makes that are not in place already.
func (p *Plan) Writes() int {
	n := 0
	for _, sp := range p.Steps {
		for i := range sp.Changes {
			if !sp.unchanged[i] {
				n++
			}
		}
	}
	return n
}

// check reads the changed object, reports whether it exists and whether it
// already is as the change would make it, and otherwise (in WithDryRun mode)
// has the API server accept the change as the playbook's account.
func (e *Executor) check(ctx context.Context, c actions.Change, mode BuildMode) (existed, unchanged bool, err error) {
	switch c.Op {
	case actions.Send:
		if mode == WithDryRun {
			if _, err := e.webhookURL(ctx, c.Message); err != nil {
				return false, false, err
			}
		}
		return false, false, nil
	case actions.Silence:
		if e.Silences == nil {
			return false, false, &PermanentError{Err: errors.New("Riposte was started without --alertmanager-url, so it cannot silence alerts")}
		}
		if mode == WithDryRun {
			if err := e.Silences.Ready(ctx); err != nil {
				return false, false, classifySilence(err)
			}
		}
		return false, false, nil
	}
	live, err := e.live(ctx, c.Object)
	if err != nil {
		return false, false, err
	}
	existed = live != nil
	switch c.Op {
	case actions.Apply:
		unchanged = existed && contains(live, c.Object.Object)
	case actions.MergePatch:
		if !existed {
			return false, false, &PermanentError{Err: fmt.Errorf("%s does not exist", c.Ref())}
		}
		unchanged = patched(live, c)
	case actions.Delete, actions.Evict:
		unchanged = !existed || (c.UID != "" && string(uidOf(live)) != c.UID)
	}
	if mode == HashOnly || unchanged {
		return existed, unchanged, nil
	}
	if err := e.write(ctx, c, true); err != nil {
		return false, false, classify(fmt.Errorf("dry run of %s refused: %w", c.Ref(), err))
	}
	return existed, false, nil
}

// live reads the object as a map, or nil when it does not exist. Kinds the
// manager knows come from its informer cache; others are read directly as the
// playbook's account (ApplyManifest of a custom resource).
func (e *Executor) live(ctx context.Context, ref *unstructured.Unstructured) (map[string]any, error) {
	gvk := ref.GroupVersionKind()
	key := client.ObjectKeyFromObject(ref)
	var obj client.Object
	var reader client.Reader = e.Reader
	if typed, err := e.Scheme.New(gvk); err == nil && e.Cached != nil && e.Cached(gvk) {
		obj = typed.(client.Object)
	} else {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		obj, reader = u, e.Writer
	}
	if err := reader.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, classify(fmt.Errorf("reading %s %s: %w", gvk.Kind, key, err))
	}
	return runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
}

func uidOf(live map[string]any) string {
	uid, _, _ := unstructured.NestedString(live, "metadata", "uid")
	return uid
}

// write makes one change, or has the API server check it when dryRun.
func (e *Executor) write(ctx context.Context, c actions.Change, dryRun bool) error {
	var dry []string
	applyOpts := []client.ApplyOption{client.FieldOwner(actions.FieldManager), client.ForceOwnership}
	patchOpts := []client.PatchOption{client.FieldOwner(actions.FieldManager)}
	delOpts := []client.DeleteOption{client.Preconditions{UID: uidPtr(c.UID)}}
	if dryRun {
		dry = []string{metav1.DryRunAll}
		applyOpts, patchOpts, delOpts = append(applyOpts, client.DryRunAll), append(patchOpts, client.DryRunAll), append(delOpts, client.DryRunAll)
	}
	switch c.Op {
	case actions.Apply:
		return e.Writer.Apply(ctx, client.ApplyConfigurationFromUnstructured(c.Object.DeepCopy()), applyOpts...)
	case actions.MergePatch:
		body, err := json.Marshal(c.Patch)
		if err != nil {
			return err
		}
		return e.Writer.Patch(ctx, c.Object.DeepCopy(), client.RawPatch("application/merge-patch+json", body), patchOpts...)
	case actions.Delete:
		return e.Writer.Delete(ctx, c.Object.DeepCopy(), delOpts...)
	case actions.Evict:
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: c.Object.GetNamespace(), Name: c.Object.GetName()}}
		eviction := &policyv1.Eviction{ObjectMeta: pod.ObjectMeta,
			DeleteOptions: &metav1.DeleteOptions{DryRun: dry, Preconditions: &metav1.Preconditions{UID: uidPtr(c.UID)}}}
		err := e.Writer.SubResource("eviction").Create(ctx, pod, eviction)
		if apierrors.IsTooManyRequests(err) {
			// A PodDisruptionBudget forbids it now: that is the answer, not a hiccup.
			return &PermanentError{Err: fmt.Errorf("eviction refused (a PodDisruptionBudget protects the pod): %w", err)}
		}
		return err
	case actions.Send:
		if dryRun {
			return nil
		}
		return errors.New("Send is written by sendMessage")
	}
	return fmt.Errorf("unknown operation %q", c.Op)
}

func uidPtr(uid string) *types.UID {
	if uid == "" {
		return nil
	}
	u := types.UID(uid)
	return &u
}

// contains reports whether live holds every field of want with the same
// value; lists must match whole, and a null in want (a merge patch's
// "remove") matches an absent field. apiVersion and kind are identity.
func contains(live, want map[string]any) bool {
	for k, w := range want {
		if k == "apiVersion" || k == "kind" {
			continue
		}
		l, ok := live[k]
		if w == nil {
			if ok && l != nil {
				return false
			}
			continue
		}
		if !ok {
			return false
		}
		wm, wIsMap := w.(map[string]any)
		lm, lIsMap := l.(map[string]any)
		switch {
		case wIsMap && lIsMap:
			if !contains(lm, wm) {
				return false
			}
		case wIsMap != lIsMap:
			return false
		default:
			if !jsonEqual(l, w) {
				return false
			}
		}
	}
	return true
}

// jsonEqual compares two values as JSON, since the converter yields int64
// where a hand-built object may hold int.
func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// PlannedSteps renders the plan for the ApprovalGate.
func (p *Plan) PlannedSteps() []riposte.PlannedStep {
	out := make([]riposte.PlannedStep, 0, len(p.Steps))
	for _, sp := range p.Steps {
		ps := riposte.PlannedStep{Name: sp.Step.Name, Action: sp.Step.Action, Target: sp.Target}
		for i, c := range sp.Changes {
			ps.Changes = append(ps.Changes, riposte.PlannedChange{Operation: sp.operation(i), Object: c.Ref(), Summary: c.Summary, Undo: sp.undo(i)})
		}
		out = append(out, ps)
	}
	return out
}

// undo says how the change would be undone, as the commit will record it.
func (sp *StepPlan) undo(i int) riposte.UndoMethod {
	c := sp.Changes[i]
	switch {
	case sp.unchanged[i]:
		return ""
	case c.Op == actions.Silence:
		return riposte.UndoExpire
	case c.Irreversible || c.Op == actions.Evict || c.Op == actions.Send:
		return riposte.UndoNone
	case c.Shared:
		return riposte.UndoKeep
	case c.Hold != nil:
		return riposte.UndoRelease
	case c.Op == actions.Delete:
		return riposte.UndoRecreate
	case c.Op == actions.Apply && !sp.existed[i]:
		return riposte.UndoDelete
	default:
		return riposte.UndoRestore
	}
}

func (sp *StepPlan) operation(i int) riposte.ChangeOperation {
	c := sp.Changes[i]
	switch {
	case sp.unchanged[i]:
		return riposte.OperationUnchanged
	case c.Op == actions.Delete:
		return riposte.OperationDelete
	case c.Op == actions.Evict:
		return riposte.OperationEvict
	case c.Op == actions.Send:
		return riposte.OperationSend
	case c.Op == actions.Silence:
		return riposte.OperationSilence
	case sp.existed[i]:
		return riposte.OperationPatch
	default:
		return riposte.OperationCreate
	}
}

// hashOf hashes the plan's intent: each step's action, target (with UID) and
// exactly what each change writes. Whether an object existed is left out, so
// a plan whose writes were already made hashes the same.
func hashOf(steps []StepPlan) (string, error) {
	type change struct {
		Op      actions.Operation       `json:"op"`
		Object  map[string]any          `json:"object"`
		Patch   map[string]any          `json:"patch,omitempty"`
		UID     string                  `json:"uid,omitempty"`
		Message *actions.Message        `json:"message,omitempty"`
		Silence *actions.SilenceRequest `json:"silence,omitempty"`
		Hold    *actions.Hold           `json:"hold,omitempty"`
	}
	type hashed struct {
		Name    string                   `json:"name"`
		Action  riposte.ActionType       `json:"action"`
		Target  *riposte.ObjectReference `json:"target"`
		Changes []change                 `json:"changes"`
	}
	in := make([]hashed, 0, len(steps))
	for _, sp := range steps {
		h := hashed{Name: sp.Step.Name, Action: sp.Step.Action, Target: sp.Target}
		for _, c := range sp.Changes {
			patch := c.Patch
			if c.Hold != nil {
				// A hold's intent is this incident's entry; the other holders
				// in the planned patch are the world, which may change
				// without changing what was approved.
				patch = nil
			}
			h.Changes = append(h.Changes, change{Op: c.Op, Object: c.Object.Object, Patch: patch, UID: c.UID, Message: c.Message, Silence: c.Silence, Hold: c.Hold})
		}
		in = append(in, h)
	}
	// encoding/json sorts map keys, so the encoding is canonical.
	b, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("hashing plan: %w", err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// PermanentError wraps an API error that retrying will not fix (forbidden,
// invalid, not found): the step fails and says why.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

func classify(err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) ||
		apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) || meta.IsNoMatchError(err) {
		return &PermanentError{Err: err}
	}
	return err
}

// IsPermanent reports whether err will not go away by retrying.
func IsPermanent(err error) bool {
	var pe *PermanentError
	var ue *actions.UserError
	return errors.As(err, &pe) || errors.As(err, &ue)
}

// Objects lists every Kubernetes object the plan writes (a message's Secret
// is only read, as the playbook's account; a silence is Alertmanager's);
// nil for no plan.
func (p *Plan) Objects() []riposte.ObjectReference {
	if p == nil {
		return nil
	}
	var out []riposte.ObjectReference
	for _, sp := range p.Steps {
		for _, c := range sp.Changes {
			if !c.External() {
				out = append(out, c.Ref())
			}
		}
	}
	return out
}

// classifySilence marks Alertmanager's refusals permanent and its outages transient.
func classifySilence(err error) error {
	var se *silence.Error
	if errors.As(err, &se) && !se.Transient {
		return &PermanentError{Err: err}
	}
	return err
}
