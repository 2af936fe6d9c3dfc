// Package executor turns a playbook's steps into a plan the API server has
// dry-run, and applies exactly that plan with server-side apply, recording
// each change. It is the one place where remediation writes happen.
package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
)

// StepPlan is one step with the changes its action computed.
type StepPlan struct {
	Step    riposte.Step
	Target  *riposte.ObjectReference
	Changes []actions.Change
	// existed records, per change, whether the object was there at plan time.
	existed []bool
	// unchanged records, per change, that the live object already holds
	// every field of the change: there is nothing to dry-run or apply.
	unchanged []bool
}

// Plan is the full set of changes for an incident, and its hash.
type Plan struct {
	Steps []StepPlan
	Hash  string
}

// Executor plans and applies remediation steps.
type Executor struct {
	// Reader is the cached reader planners use.
	Reader client.Reader
	// Writer sends dry runs and applies to the API server.
	Writer client.Client
}

// BuildMode says whether planning asks the API server for a dry run.
type BuildMode int

const (
	// WithDryRun has the API server accept every change without persisting
	// it: the plan a gate shows.
	WithDryRun BuildMode = iota
	// HashOnly recomputes the plan to compare it with the approved hash just
	// before applying; the apply itself is then the API server's check.
	HashOnly
)

// Build plans every step. An *actions.UserError means the plan cannot be
// built until something changes.
func (e *Executor) Build(ctx context.Context, inc *riposte.Incident, pb *riposte.Playbook, target *riposte.ObjectReference, mode BuildMode) (*Plan, error) {
	plan := &Plan{}
	for _, step := range pb.Spec.Steps {
		planner, ok := actions.Catalogue[step.Action]
		if !ok {
			return nil, &actions.UserError{Msg: fmt.Sprintf("step %s: unknown action %q", step.Name, step.Action)}
		}
		changes, err := planner.Plan(ctx, actions.Input{Incident: inc, Step: step, Target: target, Reader: e.Reader})
		if err != nil {
			return nil, fmt.Errorf("step %s: %w", step.Name, err)
		}
		sp := StepPlan{Step: step, Target: target, Changes: changes}
		for _, c := range changes {
			existed, unchanged, err := e.check(ctx, c, mode)
			if err != nil {
				return nil, fmt.Errorf("step %s: %w", step.Name, err)
			}
			sp.existed = append(sp.existed, existed)
			sp.unchanged = append(sp.unchanged, unchanged)
		}
		plan.Steps = append(plan.Steps, sp)
	}
	hash, err := hashOf(plan.Steps)
	if err != nil {
		return nil, err
	}
	plan.Hash = hash
	return plan, nil
}

// check reports whether the changed object already exists, and whether it
// already holds the change; otherwise, in WithDryRun mode, it asks the API
// server to accept the change without persisting it.
func (e *Executor) check(ctx context.Context, c actions.Change, mode BuildMode) (existed, unchanged bool, err error) {
	existing, err := e.emptyObject(c.Object.GroupVersionKind())
	if err != nil {
		return false, false, err
	}
	err = e.Reader.Get(ctx, client.ObjectKeyFromObject(c.Object), existing)
	if err != nil && !apierrors.IsNotFound(err) {
		return false, false, fmt.Errorf("reading %s: %w", c.Ref(), err)
	}
	if existed = err == nil; existed {
		live, err := runtime.DefaultUnstructuredConverter.ToUnstructured(existing)
		if err != nil {
			return true, false, err
		}
		unchanged = contains(live, c.Object.Object)
	}
	if mode == HashOnly || unchanged {
		return existed, unchanged, nil
	}
	body := c.Object.DeepCopy()
	if err := e.Writer.Apply(ctx, client.ApplyConfigurationFromUnstructured(body),
		client.FieldOwner(actions.FieldManager), client.ForceOwnership, client.DryRunAll,
		client.DisableReadYourWritesConsistency); err != nil {
		return false, false, classify(fmt.Errorf("dry run of %s refused: %w", c.Ref(), err))
	}
	return existed, false, nil
}

// contains reports whether live holds every field of want with the same
// value; lists must match whole. apiVersion and kind are identity, not content.
func contains(live, want map[string]any) bool {
	for k, w := range want {
		if k == "apiVersion" || k == "kind" {
			continue
		}
		l, ok := live[k]
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
			if !equality.Semantic.DeepEqual(normalise(l), normalise(w)) {
				return false
			}
		}
	}
	return true
}

// normalise gives numbers one type, since the converter yields int64 where
// a hand-built object may hold int.
func normalise(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// emptyObject returns a typed object for gvk, so the read is served by the
// same typed informer the rest of the manager uses rather than a second,
// unstructured one.
func (e *Executor) emptyObject(gvk schema.GroupVersionKind) (client.Object, error) {
	obj, err := e.Writer.Scheme().New(gvk)
	if err != nil {
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(gvk)
		return meta, nil
	}
	return obj.(client.Object), nil
}

// Apply writes one step's changes in order and returns their records. On an
// error the records of the changes already made are returned with it, so
// nothing half-applied goes unrecorded.
func (e *Executor) Apply(ctx context.Context, sp StepPlan) ([]riposte.ChangeRecord, error) {
	var records []riposte.ChangeRecord
	for i, c := range sp.Changes {
		if sp.unchanged[i] {
			records = append(records, riposte.ChangeRecord{Operation: riposte.OperationUnchanged, Object: c.Ref(),
				ExistedBefore: true, Summary: "already in place: " + c.Summary})
			continue
		}
		if err := e.Writer.Apply(ctx, client.ApplyConfigurationFromUnstructured(c.Object.DeepCopy()),
			client.FieldOwner(actions.FieldManager), client.ForceOwnership, client.DisableReadYourWritesConsistency); err != nil {
			return records, classify(fmt.Errorf("applying %s: %w", c.Ref(), err))
		}
		records = append(records, riposte.ChangeRecord{
			Operation: sp.operation(i), Object: c.Ref(), FieldManager: actions.FieldManager,
			ExistedBefore: sp.existed[i], Summary: c.Summary,
		})
	}
	return records, nil
}

// KeepApprovedExistence takes whether each object existed from the approved
// plan: that was observed before Riposte wrote anything, whereas a re-plan
// after a retried apply would see Riposte's own objects. A change approved as
// needed is applied even if it now looks done, so the record says what the
// approver saw.
func (p *Plan) KeepApprovedExistence(approved []riposte.PlannedStep) {
	ops := map[string]riposte.ChangeOperation{}
	for _, ps := range approved {
		for _, c := range ps.Changes {
			ops[ps.Name+"|"+c.Object.String()] = c.Operation
		}
	}
	for i := range p.Steps {
		sp := &p.Steps[i]
		for j, c := range sp.Changes {
			op, ok := ops[sp.Step.Name+"|"+c.Ref().String()]
			if !ok {
				continue
			}
			sp.existed[j] = op != riposte.OperationCreate
			sp.unchanged[j] = sp.unchanged[j] && op == riposte.OperationUnchanged
		}
	}
}

func (sp *StepPlan) operation(i int) riposte.ChangeOperation {
	switch {
	case sp.unchanged[i]:
		return riposte.OperationUnchanged
	case sp.existed[i]:
		return riposte.OperationPatch
	default:
		return riposte.OperationCreate
	}
}

// PlannedSteps renders the plan for the ApprovalGate.
func (p *Plan) PlannedSteps() []riposte.PlannedStep {
	out := make([]riposte.PlannedStep, 0, len(p.Steps))
	for _, sp := range p.Steps {
		ps := riposte.PlannedStep{Name: sp.Step.Name, Action: sp.Step.Action, Target: sp.Target}
		for i, c := range sp.Changes {
			ps.Changes = append(ps.Changes, riposte.PlannedChange{Operation: sp.operation(i), Object: c.Ref(), Summary: c.Summary})
		}
		out = append(out, ps)
	}
	return out
}

// hashOf hashes the plan's intent: each step's action, target (with UID) and
// the exact objects to apply. Whether an object existed is left out: the
// first apply of an identical plan must not change its hash.
func hashOf(steps []StepPlan) (string, error) {
	type hashed struct {
		Name    string                   `json:"name"`
		Action  riposte.ActionType       `json:"action"`
		Target  *riposte.ObjectReference `json:"target"`
		Objects []map[string]any         `json:"objects"`
	}
	in := make([]hashed, 0, len(steps))
	for _, sp := range steps {
		h := hashed{Name: sp.Step.Name, Action: sp.Step.Action, Target: sp.Target}
		for _, c := range sp.Changes {
			h.Objects = append(h.Objects, c.Object.Object)
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
		apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
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
