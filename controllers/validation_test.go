package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/approval"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// Bad input is refused at admission with a message that names the problem,
// and what was stored before stays as it was.
func TestAdmissionRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	valid := func() *riposte.Playbook { return isolatePlaybook(ns, "pb", "Shell", nil) }
	cases := []struct {
		reason  string
		obj     client.Object
		wantErr string
	}{
		{reason: "a playbook without steps", obj: func() client.Object {
			p := valid()
			p.Name, p.Spec.Steps = "no-steps", nil
			return p
		}(), wantErr: "spec.steps"},
		{reason: "a playbook without triggers", obj: func() client.Object {
			p := valid()
			p.Name, p.Spec.Triggers = "no-triggers", riposte.Triggers{}
			return p
		}(), wantErr: "a playbook needs at least one trigger"},
		{reason: "an unknown action", obj: func() client.Object {
			p := valid()
			p.Name, p.Spec.Steps[0].Action = "bad-action", "DeleteEverything"
			return p
		}(), wantErr: `Unsupported value: "DeleteEverything"`},
		{reason: "a step name that is not a DNS label", obj: func() client.Object {
			p := valid()
			p.Name, p.Spec.Steps[0].Name = "bad-step", "Isolate Pod"
			return p
		}(), wantErr: "spec.steps[0].name"},
		{reason: "two steps with one name", obj: func() client.Object {
			p := valid()
			p.Name = "dup-steps"
			p.Spec.Steps = append(p.Spec.Steps, p.Spec.Steps[0])
			return p
		}(), wantErr: "Duplicate value"},
		{reason: "an unknown matcher operator", obj: func() client.Object {
			p := valid()
			p.Name = "bad-op"
			p.Spec.Triggers.Alerts[0].Matchers = []riposte.LabelMatcher{{Name: "a", Operator: "~~", Value: "b"}}
			return p
		}(), wantErr: "spec.triggers.alerts[0].matchers[0].operator"},
		{reason: "approve-on-expiry without a timeout", obj: func() client.Object {
			p := valid()
			p.Name, p.Spec.Approval.OnExpiry = "expiry", riposte.ExpiryApprove
			return p
		}(), wantErr: "onExpiry Approve needs a timeout"},
		{reason: "more than ten required approvals", obj: func() client.Object {
			p := valid()
			p.Name, p.Spec.Approval.RequiredApprovals = "quorum", 11
			return p
		}(), wantErr: "spec.approval.requiredApprovals"},
		{reason: "parameters for another action", obj: func() client.Object {
			p := valid()
			p.Name = "params"
			p.Spec.Steps[0].Action = ""
			return p
		}(), wantErr: "spec.steps[0].action"},
		{reason: "isolatePod parameters on a Label step", obj: withStep(valid(), "iso-on-label", riposte.Step{Name: "s", Action: riposte.ActionLabel,
			IsolatePod: &riposte.IsolatePodParams{}, Metadata: &riposte.MetadataParams{Set: map[string]string{"a": "b"}}}),
			wantErr: "isolatePod parameters are only for the IsolatePod and IsolateWorkload actions"},
		{reason: "ScaleWorkload without its replicas", obj: withStep(valid(), "scale", riposte.Step{Name: "s", Action: riposte.ActionScaleWorkload}),
			wantErr: "ScaleWorkload needs scale parameters"},
		{reason: "a negative replica count", obj: withStep(valid(), "scale-neg", riposte.Step{Name: "s", Action: riposte.ActionScaleWorkload, Scale: &riposte.ScaleParams{Replicas: -1}}),
			wantErr: "spec.steps[0].scale.replicas"},
		{reason: "a Notify step without a URL Secret", obj: withStep(valid(), "notify", riposte.Step{Name: "s", Action: riposte.ActionNotify}),
			wantErr: "Notify needs notify parameters"},
		{reason: "a RevokeBinding that names a subject and deletes the binding", obj: withStep(valid(), "revoke", riposte.Step{Name: "s", Action: riposte.ActionRevokeBinding,
			RevokeBinding: &riposte.RevokeBindingParams{Name: "b", DeleteBinding: true, Subject: &riposte.BindingSubject{Name: "x"}}}),
			wantErr: "name a subject to remove, or set deleteBinding, not both"},
		{reason: "a duration on an action that cannot be undone", obj: withStep(valid(), "timed-delete", riposte.Step{Name: "s", Action: riposte.ActionDeletePod,
			Duration: &metav1.Duration{Duration: time.Minute}}),
			wantErr: "a duration is only for containment Riposte can undo"},
		{reason: "a taint with an unknown effect", obj: withStep(valid(), "taint", riposte.Step{Name: "s", Action: riposte.ActionTaint, Taint: &riposte.TaintParams{Effect: "Evict"}}),
			wantErr: "spec.steps[0].taint.effect"},
		{reason: "an Alertmanager incident without a fingerprint", obj: &riposte.Incident{
			ObjectMeta: metav1.ObjectMeta{Name: "no-fp", Namespace: ns},
			Spec:       riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: "Shell"},
		}, wantErr: "needs the alert's fingerprint"},
		{reason: "an unknown incident source", obj: &riposte.Incident{
			ObjectMeta: metav1.ObjectMeta{Name: "bad-source", Namespace: ns},
			Spec:       riposte.IncidentSpec{Source: "Pager", AlertName: "Shell"},
		}, wantErr: "spec.source"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			err := k8sClient.Create(ctx, tc.obj)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Create error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// What intake stored about an alert cannot be rewritten into another alert.
func TestIncidentIdentityIsImmutable(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	inc := alertIncident(ns, "am-immutable", "SomeAlert", ns, "x")
	mustCreate(t, inc)
	for _, tc := range []struct {
		reason  string
		mutate  func(*riposte.Incident)
		wantErr string
	}{
		{reason: "fingerprint", mutate: func(i *riposte.Incident) { i.Spec.Fingerprint = "ffff" }, wantErr: "fingerprint is immutable"},
		{reason: "source", mutate: func(i *riposte.Incident) { i.Spec.Source = riposte.SourceManual }, wantErr: "source is immutable"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			err := updateWithRetry(ctx, &riposte.Incident{}, client.ObjectKeyFromObject(inc), func(o client.Object) { tc.mutate(o.(*riposte.Incident)) })
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Update error = %v, want %q", err, tc.wantErr)
			}
		})
	}
	stored, err := getIncident(ctx, ns, inc.Name)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Spec.Fingerprint != inc.Spec.Fingerprint || stored.Spec.Source != inc.Spec.Source {
		t.Errorf("stored incident changed: %+v", stored.Spec)
	}
}

// A gate's plan and policy cannot change once written, and decisions can only
// be appended.
func TestGatePlanIsImmutableAndDecisionsAppendOnly(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	gate := &riposte.ApprovalGate{
		ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: ns},
		Spec: riposte.ApprovalGateSpec{
			Incident: "am-1",
			Playbook: riposte.NamespacedName{Namespace: ns, Name: "pb"},
			Plan:     riposte.Plan{Hash: "sha256:abc", Steps: []riposte.PlannedStep{{Name: "isolate", Action: riposte.ActionIsolatePod}}},
			Policy:   riposte.GatePolicy{RequiredApprovals: 2, DecisionPolicy: decisionPolicyInForce(t)},
		},
	}
	if err := intakeClient.Create(ctx, gate); err != nil {
		t.Fatalf("Riposte creating a gate: %v", err)
	}
	appendDecision(t, ns, gate.Name, "alice", riposte.DecisionApprove)
	for _, tc := range []struct {
		reason  string
		mutate  func(*riposte.ApprovalGate)
		wantErr string
	}{
		{reason: "the plan hash", mutate: func(g *riposte.ApprovalGate) { g.Spec.Plan.Hash = "sha256:other" }, wantErr: "plan is immutable"},
		{reason: "the policy", mutate: func(g *riposte.ApprovalGate) { g.Spec.Policy.Automatic = true }, wantErr: "policy is immutable"},
		{reason: "editing a decision", mutate: func(g *riposte.ApprovalGate) { g.Spec.Decisions[0].Decision = riposte.DecisionReject }, wantErr: "never edited or removed"},
		{reason: "removing a decision", mutate: func(g *riposte.ApprovalGate) { g.Spec.Decisions = nil }, wantErr: "never edited or removed"},
		{reason: "a second decision by the same person", mutate: func(g *riposte.ApprovalGate) {
			g.Spec.Decisions = append(g.Spec.Decisions, riposte.Decision{User: "alice", Decision: riposte.DecisionApprove, Reason: "again"})
		}, wantErr: "Duplicate value"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			err := updateAs(ctx, people["alice"], &riposte.ApprovalGate{}, client.ObjectKeyFromObject(gate), func(o client.Object) { tc.mutate(o.(*riposte.ApprovalGate)) })
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Update error = %v, want %q", err, tc.wantErr)
			}
		})
	}
	// Appending a decision by someone else is accepted.
	appendDecision(t, ns, gate.Name, "bob", riposte.DecisionApprove)
	cur := &riposte.ApprovalGate{}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(gate), cur); err != nil {
			return err
		}
		if cur.Status.Phase != riposte.GateApproved || cur.Status.Approvals != 2 {
			return fmt.Errorf("gate status %+v, want Approved with 2 approvals", cur.Status)
		}
		return nil
	})
}

// A playbook whose expression does not compile says so, and is not used.
func TestPlaybookWithBrokenExpressionIsStalled(t *testing.T) {
	ns := newNamespace(t)
	pb := isolatePlaybook(ns, "broken", "Shell", &riposte.AutoApprove{When: "incident.spec.severity =="})
	mustCreate(t, pb)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		cur := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pb), cur); err != nil {
			return err
		}
		for _, c := range cur.Status.Conditions {
			if c.Type == riposte.ConditionStalled && c.Status == metav1.ConditionTrue && c.Reason == riposte.ReasonInvalidCEL &&
				strings.Contains(c.Message, "spec.approval.autoApprove.when") && c.ObservedGeneration == cur.Generation {
				return nil
			}
		}
		return fmt.Errorf("conditions %s, want Stalled/InvalidExpression naming the field", conditionSummary(cur.Status.Conditions))
	})
	// Its spec is untouched: GitOps sees no drift.
	cur := &riposte.Playbook{}
	if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(pb), cur); err != nil {
		t.Fatal(err)
	}
	if cur.Generation != 1 {
		t.Errorf("playbook generation = %d, want 1: Riposte must never write a playbook's spec", cur.Generation)
	}
	// An incident it would answer fails planning with the same reason, not silently.
	pod := deployedPod(t, ns, "web")
	mustCreate(t, alertIncident(ns, "am-broken", "Shell", ns, pod.Name))
	waitForPhase(t, ns, "am-broken", riposte.PhaseUnmatched)
}

// A namespaced playbook that names no service account is refused, and an
// incident it answers fails with the same reason: it must not borrow an
// identity.
func TestPlaybookWithoutServiceAccountIsRefused(t *testing.T) {
	ns := newNamespace(t)
	pb := isolatePlaybook(ns, "anonymous", "ShellNoAccount", &riposte.AutoApprove{})
	pb.Spec.ServiceAccountName = ""
	mustCreate(t, pb)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		cur := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pb), cur); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(cur.Status.Conditions, riposte.ConditionReady); c != nil && c.Status == metav1.ConditionFalse &&
			c.Reason == riposte.ReasonNoServiceAccount && strings.Contains(c.Message, "spec.serviceAccountName") {
			return nil
		}
		return fmt.Errorf("conditions %s, want Ready=False/NoServiceAccount", conditionSummary(cur.Status.Conditions))
	})
	pod := deployedPod(t, ns, "web")
	mustCreate(t, alertIncident(ns, "am-anonymous", "ShellNoAccount", ns, pod.Name))
	inc := waitForPhase(t, ns, "am-anonymous", riposte.PhaseFailed)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentPlanned); c.Reason != riposte.ReasonNoServiceAccount {
		t.Errorf("Planned = %s: %s", c.Reason, c.Message)
	}
	expectQuarantined(t, pod, false)
}

// updateWithRetry reads the object fresh, mutates it and updates it as an
// admin, retrying only on conflicts with the controllers' own status writes.
func updateWithRetry(ctx context.Context, obj client.Object, key client.ObjectKey, mutate func(client.Object)) error {
	return updateAs(ctx, k8sClient, obj, key, mutate)
}

func updateAs(ctx context.Context, c client.Client, obj client.Object, key client.ObjectKey, mutate func(client.Object)) error {
	for {
		if err := c.Get(ctx, key, obj); err != nil {
			return err
		}
		mutate(obj)
		err := c.Update(ctx, obj)
		if !apierrors.IsConflict(err) {
			return err
		}
	}
}

func withStep(p *riposte.Playbook, name string, step riposte.Step) *riposte.Playbook {
	p.Name, p.Spec.Steps = name, []riposte.Step{step}
	return p
}

// decisionPolicyInForce is what Riposte notes on a gate it opens for people:
// the decision policy the API server enforces now.
func decisionPolicyInForce(t *testing.T) string {
	t.Helper()
	id, why, err := approval.Enforcement(context.Background(), k8sClient, operatorNamespace)
	if err != nil || id == "" {
		t.Fatalf("the shipped decision policy is not in force: %s %v", why, err)
	}
	return id
}
