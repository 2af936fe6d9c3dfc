package drift

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// loadPack reads the policy pack's playbooks as an author would write them.
func loadPack(t *testing.T) []riposte.Playbook {
	t.Helper()
	files, err := filepath.Glob("../../config/samples/policies/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []riposte.Playbook
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			var pb riposte.Playbook
			if err := yaml.UnmarshalStrict([]byte(doc), &pb); err != nil {
				if strings.Contains(doc, "kind: Playbook") {
					t.Fatalf("%s: %v", f, err)
				}
				continue
			}
			if pb.Kind == "Playbook" {
				out = append(out, pb)
			}
		}
	}
	if len(out) < 7 {
		t.Fatalf("the pack has %d playbooks, want at least 7", len(out))
	}
	return out
}

func obj(t *testing.T, manifest string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func namespaced(gvk schema.GroupVersionKind) bool {
	return gvk.Kind != "Namespace" && gvk.Kind != "ClusterRole" && gvk.Kind != "ClusterRoleBinding"
}

const podTemplate = `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
    - name: app
      image: registry.example.com/shop/web:1.4.2
`

func TestPolicyPack(t *testing.T) {
	var rules []*Rule
	for _, pb := range loadPack(t) {
		compiled, err := Compile(&pb, "riposte-system")
		if err != nil {
			t.Fatalf("playbook %s: %v", pb.Name, err)
		}
		rules = append(rules, compiled...)
	}
	team := obj(t, `{apiVersion: v1, kind: Namespace, metadata: {name: team, labels: {kubernetes.io/metadata.name: team}}}`)
	restricted := obj(t, `{apiVersion: v1, kind: Namespace, metadata: {name: team, labels: {kubernetes.io/metadata.name: team, riposte.dev/restricted: "true"}}}`)
	system := obj(t, `{apiVersion: v1, kind: Namespace, metadata: {name: kube-system, labels: {kubernetes.io/metadata.name: kube-system}}}`)
	wildcard := obj(t, `{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: everything}, rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]}`)
	reader := obj(t, `{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: view}, rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]}`)
	// An aggregated role no controller has filled in yet is served with
	// rules: null (the field has no omitempty).
	aggregated := obj(t, `{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: view}, aggregationRule: {clusterRoleSelectors: [{matchLabels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}}]}, rules: null}`)
	denyAll := obj(t, `{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: deny, namespace: team}, spec: {podSelector: {}, policyTypes: [Ingress]}}`)
	allowWeb := obj(t, `{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: web, namespace: team}, spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress], ingress: [{}]}}`)

	pod := func(edit string) string { return podTemplate + edit }
	cases := []struct {
		name      string
		object    string
		namespace map[string]any
		cluster   []map[string]any // what lookups see
		want      []string         // rules broken
		message   string           // part of a message
	}{
		{name: "compliant pod", object: podTemplate, namespace: team},
		{name: "privileged container", object: pod("      securityContext: {privileged: true}\n"), namespace: team,
			want: []string{"no-privileged-containers"}, message: "privileged containers: app"},
		{name: "privileged: false is fine", object: pod("      securityContext: {privileged: false}\n"), namespace: team},
		{name: "privileged init container", object: pod("  initContainers: [{name: init, image: registry.example.com/x:1, securityContext: {privileged: true}}]\n"), namespace: team,
			want: []string{"no-privileged-containers"}, message: "privileged containers: init"},
		// kubectl debug --profile=sysadmin adds a privileged ephemeral container.
		{name: "privileged debug container", object: pod("  ephemeralContainers: [{name: debugger-x7k2p, image: registry.example.com/x:1, securityContext: {privileged: true}}]\n"), namespace: team,
			want: []string{"no-privileged-containers"}, message: "privileged containers: debugger-x7k2p"},
		{name: "init container from a registry not allowed", object: pod("  initContainers: [{name: init, image: docker.io/library/busybox:1.36}]\n"), namespace: team,
			want: []string{"allowed-registries"}, message: "docker.io/library/busybox:1.36"},
		{name: "init container that may run as root", object: pod("  initContainers: [{name: init, image: registry.example.com/x:1, securityContext: {runAsUser: 0}}]\n"), namespace: team,
			want: []string{"run-as-non-root"}, message: "init"},
		{name: "host network", object: pod("  hostNetwork: true\n"), namespace: team, want: []string{"no-host-namespaces"}},
		{name: "host PID", object: pod("  hostPID: true\n"), namespace: team, want: []string{"no-host-namespaces"}},
		{name: "system namespaces are not judged", object: strings.Replace(pod("  hostNetwork: true\n"), "team", "kube-system", 1), namespace: system},
		{name: "hostPath", object: pod("  volumes: [{name: root, hostPath: {path: /}}]\n"), namespace: team,
			want: []string{"no-hostpath"}, message: "root (/)"},
		{name: "emptyDir is fine", object: pod("  volumes: [{name: tmp, emptyDir: {}}]\n"), namespace: team},
		{name: "may run as root", object: strings.Replace(podTemplate, "  securityContext: {runAsNonRoot: true}\n", "", 1), namespace: team,
			want: []string{"run-as-non-root"}, message: "app"},
		{name: "user 0 despite runAsNonRoot", object: pod("      securityContext: {runAsUser: 0}\n"), namespace: team, want: []string{"run-as-non-root"}},
		{name: "container overrides runAsNonRoot", object: pod("      securityContext: {runAsNonRoot: false}\n"), namespace: team, want: []string{"run-as-non-root"}},
		{name: "registry not allowed", object: strings.Replace(podTemplate, "registry.example.com/shop/web:1.4.2", "docker.io/evil/miner:1.0", 1), namespace: team,
			want: []string{"allowed-registries"}, message: "docker.io/evil/miner:1.0"},
		{name: "latest tag", object: strings.Replace(podTemplate, ":1.4.2", ":latest", 1), namespace: team, want: []string{"no-latest-tag"}},
		{name: "no tag", object: strings.Replace(podTemplate, ":1.4.2", "", 1), namespace: team, want: []string{"no-latest-tag"}},
		{name: "digest is fine", object: strings.Replace(podTemplate, ":1.4.2", "@sha256:0123456789abcdef", 1), namespace: team},
		{name: "registry port is not a tag", object: strings.Replace(podTemplate, "registry.example.com/shop/web:1.4.2", "registry.example.com/shop/web", 1), namespace: team, want: []string{"no-latest-tag"}},
		{name: "namespace without policies", object: `{apiVersion: v1, kind: Namespace, metadata: {name: team, labels: {kubernetes.io/metadata.name: team}}}`,
			want: []string{"default-deny-ingress"}},
		{name: "namespace with only an allow policy", object: `{apiVersion: v1, kind: Namespace, metadata: {name: team, labels: {kubernetes.io/metadata.name: team}}}`,
			cluster: []map[string]any{allowWeb}, want: []string{"default-deny-ingress"}},
		{name: "namespace with default deny", object: `{apiVersion: v1, kind: Namespace, metadata: {name: team, labels: {kubernetes.io/metadata.name: team}}}`,
			cluster: []map[string]any{allowWeb, denyAll}},
		{name: "exempt namespace", object: `{apiVersion: v1, kind: Namespace, metadata: {name: team, labels: {kubernetes.io/metadata.name: team, riposte.dev/policy-exempt: "yes"}}}`},
		{name: "service account bound to cluster-admin", object: `{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: ci-admin}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}, subjects: [{kind: ServiceAccount, name: ci, namespace: team}]}`,
			want: []string{"no-serviceaccount-cluster-admin"}, message: "team/ci hold cluster-admin"},
		{name: "service account bound to a wildcard cluster role", object: `{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: ci-all}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: everything}, subjects: [{kind: ServiceAccount, name: ci, namespace: team}]}`,
			cluster: []map[string]any{wildcard, reader}, want: []string{"no-serviceaccount-cluster-admin"}},
		{name: "group bound to cluster-admin is not a service account", object: `{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: admins}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}, subjects: [{kind: Group, name: admins}]}`},
		{name: "service account bound to a narrow role", object: `{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: ci-view}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}, subjects: [{kind: ServiceAccount, name: ci, namespace: team}]}`,
			cluster: []map[string]any{wildcard, reader}},
		{name: "role binding to a wildcard cluster role", object: `{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: ci-all, namespace: team}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: everything}, subjects: [{kind: ServiceAccount, name: ci, namespace: team}]}`,
			namespace: team, cluster: []map[string]any{wildcard}, want: []string{"no-serviceaccount-wildcard-role"}},
		{name: "role binding to a narrow cluster role", object: `{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: ci-view, namespace: team}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}, subjects: [{kind: ServiceAccount, name: ci, namespace: team}]}`,
			namespace: team, cluster: []map[string]any{wildcard, reader}},
		{name: "role binding to an aggregated role with no rules yet", object: `{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: ci-view, namespace: team}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}, subjects: [{kind: ServiceAccount, name: ci, namespace: team}]}`,
			namespace: team, cluster: []map[string]any{wildcard, aggregated}},
		{name: "cluster role binding to an aggregated role with no rules yet", object: `{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: ci-view}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}, subjects: [{kind: ServiceAccount, name: ci, namespace: team}]}`,
			cluster: []map[string]any{wildcard, aggregated}},
		{name: "NodePort in a restricted namespace", object: `{apiVersion: v1, kind: Service, metadata: {name: web, namespace: team}, spec: {type: NodePort}}`,
			namespace: restricted, want: []string{"no-nodeport-or-loadbalancer"}, message: "of type NodePort"},
		{name: "LoadBalancer in a restricted namespace", object: `{apiVersion: v1, kind: Service, metadata: {name: web, namespace: team}, spec: {type: LoadBalancer}}`,
			namespace: restricted, want: []string{"no-nodeport-or-loadbalancer"}},
		{name: "NodePort elsewhere", object: `{apiVersion: v1, kind: Service, metadata: {name: web, namespace: team}, spec: {type: NodePort}}`, namespace: team},
		{name: "ClusterIP in a restricted namespace", object: `{apiVersion: v1, kind: Service, metadata: {name: web, namespace: team}, spec: {type: ClusterIP}}`, namespace: restricted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := obj(t, tc.object)
			ns := tc.namespace
			if RefOf(o).Kind == "Namespace" {
				ns = o
			}
			list := func(gvk schema.GroupVersionKind, namespace string) ([]any, error) {
				var out []any
				for _, c := range tc.cluster {
					ref := RefOf(c)
					if ref.Kind == gvk.Kind && (namespace == "" || ref.Namespace == namespace) {
						out = append(out, c)
					}
				}
				return out, nil
			}
			judged := Judge(rules, o, ns, namespaced, list, nil)
			findings := judged.Findings
			for _, err := range judged.Errors {
				t.Errorf("evaluation error: %v", err)
			}
			var got []string
			for _, f := range findings {
				got = append(got, f.Rule)
				if tc.message != "" && !strings.Contains(f.Message, tc.message) {
					t.Errorf("message %q does not say %q", f.Message, tc.message)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("broken rules %v, want %v", got, tc.want)
			}
		})
	}
}
