package controllers_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/cli"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// plugin runs `kubectl riposte ARGS` as the given person.
func plugin(t *testing.T, person, ns string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := (&cli.CLI{Client: people[person], Namespace: ns, Out: &out}).Run(context.Background(), args)
	return out.String(), err
}

// The kubectl plugin lists, shows, approves and rejects through the API
// server, as the person running it.
func TestKubectlPlugin(t *testing.T) {
	ns, _, gate := pendingGate(t, nil)

	out, err := plugin(t, "bob", ns, "gates")
	if err != nil || !strings.Contains(out, gate) || !strings.Contains(out, "0/1") || !strings.Contains(out, "IsolatePod Pod/"+ns+"/web-5d4f-x7k2p") {
		t.Errorf("gates: %v\n%s", err, out)
	}
	out, err = plugin(t, "bob", ns, "show", gate)
	for _, want := range []string{"Gate:      " + ns + "/" + gate + " (Pending)", "accepted by the API server's dry run",
		"Create    NetworkPolicy/" + ns + "/riposte-quarantine-deny-all (undo: Keep)", "Patch     Pod/" + ns + "/web-5d4f-x7k2p (undo: Release)", "label pod web-5d4f-x7k2p"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("show lacks %q (err %v):\n%s", want, err, out)
		}
	}
	if out, err := plugin(t, "alice", ns, "whoami"); err != nil || strings.TrimSpace(out) != "alice" {
		t.Errorf("whoami = %q, %v; want alice, as the API server knows her", out, err)
	}
	if _, err := plugin(t, "alice", ns, "approve", gate); err == nil || !strings.Contains(err.Error(), "--reason is required") {
		t.Errorf("approve without a reason: %v", err)
	}
	if _, err := plugin(t, "carol", ns, "approve", gate, "--reason", "looks fine"); err == nil || !strings.Contains(err.Error(), "approve on approvalgates is required") {
		t.Errorf("approve without the verb: %v", err)
	}

	out, err = plugin(t, "alice", ns, "approve", gate, "--reason", "saw the shell in the audit log")
	if err != nil || !strings.Contains(out, "alice: Approve recorded on gate "+ns+"/"+gate) {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	waitForPhase(t, ns, "am-gate", riposte.PhaseRemediated)
	if out, err := plugin(t, "bob", ns, "describe", "am-gate"); err != nil ||
		!strings.Contains(out, "Riposte Applied: step isolate (IsolatePod) on Pod/"+ns+"/web-5d4f-x7k2p") ||
		!strings.Contains(out, "Create    NetworkPolicy/"+ns+"/riposte-quarantine-deny-all") {
		t.Errorf("describe after remediation lacks the step in its timeline or steps (err %v):\n%s", err, out)
	}
	g := &riposte.ApprovalGate{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: gate}, g); err != nil {
		t.Fatal(err)
	}
	if len(g.Spec.Decisions) != 1 || g.Spec.Decisions[0].User != "alice" || g.Spec.Decisions[0].Reason != "saw the shell in the audit log" || g.Spec.Decisions[0].At == nil {
		t.Errorf("recorded decisions = %+v", g.Spec.Decisions)
	}
	if _, err := plugin(t, "bob", ns, "reject", gate, "--reason", "too late"); err == nil || !strings.Contains(err.Error(), "already Approved") {
		t.Errorf("deciding a decided gate: %v", err)
	}
	if out, err := plugin(t, "bob", ns, "gates"); err != nil || !strings.Contains(out, "no gate waits for a decision") {
		t.Errorf("gates after the decision: %v\n%s", err, out)
	}
	if _, err := plugin(t, "bob", ns, "frobnicate"); err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %v", err)
	}
}

func TestKubectlPluginReject(t *testing.T) {
	ns, pod, gate := pendingGate(t, nil)
	if out, err := plugin(t, "bob", ns, "reject", "--reason=wrong pod", gate); err != nil || !strings.Contains(out, "bob: Reject recorded") {
		t.Fatalf("reject: %v\n%s", err, out)
	}
	inc := waitForPhase(t, ns, "am-gate", riposte.PhaseRejected)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentApproved); !strings.Contains(c.Message, "rejected by bob: wrong pod") {
		t.Errorf("Approved condition %q", c.Message)
	}
	expectUnisolated(t, pod)
}

// describe prints the incident as a readable report, and show gives an
// approver the same context above the plan.
func TestKubectlPluginDescribe(t *testing.T) {
	ns, pod, gate := pendingGate(t, nil)
	out, err := plugin(t, "bob", ns, "describe", "am-gate")
	for _, want := range []string{
		"Incident:  " + ns + "/am-gate (AwaitingApproval)",
		"Alert:     ContainerShell, severity critical, firing, from Alertmanager",
		"Target:    Pod/" + ns + "/" + pod.Name,
		"Owners:    ReplicaSet/web-5d4f <- Deployment/web (1 replicas)",
		"Risks:     PrivilegeEscalation, RunsAsRoot, ServiceAccountToken",
		"Identity:  " + ns + "/default",
		"Timeline:",
		"Alert   ContainerShell",
		"Times:     detected",
	} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("describe lacks %q (err %v):\n%s", want, err, out)
		}
	}
	out, err = plugin(t, "bob", ns, "show", gate)
	if err != nil || !strings.Contains(out, "Risks:     PrivilegeEscalation") || !strings.Contains(out, "Target:    Pod/"+ns+"/"+pod.Name) {
		t.Errorf("show lacks the context an approver needs (err %v):\n%s", err, out)
	}
}

// Undo, pause and resume from the plugin, as people with the roles Riposte ships.
func TestKubectlPluginUndoPauseResume(t *testing.T) {
	ctx := context.Background()
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "rbac", "operator_role.yaml")); err != nil {
		t.Fatal(err)
	}
	pauser := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice-pauser", Namespace: operatorNamespace},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "riposte-pauser"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}}}
	mustCreate(t, pauser)
	t.Cleanup(func() {
		_ = k8sClient.Delete(ctx, pauser)
		_ = k8sClient.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: riposte.PauseConfigMapName, Namespace: operatorNamespace}})
	})
	if _, err := plugin(t, "carol", "", "pause", "--reason", "x"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("carol pausing: %v, want forbidden", err)
	}
	if out, err := plugin(t, "alice", "", "pause", "--reason", "investigating a false positive storm"); err != nil || !strings.Contains(out, "paused") {
		t.Fatalf("pause: %v %s", err, out)
	}
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mustCreate(t, isolatePlaybook(ns, "isolate", "ShellPlugin", &riposte.AutoApprove{}))
	mustCreate(t, alertIncident(ns, "am-plugin", "ShellPlugin", ns, pod.Name))
	inc := waitForHeld(t, ns, "am-plugin", riposte.ReasonPaused)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentHeld); !strings.Contains(c.Message, "investigating a false positive storm (paused by alice)") {
		t.Errorf("Held message %q lacks the reason and who paused", c.Message)
	}
	if out, err := plugin(t, "alice", "", "resume"); err != nil || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: %v %s", err, out)
	}
	inc = waitForPhase(t, ns, "am-plugin", riposte.PhaseRemediated)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentHeld); c.Status != metav1.ConditionFalse || c.Reason != riposte.ReasonNotHeld {
		t.Errorf("after resume Held = %s %s %q, want False NotHeld", c.Status, c.Reason, c.Message)
	}

	if _, err := plugin(t, "bob", ns, "undo", "am-plugin"); err == nil || !strings.Contains(err.Error(), "--reason is required") {
		t.Errorf("undo without a reason: %v", err)
	}
	if _, err := plugin(t, "carol", ns, "undo", "am-plugin", "--reason", "x"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("carol undoing: %v, want forbidden", err)
	}
	if out, err := plugin(t, "bob", ns, "undo", "am-plugin", "--reason", "the shell was a debug session"); err != nil || !strings.Contains(out, "asked for as bob") {
		t.Fatalf("undo: %v %s", err, out)
	}
	waitForPhase(t, ns, "am-plugin", riposte.PhaseUndone)
	expectQuarantined(t, pod, false)
	out, err := plugin(t, "bob", ns, "describe", "am-plugin")
	for _, want := range []string{"(Undone)", "isolate (IsolatePod): Undone", "undone by bob", "Undo:      asked for by bob: the shell was a debug session", "as system:serviceaccount:" + ns + ":remediator"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("describe lacks %q (err %v):\n%s", want, err, out)
		}
	}
}
