package controllers_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/cli"
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
		"Create    NetworkPolicy/" + ns + "/riposte-quarantine-deny-all", "Patch     Pod/" + ns + "/web-5d4f-x7k2p", "label pod web-5d4f-x7k2p"} {
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
