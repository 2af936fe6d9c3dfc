package match

import (
	"k8s.io/apimachinery/pkg/runtime"

	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/expr"
)

func TestLabelMatches(t *testing.T) {
	labels := map[string]string{"namespace": "shop", "team": "payments"}
	cases := []struct {
		reason  string
		m       riposte.LabelMatcher
		want    bool
		wantErr bool
	}{
		{reason: "equal holds", m: riposte.LabelMatcher{Name: "team", Operator: "=", Value: "payments"}, want: true},
		{reason: "empty operator means equal", m: riposte.LabelMatcher{Name: "team", Value: "payments"}, want: true},
		{reason: "equal fails", m: riposte.LabelMatcher{Name: "team", Operator: "=", Value: "web"}},
		{reason: "a missing label equals the empty string", m: riposte.LabelMatcher{Name: "owner", Operator: "=", Value: ""}, want: true},
		{reason: "not equal holds", m: riposte.LabelMatcher{Name: "team", Operator: "!=", Value: "web"}, want: true},
		{reason: "regexp is anchored: a prefix does not match", m: riposte.LabelMatcher{Name: "namespace", Operator: "=~", Value: "sh"}},
		{reason: "regexp alternation matches the whole value", m: riposte.LabelMatcher{Name: "namespace", Operator: "=~", Value: "shop|cart"}, want: true},
		{reason: "negated regexp", m: riposte.LabelMatcher{Name: "namespace", Operator: "!~", Value: "kube-.*"}, want: true},
		{reason: "a broken regexp is an error, not a silent miss", m: riposte.LabelMatcher{Name: "namespace", Operator: "=~", Value: "("}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got, err := LabelMatches(tc.m, labels)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("LabelMatches(%+v) = %v, want %v", tc.m, got, tc.want)
			}
		})
	}
}

func playbook(ns, name string, prio int32, trigger riposte.AlertTrigger, when string) riposte.Playbook {
	return riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: riposte.PlaybookSpec{
			Triggers: riposte.Triggers{Alerts: []riposte.AlertTrigger{trigger}},
			When:     when, Priority: prio,
			Steps: []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
		},
	}
}

func TestSelect(t *testing.T) {
	inc := &riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "am-1"},
		Spec: riposte.IncidentSpec{AlertName: "Shell", Severity: "critical",
			Labels: map[string]string{"alertname": "Shell", "team": "payments"}},
	}
	shell := riposte.AlertTrigger{AlertNames: []string{"Shell"}}
	cases := []struct {
		reason     string
		playbooks  []riposte.Playbook
		want       string // namespace/name, or "" for none
		wantBroken int
	}{
		{reason: "nothing to match", want: ""},
		{reason: "alert name matches", playbooks: []riposte.Playbook{playbook("shop", "a", 0, shell, "")}, want: "shop/a"},
		{reason: "another alert name does not", playbooks: []riposte.Playbook{playbook("shop", "a", 0, riposte.AlertTrigger{AlertNames: []string{"Other"}}, "")}},
		{reason: "severity must be listed", playbooks: []riposte.Playbook{playbook("shop", "a", 0, riposte.AlertTrigger{Severities: []string{"warning"}}, "")}},
		{reason: "a playbook in another team's namespace never answers", playbooks: []riposte.Playbook{playbook("web", "a", 0, shell, "")}},
		{reason: "a playbook in the operator namespace answers any namespace", playbooks: []riposte.Playbook{playbook("riposte-system", "global", 0, shell, "")}, want: "riposte-system/global"},
		{reason: "label matchers all hold", playbooks: []riposte.Playbook{playbook("shop", "a", 0, riposte.AlertTrigger{Matchers: []riposte.LabelMatcher{{Name: "team", Operator: "=~", Value: "pay.*"}}}, "")}, want: "shop/a"},
		{reason: "when must hold", playbooks: []riposte.Playbook{playbook("shop", "a", 0, shell, "incident.spec.severity == 'info'")}},
		{reason: "when that holds", playbooks: []riposte.Playbook{playbook("shop", "a", 0, shell, "incident.spec.labels.team == 'payments'")}, want: "shop/a"},
		{reason: "higher priority wins", playbooks: []riposte.Playbook{playbook("shop", "a", 1, shell, ""), playbook("shop", "b", 5, shell, "")}, want: "shop/b"},
		{reason: "equal priority: first by namespace then name", playbooks: []riposte.Playbook{playbook("shop", "b", 0, shell, ""), playbook("riposte-system", "z", 0, shell, "")}, want: "riposte-system/z"},
		{reason: "a broken when is reported and skipped, the rest still match", playbooks: []riposte.Playbook{playbook("shop", "a", 9, shell, "incident.spec.("), playbook("shop", "b", 0, shell, "")}, want: "shop/b", wantBroken: 1},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got, broken := Select(tc.playbooks, inc, "riposte-system", &expr.Cache{})
			name := ""
			if got != nil {
				name = got.Namespace + "/" + got.Name
			}
			if name != tc.want {
				t.Errorf("Select = %q, want %q", name, tc.want)
			}
			if len(broken) != tc.wantBroken {
				t.Errorf("broken = %d, want %d", len(broken), tc.wantBroken)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		reason     string
		mutate     func(*riposte.Playbook)
		wantReason string
		wantInMsg  string
	}{
		{reason: "a valid playbook", mutate: func(*riposte.Playbook) {}},
		{reason: "a when that does not compile", mutate: func(p *riposte.Playbook) { p.Spec.When = "incident.(" }, wantReason: riposte.ReasonInvalidCEL, wantInMsg: "spec.when"},
		{reason: "an autoApprove that does not compile", mutate: func(p *riposte.Playbook) {
			p.Spec.Approval.AutoApprove = &riposte.AutoApprove{When: "1 + 1"}
		}, wantReason: riposte.ReasonInvalidCEL, wantInMsg: "spec.approval.autoApprove.when"},
		{reason: "a regexp that does not compile", mutate: func(p *riposte.Playbook) {
			p.Spec.Triggers.Alerts[0].Matchers = []riposte.LabelMatcher{{Name: "x", Operator: "=~", Value: "[a-"}}
		}, wantReason: riposte.ReasonInvalidMatcher, wantInMsg: "spec.triggers.alerts[0].matchers[0]"},
		{reason: "a step template that does not compile", mutate: func(p *riposte.Playbook) {
			p.Spec.Steps = []riposte.Step{{Name: "tell", Action: riposte.ActionNotify, Notify: &riposte.NotifyParams{Text: "{{ incident.spec.alertName + }}"}}}
		}, wantReason: riposte.ReasonInvalidCEL, wantInMsg: "spec.steps[0].notify.text"},
		{reason: "a template deep in a manifest", mutate: func(p *riposte.Playbook) {
			p.Spec.Steps = []riposte.Step{{Name: "np", Action: riposte.ActionApplyManifest,
				Manifest: &runtime.RawExtension{Raw: []byte(`{"metadata":{"labels":{"a":"{{ ) }}"}}}`)}}}
		}, wantReason: riposte.ReasonInvalidCEL, wantInMsg: "spec.steps[0].manifest.metadata.labels.a"},
		{reason: "valid templates", mutate: func(p *riposte.Playbook) {
			p.Spec.Steps = []riposte.Step{{Name: "l", Action: riposte.ActionLabel, Metadata: &riposte.MetadataParams{Set: map[string]string{"a": "{{ incident.metadata.name }}"}}}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			pb := playbook("shop", "a", 0, riposte.AlertTrigger{AlertNames: []string{"Shell"}}, "")
			tc.mutate(&pb)
			reason, msg := Validate(&pb, &expr.Cache{})
			if reason != tc.wantReason || !strings.Contains(msg, tc.wantInMsg) {
				t.Errorf("Validate = %q %q, want %q containing %q", reason, msg, tc.wantReason, tc.wantInMsg)
			}
		})
	}
}

// A drift incident is answered by the playbook that found it, while it
// still has the rule, and never by another playbook's alert triggers.
func TestSelectDrift(t *testing.T) {
	anyAlert := riposte.AlertTrigger{}
	finder := playbook("shop", "finder", 0, anyAlert, "")
	finder.Spec.Triggers.Drift = []riposte.DriftRule{{Name: "no-debug"}}
	reports := playbook("shop", "reports", 0, anyAlert, "")
	reports.Spec.Triggers.PolicyReports = []riposte.PolicyReportTrigger{{}}
	greedy := playbook("riposte-system", "greedy", 1000, anyAlert, "")
	cases := []struct {
		rule, playbook, want string
	}{
		{"no-debug", "finder", "shop/finder"},
		{"removed-rule", "finder", ""},
		{"policy/rule", "reports", "shop/reports"},
		{"policy/rule", "finder", ""},
	}
	for _, tc := range cases {
		inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "drift"},
			Spec: riposte.IncidentSpec{Source: riposte.SourceDrift, AlertName: tc.rule,
				Drift: &riposte.DriftFinding{Playbook: riposte.NamespacedName{Namespace: "shop", Name: tc.playbook}, Rule: tc.rule}}}
		got, _ := Select([]riposte.Playbook{greedy, finder, reports}, inc, "riposte-system", &expr.Cache{})
		name := ""
		if got != nil {
			name = got.Namespace + "/" + got.Name
		}
		if name != tc.want {
			t.Errorf("rule %s of %s answered by %q, want %q", tc.rule, tc.playbook, name, tc.want)
		}
	}
}

// A cluster-wide playbook does not let autoApprove rest on a namespaced
// report unless it says so; a team's playbook does, its reports being the
// team's own.
func TestNamespacedReportsOf(t *testing.T) {
	cases := []struct {
		reason    string
		namespace string
		set       riposte.NamespacedReports
		want      riposte.NamespacedReports
	}{
		{"cluster-wide, unset", "riposte-system", "", riposte.NamespacedReportsRequirePerson},
		{"cluster-wide, opted in", "riposte-system", riposte.NamespacedReportsAutomatic, riposte.NamespacedReportsAutomatic},
		{"team, unset", "shop", "", riposte.NamespacedReportsAutomatic},
		{"team, people decide", "shop", riposte.NamespacedReportsRequirePerson, riposte.NamespacedReportsRequirePerson},
	}
	for _, tc := range cases {
		pb := &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Namespace: tc.namespace, Name: "pb"},
			Spec: riposte.PlaybookSpec{Approval: riposte.ApprovalPolicy{NamespacedReports: tc.set}}}
		if got := NamespacedReportsOf(pb, "riposte-system"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.reason, got, tc.want)
		}
	}
}
