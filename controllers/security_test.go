package controllers_test

// The attack suite (make test-security): each test performs an attack a
// malicious insider tried, as a user holding exactly the roles a real
// cluster gives them, and asserts it is refused with the reason they see.
// docs/security.md names the guarantee each one holds.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/approval"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// kubeEdit is the part of Kubernetes' aggregated edit role these attacks
// touch. The test control plane runs no controller-manager, so nothing
// aggregates ClusterRoles: the test binds what aggregation would, this and
// Riposte's riposte-editor (labelled aggregate-to-edit).
var kubeEdit = &rbacv1.ClusterRole{
	ObjectMeta: metav1.ObjectMeta{Name: "test-kube-edit"},
	Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services", "configmaps", "serviceaccounts", "persistentvolumeclaims"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"impersonate"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies", "ingresses"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
	},
}

// namespaceEditor is a new user holding the namespace edit role in ns, as a
// RoleBinding to edit gives on a real cluster.
func namespaceEditor(t *testing.T, user, ns string) client.Client {
	t.Helper()
	ctx := context.Background()
	if err := k8sClient.Create(ctx, kubeEdit.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return namespaceUser(t, user, ns, kubeEdit.Name, "riposte-editor")
}

// namespaceUser is a new user bound to the given ClusterRoles in ns.
func namespaceUser(t *testing.T, user, ns string, clusterRoles ...string) client.Client {
	t.Helper()
	for _, role := range clusterRoles {
		mustCreate(t, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		})
	}
	c, err := env.UserClient(user)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func expectForbidden(t *testing.T, what string, err error, want string) {
	t.Helper()
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v, want Forbidden saying %q", what, err, want)
	}
}

func manualIncident(ns, name, user string, target *corev1.Pod, targetNamespace string) *riposte.Incident {
	return &riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: riposte.IncidentSpec{Source: riposte.SourceManual, AlertName: "ShellInPod", Severity: "critical", RequestedBy: user,
			Target: &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: targetNamespace, Name: target.Name}},
	}
}

// clusterWidePlaybook is a playbook in Riposte's namespace answering
// alertName everywhere, approving critical ones automatically.
func clusterWidePlaybook(t *testing.T, name, alertName string, requests riposte.ManualRequests) {
	t.Helper()
	pb := isolatePlaybook(operatorNamespace, name, alertName, &riposte.AutoApprove{When: "incident.spec.severity == 'critical'"})
	pb.Spec.ServiceAccountName = ""
	pb.Spec.Approval.ManualRequests = requests
	mustCreate(t, pb)
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), pb) })
}

// A namespace editor cannot make Riposte act in a namespace they have no
// rights in: a Manual incident's target is in its own namespace.
func TestAttackManualIncidentTargetsAnotherNamespace(t *testing.T) {
	ctx := context.Background()
	teamA, teamB := newNamespace(t), newNamespace(t)
	victim := deployedPod(t, teamB, "payments")
	clusterWidePlaybook(t, "isolate-anyone", "ShellInPod", riposte.ManualAnyone)
	mallory := namespaceEditor(t, "mallory-a", teamA)

	err := mallory.Create(ctx, manualIncident(teamA, "isolate-payments", "mallory-a", victim, teamB))
	expectForbidden(t, "a Manual incident in team-a naming a pod in team-b", err, "spec.target must be in the namespace of the incident ("+teamA+")")

	// Naming it through the labels an alert's target is read from: the
	// labels of a Manual incident name no target.
	byLabels := manualIncident(teamA, "isolate-payments-by-labels", "mallory-a", victim, teamB)
	byLabels.Spec.Target = nil
	byLabels.Spec.Labels = map[string]string{"namespace": teamB, "pod": victim.Name}
	if err := mallory.Create(ctx, byLabels); err != nil {
		t.Fatal(err)
	}
	inc := waitForPhase(t, teamA, byLabels.Name, riposte.PhaseFailed)
	if inc.Status.Context != nil && inc.Status.Context.Target != nil {
		t.Errorf("a Manual incident's labels were taken for its target: %+v", inc.Status.Context.Target)
	}
	expectUnisolated(t, victim)

	// A cluster-scoped object with the incident's namespace written on it
	// passes for a namespaced one only on paper.
	clusterWide := manualIncident(teamA, "revoke-admin", "mallory-a", victim, teamA)
	clusterWide.Spec.Target = &riposte.ObjectReference{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding", Namespace: teamA, Name: "cluster-admin"}
	if err := mallory.Create(ctx, clusterWide); err != nil {
		t.Fatal(err)
	}
	waitForCondition(t, teamA, clusterWide.Name, riposte.IncidentEnriched, func(c *metav1.Condition) bool {
		return c.Reason == riposte.ReasonNoTarget && strings.Contains(c.Message, "only at an object in its own namespace, or at a node")
	})
}

// A cluster-wide playbook answers people only when it opts in, and never
// approves a person's request automatically: its autoApprove would read
// the severity the requester wrote.
func TestAttackClusterWidePlaybookActsForAPerson(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mallory := namespaceEditor(t, "mallory-cw", ns)

	clusterWidePlaybook(t, "answers-alerts-only", "ClusterShell", "")
	inc := manualIncident(ns, "please-isolate", "mallory-cw", pod, ns)
	inc.Spec.AlertName = "ClusterShell"
	if err := mallory.Create(ctx, inc); err != nil {
		t.Fatal(err)
	}
	got := waitForPhase(t, ns, inc.Name, riposte.PhaseUnmatched)
	if got.Status.Playbook != nil {
		t.Errorf("matched %v, want no playbook", got.Status.Playbook)
	}

	clusterWidePlaybook(t, "answers-people", "ClusterShellOptIn", riposte.ManualRequireAccess)
	inc = manualIncident(ns, "please-isolate-2", "mallory-cw", pod, ns)
	inc.Spec.AlertName = "ClusterShellOptIn"
	if err := mallory.Create(ctx, inc); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ns, inc.Name, riposte.PhaseAwaitingApproval)
	gate := &riposte.ApprovalGate{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: inc.Name}, gate); err != nil {
		t.Fatal(err)
	}
	if gate.Spec.Policy.Automatic || gate.Spec.Policy.Requester != "mallory-cw" {
		t.Errorf("gate policy %+v, want people to decide, mallory-cw as requester", gate.Spec.Policy)
	}
	if out, err := plugin(t, "alice", ns, "show", inc.Name); err != nil || !strings.Contains(out, "Asked by:  mallory-cw (a person's request") {
		t.Errorf("the approver is not told whose request it is (err %v):\n%s", err, out)
	}
	expectUnisolated(t, pod)
}

// Riposte never does for a requester what they could not do themselves.
func TestAttackRequesterWithoutAccess(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	mustCreate(t, isolatePlaybook(ns, "isolate", "ShellInPod", &riposte.AutoApprove{}))
	// May open incidents (riposte-editor) but holds no rights on pods.
	intern := namespaceUser(t, "intern", ns, "riposte-editor")
	if err := intern.Create(ctx, manualIncident(ns, "interns-request", "intern", pod, ns)); err != nil {
		t.Fatal(err)
	}
	inc := waitForPhase(t, ns, "interns-request", riposte.PhaseFailed)
	c := condition(t, inc.Status.Conditions, riposte.IncidentPlanned)
	if c.Reason != riposte.ReasonRequesterNoAccess || !strings.Contains(c.Message, "intern asked for this plan but may not") ||
		!strings.Contains(c.Message, "patch pods "+ns+"/"+pod.Name) {
		t.Errorf("Planned = %s %q, want RequesterLacksAccess naming the write", c.Reason, c.Message)
	}
	expectUnisolated(t, pod)

	// Someone who may isolate the pod themselves may ask; people still decide.
	editor := namespaceEditor(t, "editor-"+ns[:3], ns)
	if err := editor.Create(ctx, manualIncident(ns, "editors-request", "editor-"+ns[:3], pod, ns)); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ns, "editors-request", riposte.PhaseAwaitingApproval)
	expectUnisolated(t, pod)

	// Nobody else points a person's request elsewhere: it stays theirs.
	other := deployedPod(t, ns, "db")
	err := updateAs(ctx, intern, &riposte.Incident{}, client.ObjectKey{Namespace: ns, Name: "editors-request"}, func(o client.Object) {
		inc := o.(*riposte.Incident)
		inc.Spec.Target = &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: other.Name}
		inc.Spec.TargetSetBy = "intern"
	})
	expectForbidden(t, "retargeting someone else's request", err, "only editor-"+ns[:3]+", who opened this Manual incident, may point it at another target")
}

// A person's request is decided by people, even under a playbook whose
// gates approve themselves on expiry, and never silences alerts.
func TestAttackRequestsNobodyDecides(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	editor := namespaceEditor(t, "editor-exp-"+ns[:3], ns)
	pb := isolatePlaybook(ns, "isolate", "ShellInPod", nil)
	pb.Spec.Approval.Timeout = &metav1.Duration{Duration: time.Second}
	pb.Spec.Approval.OnExpiry = riposte.ExpiryApprove
	mustCreate(t, pb)
	if err := editor.Create(ctx, manualIncident(ns, "wait-it-out", "editor-exp-"+ns[:3], pod, ns)); err != nil {
		t.Fatal(err)
	}
	inc := waitForPhase(t, ns, "wait-it-out", riposte.PhaseRejected)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentApproved); !strings.Contains(c.Message, "rejects on expiry") {
		t.Errorf("Approved = %s %q, want expiry to reject a person's request", c.Reason, c.Message)
	}
	expectUnisolated(t, pod)

	silencer := &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "silence", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"Noisy"}}}},
			Steps:              []riposte.Step{{Name: "mute", Action: riposte.ActionSilence}},
			Approval:           riposte.ApprovalPolicy{ManualRequests: riposte.ManualAnyone},
			ServiceAccountName: remediatorAccount,
		},
	}
	mustCreate(t, silencer)
	mute := manualIncident(ns, "mute-everything", "editor-exp-"+ns[:3], pod, ns)
	mute.Spec.AlertName, mute.Spec.Labels = "Noisy", map[string]string{"severity": "critical"}
	if err := editor.Create(ctx, mute); err != nil {
		t.Fatal(err)
	}
	inc = waitForPhase(t, ns, "mute-everything", riposte.PhaseFailed)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentPlanned); c.Reason != riposte.ReasonRequestRefused || !strings.Contains(c.Message, "never done at a person's request") {
		t.Errorf("Planned = %s %q, want the silence refused", c.Reason, c.Message)
	}
}

// What intake observed cannot be rewritten; a person may point the incident
// elsewhere only in its namespace, in their own name, and then people
// decide.
func TestAttackRewritingEvidence(t *testing.T) {
	ctx := context.Background()
	ns, other := newNamespace(t), newNamespace(t)
	first, second := deployedPod(t, ns, "web"), deployedPod(t, ns, "db")
	elsewhere := deployedPod(t, other, "db")
	// Isolating a db pod is approved automatically, anything else by people.
	pb := isolatePlaybook(ns, "isolate", "ContainerShell", &riposte.AutoApprove{
		When: "has(incident.status.context.target) && incident.status.context.target.name.startsWith('db') && incident.spec.severity == 'critical'"})
	pb.Spec.Triggers.Alerts[0].Severities = nil
	pb.Spec.Approval.ManualRequests = riposte.ManualAnyone
	mustCreate(t, pb)
	mustCreate(t, alertIncident(ns, "am-evidence", "ContainerShell", ns, first.Name))
	waitForPhase(t, ns, "am-evidence", riposte.PhaseAwaitingApproval)
	mallory := namespaceEditor(t, "mallory-ev", ns)
	key := client.ObjectKey{Namespace: ns, Name: "am-evidence"}
	update := func(mutate func(*riposte.Incident)) error {
		return updateAs(ctx, mallory, &riposte.Incident{}, key, func(o client.Object) { mutate(o.(*riposte.Incident)) })
	}
	target := func(namespace, name string) *riposte.ObjectReference {
		return &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: namespace, Name: name}
	}

	expectForbidden(t, "lowering the severity", update(func(i *riposte.Incident) { i.Spec.Severity = "info" }), "what Riposte observed")
	expectForbidden(t, "editing the labels", update(func(i *riposte.Incident) { i.Spec.Labels["pod"] = second.Name }), "what Riposte observed")
	expectForbidden(t, "resolving the alert", update(func(i *riposte.Incident) { i.Spec.Status = riposte.AlertResolved }), "what Riposte observed")
	expectForbidden(t, "retargeting anonymously", update(func(i *riposte.Incident) { i.Spec.Target = target(ns, second.Name) }),
		"setting spec.target needs spec.targetSetBy to be you (mallory-ev)")
	expectForbidden(t, "retargeting in alice's name", update(func(i *riposte.Incident) {
		i.Spec.Target, i.Spec.TargetSetBy = target(ns, second.Name), "alice"
	}), "setting spec.target needs spec.targetSetBy to be you (mallory-ev)")
	expectForbidden(t, "retargeting into another namespace", update(func(i *riposte.Incident) {
		i.Spec.Target, i.Spec.TargetSetBy = target(other, elsewhere.Name), "mallory-ev"
	}), "spec.target must be in the namespace of the incident")
	expectForbidden(t, "escalating without the verb", update(func(i *riposte.Incident) { i.Spec.Escalated = true }),
		"mallory-ev may not escalate incidents in "+ns)
	expectForbidden(t, "handing the incident to an owner the garbage collector finds missing", update(func(i *riposte.Incident) {
		i.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "gone", UID: "0b6c5b4e-0000-0000-0000-000000000000"}}
	}), "owner references are Riposte's")
	expectForbidden(t, "relabelling what Riposte matches on", update(func(i *riposte.Incident) {
		if i.Labels == nil {
			i.Labels = map[string]string{}
		}
		i.Labels["riposte.dev/alertname"] = "Other"
	}),
		"labels under riposte.dev/ are set by Riposte only")
	for _, tc := range []struct {
		reason string
		mutate func(*riposte.Incident)
		want   string
	}{
		{"opening it escalated", func(i *riposte.Incident) { i.Spec.Escalated = true }, "may not escalate incidents"},
		{"opening it as a drift finding of another playbook", func(i *riposte.Incident) { fakeDrift(i) }, "spec.drift is written by Riposte's drift detector only"},
		{"opening it with Riposte's labels", func(i *riposte.Incident) { i.Labels = map[string]string{"riposte.dev/source": "drift"} }, "labels under riposte.dev/ are set by Riposte only"},
		{"opening it with Riposte's finalizer", func(i *riposte.Incident) { i.Finalizers = []string{riposte.RecordFinalizer} }, "finalizers under riposte.dev/"},
	} {
		inc := manualIncident(ns, "opened-"+strings.ReplaceAll(strings.Fields(tc.reason)[2], "'", ""), "mallory-ev", first, ns)
		tc.mutate(inc)
		inc.Spec.Source = riposte.SourceManual
		expectForbidden(t, tc.reason, mallory.Create(ctx, inc), tc.want)
	}

	// Retargeting in her own name is a request: a new gate, for people, even
	// though the playbook would approve isolating a db pod by itself.
	if err := update(func(i *riposte.Incident) { i.Spec.Target, i.Spec.TargetSetBy = target(ns, second.Name), "mallory-ev" }); err != nil {
		t.Fatalf("retargeting in her own name: %v", err)
	}
	appendDecision(t, ns, "am-evidence", "alice", riposte.DecisionApprove)
	next := &riposte.ApprovalGate{}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "am-evidence-2"}, next); err != nil {
			return err
		}
		if next.Status.Phase != riposte.GatePending {
			return fmt.Errorf("new gate is %q", next.Status.Phase)
		}
		return nil
	})
	if next.Spec.Policy.Automatic || next.Spec.Policy.Requester != "mallory-ev" {
		t.Errorf("the retargeted plan's policy %+v: want people to decide, mallory-ev as requester", next.Spec.Policy)
	}
	expectUnisolated(t, first)
	expectUnisolated(t, second)
}

// Nobody but Riposte opens gates; a gate deleted or re-created while it
// waits decides nothing, and its incident asks again instead of waiting
// forever.
func TestAttackForgedAndDeletedGates(t *testing.T) {
	ctx := context.Background()
	ns, pod, gate := pendingGate(t, nil)
	mustCreate(t, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "test-gate-creator"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"riposte.dev"}, Resources: []string{"approvalgates"}, Verbs: []string{"create", "delete", "get"}}},
	})
	t.Cleanup(func() {
		_ = k8sClient.Delete(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "test-gate-creator"}})
	})
	forger := namespaceUser(t, "gate-forger", ns, "test-gate-creator")
	forged := &riposte.ApprovalGate{
		ObjectMeta: metav1.ObjectMeta{Name: "forged", Namespace: ns},
		Spec: riposte.ApprovalGateSpec{Incident: "am-gate", Playbook: riposte.NamespacedName{Namespace: ns, Name: "manual"},
			Plan:   riposte.Plan{Hash: "sha256:x", Steps: []riposte.PlannedStep{{Name: "isolate", Action: riposte.ActionIsolatePod}}},
			Policy: riposte.GatePolicy{Automatic: true}},
	}
	expectForbidden(t, "creating a gate", forger.Create(ctx, forged), "only Riposte opens ApprovalGates; gate-forger may not")

	err := updateAs(ctx, people["carol"], &riposte.ApprovalGate{}, client.ObjectKey{Namespace: ns, Name: gate}, func(o client.Object) {
		o.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "gone", UID: "0b6c5b4e-0000-0000-0000-000000000000"}})
	})
	expectForbidden(t, "handing the gate to an owner the garbage collector finds missing", err, "a gate's owner references are Riposte's")

	// Deleting the pending gate: the incident opens a new one and says why.
	if err := forger.Delete(ctx, &riposte.ApprovalGate{ObjectMeta: metav1.ObjectMeta{Name: gate, Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		inc, err := getIncident(ctx, ns, "am-gate")
		if err != nil {
			return err
		}
		if inc.Status.ApprovalGate != gate+"-2" || inc.Status.Phase != riposte.PhaseAwaitingApproval {
			return fmt.Errorf("incident %s waits on %q", inc.Status.Phase, inc.Status.ApprovalGate)
		}
		return expectEvent(ctx, ns, "am-gate", riposte.ReasonGateMissing)
	})
	expectUnisolated(t, pod)
	appendDecision(t, ns, gate+"-2", "alice", riposte.DecisionApprove)
	waitForPhase(t, ns, "am-gate", riposte.PhaseRemediated)
}

// withDecisionBindingChanged changes the decision policy's binding, runs
// forge while the API server no longer denies, and puts the shipped binding
// back: an upgrade, a reinstall or a mistake, as an attacker would use it.
// It returns once the API server denies forgeries on gate again.
func withDecisionBindingChanged(t *testing.T, ns, gate string, change func(context.Context) error, forge func() error) {
	t.Helper()
	ctx := context.Background()
	restore := func() {
		if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "policies", "approvalgate-decisions.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(restore)
	if err := change(ctx); err != nil {
		t.Fatal(err)
	}
	// Policies take effect asynchronously: forge until the API server lets it through.
	testenv.Eventually(t, waitFor, func(context.Context) error { return forge() })
	restore()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		if id, why, err := approval.Enforcement(ctx, k8sClient, operatorNamespace); err != nil || id == "" {
			return fmt.Errorf("not the shipped policy yet: %s %v", why, err)
		}
		g := &riposte.ApprovalGate{}
		if err := people["carol"].Get(ctx, client.ObjectKey{Namespace: ns, Name: gate}, g); err != nil {
			return err
		}
		g.Spec.Decisions = append(g.Spec.Decisions, riposte.Decision{User: "nobody-" + ns[:3], Decision: riposte.DecisionApprove, Reason: "probe"})
		if err := people["carol"].Update(ctx, g, client.DryRunAll); !apierrors.IsForbidden(err) {
			return fmt.Errorf("the API server does not deny forged decisions yet: %v", err)
		}
		return nil
	})
}

// Decisions forged while the decision policy was off are never counted,
// whatever the policy looks like when Riposte counts: deleting and
// restoring its binding, or switching it to Audit and back. The gate that
// holds them is replaced, so the people whose names were taken can decide.
func TestAttackForgedDecisionsAcrossAReinstall(t *testing.T) {
	ns, pod, gate := pendingGate(t, func(pb *riposte.Playbook) { pb.Spec.Approval.RequiredApprovals = 2 })
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: approval.DecisionPolicyName}}

	withDecisionBindingChanged(t, ns, gate, func(ctx context.Context) error { return k8sClient.Delete(ctx, binding) },
		func() error { return decideAs("carol", "alice", ns, gate, riposte.DecisionApprove) })
	expectReplacedForForgery(t, ns, gate, gate+"-2", "alice")
	withDecisionBindingChanged(t, ns, gate+"-2", func(ctx context.Context) error {
		return updateAs(ctx, k8sClient, &admissionv1.ValidatingAdmissionPolicyBinding{}, client.ObjectKeyFromObject(binding), func(o client.Object) {
			o.(*admissionv1.ValidatingAdmissionPolicyBinding).Spec.ValidationActions = []admissionv1.ValidationAction{admissionv1.Audit}
		})
	}, func() error { return decideAs("carol", "bob", ns, gate+"-2", riposte.DecisionApprove) })
	expectReplacedForForgery(t, ns, gate+"-2", gate+"-3", "bob")
	expectUnisolated(t, pod)

	// The real alice and bob decide on the new gate, under the restored policy.
	appendDecision(t, ns, gate+"-3", "alice", riposte.DecisionApprove)
	appendDecision(t, ns, gate+"-3", "bob", riposte.DecisionApprove)
	waitForPhase(t, ns, "am-gate", riposte.PhaseRemediated)

	// A decided gate takes no more decisions.
	err := decideAs("dave", "dave", ns, gate+"-3", riposte.DecisionReject)
	expectForbidden(t, "rejecting an approved gate", err, "is Approved: it takes no more decisions")
}

// expectReplacedForForgery waits until the forged decision of user on gate
// is unverifiable, counted by nobody, and the incident waits on next.
func expectReplacedForForgery(t *testing.T, ns, gate, next, user string) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		g := &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: gate}, g); err != nil {
			return err
		}
		if g.Status.Phase != riposte.GateSuperseded || g.Status.Approvals != 0 || !slices.Contains(g.Status.UnverifiableDecisions, user) {
			return fmt.Errorf("gate %s is %s with %d approvals, unverifiable %v", gate, g.Status.Phase, g.Status.Approvals, g.Status.UnverifiableDecisions)
		}
		inc, err := getIncident(ctx, ns, "am-gate")
		if err != nil {
			return err
		}
		if inc.Status.Phase != riposte.PhaseAwaitingApproval || inc.Status.ApprovalGate != next {
			return fmt.Errorf("incident %s waits on %q, want %s", inc.Status.Phase, inc.Status.ApprovalGate, next)
		}
		return expectEvent(ctx, ns, gate, riposte.ReasonDecisionsUnverifiable)
	})
}

// Deleting an incident whose containment is applied neither erases its
// record nor leaves the containment orphaned; namespace editors may not
// delete incidents at all.
func TestAttackDeletingARemediatedIncident(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mustCreate(t, isolatePlaybook(ns, "isolate", "ContainerShell", &riposte.AutoApprove{}))
	mustCreate(t, alertIncident(ns, "am-kept", "ContainerShell", ns, pod.Name))
	inc := waitForPhase(t, ns, "am-kept", riposte.PhaseRemediated)

	mallory := namespaceEditor(t, "mallory-del", ns)
	err := mallory.Delete(ctx, inc)
	expectForbidden(t, "a namespace editor deleting an incident", err, `cannot delete resource "incidents"`)
	strip := func(mutate func(*riposte.Incident)) error {
		return updateAs(ctx, mallory, &riposte.Incident{}, client.ObjectKeyFromObject(inc), func(o client.Object) { mutate(o.(*riposte.Incident)) })
	}
	expectForbidden(t, "removing the record's finalizer", strip(func(i *riposte.Incident) { i.Finalizers = nil }),
		"the finalizer riposte.dev/remediation-record keeps the record")
	expectForbidden(t, "having the garbage collector delete it", strip(func(i *riposte.Incident) {
		i.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "gone", UID: "0b6c5b4e-0000-0000-0000-000000000000"}}
	}), "owner references are Riposte's")

	if err := k8sClient.Delete(ctx, inc); err != nil {
		t.Fatal(err)
	}
	waitForCondition(t, ns, "am-kept", riposte.IncidentDeletionBlocked, func(c *metav1.Condition) bool {
		return c.Status == metav1.ConditionTrue && c.Reason == riposte.ReasonRemediationApplied && strings.Contains(c.Message, "kubectl riposte undo")
	})
	expectQuarantined(t, pod, true)
	if out, err := plugin(t, "alice", ns, "describe", "am-kept"); err != nil || !strings.Contains(out, "Deleting:  deletion waits: step isolate (IsolatePod on Pod/") {
		t.Errorf("describe does not say why the deletion waits (err %v):\n%s", err, out)
	}

	askUndo(t, "alice", ns, "am-kept")
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		if _, err := getIncident(ctx, ns, "am-kept"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("incident still there: %v", err)
		}
		return nil
	})
	expectQuarantined(t, pod, false)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error { return expectEvent(ctx, ns, "am-kept", "RecordKept") })

	// Temporary containment is undone at once when its incident is deleted.
	timed := &riposte.Playbook{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "isolate"}, timed); err != nil {
		t.Fatal(err)
	}
	timed.Spec.Steps[0].Duration = &metav1.Duration{Duration: time.Hour}
	if err := k8sClient.Update(ctx, timed); err != nil {
		t.Fatal(err)
	}
	// As a user would (kubectl wait): the manager has read the new
	// generation, so the next plan is temporary.
	waitForPlaybook(t, timed, func(ready, _ *metav1.Condition, generation int64) error {
		if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != generation {
			return fmt.Errorf("playbook not Ready at generation %d: %+v", generation, ready)
		}
		return nil
	})
	second := alertIncident(ns, "am-timed", "ContainerShell", ns, pod.Name)
	second.Spec.Fingerprint = "fedcba9876543210"
	mustCreate(t, second)
	inc = waitForPhase(t, ns, "am-timed", riposte.PhaseRemediated)
	expectQuarantined(t, pod, true)
	if err := k8sClient.Delete(ctx, inc); err != nil {
		t.Fatal(err)
	}
	waitForGone(t, ns, "am-timed")
	expectQuarantined(t, pod, false)

	// An incident whose target is gone (deleted with its namespace, or by
	// hand) holds nothing in place: it goes at once.
	db := deployedPod(t, ns, "db")
	third := alertIncident(ns, "am-target-gone", "ContainerShell", ns, db.Name)
	third.Spec.Fingerprint = "0000000000000ddb"
	mustCreate(t, third)
	inc = waitForPhase(t, ns, "am-target-gone", riposte.PhaseRemediated)
	if err := k8sClient.Delete(ctx, db, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if err := k8sClient.Delete(ctx, inc); err != nil {
		t.Fatal(err)
	}
	waitForGone(t, ns, "am-target-gone")
}

// A step whose own target went (the pod a scale-down removed) still holds
// what it changed elsewhere (the Deployment at zero): deleting the incident
// waits.
func TestAttackDeletingAScaledDownIncidentKeepsItsRecord(t *testing.T) {
	ctx := context.Background()
	ns, inc := scaledToZero(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: inc.Status.Context.Target.Name}}
	if err := k8sClient.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if err := k8sClient.Delete(ctx, inc); err != nil {
		t.Fatal(err)
	}
	waitForCondition(t, ns, inc.Name, riposte.IncidentDeletionBlocked, func(c *metav1.Condition) bool { return c.Status == metav1.ConditionTrue })
}

// waitForCondition waits until incident ns/name has a condition of condType
// that want accepts.
func waitForCondition(t *testing.T, ns, name, condType string, want func(*metav1.Condition) bool) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		cur, err := getIncident(ctx, ns, name)
		if err != nil {
			return err
		}
		if c := meta.FindStatusCondition(cur.Status.Conditions, condType); c == nil || !want(c) {
			return fmt.Errorf("%s = %+v", condType, c)
		}
		return nil
	})
}

func waitForGone(t *testing.T, ns, name string) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		inc, err := getIncident(ctx, ns, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("incident %s: %v", name, err)
		}
		// What holds it, for whoever reads a failure.
		var steps []string
		for _, s := range inc.Status.Steps {
			steps = append(steps, fmt.Sprintf("%s %s %q", s.Name, s.Phase, s.Message))
		}
		return fmt.Errorf("incident %s still there: phase %s, finalizers %v, steps %v, conditions %+v", name, inc.Status.Phase, inc.Finalizers, steps, inc.Status.Conditions)
	})
}

// Nobody can take an alert's or a drift finding's incident name first.
func TestAttackSquattingAnAlertsName(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mallory := namespaceEditor(t, "mallory-sq", ns)
	for _, name := range []string{"am-0123456789abcdef", "am-h-0123", "drift-no-shell-0123456789"} {
		err := mallory.Create(context.Background(), manualIncident(ns, name, "mallory-sq", pod, ns))
		expectForbidden(t, "creating "+name, err, "incident names starting with am- or drift- are kept")
	}
}

// A plan approved by policy has no gate: its verdict is status.autoApproval,
// and an incident's withdrawal from a gate is status.withdrawnGates, which the
// gate controller acts on. Only Riposte writes an incident's status: a
// namespace editor can neither forge an automatic verdict for a plan people
// must decide nor get a gate that waits for them closed.
func TestAttackForgedAutomaticVerdict(t *testing.T) {
	ctx := context.Background()
	ns, pod, gate := pendingGate(t, nil)
	mallory := namespaceEditor(t, "mallory-auto", ns)
	key := client.ObjectKey{Namespace: ns, Name: "am-gate"}
	writeStatus := func(mutate func(*riposte.Incident)) error {
		inc := &riposte.Incident{}
		if err := mallory.Get(ctx, key, inc); err != nil {
			return err
		}
		mutate(inc)
		return mallory.Status().Update(ctx, inc)
	}
	g := &riposte.ApprovalGate{}
	get(t, g, ns, gate)
	expectForbidden(t, "forging an automatic verdict", writeStatus(func(i *riposte.Incident) {
		now := metav1.Now()
		i.Status.AutoApproval = &riposte.AutoApproval{PlaybookGeneration: 1, PlanHash: g.Spec.Plan.Hash, DecidedAt: now}
		i.Status.ApprovalGate, i.Status.ApprovalGateUID = "", ""
	}), `cannot update resource "incidents/status"`)
	expectForbidden(t, "withdrawing the incident from its gate", writeStatus(func(i *riposte.Incident) {
		i.Status.WithdrawnGates = []riposte.WithdrawnGate{{Name: gate, UID: string(g.UID), Phase: riposte.GateCancelled, Reason: "Forged"}}
	}), `cannot update resource "incidents/status"`)
	// Nothing ran, and the gate still waits for people.
	testenv.Consistently(t, time.Second, func(ctx context.Context) error {
		inc, err := getIncident(ctx, ns, "am-gate")
		if err != nil {
			return err
		}
		if inc.Status.Phase != riposte.PhaseAwaitingApproval || inc.Status.AutoApproval != nil || len(inc.Status.Steps) != 0 {
			return fmt.Errorf("incident %s, autoApproval %+v, %d steps: want it waiting for people", inc.Status.Phase, inc.Status.AutoApproval, len(inc.Status.Steps))
		}
		live := &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: gate}, live); err != nil || live.Status.Phase != riposte.GatePending {
			return fmt.Errorf("gate %s (err %v), want Pending", live.Status.Phase, err)
		}
		return nil
	})
	expectUnisolated(t, pod)
}

// A gate whose decision policy changed between the incident's opening of
// it and the gate controller's first look (here an admin adding Audit to
// the binding, which still denies) is judged on the policy in force: a
// real decision made afterwards counts. So does the first decision on a
// gate opened while no policy was installed, once it is.
func TestDecisionPolicyChangedBeforeTheGatesFirstLook(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	t.Cleanup(func() {
		_ = testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "policies", "approvalgate-decisions.yaml"))
	})
	atOpening, _, err := approval.Enforcement(ctx, k8sClient, operatorNamespace)
	if err != nil || atOpening == "" {
		t.Fatalf("the decision policy is not in force: %v", err)
	}
	if err := updateAs(ctx, k8sClient, &admissionv1.ValidatingAdmissionPolicyBinding{}, client.ObjectKey{Name: approval.DecisionPolicyName}, func(o client.Object) {
		o.(*admissionv1.ValidatingAdmissionPolicyBinding).Spec.ValidationActions = []admissionv1.ValidationAction{admissionv1.Deny, admissionv1.Audit}
	}); err != nil {
		t.Fatal(err)
	}
	now, _, err := approval.Enforcement(ctx, k8sClient, operatorNamespace)
	if err != nil || now == "" || now == atOpening {
		t.Fatalf("the binding's change: identity %q, was %q (%v)", now, atOpening, err)
	}
	// Opened as the incident reconciler does, with the identity it read
	// before the change.
	for name, seen := range map[string]string{"changed": atOpening, "installed": ""} {
		gate := &riposte.ApprovalGate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: riposte.ApprovalGateSpec{Incident: "am-" + name, Playbook: riposte.NamespacedName{Namespace: ns, Name: "manual"},
				Plan:   riposte.Plan{Hash: "sha256:0", Steps: []riposte.PlannedStep{{Name: "isolate", Action: riposte.ActionIsolatePod}}},
				Policy: riposte.GatePolicy{RequiredApprovals: 1, RequiredRejections: 1, DecisionPolicy: seen}}}
		if err := intakeClient.Create(ctx, gate); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, waitFor, func(ctx context.Context) error {
			g := &riposte.ApprovalGate{}
			if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(gate), g); err != nil || g.Status.Phase != riposte.GatePending || g.Status.DecisionPolicy != now {
				return fmt.Errorf("gate %s %s recording the policy %q (err %v), want Pending on %q", name, g.Status.Phase, g.Status.DecisionPolicy, err, now)
			}
			return nil
		})
		appendDecision(t, ns, name, "alice", riposte.DecisionApprove)
		testenv.Eventually(t, waitFor, func(ctx context.Context) error {
			g := &riposte.ApprovalGate{}
			if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(gate), g); err != nil || g.Status.Phase != riposte.GateApproved {
				return fmt.Errorf("gate %s %s, verified %v, unverifiable %v (err %v), want alice's decision counted", name, g.Status.Phase, g.Status.VerifiedDecisions, g.Status.UnverifiableDecisions, err)
			}
			return nil
		})
	}
}
