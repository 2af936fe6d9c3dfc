package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// The README's drift walk-through, with the real manager binary as its
// service account, the pack applied with kubectl's kustomize, and the
// plugin: the incidents it names open, the approved one closes as the
// namespace complies, deleting the pod closes the others, and the offline
// check prints what docs/drift.md shows.
func TestReadmeDriftWalkthrough(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartForTest(t)
	dir := t.TempDir()
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "samples", "cluster")); err != nil {
		t.Fatalf("applying the samples: %v", err)
	}
	manager := env.StartManager(t, intakeToken)
	admin := env.AdminKubeconfig(t, dir, "oncall")
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	apply := exec.Command(kubectl, "--kubeconfig", admin, "apply", "-k", "config/samples/policies")
	apply.Dir = testenv.RepoRoot()
	if out, err := apply.CombinedOutput(); err != nil || !strings.Contains(string(out), "playbook.riposte.dev/policy-default-deny created") {
		t.Fatalf("kubectl apply -k config/samples/policies: %v\n%s", err, out)
	}

	// The names the README shows: derived from playbook, rule and object.
	const (
		defaultDeny = "drift-default-deny-ingress-ed69d9c711"
		registries  = "drift-allowed-registries-9a03f77500"
		nonRoot     = "drift-run-as-non-root-b8d59a7f50"
	)
	phase := func(name string, want riposte.IncidentPhase) *riposte.Incident {
		t.Helper()
		var got *riposte.Incident
		testenv.Eventually(t, 60*time.Second, func(ctx context.Context) error {
			inc := &riposte.Incident{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: name}, inc); err != nil {
				return err
			}
			if inc.Status.Phase != want {
				return fmt.Errorf("incident %s is %q, want %q", name, inc.Status.Phase, want)
			}
			got = inc
			return nil
		})
		return got
	}
	for _, name := range []string{defaultDeny, registries, nonRoot} {
		phase(name, riposte.PhaseAwaitingApproval)
	}
	// Open drift by rule, as the dashboard shows it.
	resp, err := http.Get("http://" + manager.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scraped, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, rule := range []string{"default-deny-ingress", "allowed-registries", "run-as-non-root"} {
		if want := `riposte_drift_open{namespace="demo",rule="` + rule + `"} 1`; !strings.Contains(string(scraped), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	plugin := filepath.Join(dir, "kubectl-riposte")
	build := exec.Command("go", "build", "-o", plugin, "./cmd/kubectl-riposte")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	out, err := exec.Command(plugin, "--kubeconfig", admin, "show", "-n", "demo", defaultDeny).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Create    NetworkPolicy/demo/default-deny-ingress (undo: Delete)") ||
		!strings.Contains(string(out), "Drift:     Namespace/demo breaks rule default-deny-ingress: the namespace has no default-deny ingress NetworkPolicy") {
		t.Fatalf("kubectl riposte show: %v\n%s", err, out)
	}
	out, err = exec.Command(plugin, "--kubeconfig", admin, "approve", "-n", "demo", defaultDeny, "--reason", "every team namespace starts closed").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl riposte approve: %v\n%s", err, out)
	}
	closed := phase(defaultDeny, riposte.PhaseResolved)
	if closed.Spec.Drift.Resolution != riposte.DriftComplies || closed.Status.RunAs != "system:serviceaccount:riposte-system:riposte-policy" {
		t.Errorf("resolution %q, run as %q", closed.Spec.Drift.Resolution, closed.Status.RunAs)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "default-deny-ingress"}, &networkingv1.NetworkPolicy{}); err != nil {
		t.Errorf("the approved NetworkPolicy: %v", err)
	}

	if err := env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{registries, nonRoot} {
		if inc := phase(name, riposte.PhaseResolved); inc.Spec.Drift.Resolution != riposte.DriftObjectDeleted {
			t.Errorf("%s resolution %q, want ObjectDeleted", name, inc.Spec.Drift.Resolution)
		}
	}

	// The offline check, as docs/drift.md shows it: no cluster needed.
	check := exec.Command(plugin, "test", "-f", "config/samples/policies", "-f", "test/testdata/offline")
	check.Dir = testenv.RepoRoot()
	check.Env = append(check.Environ(), "KUBECONFIG=/nonexistent")
	out, err = check.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "9 playbooks, 11 objects (8 judged by at least one rule, 3 not selected by any), 7 violations, 1 alerts, 0 problems") {
		t.Fatalf("kubectl riposte test: %v\n%s", err, out)
	}
	failing := exec.Command(plugin, "test", "-f", "config/samples/policies", "-f", "test/testdata/offline", "--fail-on-violation")
	failing.Dir = testenv.RepoRoot()
	if err := failing.Run(); err == nil || failing.ProcessState.ExitCode() != 2 {
		t.Errorf("--fail-on-violation: %v, want exit status 2", err)
	}
}
