package drift

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime/schema"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// servedKinds stands for the API server's REST mapper: whether each kind it
// serves is namespaced.
func servedKinds(gvk schema.GroupVersionKind) (namespaced, known bool) {
	namespaced, known = map[string]bool{
		"/Pod": true, "apps/Deployment": true, "/Node": false, "/Namespace": false,
		"rbac.authorization.k8s.io/ClusterRole": false,
	}[gvk.Group+"/"+gvk.Kind]
	return namespaced, known
}

// kyvernoResult is one result as Kyverno's background scan writes it for a
// Pod Security Standards policy (the fields of Kyverno's own conformance
// test kyverno/kyverno test/conformance/chainsaw/reports/background/
// multiple-exceptions-with-pod-security/report-fail-assert.yaml), naming
// resources when given; without them it is about the report's scope.
func kyvernoResult(resources ...map[string]any) map[string]any {
	r := map[string]any{
		"message": "Validation rule 'baseline' failed. It violates PodSecurity \"baseline:v1.29\": (Forbidden reason: privileged, field error list: [spec.containers[0].securityContext.privileged is forbidden, forbidden values found: true])",
		"policy":  "psp-baseline", "rule": "baseline", "result": "fail", "scored": true, "source": "kyverno",
		"properties": map[string]any{"controls": "privileged", "standard": "baseline", "version": "v1.29"},
	}
	if len(resources) > 0 {
		var rs []any
		for _, res := range resources {
			rs = append(rs, res)
		}
		r["resources"] = rs
	}
	return r
}

func podRef(ns, name string) map[string]any {
	ref := map[string]any{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": "6c0a5d4e-forged"}
	if ns != "" {
		ref["namespace"] = ns
	}
	return ref
}

// A namespaced report (PolicyReport, Report) speaks only for its own
// namespace: whoever may create reports there wrote it. Only a
// cluster-scoped report names other namespaces or cluster-scoped objects.
// The UID a report writes is never taken.
func TestReportScope(t *testing.T) {
	policyReport := func(ns string) riposte.ObjectReference {
		return riposte.ObjectReference{APIVersion: "wgpolicyk8s.io/v1alpha2", Kind: "PolicyReport", Namespace: ns, Name: "pol-psp-baseline"}
	}
	openReport := func(ns string) riposte.ObjectReference {
		return riposte.ObjectReference{APIVersion: "openreports.io/v1alpha1", Kind: "Report", Namespace: ns, Name: "6c0a5d4e"}
	}
	clusterPolicyReport := riposte.ObjectReference{APIVersion: "wgpolicyk8s.io/v1alpha2", Kind: "ClusterPolicyReport", Name: "cpol-psp-baseline"}
	clusterReport := riposte.ObjectReference{APIVersion: "openreports.io/v1alpha1", Kind: "ClusterReport", Name: "nodes"}
	node := map[string]any{"apiVersion": "v1", "kind": "Node", "name": "worker-1"}
	pod := func(ns, name string) riposte.ObjectReference {
		return riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: name}
	}
	const rule = "psp-baseline/baseline"
	cases := []struct {
		reason   string
		playbook string // its namespace
		source   riposte.ObjectReference
		scope    map[string]any // the report's scope
		results  []any
		found    []riposte.ObjectReference
		refused  []Refusal
	}{
		{reason: "a report about a pod of its own namespace", playbook: operatorNS, source: policyReport("shop"),
			results: []any{kyvernoResult(podRef("shop", "db"))}, found: []riposte.ObjectReference{pod("shop", "db")}},
		{reason: "a pod named without a namespace is in the report's", playbook: operatorNS, source: openReport("shop"),
			results: []any{kyvernoResult(podRef("", "db"))}, found: []riposte.ObjectReference{pod("shop", "db")}},
		{reason: "Kyverno's scope without a namespace is in the report's", playbook: operatorNS, source: policyReport("shop"),
			scope: podRef("", "db"), results: []any{kyvernoResult()}, found: []riposte.ObjectReference{pod("shop", "db")}},
		{reason: "a pod of another namespace is refused", playbook: operatorNS, source: policyReport("attacker"),
			results: []any{kyvernoResult(podRef("victim", "db"))},
			refused: []Refusal{{Rule: rule, Target: pod("victim", "db"), Reason: RefusedOtherNamespace}}},
		{reason: "an OpenReports Report likewise", playbook: operatorNS, source: openReport("attacker"),
			results: []any{kyvernoResult(podRef("victim", "db"), podRef("attacker", "own"))}, found: []riposte.ObjectReference{pod("attacker", "own")},
			refused: []Refusal{{Rule: rule, Target: pod("victim", "db"), Reason: RefusedOtherNamespace}}},
		{reason: "a scope in another namespace is refused", playbook: operatorNS, source: openReport("attacker"),
			scope: podRef("victim", "db"), results: []any{kyvernoResult()},
			refused: []Refusal{{Rule: rule, Target: pod("victim", "db"), Reason: RefusedOtherNamespace}}},
		{reason: "a node is refused", playbook: operatorNS, source: policyReport("attacker"), results: []any{kyvernoResult(node)},
			refused: []Refusal{{Rule: rule, Target: riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "worker-1"}, Reason: RefusedClusterScoped}}},
		{reason: "a node written with the report's namespace is still cluster-scoped", playbook: operatorNS, source: policyReport("attacker"),
			results: []any{kyvernoResult(map[string]any{"apiVersion": "v1", "kind": "Node", "name": "worker-1", "namespace": "attacker"})},
			refused: []Refusal{{Rule: rule, Target: riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Namespace: "attacker", Name: "worker-1"}, Reason: RefusedClusterScoped}}},
		{reason: "another namespace itself is refused", playbook: operatorNS, source: policyReport("attacker"),
			results: []any{kyvernoResult(map[string]any{"apiVersion": "v1", "kind": "Namespace", "name": "victim"})},
			refused: []Refusal{{Rule: rule, Target: riposte.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: "victim"}, Reason: RefusedClusterScoped}}},
		{reason: "a kind the API server does not serve is refused", playbook: operatorNS, source: policyReport("attacker"),
			results: []any{kyvernoResult(map[string]any{"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "namespace": "attacker"})},
			refused: []Refusal{{Rule: rule, Target: riposte.ObjectReference{APIVersion: "example.com/v1", Kind: "Widget", Namespace: "attacker", Name: "w"}, Reason: RefusedUnknownKind}}},
		{reason: "a ClusterPolicyReport names any namespace", playbook: operatorNS, source: clusterPolicyReport,
			results: []any{kyvernoResult(podRef("victim", "db"))}, found: []riposte.ObjectReference{pod("victim", "db")}},
		{reason: "a ClusterReport names a node", playbook: operatorNS, source: clusterReport, results: []any{kyvernoResult(node)},
			found: []riposte.ObjectReference{{APIVersion: "v1", Kind: "Node", Name: "worker-1"}}},
		{reason: "a team's playbook is not told about another team's report", playbook: "victim", source: policyReport("attacker"),
			results: []any{kyvernoResult(podRef("victim", "db"))}},
		{reason: "a team's playbook is told what its own namespace's report named outside it", playbook: "attacker", source: policyReport("attacker"),
			results: []any{kyvernoResult(podRef("victim", "db"))},
			refused: []Refusal{{Rule: rule, Target: pod("victim", "db"), Reason: RefusedOtherNamespace}}},
		{reason: "a team's playbook answers a cluster report about its namespace", playbook: "victim", source: clusterPolicyReport,
			results: []any{kyvernoResult(podRef("victim", "db"), podRef("shop", "web"))}, found: []riposte.ObjectReference{pod("victim", "db")}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			pb := playbookWith(tc.playbook)
			pb.Spec.Triggers.PolicyReports = []riposte.PolicyReportTrigger{{Policies: []string{"psp-baseline"}}}
			report := map[string]any{"apiVersion": tc.source.APIVersion, "kind": tc.source.Kind, "results": tc.results}
			if tc.scope != nil {
				report["scope"] = tc.scope
			}
			found, refused := ReportFindings(pb, operatorNS, tc.source, ReportScope{Namespace: tc.source.Namespace, Namespaced: servedKinds}, report)
			var targets []riposte.ObjectReference
			for _, f := range found {
				targets = append(targets, f.Target)
			}
			if diff := cmp.Diff(tc.found, targets); diff != "" {
				t.Errorf("targets (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.refused, refused); diff != "" {
				t.Errorf("refused (-want +got):\n%s", diff)
			}
		})
	}
}

const operatorNS = "riposte-system"

// Which incident sources anyone who may create reports in a namespace
// could have written.
func TestIsNamespacedReport(t *testing.T) {
	cases := []struct {
		source riposte.ObjectReference
		want   bool
	}{
		{riposte.ObjectReference{APIVersion: "wgpolicyk8s.io/v1alpha2", Kind: "PolicyReport", Namespace: "shop", Name: "r"}, true},
		{riposte.ObjectReference{APIVersion: "wgpolicyk8s.io/v1beta1", Kind: "PolicyReport", Namespace: "shop", Name: "r"}, true},
		{riposte.ObjectReference{APIVersion: "openreports.io/v1alpha1", Kind: "Report", Namespace: "shop", Name: "r"}, true},
		{riposte.ObjectReference{APIVersion: "wgpolicyk8s.io/v1alpha2", Kind: "ClusterPolicyReport", Name: "r"}, false},
		{riposte.ObjectReference{APIVersion: "openreports.io/v1alpha1", Kind: "ClusterReport", Name: "r"}, false},
		{riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "drifted"}, false},
		{riposte.ObjectReference{APIVersion: "example.com/v1", Kind: "Report", Namespace: "shop", Name: "r"}, false},
	}
	for _, tc := range cases {
		if got := IsNamespacedReport(tc.source); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.source.APIVersion, tc.source.Kind, got, tc.want)
		}
	}
}
