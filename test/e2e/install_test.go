package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/riposte-dev/riposte/internal/record"
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
// CRDs, roles and admission policies as config/default: with the record
// sink in a volume, and in S3 after a rotation of the signing key.
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
	kubectl := filepath.Join(env.BinaryAssetsDirectory, "kubectl")
	admin := env.AdminKubeconfig(t, dir, "installer")
	// install renders the chart with the values and has the API server
	// dry-run every object; it returns the manager's Deployment as rendered
	// (and keeps the whole rendering in last).
	var last []byte
	install := func(name string, want []string, helmArgs ...string) *appsv1.Deployment {
		t.Helper()
		render := exec.Command(helm, append([]string{"template", "riposte", filepath.Join(testenv.RepoRoot(), "charts", "riposte"),
			"--namespace", "security", "--include-crds", "--kube-version", testenv.KubeVersion}, helmArgs...)...)
		rendered, err := render.Output()
		if err != nil {
			t.Fatalf("%s: helm template: %v", name, err)
		}
		manifest := filepath.Join(dir, name+".yaml")
		writeFile(t, manifest, string(rendered))
		for _, want := range []string{
			"system:serviceaccount:security:riposte-controller-manager", // the policies follow the release namespace
			"--namespace=security",
			"kind: ValidatingAdmissionPolicy",
			"name: riposte-approver",
		} {
			if !strings.Contains(string(rendered), want) {
				t.Errorf("%s: the rendered chart lacks %q", name, want)
			}
		}
		if strings.Contains(string(rendered), "riposte-system") {
			t.Errorf("%s: the rendered chart still names riposte-system; everything should follow the release namespace", name)
		}
		out, err := exec.Command(kubectl, "--kubeconfig", admin,
			"apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", manifest).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: the API server refused the rendered chart: %v\n%s", name, err, out)
		}
		for _, w := range append([]string{
			"customresourcedefinition.apiextensions.k8s.io/approvalgates.riposte.dev serverside-applied (server dry run)",
			"deployment.apps/riposte-controller-manager serverside-applied (server dry run)",
		}, want...) {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s: kubectl output lacks %q:\n%s", name, w, out)
			}
		}
		var d appsv1.Deployment
		decodeRendered(t, rendered, "Deployment", "riposte-controller-manager", &d)
		last = rendered
		return &d
	}
	// readsItsKey checks what the kubelet needs to let the image's user
	// (65532, not root) read the signing key: the files of a secret volume
	// are root's, and group-readable by the pod's fsGroup.
	readsItsKey := func(name string, d *appsv1.Deployment) {
		t.Helper()
		if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.FSGroup == nil || *sc.FSGroup != 65532 {
			t.Errorf("%s: pod securityContext %+v: want fsGroup 65532, or the manager cannot read its signing key", name, sc)
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == "record-signing-key" {
				if v.Secret == nil || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o040 == 0 || *v.Secret.DefaultMode&0o007 != 0 {
					t.Errorf("%s: signing key volume %+v: want it readable by the group and no one else", name, v.Secret)
				}
				return
			}
		}
		t.Errorf("%s: no record-signing-key volume", name)
	}
	args := func(d *appsv1.Deployment) string { return strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ") }

	d := install("dir", []string{
		"configmap/riposte-dashboard serverside-applied (server dry run)",
		"persistentvolumeclaim/riposte-records serverside-applied (server dry run)",
		"secret/riposte-record-signing-key serverside-applied (server dry run)",
		"secret/riposte-approval-notify serverside-applied (server dry run)",
	}, "--set", "intake.token=s3cret,intake.tlsSecretName=riposte-intake-tls,grafana.dashboard.enabled=true,approvalNotifyURL=https://chat.example/hook,records.sink=dir")
	readsItsKey("dir", d)
	if a := args(d); !strings.Contains(a, "--record-dir=/records") || strings.Contains(a, "--record-previous-public-key") {
		t.Errorf("dir: manager args %s: want --record-dir and no previous key", a)
	}
	// The notification webhook's URL is its credential: in a Secret, not in
	// the arguments anyone who may read pods sees.
	var notifyURL corev1.Secret
	decodeRendered(t, last, "Secret", "riposte-approval-notify", &notifyURL)
	vars := d.Spec.Template.Spec.Containers[0].Env
	if a := args(d); strings.Contains(a, "chat.example") || notifyURL.StringData["url"] != "https://chat.example/hook" ||
		len(vars) != 1 || vars[0].Name != "RIPOSTE_APPROVAL_NOTIFY_URL" || vars[0].ValueFrom == nil || vars[0].ValueFrom.SecretKeyRef == nil ||
		vars[0].ValueFrom.SecretKeyRef.Name != notifyURL.Name || vars[0].ValueFrom.SecretKeyRef.Key != "url" {
		t.Errorf("dir: the notification URL: args %s, env %+v, Secret %v; want it only in the Secret, read through the env", a, vars, notifyURL.StringData)
	}

	// S3, after a rotation: the old public key rides in a ConfigMap.
	old, err := record.LoadKey(filepath.Join(dir, "old.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(dir, "rotated.yaml")
	pem := strings.ReplaceAll(strings.TrimSpace(string(record.PublicPEM(old.Public().(ed25519.PublicKey)))), "\n", "\n      ")
	writeFile(t, values, "records:\n  sink: s3\n  clusterName: prod-eu\n  signingKeySecret: riposte-record-key-2026\n  s3:\n    bucket: audit\n    credentialsSecret: riposte-s3\n  previousPublicKeys:\n    - |\n      "+pem+"\n")
	d = install("s3", []string{"secret/riposte-record-previous-public-keys serverside-applied (server dry run)"}, "-f", values)
	readsItsKey("s3", d)
	for _, w := range []string{"--record-s3-bucket=audit", "--cluster-name=prod-eu", "--record-previous-public-key=/record-previous-public-keys/0.pem"} {
		if a := args(d); !strings.Contains(a, w) {
			t.Errorf("s3: manager args %s: want %s", a, w)
		}
	}
	// The file the flag names holds the old public key, as the manager
	// reads it, in a Secret (whoever may write it chooses what the manager
	// trusts) mounted like the signing key.
	var previous corev1.Secret
	decodeRendered(t, last, "Secret", "riposte-record-previous-public-keys", &previous)
	pub, err := record.ParsePublicKey([]byte(previous.StringData["0.pem"]))
	if err != nil || record.KeyID(pub) != record.KeyID(old.Public().(ed25519.PublicKey)) {
		t.Errorf("s3: the previous key file 0.pem: %v, key %v, want the old public key", err, pub)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "record-previous-public-keys" && (v.Secret == nil || v.Secret.SecretName != previous.Name) {
			t.Errorf("s3: the previous keys volume %+v, want the Secret %s", v.VolumeSource, previous.Name)
		}
	}
}

// decodeRendered finds one object in a rendered chart.
func decodeRendered(t *testing.T, rendered []byte, kind, name string, into any) {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(rendered), 4096)
	for {
		var obj metav1.PartialObjectMetadata
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("no %s %s in the rendered chart: %v", kind, name, err)
		}
		if len(raw.Raw) == 0 {
			continue
		}
		if err := json.Unmarshal(raw.Raw, &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind == kind && obj.Name == name {
			if err := json.Unmarshal(raw.Raw, into); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
}
