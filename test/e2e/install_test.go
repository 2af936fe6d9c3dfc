package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/riposte-dev/riposte/internal/testenv"
)

// The kustomize install (config/default) is accepted by a real API server:
// kubectl builds it and the server dry-runs every object.
func TestKustomizeDefaultIsAccepted(t *testing.T) {
	env := testenv.StartForTest(t)
	dir := t.TempDir()
	// A server-side dry run persists nothing, so the namespace the other
	// objects go in must exist for real.
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	admin := env.AdminKubeconfig(t, dir, "installer")
	cmd := exec.Command(kubectl, "--kubeconfig", admin,
		"apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", filepath.Join(testenv.RepoRoot(), "config", "default"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply -k config/default was refused: %v\n%s", err, out)
	}
	// With the intake TLS component, as docs/install.md shows.
	tlsOut, err := exec.Command(kubectl, "--kubeconfig", admin, "apply", "--server-side", "--force-conflicts", "--dry-run=server",
		"-k", filepath.Join(testenv.RepoRoot(), "test", "testdata", "tls-install")).CombinedOutput()
	if err != nil || !strings.Contains(string(tlsOut), "deployment.apps/riposte-controller-manager serverside-applied (server dry run)") {
		t.Errorf("config/default with the intake TLS component: %v\n%s", err, tlsOut)
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

// With --metrics-secure the manager serves metrics over HTTPS only to callers
// the API server authenticates and allows to get /metrics.
func TestSecureMetrics(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartForTest(t)
	metricsAddr := env.StartManager(t, intakeToken, "--metrics-secure").MetricsAddr

	// Prometheus' identity: a service account bound to the shipped reader role.
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "rbac", "metrics_reader_role.yaml")); err != nil {
		t.Fatal(err)
	}
	c := env.Client
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "prometheus", Namespace: operatorNamespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "stranger", Namespace: operatorNamespace}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-reads-riposte"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "riposte-metrics-reader"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: operatorNamespace}}},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	tokenOf := func(sa string) string {
		req := &authenticationv1.TokenRequest{}
		if err := c.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: operatorNamespace}}, req); err != nil {
			t.Fatalf("token for %s: %v", sa, err)
		}
		return req.Status.Token
	}
	// The manager's certificate is self-signed; the test checks who may read, not the chain.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := insecure.Do(req)
		if err != nil {
			return 0 // not serving yet
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	prometheus := tokenOf("prometheus")
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if code := get(prometheus); code != http.StatusOK {
			return fmt.Errorf("prometheus got %d", code)
		}
		return nil
	})
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("anonymous scrape: %d, want 401", code)
	}
	if code := get(tokenOf("stranger")); code != http.StatusForbidden {
		t.Errorf("a service account without the reader role: %d, want 403", code)
	}
}

// The Helm chart renders to objects a real API server accepts, the same
// CRDs, roles and admission policies as config/default.
func TestHelmChartIsAccepted(t *testing.T) {
	helm := os.Getenv("HELM")
	if helm == "" {
		helm = filepath.Join(testenv.RepoRoot(), "bin", "helm")
	}
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("no helm at %s: run `make testbins`: %v", helm, err)
	}
	env := testenv.StartForTest(t)
	dir := t.TempDir()
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "security"}}); err != nil {
		t.Fatal(err)
	}
	render := exec.Command(helm, "template", "riposte", filepath.Join(testenv.RepoRoot(), "charts", "riposte"),
		"--namespace", "security", "--include-crds", "--kube-version", testenv.KubeVersion,
		"--set", "intake.token=s3cret,intake.tlsSecretName=riposte-intake-tls,grafana.dashboard.enabled=true,approvalNotifyURL=https://chat.example/hook,records.sink=dir")
	rendered, err := render.Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	manifest := filepath.Join(dir, "riposte.yaml")
	writeFile(t, manifest, string(rendered))
	for _, want := range []string{
		"system:serviceaccount:security:riposte-controller-manager", // the policies follow the release namespace
		"--namespace=security",
		"kind: ValidatingAdmissionPolicy",
		"name: riposte-approver",
	} {
		if !strings.Contains(string(rendered), want) {
			t.Errorf("the rendered chart lacks %q", want)
		}
	}
	if strings.Contains(string(rendered), "riposte-system") {
		t.Error("the rendered chart still names riposte-system; everything should follow the release namespace")
	}
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	out, err := exec.Command(kubectl, "--kubeconfig", env.AdminKubeconfig(t, dir, "installer"),
		"apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", manifest).CombinedOutput()
	if err != nil {
		t.Fatalf("the API server refused the rendered chart: %v\n%s", err, out)
	}
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/approvalgates.riposte.dev serverside-applied (server dry run)",
		"deployment.apps/riposte-controller-manager serverside-applied (server dry run)",
		"configmap/riposte-dashboard serverside-applied (server dry run)",
		"persistentvolumeclaim/riposte-records serverside-applied (server dry run)",
		"secret/riposte-record-signing-key serverside-applied (server dry run)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl output lacks %q:\n%s", want, out)
		}
	}
}
