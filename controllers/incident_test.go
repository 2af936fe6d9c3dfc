package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/approval"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// An alert about a pod, answered by an auto-approving playbook, ends with the
// pod isolated and every step on the record.
func TestAlertIsRemediatedByAutomaticPlaybook(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mustCreate(t, isolatePlaybook(ns, "isolate-shell", "ContainerShell", &riposte.AutoApprove{When: "incident.spec.severity == 'critical'"}))
	mustCreate(t, alertIncident(ns, "am-0123456789abcdef", "ContainerShell", ns, pod.Name))

	inc := waitForPhase(t, ns, "am-0123456789abcdef", riposte.PhaseRemediated)

	// What Riposte learned.
	wantContext := &riposte.IncidentContext{
		Target:             &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod.Name, UID: string(pod.UID)},
		OwnerChain:         []riposte.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d4f"}, {APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}},
		Images:             []string{"busybox:1.36", "nginx:1.27"},
		Node:               "node-a",
		ServiceAccountName: "default",
		TargetLabels:       map[string]string{"app": "web"},
	}
	// The deeper context (identity, exposure, timeline) has its own tests.
	got := inc.Status.Context.DeepCopy()
	got.Replicas, got.Containers, got.RiskFlags, got.Identity, got.Exposure, got.Timeline = nil, nil, nil, nil, nil, nil
	if diff := cmp.Diff(wantContext, got); diff != "" {
		t.Errorf("status.context (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&riposte.NamespacedName{Namespace: ns, Name: "isolate-shell"}, inc.Status.Playbook); diff != "" {
		t.Errorf("status.playbook (-want +got):\n%s", diff)
	}
	for _, ts := range []struct {
		name string
		at   *metav1.Time
	}{{"detectedAt", inc.Status.DetectedAt}, {"enrichedAt", inc.Status.EnrichedAt}, {"approvedAt", inc.Status.ApprovedAt}, {"remediatedAt", inc.Status.RemediatedAt}} {
		if ts.at == nil {
			t.Errorf("status.%s is not set", ts.name)
		}
	}
	for _, c := range []string{riposte.IncidentEnriched, riposte.IncidentMatched, riposte.IncidentPlanned, riposte.IncidentApproved, riposte.IncidentRemediated, riposte.ConditionReady} {
		if got := condition(t, inc.Status.Conditions, c); got.Status != metav1.ConditionTrue || got.ObservedGeneration != inc.Generation {
			t.Errorf("condition %s = %s (gen %d), want True at generation %d: %s", c, got.Status, got.ObservedGeneration, inc.Generation, got.Message)
		}
	}

	// The step record says what changed, so it can be undone.
	if len(inc.Status.Steps) != 1 {
		t.Fatalf("status.steps = %d records, want 1", len(inc.Status.Steps))
	}
	step := inc.Status.Steps[0]
	if step.Name != "isolate" || step.Action != riposte.ActionIsolatePod || step.Phase != riposte.StepApplied || step.StartedAt == nil || step.CompletedAt == nil {
		t.Errorf("step record = %+v, want isolate/IsolatePod Applied with times", step)
	}
	gotChanges := []string{}
	for _, c := range step.Changes {
		gotChanges = append(gotChanges, fmt.Sprintf("%s %s existed=%v by %s", c.Operation, c.Object, c.ExistedBefore, c.FieldManager))
	}
	wantChanges := []string{
		fmt.Sprintf("Create NetworkPolicy/%s/riposte-quarantine-deny-all existed=false by riposte", ns),
		fmt.Sprintf("Patch Pod/%s/%s existed=true by riposte", ns, pod.Name),
	}
	if diff := cmp.Diff(wantChanges, gotChanges); diff != "" {
		t.Errorf("step changes (-want +got):\n%s", diff)
	}

	// The automatic decision is recorded with the plan it approved: the
	// rule, the playbook's generation, the plan's hash. No gate is opened
	// for a plan no person decides.
	pb := &riposte.Playbook{}
	get(t, pb, ns, "isolate-shell")
	want := &riposte.AutoApproval{PlaybookGeneration: pb.Generation, Rule: "incident.spec.severity == 'critical'", PlanHash: inc.Status.PlanHash}
	if a := inc.Status.AutoApproval; a == nil || inc.Status.PlanHash == "" || a.DecidedAt.IsZero() {
		t.Errorf("status.autoApproval = %+v for plan %q, want the verdict with its time", a, inc.Status.PlanHash)
	} else if got := (riposte.AutoApproval{PlaybookGeneration: a.PlaybookGeneration, Rule: a.Rule, PlanHash: a.PlanHash}); !cmp.Equal(*want, got) {
		t.Errorf("status.autoApproval (-want +got):\n%s", cmp.Diff(*want, got))
	}
	if c := condition(t, inc.Status.Conditions, riposte.IncidentApproved); c.Reason != riposte.ReasonAutoApproved || !strings.Contains(c.Message, "incident.spec.severity == 'critical'") {
		t.Errorf("Approved = %s: %q, want AutoApproved naming the rule that approved it", c.Reason, c.Message)
	}
	var gates riposte.ApprovalGateList
	if err := k8sClient.List(ctx, &gates, client.InNamespace(ns)); err != nil || len(gates.Items) != 0 || inc.Status.ApprovalGate != "" {
		t.Errorf("gates %d (err %v), status.approvalGate %q: want none", len(gates.Items), err, inc.Status.ApprovalGate)
	}

	// The cluster: a deny-all NetworkPolicy selecting the now-labelled pod.
	np := &networkingv1.NetworkPolicy{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "riposte-quarantine-deny-all"}, np); err != nil {
		t.Fatalf("reading the quarantine NetworkPolicy: %v", err)
	}
	if diff := cmp.Diff(map[string]string{actions.QuarantineLabel: "deny-all"}, np.Spec.PodSelector.MatchLabels); diff != "" {
		t.Errorf("NetworkPolicy podSelector (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes); diff != "" || len(np.Spec.Ingress) != 0 || len(np.Spec.Egress) != 0 {
		t.Errorf("NetworkPolicy must deny all ingress and egress: types %v, ingress %v, egress %v", np.Spec.PolicyTypes, np.Spec.Ingress, np.Spec.Egress)
	}
	live := &corev1.Pod{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), live); err != nil {
		t.Fatal(err)
	}
	if live.Labels[actions.QuarantineLabel] != "deny-all" || live.Labels["app"] != "web" {
		t.Errorf("pod labels = %v, want the quarantine label added and its own kept", live.Labels)
	}
	if got := live.Annotations[actions.QuarantinedByAnnotation]; got != ns+"/am-0123456789abcdef=deny-all" {
		t.Errorf("pod annotation %s = %q, want the incident", actions.QuarantinedByAnnotation, got)
	}

	// Events leave the trail a person reads with kubectl describe: one
	// for the remediation, saying what was done, as whom, on whose verdict.
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		return expectEvent(ctx, ns, inc.Name, riposte.ReasonStepsApplied)
	})
	testenv.Consistently(t, time.Second, func(ctx context.Context) error {
		var events corev1.EventList
		if err := k8sClient.List(ctx, &events, client.InNamespace(ns)); err != nil {
			return err
		}
		var told []string
		for _, e := range events.Items {
			if e.InvolvedObject.Name == inc.Name {
				told = append(told, e.Reason+": "+e.Message)
			}
		}
		want := fmt.Sprintf("%s: remediated by playbook %s/isolate-shell as system:serviceaccount:%s:%s, approved by policy (incident.spec.severity == 'critical'): isolate (IsolatePod) on Pod/%s/%s: Applied",
			riposte.ReasonStepsApplied, ns, ns, remediatorAccount, ns, pod.Name)
		if len(told) != 1 || told[0] != want {
			return fmt.Errorf("events %q, want exactly [%q]", told, want)
		}
		return nil
	})

	// A resolved alert closes the incident; nothing is applied again.
	ends := metav1.NewTime(time.Now().Truncate(time.Second))
	resolveAlert(t, ns, inc.Name, &ends)
	resolved := waitForPhase(t, ns, inc.Name, riposte.PhaseResolved)
	if resolved.Status.ResolvedAt == nil || !resolved.Status.ResolvedAt.Equal(&ends) {
		t.Errorf("resolvedAt = %v, want the alert's endsAt %v", resolved.Status.ResolvedAt, ends)
	}
	if diff := cmp.Diff(inc.Status.Steps, resolved.Status.Steps); diff != "" {
		t.Errorf("steps changed after resolution (-before +after):\n%s", diff)
	}
}

func countEvents(ctx context.Context, ns, name, reason string) (int, error) {
	var events corev1.EventList
	if err := k8sClient.List(ctx, &events, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range events.Items {
		if e.InvolvedObject.Name == name && e.Reason == reason {
			n += int(max(e.Count, 1))
		}
	}
	return n, nil
}

func expectEvent(ctx context.Context, ns, name, reason string) error {
	var events corev1.EventList
	if err := k8sClient.List(ctx, &events, client.InNamespace(ns)); err != nil {
		return err
	}
	var seen []string
	for _, e := range events.Items {
		if e.InvolvedObject.Name == name && e.Reason == reason {
			return nil
		}
		seen = append(seen, e.Reason)
	}
	return fmt.Errorf("no %s event on %s; saw %v", reason, name, seen)
}

// A playbook that needs people leaves the plan waiting and changes nothing.
func TestManualPlaybookWaitsAndAppliesNothing(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	mustCreate(t, isolatePlaybook(ns, "isolate-with-approval", "ContainerShell", nil))
	mustCreate(t, alertIncident(ns, "am-1", "ContainerShell", ns, pod.Name))

	inc := waitForPhase(t, ns, "am-1", riposte.PhaseAwaitingApproval)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentApproved); c.Status != metav1.ConditionFalse || c.Reason != riposte.ReasonAwaitingApproval {
		t.Errorf("Approved condition = %s/%s, want False/AwaitingApproval", c.Status, c.Reason)
	}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		gate := &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "am-1"}, gate); err != nil {
			return err
		}
		if gate.Status.Phase != riposte.GatePending || gate.Status.Message != "0 of 1 approvals" {
			return fmt.Errorf("gate status %+v, want Pending with 0 of 1 approvals", gate.Status)
		}
		return nil
	})
	testenv.Consistently(t, time.Second, func(ctx context.Context) error {
		np := &networkingv1.NetworkPolicy{}
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "riposte-quarantine-deny-all"}, np)
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("a NetworkPolicy exists before approval (err %v)", err)
		}
		live := &corev1.Pod{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), live); err != nil {
			return err
		}
		if _, ok := live.Labels[actions.QuarantineLabel]; ok {
			return fmt.Errorf("pod labelled before approval")
		}
		return nil
	})
}

// Incidents nothing answers say so, and a playbook never acts outside its
// scope or in a protected namespace.
func TestIncidentsThatMustNotBeRemediated(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	other := newNamespace(t)
	pod := deployedPod(t, other, "db")
	mustCreate(t, isolatePlaybook(ns, "isolate-shell", "ContainerShell", &riposte.AutoApprove{}))
	mustCreate(t, isolatePlaybook(operatorNamespace, "cluster-isolate", "NodeShell", &riposte.AutoApprove{}))
	ksPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "coredns-x", Namespace: "kube-system"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "coredns:1.11"}}}}
	mustCreate(t, ksPod)

	cases := []struct {
		reason     string
		incident   *riposte.Incident
		wantPhase  riposte.IncidentPhase
		wantCond   string
		wantReason string
		wantInMsg  string
	}{
		{
			reason:     "no playbook answers the alert name",
			incident:   alertIncident(ns, "unknown-alert", "SomethingElse", ns, "web"),
			wantPhase:  riposte.PhaseUnmatched,
			wantCond:   riposte.IncidentMatched,
			wantReason: riposte.ReasonNoPlaybook,
			wantInMsg:  "SomethingElse",
		},
		{
			reason: "a namespaced playbook refuses a target in another namespace",
			incident: func() *riposte.Incident {
				inc := alertIncident(ns, "cross-namespace", "ContainerShell", other, pod.Name)
				inc.Spec.Target = &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: other, Name: pod.Name}
				return inc
			}(),
			wantPhase:  riposte.PhaseFailed,
			wantCond:   riposte.IncidentPlanned,
			wantReason: riposte.ReasonGuardrail,
			wantInMsg:  "may act only in namespace " + ns,
		},
		{
			reason:     "a cluster-wide playbook never acts in kube-system",
			incident:   alertIncident(operatorNamespace, "protected", "NodeShell", "kube-system", ksPod.Name),
			wantPhase:  riposte.PhaseFailed,
			wantCond:   riposte.IncidentPlanned,
			wantReason: riposte.ReasonGuardrail,
			wantInMsg:  "namespace kube-system is protected",
		},
		{
			reason:     "a pod that does not exist cannot be isolated",
			incident:   alertIncident(ns, "missing-pod", "ContainerShell", ns, "ghost"),
			wantPhase:  riposte.PhaseFailed,
			wantCond:   riposte.IncidentPlanned,
			wantReason: riposte.ReasonPlanFailed,
			wantInMsg:  "does not exist",
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			mustCreate(t, tc.incident)
			inc := waitForPhase(t, tc.incident.Namespace, tc.incident.Name, tc.wantPhase)
			c := condition(t, inc.Status.Conditions, tc.wantCond)
			if c.Status != metav1.ConditionFalse || c.Reason != tc.wantReason || !strings.Contains(c.Message, tc.wantInMsg) {
				t.Errorf("%s = %s/%s %q, want False/%s containing %q", tc.wantCond, c.Status, c.Reason, c.Message, tc.wantReason, tc.wantInMsg)
			}
			if tc.wantPhase == riposte.PhaseFailed {
				if stalled := condition(t, inc.Status.Conditions, riposte.ConditionStalled); stalled.Status != metav1.ConditionTrue {
					t.Errorf("a failed incident should be Stalled for health checks")
				}
			}
			gate := &riposte.ApprovalGate{}
			if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: tc.incident.Namespace, Name: tc.incident.Name}, gate); !apierrors.IsNotFound(err) {
				t.Errorf("no gate should be opened; got err %v", err)
			}
		})
	}
	refusals := map[string]float64{}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "riposte_guardrail_refusals_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			refusals[m.GetLabel()[0].GetValue()] += m.GetCounter().GetValue()
		}
	}
	if refusals["OutOfScope"] < 1 || refusals["ProtectedNamespace"] < 1 {
		t.Errorf("guardrail refusals counted %v, want OutOfScope and ProtectedNamespace", refusals)
	}
	for _, target := range []client.Object{pod, ksPod} {
		live := &corev1.Pod{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(target), live); err != nil {
			t.Fatal(err)
		}
		if _, ok := live.Labels[actions.QuarantineLabel]; ok {
			t.Errorf("pod %s/%s was labelled although every incident was refused", live.Namespace, live.Name)
		}
	}
}

// appendDecision records a person's decision on a gate as that person.
func appendDecision(t *testing.T, ns, gate, user string, verdict riposte.DecisionVerdict) {
	t.Helper()
	if err := decideAs(user, user, ns, gate, verdict); err != nil {
		t.Fatalf("recording %s's decision: %v", user, err)
	}
}

// decideAs appends a decision naming user, sent with caller's identity.
func decideAs(caller, user, ns, gate string, verdict riposte.DecisionVerdict) error {
	return updateAs(context.Background(), people[caller], &riposte.ApprovalGate{}, client.ObjectKey{Namespace: ns, Name: gate}, func(o client.Object) {
		g := o.(*riposte.ApprovalGate)
		now := metav1.Now()
		g.Spec.Decisions = append(g.Spec.Decisions, riposte.Decision{User: user, Decision: verdict, Reason: "checked the pod", At: &now})
	})
}

// A plan approved later is re-planned, found unchanged, and applied.
func TestApprovedGateLeadsToRemediation(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	mustCreate(t, isolatePlaybook(ns, "manual", "ContainerShell", nil))
	mustCreate(t, alertIncident(ns, "am-2", "ContainerShell", ns, pod.Name))
	waitForPhase(t, ns, "am-2", riposte.PhaseAwaitingApproval)

	appendDecision(t, ns, "am-2", "alice", riposte.DecisionApprove)
	inc := waitForPhase(t, ns, "am-2", riposte.PhaseRemediated)
	if inc.Status.ApprovedAt == nil || !strings.Contains(condition(t, inc.Status.Conditions, riposte.IncidentApproved).Message, "approved by 1 of 1") {
		t.Errorf("approval not recorded: approvedAt %v, conditions %s", inc.Status.ApprovedAt, conditionSummary(inc.Status.Conditions))
	}
	gate := &riposte.ApprovalGate{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "am-2"}, gate); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(gate.Status.DecidedBy, []string{"alice"}) {
		t.Errorf("gate decidedBy = %v, want alice", gate.Status.DecidedBy)
	}
	// The record keeps what existed before the plan, not what the re-plan saw.
	ops := []riposte.ChangeOperation{}
	for _, c := range inc.Status.Steps[0].Changes {
		ops = append(ops, c.Operation)
	}
	if diff := cmp.Diff([]riposte.ChangeOperation{riposte.OperationCreate, riposte.OperationPatch}, ops); diff != "" {
		t.Errorf("change operations (-want +got):\n%s", diff)
	}

	// Undone and deleted, the incident takes its gate with it: the
	// record written out names who approved the plan, and why.
	askUndo(t, "bob", ns, "am-2")
	waitForPhase(t, ns, "am-2", riposte.PhaseUndone)
	if err := k8sClient.Delete(ctx, inc); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		return expectEventSaying(ctx, ns, "am-2", "RecordKept", "deleted incident's gate am-2: Approved; Approve by alice (checked the pod)")
	})
}

// A rejected gate never leads to a change; a target replaced after the plan
// was shown is not acted on either.
func TestNothingRunsWithoutTheApprovedPlan(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	mustCreate(t, isolatePlaybook(ns, "manual", "ContainerShell", nil))

	rejected := deployedPod(t, ns, "rejected")
	mustCreate(t, alertIncident(ns, "am-rejected", "ContainerShell", ns, rejected.Name))
	waitForPhase(t, ns, "am-rejected", riposte.PhaseAwaitingApproval)
	appendDecision(t, ns, "am-rejected", "bob", riposte.DecisionReject)
	inc := waitForPhase(t, ns, "am-rejected", riposte.PhaseRejected)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentApproved); c.Reason != riposte.ReasonRejected || !strings.Contains(c.Message, "rejected by bob") {
		t.Errorf("Approved condition = %s %q", c.Reason, c.Message)
	}

	// A target deleted while its plan waits: the gate is withdrawn, and the
	// pod that comes back under the same name is not touched.
	replaced := deployedPod(t, ns, "replaced")
	mustCreate(t, alertIncident(ns, "am-replaced", "ContainerShell", ns, replaced.Name))
	waitForPhase(t, ns, "am-replaced", riposte.PhaseAwaitingApproval)
	// No kubelet runs here: delete at once, as a force delete would.
	if err := k8sClient.Delete(ctx, replaced, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	inc = waitForPhase(t, ns, "am-replaced", riposte.PhaseCancelled)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentApproved); c.Reason != riposte.ReasonTargetGone {
		t.Errorf("Approved condition = %s %q, want TargetGone", c.Reason, c.Message)
	}
	again := replaced.DeepCopy()
	again.ResourceVersion, again.UID = "", ""
	mustCreate(t, again)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		gate := &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "am-replaced"}, gate); err != nil || gate.Status.Phase != riposte.GateCancelled {
			return fmt.Errorf("gate phase %q (err %v), want Cancelled", gate.Status.Phase, err)
		}
		return nil
	})
	if err := decideAs("alice", "alice", ns, "am-replaced", riposte.DecisionApprove); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "it takes no more decisions") {
		t.Fatalf("a late approval of a cancelled gate: %v, want Forbidden", err)
	}
	testenv.Consistently(t, time.Second, func(ctx context.Context) error {
		cur, err := getIncident(ctx, ns, "am-replaced")
		if err != nil || cur.Status.Phase != riposte.PhaseCancelled {
			return fmt.Errorf("a late approval of a cancelled gate moved the incident to %q (err %v)", cur.Status.Phase, err)
		}
		return nil
	})

	for _, name := range []string{rejected.Name, replaced.Name} {
		live := &corev1.Pod{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, live); err != nil {
			t.Fatal(err)
		}
		if _, ok := live.Labels[actions.QuarantineLabel]; ok {
			t.Errorf("pod %s was isolated without an approved plan", name)
		}
	}
	np := &networkingv1.NetworkPolicy{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "riposte-quarantine-deny-all"}, np); !apierrors.IsNotFound(err) {
		t.Errorf("a quarantine NetworkPolicy exists (err %v)", err)
	}
}

// A second pod isolated in the same namespace reuses the quarantine policy:
// the record says it was already in place, and nothing is written for it.
func TestSecondIsolationReusesThePolicy(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	first, second := deployedPod(t, ns, "one"), deployedPod(t, ns, "two")
	mustCreate(t, isolatePlaybook(ns, "isolate", "ContainerShell", &riposte.AutoApprove{}))
	mustCreate(t, alertIncident(ns, "am-one", "ContainerShell", ns, first.Name))
	waitForPhase(t, ns, "am-one", riposte.PhaseRemediated)
	np := &networkingv1.NetworkPolicy{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "riposte-quarantine-deny-all"}, np); err != nil {
		t.Fatal(err)
	}
	// Let the cache see the policy, as it would between two real alerts.
	time.Sleep(200 * time.Millisecond)

	mustCreate(t, alertIncident(ns, "am-two", "ContainerShell", ns, second.Name))
	inc := waitForPhase(t, ns, "am-two", riposte.PhaseRemediated)
	got := []riposte.ChangeOperation{}
	for _, c := range inc.Status.Steps[0].Changes {
		got = append(got, c.Operation)
	}
	if diff := cmp.Diff([]riposte.ChangeOperation{riposte.OperationUnchanged, riposte.OperationPatch}, got); diff != "" {
		t.Errorf("second isolation's changes (-want +got):\n%s", diff)
	}
	again := &networkingv1.NetworkPolicy{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(np), again); err != nil || again.ResourceVersion != np.ResourceVersion {
		t.Errorf("the shared policy was rewritten (resourceVersion %s -> %s, err %v)", np.ResourceVersion, again.ResourceVersion, err)
	}
	live := &corev1.Pod{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(second), live); err != nil || live.Labels[actions.QuarantineLabel] != "deny-all" {
		t.Errorf("second pod labels = %v (err %v)", live.Labels, err)
	}
}

// A plan that changed after approval (here, the playbook was edited while the
// gate waited) is not run: the gate is superseded by a new one showing the new
// plan, and only its approval leads to the remediation.
func TestChangedPlanAfterApprovalAsksAgain(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	pb := isolatePlaybook(ns, "manual", "ContainerShell", nil)
	mustCreate(t, pb)
	mustCreate(t, alertIncident(ns, "am-3", "ContainerShell", ns, pod.Name))
	waitForPhase(t, ns, "am-3", riposte.PhaseAwaitingApproval)

	if err := updateWithRetry(ctx, &riposte.Playbook{}, client.ObjectKeyFromObject(pb), func(o client.Object) {
		o.(*riposte.Playbook).Spec.Steps[0].IsolatePod = &riposte.IsolatePodParams{AllowDNS: true}
	}); err != nil {
		t.Fatal(err)
	}
	// Let the manager's cache see the edit, as a GitOps sync would long before.
	time.Sleep(300 * time.Millisecond)
	appendDecision(t, ns, "am-3", "alice", riposte.DecisionApprove)

	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		old, next := &riposte.ApprovalGate{}, &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "am-3"}, old); err != nil {
			return err
		}
		if old.Status.Phase != riposte.GateSuperseded || !strings.Contains(old.Status.Message, "the world changed since approval") {
			return fmt.Errorf("old gate %s: %q", old.Status.Phase, old.Status.Message)
		}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "am-3-2"}, next); err != nil {
			return err
		}
		if next.Status.Phase != riposte.GatePending || next.Spec.Plan.Hash == old.Spec.Plan.Hash ||
			next.Spec.Plan.Steps[0].Changes[0].Object.Name != "riposte-quarantine-allow-dns" {
			return fmt.Errorf("new gate %s with plan %+v", next.Status.Phase, next.Spec.Plan.Steps)
		}
		return nil
	})
	// The new gate is created before the incident's status names it.
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		inc, err := getIncident(ctx, ns, "am-3")
		if err != nil {
			return err
		}
		if inc.Status.Phase != riposte.PhaseAwaitingApproval || inc.Status.ApprovalGate != "am-3-2" || inc.Status.GateRevision != 2 {
			return fmt.Errorf("incident %s follows gate %q revision %d, want AwaitingApproval on am-3-2 revision 2", inc.Status.Phase, inc.Status.ApprovalGate, inc.Status.GateRevision)
		}
		return nil
	})
	live := &corev1.Pod{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), live); err != nil || live.Labels[actions.QuarantineLabel] != "" {
		t.Fatalf("the pod was changed before the new plan was approved: %v (err %v)", live.Labels, err)
	}

	appendDecision(t, ns, "am-3-2", "bob", riposte.DecisionApprove)
	inc := waitForPhase(t, ns, "am-3", riposte.PhaseRemediated)
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), live); err != nil || live.Labels[actions.QuarantineLabel] != "allow-dns" {
		t.Errorf("pod labels %v (err %v), want the newly approved allow-dns isolation", live.Labels, err)
	}
	gate := &riposte.ApprovalGate{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "am-3-2"}, gate); err != nil || inc.Status.PlanHash != gate.Spec.Plan.Hash {
		t.Errorf("applied plan %s, approved %s (err %v)", inc.Status.PlanHash, gate.Spec.Plan.Hash, err)
	}
}

// A gate Riposte cancelled moves its incident on even when the pass that
// cancelled it could not store the incident (its status write conflicted
// with a change to the spec, as when the target goes and the source
// resolves the incident at the same moment): the gate's record is enough.
func TestCancelledGateMovesItsIncidentOn(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	mustCreate(t, isolatePlaybook(ns, "manual", "ContainerShell", nil))
	mustCreate(t, alertIncident(ns, "am-cancel", "ContainerShell", ns, pod.Name))
	waitForPhase(t, ns, "am-cancel", riposte.PhaseAwaitingApproval)

	// The gate is cancelled as Riposte would, the incident left as it was
	// (retried while the gate controller records its own look at the gate).
	for {
		gate := &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "am-cancel"}, gate); err != nil {
			t.Fatal(err)
		}
		approval.Record(gate, approval.Verdict{Phase: riposte.GateCancelled, Reason: riposte.ReasonTargetGone,
			Message: "the target no longer exists", DecidedBy: []string{"riposte"}}, time.Now())
		err := k8sClient.Status().Update(ctx, gate)
		if err == nil {
			break
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	inc := waitForPhase(t, ns, "am-cancel", riposte.PhaseCancelled)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentApproved); c.Reason != riposte.ReasonTargetGone || !strings.Contains(c.Message, "the target no longer exists") {
		t.Errorf("Approved condition = %+v", c)
	}
	expectUnisolated(t, pod)
}

// A playbook in DryRun mode approved by policy opens no gate and applies
// nothing: the record shows each change the API server's dry run accepted,
// where a person reviews it.
func TestDryRunModeRecordsThePlanItWouldApply(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	pb := isolatePlaybook(ns, "isolate-dry", "ContainerShell", &riposte.AutoApprove{})
	pb.Spec.Mode = riposte.ModeDryRun
	mustCreate(t, pb)
	mustCreate(t, alertIncident(ns, "am-dry", "ContainerShell", ns, pod.Name))
	inc := waitForPhase(t, ns, "am-dry", riposte.PhaseDryRun)
	if len(inc.Status.Steps) != 1 {
		t.Fatalf("steps %+v, want the one step of the plan", inc.Status.Steps)
	}
	var got []string
	for _, c := range inc.Status.Steps[0].Changes {
		got = append(got, fmt.Sprintf("%s %s undo %s done=%v", c.Operation, c.Object, c.Undo, c.Done))
	}
	want := []string{
		fmt.Sprintf("Create NetworkPolicy/%s/riposte-quarantine-deny-all undo Keep done=false", ns),
		fmt.Sprintf("Patch Pod/%s/%s undo Release done=false", ns, pod.Name),
	}
	if diff := cmp.Diff(want, got); diff != "" || inc.Status.Steps[0].Phase != riposte.StepSkipped {
		t.Errorf("step %s, changes (-want +got):\n%s", inc.Status.Steps[0].Phase, diff)
	}
	if c := condition(t, inc.Status.Conditions, riposte.IncidentPlanned); !strings.Contains(c.Message, "dry run") {
		t.Errorf("Planned = %q, want the dry run that accepted it", c.Message)
	}
	expectQuarantined(t, pod, false)
	np := &networkingv1.NetworkPolicy{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "riposte-quarantine-deny-all"}, np); !apierrors.IsNotFound(err) {
		t.Errorf("the quarantine policy exists (err %v): a DryRun playbook wrote it", err)
	}
}

// While intake stores alerts without a pause (an alert storm), remediation
// is slowed to one pass at a time, never stopped: every incident is still
// remediated, and the passes' wait is measured for whoever watches.
func TestRemediationGoesOnWhileIntakeStores(t *testing.T) {
	ns := newNamespace(t)
	waitedBefore := passWaitSeconds(t)
	defer lanes.Storing()()
	mustCreate(t, isolatePlaybook(ns, "isolate", "ContainerShell", &riposte.AutoApprove{}))
	for _, name := range []string{"one", "two", "three"} {
		pod := deployedPod(t, ns, name)
		mustCreate(t, alertIncident(ns, "am-"+name, "ContainerShell", ns, pod.Name))
	}
	for _, name := range []string{"one", "two", "three"} {
		waitForPhase(t, ns, "am-"+name, riposte.PhaseRemediated)
	}
	if waited := passWaitSeconds(t) - waitedBefore; waited < 0.001 {
		t.Errorf("riposte_incident_pass_wait_seconds grew by %.3fs while three incidents were remediated one pass at a time, want the passes' waits", waited)
	}
}

// passWaitSeconds is the sum of riposte_incident_pass_wait_seconds.
func passWaitSeconds(t *testing.T) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "riposte_incident_pass_wait_seconds" {
			return f.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	t.Fatal("no riposte_incident_pass_wait_seconds on the manager's registry")
	return 0
}
