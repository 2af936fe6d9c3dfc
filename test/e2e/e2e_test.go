// Package e2e drives the real Riposte binary with a real Alertmanager on a
// real kube-apiserver and etcd: an alert posted to Alertmanager's API ends as
// a Remediated Incident and an isolating NetworkPolicy.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/testenv"
)

const (
	operatorNamespace = "riposte-system"
	appNamespace      = "shop"
	intakeToken       = "e2e-intake-token-9f8e7d"
)

func TestAlertmanagerAlertIsRemediated(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartForTest(t)
	dir := t.TempDir()
	c := env.Client

	// The cluster: a pod that will be isolated and the playbook that says so.
	env.TeamNamespace(t, appNamespace, "riposte-action-isolate")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout-7c9d-abcde", Namespace: appNamespace, Labels: map[string]string{"app": "checkout"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/checkout:2.3.1"}}},
	}
	mustCreate(t, c, pod)
	mustCreate(t, c, &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "isolate-on-shell", Namespace: appNamespace},
		Spec: riposte.PlaybookSpec{
			Triggers: riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"ContainerShellSpawned"}, Severities: []string{"critical"}}}},
			Steps: []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod},
				{Name: "hush", Action: riposte.ActionSilence, Silence: &riposte.SilenceParams{Comment: "contained by {{ incident.status.playbook.name }}"}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{When: "incident.spec.severity == 'critical'"}},
		},
	})

	// Riposte, as its own process, as its service account with exactly the
	// RBAC it ships with.
	// It silences alerts it handles in the same Alertmanager.
	amAddr := testenv.FreeAddr(t)
	manager := env.StartManager(t, intakeToken, "--alertmanager-url", "http://"+amAddr)
	intakeAddr, metricsAddr := manager.IntakeAddr, manager.MetricsAddr
	tokenFile := filepath.Join(manager.Dir, "intake-token")

	// A real Alertmanager routing every alert to Riposte's webhook.
	amConfig := filepath.Join(dir, "alertmanager.yml")
	writeFile(t, amConfig, sampleAlertmanagerConfig(t, intakeAddr, tokenFile))
	testenv.StartProcess(t, dir, "alertmanager", testenv.AlertmanagerBinary(t),
		"--config.file", amConfig, "--storage.path", filepath.Join(dir, "am-data"),
		"--web.listen-address", amAddr, "--cluster.listen-address=")
	testenv.WaitHTTP(t, "http://"+amAddr+"/-/ready")

	alert := map[string]any{
		"labels": map[string]string{"alertname": "ContainerShellSpawned", "severity": "critical",
			"namespace": appNamespace, "pod": pod.Name, "container": "app"},
		"annotations":  map[string]string{"summary": "a shell was spawned in checkout"},
		"startsAt":     time.Now().UTC().Format(time.RFC3339),
		"generatorURL": "http://falco.example/rules/shell",
	}
	postAlerts(t, amAddr, alert)

	// Riposte opens one Incident and remediates it.
	var inc riposte.Incident
	testenv.Eventually(t, 60*time.Second, func(ctx context.Context) error {
		var list riposte.IncidentList
		if err := c.List(ctx, &list, client.InNamespace(appNamespace)); err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d incidents in %s, want 1", len(list.Items), appNamespace)
		}
		inc = list.Items[0]
		if inc.Status.Phase != riposte.PhaseRemediated {
			return fmt.Errorf("incident %s is %q, want Remediated", inc.Name, inc.Status.Phase)
		}
		return nil
	})
	if inc.Spec.Source != riposte.SourceAlertmanager || inc.Spec.AlertName != "ContainerShellSpawned" ||
		inc.Name != "am-"+inc.Spec.Fingerprint || inc.Spec.Annotations["summary"] == "" {
		t.Errorf("incident %s spec = %+v: want the alert as Alertmanager sent it, named from its fingerprint", inc.Name, inc.Spec)
	}
	if got := inc.Status.Context.Target; got == nil || got.Name != pod.Name || got.UID != string(pod.UID) {
		t.Errorf("incident target = %+v, want pod %s", got, pod.Name)
	}
	np := &networkingv1.NetworkPolicy{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: appNamespace, Name: "riposte-quarantine-deny-all"}, np); err != nil {
		t.Fatalf("the isolating NetworkPolicy: %v", err)
	}
	live := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), live); err != nil {
		t.Fatal(err)
	}
	if live.Labels["riposte.dev/quarantine"] != "deny-all" {
		t.Errorf("pod labels %v: want the quarantine label that the policy selects", live.Labels)
	}
	if a := inc.Status.AutoApproval; a == nil || a.PlanHash != inc.Status.PlanHash || inc.Status.ApprovalGate != "" {
		t.Errorf("autoApproval %+v, gate %q: want the plan %s approved by policy, with no gate", a, inc.Status.ApprovalGate, inc.Status.PlanHash)
	}

	// The alert is silenced in Alertmanager while Riposte handles it, for
	// exactly this alert.
	silences := amSilences(t, amAddr)
	if len(silences) != 1 || silences[0].Status.State != "active" || !strings.Contains(silences[0].Comment, "contained by isolate-on-shell") ||
		!slices.ContainsFunc(silences[0].Matchers, func(m amMatcher) bool { return m.Name == "pod" && m.Value == pod.Name && m.IsEqual }) {
		t.Fatalf("silences = %+v, want one active silence matching this alert", silences)
	}
	if got := inc.Status.Steps[1].Changes[0].Restore; got != silences[0].ID {
		t.Errorf("the step recorded silence %q, Alertmanager holds %q", got, silences[0].ID)
	}

	// Alertmanager keeps the alert while it fires (silenced, so it notifies
	// no one); a repeated notification, as a receiver without the silence
	// would get, still makes one incident, remediated once.
	postAlerts(t, amAddr, alert)
	repeat, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "riposte", "alerts": []any{map[string]any{
		"status": "firing", "labels": alert["labels"], "annotations": alert["annotations"], "startsAt": alert["startsAt"], "fingerprint": inc.Spec.Fingerprint}}})
	req, _ := http.NewRequest(http.MethodPost, "http://"+intakeAddr+"/webhook/alertmanager", bytes.NewReader(repeat))
	req.Header.Set("Authorization", "Bearer "+intakeToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("repeating the notification: %v %v", err, resp)
	}
	time.Sleep(2 * time.Second)
	var list riposte.IncidentList
	if err := c.List(ctx, &list, client.InNamespace(appNamespace)); err != nil || len(list.Items) != 1 || len(list.Items[0].Status.Steps) != 2 {
		t.Fatalf("after a repeated notification: %d incidents (err %v), want 1 with 2 steps", len(list.Items), err)
	}

	// The alert resolves in Alertmanager; Riposte closes the incident.
	alert["endsAt"] = time.Now().UTC().Format(time.RFC3339)
	postAlerts(t, amAddr, alert)
	testenv.Eventually(t, 60*time.Second, func(ctx context.Context) error {
		cur := &riposte.Incident{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(&inc), cur); err != nil {
			return err
		}
		if cur.Spec.Status != riposte.AlertResolved || cur.Status.Phase != riposte.PhaseResolved || cur.Status.ResolvedAt == nil {
			return fmt.Errorf("alert %s, incident %s: want resolved and Resolved", cur.Spec.Status, cur.Status.Phase)
		}
		if s := cur.Status.Steps[1]; s.Phase != riposte.StepUndone {
			return fmt.Errorf("silence step %s, want Undone once the incident closed", s.Phase)
		}
		return nil
	})
	// A silenced alert's resolution reaches no receiver: Riposte asked
	// Alertmanager, closed the incident, and expired its silence.
	if silences := amSilences(t, amAddr); len(silences) != 1 || silences[0].Status.State != "expired" {
		t.Errorf("silences after the incident closed = %+v, want the one expired", silences)
	}

	// Bad input at the real endpoint gets a precise answer, and the stored
	// incident is untouched.
	for _, tc := range []struct {
		reason string
		token  string
		body   []byte
		want   int
	}{
		{reason: "wrong token", token: "not-the-token", body: []byte(`{}`), want: http.StatusUnauthorized},
		{reason: "malformed JSON", token: intakeToken, body: []byte(`{"version":"4","alerts":[`), want: http.StatusBadRequest},
		{reason: "no alert that can ever be stored", token: intakeToken, body: []byte(`{"version":"4","status":"firing","alerts":[{"status":"pending","labels":{},"fingerprint":"abc"}]}`), want: http.StatusBadRequest},
		{reason: "oversized body", token: intakeToken, body: append([]byte(`{"version":"4","alerts":[{"labels":{"alertname":"`), bytes.Repeat([]byte("x"), 2<<20)...), want: http.StatusRequestEntityTooLarge},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+intakeAddr+"/webhook/alertmanager", bytes.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+tc.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.reason, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.reason, resp.StatusCode, tc.want)
		}
	}
	cur := &riposte.Incident{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(&inc), cur); err != nil || cur.Status.Phase != riposte.PhaseResolved {
		t.Errorf("stored incident after bad input: phase %q err %v", cur.Status.Phase, err)
	}

	// Every answer is counted where Prometheus scrapes the manager.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scraped, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, line := range []string{
		`riposte_intake_requests_total{code="401"} 1`,
		`riposte_intake_requests_total{code="400"} 2`,
		`riposte_intake_requests_total{code="413"} 1`,
	} {
		if !strings.Contains(string(scraped), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
	if !regexp.MustCompile(`(?m)^riposte_intake_alerts_deduplicated_total [1-9]`).Match(scraped) {
		t.Error("the repeated notification was not counted as deduplicated")
	}
	for _, want := range []string{
		`riposte_intake_requests_total{code="200"}`,
		`riposte_actions_total{action="IsolatePod",result="Applied"} 1`,
		`riposte_actions_total{action="Silence",result="Applied"} 1`,
		`riposte_actions_undone_total{action="Silence",trigger="Resolved"} 1`,
		`riposte_incidents{phase="Resolved",severity="critical",source="Alertmanager"} 1`,
		`riposte_incident_remediation_seconds_count{decider="policy"} 1`,
		`riposte_incident_enrich_seconds_count 1`,
		// The stage split: each stage once, each from the one before.
		`riposte_incident_stage_seconds_count{stage="enriched"} 1`,
		`riposte_incident_stage_seconds_count{stage="decided"} 1`,
		`riposte_incident_stage_seconds_count{stage="remediated"} 1`,
		`riposte_incident_stage_seconds_count{stage="resolved"} 1`,
		`riposte_records_pending 0`,
	} {
		if !strings.Contains(string(scraped), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// sampleAlertmanagerConfig is config/samples/alertmanager.yml, the one the
// README gives, pointed at this test's Riposte and token.
// The README's own walk-through: the samples in config/samples/cluster and
// config/samples/alert.json posted as its curl command does.
func TestReadmeSamplesRemediate(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartForTest(t)
	dir := t.TempDir()
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "samples", "cluster")); err != nil {
		t.Fatalf("applying the samples: %v", err)
	}
	intakeAddr := env.StartManager(t, intakeToken, "--zap-log-level=debug").IntakeAddr

	// As the README's curl does.
	post := func(file string) {
		body, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "samples", file))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+intakeAddr+"/webhook/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+intakeToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("posting config/samples/%s: %d", file, resp.StatusCode)
		}
	}
	post("alert.json")
	testenv.Eventually(t, 60*time.Second, func(ctx context.Context) error {
		inc := &riposte.Incident{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "am-a1b2c3d4e5f60718"}, inc); err != nil {
			return err
		}
		if inc.Status.Phase != riposte.PhaseRemediated {
			return fmt.Errorf("incident is %q, want Remediated", inc.Status.Phase)
		}
		np := &networkingv1.NetworkPolicy{}
		return env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "riposte-quarantine-deny-all"}, np)
	})
	// The remediation ran once: one record of each kind, one Event each.
	inc := &riposte.Incident{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "am-a1b2c3d4e5f60718"}, inc); err != nil {
		t.Fatal(err)
	}
	// What the README's describe shows was learned.
	if c := inc.Status.Context; c.Identity == nil || !slices.Contains(c.Identity.Dangerous, "reads Secrets") ||
		c.Exposure == nil || !slices.Contains(c.Exposure.Ingresses, "web (shop.example.com)") {
		t.Errorf("the sample's context lacks its identity or exposure: %+v %+v", c.Identity, c.Exposure)
	}
	if op := inc.Status.Steps[0].Changes[0].Operation; op != riposte.OperationCreate {
		t.Errorf("the quarantine policy is recorded as %s, want Create: the step ran more than once", op)
	}
	time.Sleep(time.Second)
	var events corev1.EventList
	if err := env.Client.List(ctx, &events, client.InNamespace("demo")); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range events.Items {
		seen[e.Reason]++
	}
	if seen[riposte.ReasonStepsApplied] != 1 {
		t.Errorf("events by reason %v, want one StepsApplied", seen)
	}

	// The README's approval walk-through: a warning alert waits for a person,
	// who approves it with the kubectl plugin.
	post("alert-warning.json")
	const warning = "am-b2c3d4e5f6071829"
	testenv.Eventually(t, 60*time.Second, func(ctx context.Context) error {
		inc := &riposte.Incident{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: warning}, inc); err != nil {
			return err
		}
		if inc.Status.Phase != riposte.PhaseAwaitingApproval {
			return fmt.Errorf("warning incident is %q, want AwaitingApproval", inc.Status.Phase)
		}
		return nil
	})
	plugin := filepath.Join(dir, "kubectl-riposte")
	build := exec.Command("go", "build", "-o", plugin, "./cmd/kubectl-riposte")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	admin := env.AdminKubeconfig(t, dir, "oncall")
	out, err := exec.Command(plugin, "--kubeconfig", admin, "gates", "-A").CombinedOutput()
	if err != nil || !strings.Contains(string(out), warning) {
		t.Fatalf("kubectl riposte gates -A: %v\n%s", err, out)
	}
	out, err = exec.Command(plugin, "approve", "-n", "demo", warning, "--reason", "confirmed with the web team", "--kubeconfig="+admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "oncall: Approve recorded on gate demo/"+warning) {
		t.Fatalf("kubectl riposte approve: %v\n%s", err, out)
	}
	testenv.Eventually(t, 60*time.Second, func(ctx context.Context) error {
		inc := &riposte.Incident{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: warning}, inc); err != nil {
			return err
		}
		if inc.Status.Phase != riposte.PhaseRemediated {
			return fmt.Errorf("approved incident is %q, want Remediated", inc.Status.Phase)
		}
		return nil
	})

	// The README's undo: the first incident lets go of the pod, which stays
	// isolated while the warning's incident holds it; undoing that one too
	// removes the label.
	undo := func(name string) {
		t.Helper()
		out, err := exec.Command(plugin, "--kubeconfig", admin, "undo", "-n", "demo", name, "--reason", "the shell was a debug session").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl riposte undo %s: %v\n%s", name, err, out)
		}
		testenv.Eventually(t, 60*time.Second, func(ctx context.Context) error {
			inc := &riposte.Incident{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: name}, inc); err != nil {
				return err
			}
			if inc.Status.Phase != riposte.PhaseUndone {
				return fmt.Errorf("incident %s is %q, want Undone", name, inc.Status.Phase)
			}
			return nil
		})
	}
	web := func() *corev1.Pod {
		t.Helper()
		pod := &corev1.Pod{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "web"}, pod); err != nil {
			t.Fatal(err)
		}
		return pod
	}
	undo("am-a1b2c3d4e5f60718")
	if pod := web(); pod.Labels[actions.QuarantineLabel] != "deny-all" || pod.Annotations[actions.QuarantinedByAnnotation] != "demo/"+warning+"=deny-all" {
		t.Errorf("after the first undo, pod web has %s=%q and %s=%q; want it still isolated, held by demo/%s only",
			actions.QuarantineLabel, pod.Labels[actions.QuarantineLabel], actions.QuarantinedByAnnotation, pod.Annotations[actions.QuarantinedByAnnotation], warning)
	}
	undo(warning)
	if pod := web(); pod.Labels[actions.QuarantineLabel] != "" || pod.Annotations[actions.QuarantinedByAnnotation] != "" {
		t.Errorf("after both undos, pod web still has %s=%q, %s=%q", actions.QuarantineLabel, pod.Labels[actions.QuarantineLabel],
			actions.QuarantinedByAnnotation, pod.Annotations[actions.QuarantinedByAnnotation])
	}
}

func sampleAlertmanagerConfig(t *testing.T, intakeAddr, tokenFile string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "samples", "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for old, new := range map[string]string{"127.0.0.1:8090": intakeAddr, "../../bin/local/intake-token": tokenFile} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("config/samples/alertmanager.yml no longer contains %q", old)
		}
		cfg = strings.ReplaceAll(cfg, old, new)
	}
	return cfg
}

func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %s: %v", obj.GetName(), err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// postAlerts sends alerts to Alertmanager's v2 API, as Prometheus would.
func postAlerts(t *testing.T, amAddr string, alerts ...map[string]any) {
	t.Helper()
	body, err := json.Marshal(alerts)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+amAddr+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("posting to Alertmanager: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("Alertmanager answered %d: %s", resp.StatusCode, msg)
	}
}

type amMatcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsEqual bool   `json:"isEqual"`
}

type amSilence struct {
	ID       string      `json:"id"`
	Comment  string      `json:"comment"`
	Matchers []amMatcher `json:"matchers"`
	Status   struct {
		State string `json:"state"`
	} `json:"status"`
}

func amSilences(t *testing.T, amAddr string) []amSilence {
	t.Helper()
	resp, err := http.Get("http://" + amAddr + "/api/v2/silences")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out []amSilence
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}
