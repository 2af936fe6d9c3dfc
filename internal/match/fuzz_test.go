package match

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/expr"
)

// FuzzPlaybookExpressions checks and runs what a playbook's author writes:
// the CEL `when`, a `{{ }}` template, a drift rule and its message, and a
// matcher's regular expression. Checking must never panic, and whatever
// passes the check must run against an incident and an object without
// panicking (an evaluation error is the author's to see, not a crash).
func FuzzPlaybookExpressions(f *testing.F) {
	f.Add(`incident.spec.labels.severity == "critical"`, `{{ incident.spec.target.name }} isolated`,
		`!has(object.spec.hostNetwork) || !object.spec.hostNetwork`, `'host network: ' + object.metadata.name`, `web-.*`)
	f.Add(`has(incident.status.context) && incident.status.context.replicas > 2`, `{{ incident.spec.labels["namespace"] }}`,
		`object.spec.containers.all(c, c.image.startsWith('registry.example.com/'))`, `object.spec.containers.map(c, c.image).join(', ')`, `(a|b)+`)
	f.Add(`[1, 2, 3].all(x, x > 0)`, `{{ }}`, `lookups.networkPolicies.exists(np, size(np.spec.podSelector) == 0)`, `''`, `[`)
	f.Add(`incident.spec.labels.all(k, k.matches('^[a-z]+$'))`, `{{ incident.spec.fingerprint`, `namespaceObject.metadata.labels['team'] == 'a'`,
		`string(size(lookups.networkPolicies))`, `.*`)
	f.Fuzz(func(t *testing.T, when, template, rule, message, regexp string) {
		pb := &riposte.Playbook{
			ObjectMeta: metav1.ObjectMeta{Namespace: "riposte-system", Name: "fuzz"},
			Spec: riposte.PlaybookSpec{
				When: when,
				Triggers: riposte.Triggers{
					Alerts: []riposte.AlertTrigger{{Matchers: []riposte.LabelMatcher{{Name: "pod", Operator: riposte.MatchRegexp, Value: regexp}}}},
					Drift: []riposte.DriftRule{{Name: "fuzz", Resource: riposte.ResourceKind{APIVersion: "v1", Kind: "Pod"}, Rule: rule, MessageExpression: message,
						Message: "fuzz", Lookups: []riposte.DriftLookup{{Name: "networkPolicies", Resource: riposte.ResourceKind{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}}}}},
				},
				Steps: []riposte.Step{{Name: "tell", Action: riposte.ActionNotify, Notify: &riposte.NotifyParams{Text: template}}},
			},
		}
		exprs := &expr.Cache{}
		if reason, _ := Validate(pb, exprs); reason == "" {
			inc := fuzzIncident()
			Select([]riposte.Playbook{*pb}, inc, "riposte-system", exprs)
			if obj, err := expr.IncidentObject(inc); err == nil {
				_, _ = expr.Render(template, obj)
			}
		}
		rules, err := drift.Compile(pb, "riposte-system")
		if err != nil {
			return
		}
		pod := map[string]any{"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": "web-1", "namespace": "shop", "labels": map[string]any{"app": "web"}},
			"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "registry.example.com/web:1"}}}}
		ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "shop", "labels": map[string]any{"team": "a"}}}
		policies := []any{map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": map[string]any{"name": "deny", "namespace": "shop"},
			"spec": map[string]any{"podSelector": map[string]any{}, "policyTypes": []any{"Ingress"}}}}
		drift.Judge(rules, pod, ns, func(schema.GroupVersionKind) bool { return true }, func(schema.GroupVersionKind, string) ([]any, error) { return policies, nil }, nil)
	})
}

func fuzzIncident() *riposte.Incident {
	replicas := int32(3)
	return &riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "am-0123456789abcdef"},
		Spec: riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: "ShellInContainer", Fingerprint: "0123456789abcdef",
			Status: riposte.AlertFiring, Labels: map[string]string{"alertname": "ShellInContainer", "namespace": "shop", "pod": "web-1", "severity": "critical"},
			Target: &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-1"}},
		Status: riposte.IncidentStatus{Context: &riposte.IncidentContext{Replicas: &replicas, Node: "worker-1"}},
	}
}
