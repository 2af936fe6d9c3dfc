package expr

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestCompileAndEval(t *testing.T) {
	inc := &riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{Name: "am-1", Namespace: "shop"},
		Spec: riposte.IncidentSpec{
			Source: riposte.SourceAlertmanager, AlertName: "Shell", Severity: "critical",
			Labels: map[string]string{"team": "payments"},
		},
	}
	obj, err := IncidentObject(inc)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		reason     string
		source     string
		want       bool
		compileErr string
		evalErr    string
	}{
		{reason: "severity comparison holds", source: "incident.spec.severity == 'critical'", want: true},
		{reason: "label lookup that does not hold", source: "incident.spec.labels.team == 'web'", want: false},
		{reason: "namespace from metadata", source: "incident.metadata.namespace.startsWith('sh')", want: true},
		{reason: "has() guards a missing label", source: "has(incident.spec.labels.owner) && incident.spec.labels.owner == 'x'", want: false},
		{reason: "a syntax error is reported at compile time", source: "incident.spec.severity ==", compileErr: "does not compile"},
		{reason: "a non-boolean result is refused at compile time", source: "'text'", compileErr: "must return a bool"},
		{reason: "an unknown variable is refused", source: "alert.severity == 'x'", compileErr: "undeclared reference"},
		{reason: "a missing field is an evaluation error, not a silent false", source: "incident.spec.labels.owner == 'x'", evalErr: "no such key"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			prg, err := Compile(tc.source)
			if tc.compileErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.compileErr) {
					t.Fatalf("Compile(%q) error = %v, want one containing %q", tc.source, err, tc.compileErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compile(%q): %v", tc.source, err)
			}
			got, err := prg.Eval(obj)
			if tc.evalErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.evalErr) {
					t.Fatalf("Eval error = %v, want one containing %q", err, tc.evalErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if got != tc.want {
				t.Errorf("Eval(%q) = %v, want %v", tc.source, got, tc.want)
			}
		})
	}
}

func TestCacheReturnsCompileErrorEachTime(t *testing.T) {
	var c Cache
	for i := 0; i < 2; i++ {
		if _, err := c.Get("1 +"); err == nil {
			t.Fatalf("call %d: want a compile error", i)
		}
	}
	p1, _ := c.Get("true")
	p2, _ := c.Get("true")
	if p1 != p2 {
		t.Error("the same source should compile once")
	}
}

func TestRender(t *testing.T) {
	obj, err := IncidentObject(&riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{Name: "am-1", Namespace: "shop"},
		Spec:       riposte.IncidentSpec{AlertName: "Shell", Severity: "critical", Labels: map[string]string{"pod": "web-1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		reason, template, want, wantErr string
	}{
		{reason: "text without parts is kept as is", template: "plain text", want: "plain text"},
		{reason: "parts are replaced in place", template: "{{ incident.spec.alertName }} on {{incident.spec.labels.pod}}", want: "Shell on web-1"},
		{reason: "expressions may compute", template: "{{ incident.spec.severity == 'critical' ? 'page' : 'ticket' }}", want: "page"},
		{reason: "numbers are written out", template: "n={{ size(incident.spec.labels) }}", want: "n=1"},
		{reason: "an unclosed part", template: "{{ incident.spec", wantErr: "{{ without }}"},
		{reason: "a missing field", template: "{{ incident.spec.labels.team }}", wantErr: "no such key"},
		{reason: "a list is not text", template: "{{ [1, 2] }}", wantErr: "must be a string, number or boolean"},
		{reason: "a syntax error", template: "{{ incident. }}", wantErr: "does not compile"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got, err := Render(tc.template, obj)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Render error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Render = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if err := CheckTemplate("{{ incident.spec.alertName }} and {{ nope( }}"); err == nil || !strings.Contains(err.Error(), "does not compile") {
		t.Errorf("CheckTemplate checks every part: %v", err)
	}
	if err := CheckTemplate("{{ incident.spec.labels.team }}"); err != nil {
		t.Errorf("CheckTemplate only compiles: %v", err)
	}
}
