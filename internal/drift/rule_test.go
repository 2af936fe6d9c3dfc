package drift

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func playbookWith(ns string, rules ...riposte.DriftRule) *riposte.Playbook {
	return &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pb"},
		Spec: riposte.PlaybookSpec{Triggers: riposte.Triggers{Drift: rules}}}
}

func podRule(edit func(*riposte.DriftRule)) riposte.DriftRule {
	r := riposte.DriftRule{Name: "r", Resource: riposte.ResourceKind{APIVersion: "v1", Kind: "Pod"}, Rule: "true", Message: "m"}
	if edit != nil {
		edit(&r)
	}
	return r
}

// Each kind of bad rule is refused with the field that is wrong.
func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name, field, says string
		edit              func(*riposte.DriftRule)
	}{
		{"syntax", "spec.triggers.drift[0].rule", "does not compile", func(r *riposte.DriftRule) { r.Rule = "object.spec." }},
		{"unknown variable", "spec.triggers.drift[0].rule", "undeclared reference to 'oldObject'", func(r *riposte.DriftRule) { r.Rule = "oldObject == null" }},
		{"not a boolean", "spec.triggers.drift[0].rule", "must return a bool", func(r *riposte.DriftRule) { r.Rule = "1" }},
		{"message not a string", "spec.triggers.drift[0].messageExpression", "must return a string", func(r *riposte.DriftRule) { r.MessageExpression = "true" }},
		{"bad apiVersion", "spec.triggers.drift[0].resource", "apiVersion", func(r *riposte.DriftRule) { r.Resource.APIVersion = "a/b/c" }},
		{"bad lookup", "spec.triggers.drift[0].lookups[0].resource", "apiVersion", func(r *riposte.DriftRule) {
			r.Lookups = []riposte.DriftLookup{{Name: "x", Resource: riposte.ResourceKind{APIVersion: "a/b/c", Kind: "X"}}}
		}},
		{"bad selector", "spec.triggers.drift[0].objectSelector", "", func(r *riposte.DriftRule) {
			r.ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(playbookWith("team", podRule(tc.edit)), "riposte-system")
			if err == nil || !strings.HasPrefix(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %v, want %s: ...%s", err, tc.field, tc.says)
			}
		})
	}
	if rules, err := Compile(playbookWith("team", podRule(nil)), "riposte-system"); err != nil || len(rules) != 1 || rules[0].Severity != "warning" {
		t.Errorf("a good rule: %v, %v", rules, err)
	}
}

// Selection: scope, object labels, namespace labels.
func TestSelects(t *testing.T) {
	rules, err := Compile(playbookWith("team",
		podRule(func(r *riposte.DriftRule) {
			r.Name = "labelled"
			r.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
			r.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "prod"}}
		})), "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	r := rules[0]
	prod := map[string]string{"tier": "prod"}
	web := map[string]string{"app": "web"}
	cases := []struct {
		name      string
		ns        string
		obj, nsLb map[string]string
		want      bool
	}{
		{"all match", "team", web, prod, true},
		{"another namespace", "other", web, prod, false},
		{"object labels differ", "team", map[string]string{"app": "db"}, prod, false},
		{"namespace labels differ", "team", web, map[string]string{"tier": "dev"}, false},
	}
	for _, tc := range cases {
		if got := r.Selects(tc.ns, tc.obj, tc.nsLb); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	cluster, _ := Compile(playbookWith("riposte-system", podRule(nil)), "riposte-system")
	if !cluster[0].Selects("anywhere", nil, nil) {
		t.Error("a cluster-wide rule does not select another namespace")
	}
}

// An evaluation error is not a violation; a message that fails falls back.
func TestEvaluate(t *testing.T) {
	rules, _ := Compile(playbookWith("team",
		podRule(func(r *riposte.DriftRule) {
			r.Rule = "object.spec.hostNetwork == false"
			r.MessageExpression = "'pod ' + object.metadata.missing"
		})), "riposte-system")
	r := rules[0]
	if _, err := r.Evaluate(Input{Object: map[string]any{"spec": map[string]any{}}}); err == nil {
		t.Error("a missing field evaluated without error")
	}
	v, err := r.Evaluate(Input{Object: map[string]any{"metadata": map[string]any{}, "spec": map[string]any{"hostNetwork": true}}})
	if err != nil || !v.Violates || v.Message != "m" {
		t.Errorf("verdict %+v, %v; want a violation with the static message", v, err)
	}
	ns, _ := Compile(playbookWith("team", podRule(func(r *riposte.DriftRule) {
		r.Rule = "namespaceObject == null || namespaceObject.metadata.name == object.metadata.namespace"
	})), "riposte-system")
	if v, err := ns[0].Evaluate(Input{Object: map[string]any{"metadata": map[string]any{"namespace": "a"}}}); err != nil || v.Violates {
		t.Errorf("without a namespace: %+v, %v", v, err)
	}
	if v, err := ns[0].Evaluate(Input{Object: map[string]any{"metadata": map[string]any{"namespace": "a"}},
		Namespace: map[string]any{"metadata": map[string]any{"name": "b"}}}); err != nil || !v.Violates {
		t.Errorf("with another namespace: %+v, %v", v, err)
	}
}

// Names are deterministic, valid, and count occurrences.
func TestIncidentNames(t *testing.T) {
	f := Finding{Playbook: types.NamespacedName{Namespace: "riposte-system", Name: "pb"}, Rule: "no-privileged",
		Target: riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "team", Name: "web", UID: "1"}}
	same := f
	same.Target.UID, same.Message = "2", "another message"
	if IncidentName(f, 1) != IncidentName(same, 1) {
		t.Error("the name depends on the UID or message")
	}
	other := f
	other.Target.Name = "api"
	if IncidentName(f, 1) == IncidentName(other, 1) {
		t.Error("two objects share a name")
	}
	if got := IncidentName(f, 3); !strings.HasPrefix(got, "drift-no-privileged-") || !strings.HasSuffix(got, "-3") {
		t.Errorf("third occurrence named %s", got)
	}
	report := f
	report.Rule = "Disallow Privileged/Check: Containers!"
	if got := IncidentName(report, 1); !strings.HasPrefix(got, "drift-check-containers-") {
		t.Errorf("report rule named %s", got)
	}
	cases := map[string]string{"team": "team", "": "riposte-system"}
	for targetNS, want := range cases {
		g := f
		g.Target.Namespace = targetNS
		g.Target.Kind = "ClusterRoleBinding"
		if got := IncidentNamespace(g); got != want {
			t.Errorf("incident of a target in %q lives in %q, want %q", targetNS, got, want)
		}
	}
	inc := IncidentFor(report, 2, metav1.Now())
	if inc.Labels[LabelSource] != "drift" || inc.Labels[LabelRule] != "disallow-privileged-check-containers" || inc.Labels[LabelPlaybook] != "pb" ||
		inc.Spec.Drift.Rule != report.Rule || inc.Spec.Target.UID != "1" || !strings.HasSuffix(inc.Name, "-2") {
		t.Errorf("incident %s labels %v drift %+v", inc.Name, inc.Labels, inc.Spec.Drift)
	}
	ns := f
	ns.Target = riposte.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: "shop"}
	if got := IncidentNamespace(ns); got != "shop" {
		t.Errorf("a namespace's incident lives in %q", got)
	}
}

// PolicyReport results: resources or the report's scope, filtered by the
// playbook's triggers and scope. A ClusterPolicyReport, which may name any
// namespace (report_test.go has what a namespaced one may name).
func TestReportFindings(t *testing.T) {
	report := map[string]any{
		"scope": map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": "team", "name": "scoped"},
		"results": []any{
			map[string]any{"policy": "p", "rule": "r", "result": "fail", "severity": "high", "message": "bad",
				"resources": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": "team", "name": "a"}}},
			map[string]any{"policy": "p", "rule": "r", "result": "fail"},
			map[string]any{"policy": "p", "rule": "r", "result": "pass",
				"resources": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": "team", "name": "b"}}},
			map[string]any{"policy": "q", "rule": "r", "result": "warn",
				"resources": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": "other", "name": "c"}}},
			"not a result",
		},
	}
	src := riposte.ObjectReference{APIVersion: "wgpolicyk8s.io/v1alpha2", Kind: "ClusterPolicyReport", Name: "rep"}
	cluster := ReportScope{}
	pb := func(ns string, t ...riposte.PolicyReportTrigger) *riposte.Playbook {
		p := playbookWith(ns)
		p.Spec.Triggers.PolicyReports = t
		return p
	}
	names := func(fs []Finding) string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Rule+":"+f.Target.Name)
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		name string
		pb   *riposte.Playbook
		want string
	}{
		{"fail by default", pb("riposte-system", riposte.PolicyReportTrigger{}), "p/r:a,p/r:scoped"},
		{"warn asked for", pb("riposte-system", riposte.PolicyReportTrigger{Results: []riposte.PolicyReportResult{"warn"}}), "q/r:c"},
		{"another policy", pb("riposte-system", riposte.PolicyReportTrigger{Policies: []string{"z"}}), ""},
		{"severity", pb("riposte-system", riposte.PolicyReportTrigger{Severities: []string{"high"}}), "p/r:a"},
		{"a team sees its namespace only", pb("other", riposte.PolicyReportTrigger{Results: []riposte.PolicyReportResult{"fail", "warn"}}), "q/r:c"},
		{"no trigger", pb("riposte-system"), ""},
	}
	for _, tc := range cases {
		found, refused := ReportFindings(tc.pb, "riposte-system", src, cluster, report)
		if got := names(found); got != tc.want || len(refused) > 0 {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	fs, _ := ReportFindings(pb("riposte-system", riposte.PolicyReportTrigger{}), "riposte-system", src, cluster, report)
	if fs[0].Message != "bad" || fs[0].Severity != "high" || fs[0].Source != src || fs[1].Message == "" {
		t.Errorf("finding %+v / %+v", fs[0], fs[1])
	}
}

// Judge says which rules did not select the object and which failed, so an
// incident is never resolved as fixed for either.
func TestJudgeSaysWhatWasNotJudged(t *testing.T) {
	pb := playbookWith("team",
		podRule(func(r *riposte.DriftRule) {
			r.Name = "web-only"
			r.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		}),
		podRule(func(r *riposte.DriftRule) { r.Name = "strict"; r.Rule = "object.metadata.labels['debug'] != 'on'" }),
		podRule(func(r *riposte.DriftRule) { r.Name = "always-broken"; r.Rule = "false" }),
	)
	rules, err := Compile(pb, "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "db", "namespace": "team", "labels": map[string]any{"app": "db"}}}
	got := Judge(rules, pod, nil, func(schema.GroupVersionKind) bool { return true }, nil, nil)
	key := func(rule string) string { return RuleKey(types.NamespacedName{Namespace: "team", Name: "pb"}, rule) }
	if !got.Unselected[key("web-only")] || !got.Failed[key("strict")] || got.Failed[key("always-broken")] || got.Unselected[key("always-broken")] {
		t.Errorf("unselected %v, failed %v", got.Unselected, got.Failed)
	}
	if got.Evaluated != 1 || len(got.Findings) != 1 || got.Findings[0].Rule != "always-broken" || len(got.Errors) != 1 {
		t.Errorf("evaluated %d, findings %+v, errors %v", got.Evaluated, got.Findings, got.Errors)
	}
}
