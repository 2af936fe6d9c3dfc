package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/riposte-dev/riposte/internal/testenv"
)

// The kustomize install (config/default) is accepted by a real API server:
// kubectl builds it and the server dry-runs every object.
func TestKustomizeDefaultIsAccepted(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	dir := t.TempDir()
	// A server-side dry run persists nothing, so the namespace the other
	// objects go in must exist for real.
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	cmd := exec.Command(kubectl, "--kubeconfig", env.AdminKubeconfig(t, dir, "installer"),
		"apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", filepath.Join(testenv.RepoRoot(), "config", "default"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply -k config/default was refused: %v\n%s", err, out)
	}
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/incidents.riposte.dev serverside-applied (server dry run)",
		"clusterrole.rbac.authorization.k8s.io/riposte-manager serverside-applied (server dry run)",
		"deployment.apps/riposte-controller-manager serverside-applied (server dry run)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl output lacks %q:\n%s", want, out)
		}
	}
}
