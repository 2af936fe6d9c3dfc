package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func repo(parts ...string) string { return filepath.Join(append([]string{"..", ".."}, parts...)...) }

// The policy pack judged offline against a team's manifests and a saved
// Alertmanager payload: every expectation in the files holds, each
// violation names its playbook, rule and object, and the alert is matched.
func TestOfflineCheckOnFiles(t *testing.T) {
	got, err := RunOffline([]string{repo("config", "samples", "policies"), repo("test", "testdata", "offline")}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Problems) > 0 {
		t.Fatalf("problems: %v", got.Problems)
	}
	var out bytes.Buffer
	got.Print(&out)
	for _, want := range []string{
		"riposte-system/policy-default-deny",
		"default-deny-ingress             Namespace scratch",
		"no-privileged-containers         Pod shop/debug               privileged containers: shell",
		"no-serviceaccount-cluster-admin  ClusterRoleBinding ci-admin",
		"ContainerShellSpawned (firing)",
		"answered by demo/isolate-on-shell",
		"11 objects (8 judged by at least one rule, 3 not selected by any), 7 violations, 1 alerts, 0 problems",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, f := range got.Findings {
		if f.Target.Name == "web" || f.Target.Name == "shop" {
			t.Errorf("compliant %s %s reported: %s", f.Target.Kind, f.Target.Name, f.Rule)
		}
	}
	if code := got.Failed(false); code != 0 {
		t.Errorf("exit %d without --fail-on-violation, want 0", code)
	}
	if code := got.Failed(true); code != 2 {
		t.Errorf("exit %d with --fail-on-violation, want 2", code)
	}
}

// A rule that does not compile, a team's rule on a cluster-scoped kind and
// an expectation that does not hold each fail the check, each said once.
func TestOfflineCheckFailsOnBrokenPlaybooks(t *testing.T) {
	got, err := RunOffline([]string{repo("test", "testdata", "offline-broken")}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(got.Problems, "\n")
	for _, want := range []string{
		"playbook team/broken: InvalidRule: spec.triggers.drift[0].rule",
		"Pod team/unlabelled: expected to break [], breaks [needs-team-label]",
		"playbook team/reaches-out: InvalidRule: rule no-admins: ClusterRoleBinding is cluster-scoped",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}
	if len(got.Problems) != 3 || got.Failed(false) != 1 {
		t.Errorf("%d problems, exit %d; want 3 and 1", len(got.Problems), got.Failed(false))
	}
}

// Files that are not what they claim are refused with the file's name.
func TestOfflineCheckRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"not-yaml.yaml":    "kind: [",
		"bad-payload.json": `{"version": "3", "alerts": [{"labels": {}}]}`,
	}
	for name, body := range cases {
		path := filepath.Join(dir, name)
		if err := writeFile(path, body); err != nil {
			t.Fatal(err)
		}
		if _, err := RunOffline([]string{path}, "default", "riposte-system"); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	if _, err := RunOffline(nil, "default", "riposte-system"); err == nil {
		t.Error("no files accepted")
	}

	// One alert the webhook could not store is a problem of that file, as
	// the webhook stores the others.
	path := filepath.Join(dir, "unstorable-alert.json")
	if err := writeFile(path, `{"version": "4", "alerts": [{"status": "pending", "fingerprint": "ab", "labels": {}}]}`); err != nil {
		t.Fatal(err)
	}
	got, err := RunOffline([]string{path}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	if joined := strings.Join(got.Problems, "\n"); !strings.Contains(joined, "unstorable-alert.json: an alert Riposte cannot store: alerts[0].status") {
		t.Errorf("problems %q, want one naming the file and the alert's field", joined)
	}
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o600) }

// Workloads rendered from charts are judged by their pod templates, exactly
// as the same template saved as a Pod is, and the summary counts as judged
// only the objects some rule looked at.
func TestOfflineCheckJudgesWorkloads(t *testing.T) {
	charts := repo("test", "testdata", "charts")
	got, err := RunOffline([]string{repo("config", "samples", "policies"), charts}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Problems) > 0 {
		t.Fatalf("problems: %v", got.Problems)
	}
	broken := map[string][]string{}
	for _, f := range got.Findings {
		broken[describeRef(f.Target)] = append(broken[describeRef(f.Target)], f.Rule)
	}
	want := map[string][]string{
		"ClusterRoleBinding riposte-policy-isolate": nil,
		"DaemonSet monitoring/node-exporter":        {"allowed-registries", "no-host-namespaces", "no-hostpath"},
		"Deployment monitoring/kube-state-metrics":  {"allowed-registries"},
		"StatefulSet logging/elasticsearch-master":  {"allowed-registries", "no-privileged-containers", "run-as-non-root"},
	}
	for obj, rules := range want {
		got := broken[obj]
		slices.Sort(got)
		if !slices.Equal(got, rules) {
			t.Errorf("%s breaks %v, want %v", obj, got, rules)
		}
	}
	// The pack's 5 objects (a ServiceAccount, a ClusterRole, 3 bindings) and
	// the charts' 4: the ServiceAccounts and the ClusterRole no rule judges.
	var out bytes.Buffer
	got.Print(&out)
	for _, s := range []string{
		"9 objects (6 judged by at least one rule, 3 not selected by any)",
		"Not judged by any rule: ",
		"ServiceAccount monitoring/node-exporter",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}

	// The DaemonSet's template saved as a Pod breaks the same rules.
	ds := readManifest(t, filepath.Join(charts, "node-exporter-daemonset.yaml"))
	tmpl := ds["spec"].(map[string]any)["template"].(map[string]any)
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "node-exporter-x7k2p", "namespace": "monitoring"}, "spec": tmpl["spec"]}
	dir := t.TempDir()
	js, _ := json.Marshal(pod)
	if err := writeFile(filepath.Join(dir, "pod.json"), string(js)); err != nil {
		t.Fatal(err)
	}
	asPod, err := RunOffline([]string{repo("config", "samples", "policies"), dir}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	var podRules []string
	for _, f := range asPod.Findings {
		podRules = append(podRules, f.Rule)
	}
	slices.Sort(podRules)
	if !slices.Equal(podRules, want["DaemonSet monitoring/node-exporter"]) {
		t.Errorf("as a Pod it breaks %v, as a DaemonSet %v", podRules, want["DaemonSet monitoring/node-exporter"])
	}
}

func readManifest(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// An OpenReports Report in the files is read like a PolicyReport.
func TestOfflineCheckReadsOpenReports(t *testing.T) {
	dir := t.TempDir()
	report := kyvernoReport("shop", "shop")
	if err := writeFile(filepath.Join(dir, "report.yaml"), report); err != nil {
		t.Fatal(err)
	}
	got, err := RunOffline([]string{dir}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Problems) > 0 || len(got.Findings) != 1 || got.Findings[0].Target.Name != "debug" || got.Findings[0].Source.Kind != "Report" || got.Judged != 1 {
		t.Errorf("problems %v, findings %+v, judged %d", got.Problems, got.Findings, got.Judged)
	}
}

// A namespaced report in the files naming another namespace's pod is
// refused as the cluster refuses it, and said to be.
func TestOfflineCheckRefusesAReportOutOfItsNamespace(t *testing.T) {
	dir := t.TempDir()
	// The Report above, written in namespace attacker about shop's pod.
	report := kyvernoReport("attacker", "shop")
	if err := writeFile(filepath.Join(dir, "report.yaml"), report); err != nil {
		t.Fatal(err)
	}
	got, err := RunOffline([]string{dir}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Findings) != 0 || len(got.Problems) != 1 || !strings.Contains(got.Problems[0], "Pod/shop/debug") || !strings.Contains(got.Problems[0], "OtherNamespace") {
		t.Errorf("problems %q, findings %+v", got.Problems, got.Findings)
	}
}

// kyvernoReport is an OpenReports Report as Kyverno writes it, in namespace
// reportNamespace, failing privileged-containers for pod debug in
// podNamespace, with a cluster-wide playbook answering it. Field names are
// the OpenReports CRD's (openreports/reports-api,
// config/crd/openreports.io_reports.yaml); the message is Kyverno's.
func kyvernoReport(reportNamespace, podNamespace string) string {
	return fmt.Sprintf(`apiVersion: openreports.io/v1alpha1
kind: Report
metadata: {name: 3407b31a-b0bb-4716-a443-f4aa15662ef2, namespace: %s}
source: kyverno
scope: {apiVersion: v1, kind: Pod, name: debug, namespace: %s, uid: 3407b31a-b0bb-4716-a443-f4aa15662ef2}
summary: {pass: 0, fail: 1, warn: 0, error: 0, skip: 0}
results:
  - policy: disallow-privileged-containers
    rule: privileged-containers
    result: fail
    severity: medium
    source: kyverno
    scored: true
    category: Pod Security Standards (Baseline)
    message: "validation error: Privileged mode is disallowed."
    timestamp: {seconds: 1679565894, nanos: 0}
---
apiVersion: riposte.dev/v1alpha1
kind: Playbook
metadata: {name: from-reports, namespace: riposte-system}
spec:
  triggers:
    policyReports: [{policies: [disallow-privileged-containers]}]
  steps: [{name: isolate, action: IsolatePod}]
`, reportNamespace, podNamespace)
}
