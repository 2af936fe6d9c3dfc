package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

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

// kubectlRiposte runs the plugin as a person runs it: kubectl's connection
// flags choose the cluster and the identity, and no kubeconfig is found
// unless a flag names one.
func kubectlRiposte(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	var out, errOut bytes.Buffer
	cmd := cli.NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// --as, --token and --server reach the API server: it is the API server
// that names the caller and refuses what that caller may not do.
func TestKubectlPluginConnectionFlags(t *testing.T) {
	ctx := context.Background()
	ns, _, gate := pendingGate(t, nil)
	dir := t.TempDir()
	admin := env.AdminKubeconfig(t, dir, "plugin-admin")

	// Impersonation, as kubectl --as does it: the admin may impersonate,
	// and the API server then judges carol, who holds no approve verb.
	if out, err := kubectlRiposte(t, "--kubeconfig", admin, "--as", "carol", "--as-group", "security-team", "whoami"); err != nil || strings.TrimSpace(out) != "carol" {
		t.Errorf("whoami --as carol = %q, %v", out, err)
	}
	if _, err := kubectlRiposte(t, "--kubeconfig", admin, "--as", "carol", "-n", ns, "approve", gate, "--reason", "looks fine"); err == nil || !strings.Contains(err.Error(), "approve on approvalgates is required") {
		t.Errorf("approve --as carol: %v, want the API server's refusal", err)
	}
	if _, err := kubectlRiposte(t, "--kubeconfig", admin, "--as", "mallory", "gates", "-n", ns); err == nil || !strings.Contains(err.Error(), `User "mallory" cannot list resource "approvalgates"`) {
		t.Errorf("gates --as mallory: %v, want forbidden", err)
	}

	// A bearer token and a server address, without any kubeconfig: a
	// service account's token, which the API server verifies itself.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "plugin-user", Namespace: ns}}
	mustCreate(t, sa)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
	if err := k8sClient.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, env.Config.CAData, 0o600); err != nil {
		t.Fatal(err)
	}
	server := env.Config.Host
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	byToken := []string{"--server", server, "--certificate-authority", ca, "--token", tr.Status.Token}
	if out, err := kubectlRiposte(t, append(byToken, "whoami")...); err != nil || strings.TrimSpace(out) != "system:serviceaccount:"+ns+":plugin-user" {
		t.Errorf("whoami --token = %q, %v", out, err)
	}
	if _, err := kubectlRiposte(t, append(byToken, "-n", ns, "show", gate)...); err == nil || !strings.Contains(err.Error(), `"system:serviceaccount:`+ns+`:plugin-user" cannot get resource "approvalgates"`) {
		t.Errorf("show --token: %v, want forbidden for the service account", err)
	}
	if _, err := kubectlRiposte(t, "--server", server, "--token", tr.Status.Token, "whoami"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("whoami without the CA: %v, want the server's certificate refused", err)
	}

	// And a person allowed to approve, by impersonation too.
	out, err := kubectlRiposte(t, "--kubeconfig", admin, "--as", "alice", "--as-group", "security-team", "-n", ns, "approve", gate, "--reason", "seen in the audit log")
	if err != nil || !strings.Contains(out, "alice: Approve recorded on gate "+ns+"/"+gate) {
		t.Errorf("approve --as alice: %v\n%s", err, out)
	}
}

// -o json and -o yaml print the objects the commands show, and they parse
// back into them.
func TestKubectlPluginOutputFormats(t *testing.T) {
	ns, _, gate := pendingGate(t, nil)
	admin := env.AdminKubeconfig(t, t.TempDir(), "plugin-printer")
	want := &riposte.ApprovalGate{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: gate}, want); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"json", "yaml"} {
		parse := func(out string, into any) error {
			if format == "json" {
				return json.Unmarshal([]byte(out), into)
			}
			return yaml.UnmarshalStrict([]byte(out), into)
		}
		out, err := kubectlRiposte(t, "--kubeconfig", admin, "-n", ns, "show", gate, "-o", format)
		g := &riposte.ApprovalGate{}
		if err != nil || parse(out, g) != nil || g.Kind != "ApprovalGate" || g.Name != gate || g.Spec.Plan.Hash != want.Spec.Plan.Hash || len(g.Spec.Plan.Steps) != len(want.Spec.Plan.Steps) {
			t.Errorf("show -o %s: %v, parsed %s %s plan %q:\n%s", format, err, g.Kind, g.Name, g.Spec.Plan.Hash, out)
		}
		out, err = kubectlRiposte(t, "--kubeconfig", admin, "-n", ns, "gates", "-o", format)
		list := &riposte.ApprovalGateList{}
		if err != nil || parse(out, list) != nil || len(list.Items) != 1 || list.Items[0].Name != gate || list.Items[0].Kind != "ApprovalGate" {
			t.Errorf("gates -o %s: %v, parsed %+v:\n%s", format, err, list.Items, out)
		}
		out, err = kubectlRiposte(t, "--kubeconfig", admin, "-n", ns, "describe", "am-gate", "-o", format)
		inc := &riposte.Incident{}
		if err != nil || parse(out, inc) != nil || inc.Kind != "Incident" || inc.Spec.AlertName != "ContainerShell" || inc.Status.ApprovalGate != gate {
			t.Errorf("describe -o %s: %v, parsed %s %q gate %q:\n%s", format, err, inc.Kind, inc.Spec.AlertName, inc.Status.ApprovalGate, out)
		}
		out, err = kubectlRiposte(t, "--kubeconfig", admin, "whoami", "-o", format)
		review := &authenticationv1.SelfSubjectReview{}
		if err != nil || parse(out, review) != nil || review.Kind != "SelfSubjectReview" || review.Status.UserInfo.Username != "plugin-printer" {
			t.Errorf("whoami -o %s: %v, parsed %q:\n%s", format, err, review.Status.UserInfo.Username, out)
		}
	}
	if _, err := kubectlRiposte(t, "--kubeconfig", admin, "-n", ns, "show", gate, "-o", "xml"); err == nil || !strings.Contains(err.Error(), "allowed formats are:") {
		t.Errorf("-o xml: %v, want the formats it knows", err)
	}
}

// Shell completion offers the gates that wait and the incidents of the
// namespace, as the API server lists them for the caller.
func TestKubectlPluginCompletesNames(t *testing.T) {
	ns, _, gate := pendingGate(t, nil)
	admin := env.AdminKubeconfig(t, t.TempDir(), "plugin-completer")
	for _, cmd := range []string{"approve", "show", "describe", "undo"} {
		out, err := kubectlRiposte(t, "--kubeconfig", admin, "-n", ns, cobra.ShellCompRequestCmd, cmd, "am-")
		if err != nil || !strings.HasPrefix(out, gate+"\n") {
			t.Errorf("completing %s: %v\n%s", cmd, err, out)
		}
	}
	if out, err := kubectlRiposte(t, "--kubeconfig", admin, "-n", ns, cobra.ShellCompRequestCmd, "approve", gate, ""); err != nil || strings.Contains(out, gate) {
		t.Errorf("completing a second name: %v\n%s", err, out)
	}
}
