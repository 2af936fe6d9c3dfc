package intake

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestIncidentFor(t *testing.T) {
	starts := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ends := starts.Add(5 * time.Minute)
	startsAt, endsAt := metav1.NewTime(starts), metav1.NewTime(ends)
	const defaultNS = "riposte-system"

	// incident is the expected Incident for alertname "A", adjusted per case.
	incident := func(name, ns string, labels map[string]string, mutate func(*riposte.Incident)) *riposte.Incident {
		inc := &riposte.Incident{
			TypeMeta: metav1.TypeMeta{APIVersion: "riposte.dev/v1alpha1", Kind: "Incident"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
				"riposte.dev/source": "alertmanager", "riposte.dev/alertname": "A",
			}},
			Spec: riposte.IncidentSpec{
				Source: riposte.SourceAlertmanager, AlertName: "A", Status: riposte.AlertFiring,
				Fingerprint: strings.TrimPrefix(name, "am-"), Labels: labels,
			},
		}
		if mutate != nil {
			mutate(inc)
		}
		return inc
	}

	cases := []struct {
		reason string
		alert  Alert
		want   *riposte.Incident
	}{
		{
			reason: "a fingerprint with capitals is hashed into the name and kept verbatim, in the alert's namespace, with severity and times",
			alert: Alert{Status: "firing", Fingerprint: "AB12", StartsAt: starts, EndsAt: ends, GeneratorURL: "http://prom/g",
				Labels:      map[string]string{"alertname": "A", "namespace": "shop", "severity": "critical"},
				Annotations: map[string]string{"summary": "s"}},
			want: incident(IncidentName("AB12"), "shop", map[string]string{"alertname": "A", "namespace": "shop", "severity": "critical"}, func(inc *riposte.Incident) {
				inc.Spec.Fingerprint = "AB12"
				inc.Spec.Severity = "critical"
				inc.Spec.Annotations = map[string]string{"summary": "s"}
				inc.Spec.StartsAt = &startsAt
				inc.Spec.GeneratorURL = "http://prom/g"
			}),
		},
		{
			reason: "no namespace label: the default namespace",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A"}},
			want:   incident("am-ab", defaultNS, map[string]string{"alertname": "A"}, nil),
		},
		{
			reason: "a namespace label that is not a DNS-1123 label: the default namespace",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A", "namespace": "Bad_NS"}},
			want:   incident("am-ab", defaultNS, map[string]string{"alertname": "A", "namespace": "Bad_NS"}, nil),
		},
		{
			reason: "a resolved alert carries endsAt",
			alert:  Alert{Status: "resolved", Fingerprint: "ab", Labels: map[string]string{"alertname": "A", "namespace": "shop"}, EndsAt: ends},
			want: incident("am-ab", "shop", map[string]string{"alertname": "A", "namespace": "shop"}, func(inc *riposte.Incident) {
				inc.Spec.Status = riposte.AlertResolved
				inc.Spec.EndsAt = &endsAt
			}),
		},
		{
			reason: "a resolved alert without endsAt leaves it unset",
			alert:  Alert{Status: "resolved", Fingerprint: "ab", Labels: map[string]string{"alertname": "A"}},
			want: incident("am-ab", defaultNS, map[string]string{"alertname": "A"}, func(inc *riposte.Incident) {
				inc.Spec.Status = riposte.AlertResolved
			}),
		},
		{
			reason: "a firing alert's endsAt is Alertmanager's guess, not stored",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A"}, EndsAt: ends},
			want:   incident("am-ab", defaultNS, map[string]string{"alertname": "A"}, nil),
		},
		{
			reason: "an alertname that is not a label value is sanitised for the label, kept as is in the spec",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "Pod shell (exec)!"}},
			want: incident("am-ab", defaultNS, map[string]string{"alertname": "Pod shell (exec)!"}, func(inc *riposte.Incident) {
				inc.Spec.AlertName = "Pod shell (exec)!"
				inc.Labels["riposte.dev/alertname"] = "Pod-shell--exec"
			}),
		},
		{
			reason: "an alertname with nothing usable for a label value omits the label",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "¡¿!"}},
			want: incident("am-ab", defaultNS, map[string]string{"alertname": "¡¿!"}, func(inc *riposte.Incident) {
				inc.Spec.AlertName = "¡¿!"
				delete(inc.Labels, "riposte.dev/alertname")
			}),
		},
		{
			reason: "a long generatorURL is cut to 2048 bytes without splitting a character",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A"}, GeneratorURL: strings.Repeat("a", 2047) + "é"},
			want: incident("am-ab", defaultNS, map[string]string{"alertname": "A"}, func(inc *riposte.Incident) {
				inc.Spec.GeneratorURL = strings.Repeat("a", 2047)
			}),
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := IncidentFor(tc.alert, defaultNS)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("IncidentFor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIncidentName(t *testing.T) {
	cases := []struct {
		reason      string
		fingerprint string
		// want is the exact name; empty means a hashed one.
		want string
	}{
		{reason: "Alertmanager's own fingerprint is the name", fingerprint: "a1b2c3d4e5f60718", want: "am-a1b2c3d4e5f60718"},
		{reason: "a short lowercase fingerprint is the name", fingerprint: "c0ffee01", want: "am-c0ffee01"},
		{reason: "32 lowercase letters and digits are still the name", fingerprint: strings.Repeat("z", 32), want: "am-" + strings.Repeat("z", 32)},
		{reason: "capitals are hashed, not lowercased", fingerprint: "A1B2C3D4E5F60718"},
		{reason: "a long fingerprint is hashed", fingerprint: strings.Repeat("a", 33)},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := IncidentName(tc.fingerprint)
			hashed := strings.HasPrefix(got, "am-h-") && len(got) == len("am-h-")+32
			if tc.want == "" && !hashed || tc.want != "" && got != tc.want {
				t.Errorf("IncidentName(%q) = %q, want %q (empty: a hashed name)", tc.fingerprint, got, tc.want)
			}
			if errs := validation.IsDNS1123Label(got); len(errs) != 0 {
				t.Errorf("IncidentName(%q) = %q is not a valid name: %v", tc.fingerprint, got, errs)
			}
			if IncidentName(tc.fingerprint) != got {
				t.Errorf("IncidentName(%q) is not stable", tc.fingerprint)
			}
		})
	}

	// Fingerprints that differ only in case, or that a plain name could
	// spell, never share a name.
	seen := map[string]string{}
	for _, fp := range []string{"abc", "ABC", "Abc", "aBc", "abC", "a1b2c3d4e5f60718", "A1B2C3D4E5F60718", "h", "H", strings.Repeat("a", 32), strings.Repeat("a", 33), strings.Repeat("A", 64)} {
		name := IncidentName(fp)
		if other, taken := seen[name]; taken {
			t.Errorf("fingerprints %q and %q share the name %s", other, fp, name)
		}
		seen[name] = fp
	}
}

func TestLabelValue(t *testing.T) {
	cases := []struct {
		reason string
		in     string
		want   string
	}{
		{reason: "a valid value is kept", in: "KubePodCrashLooping", want: "KubePodCrashLooping"},
		{reason: "spaces and punctuation become dashes", in: "a b/c", want: "a-b-c"},
		{reason: "ends must be alphanumeric", in: "-_a.b_-", want: "a.b"},
		{reason: "too long is cut to 63", in: strings.Repeat("x", 100), want: strings.Repeat("x", 63)},
		{reason: "cut then trimmed", in: strings.Repeat("x", 62) + "-yy", want: strings.Repeat("x", 62)},
		{reason: "nothing usable", in: "***", want: ""},
		{reason: "empty", in: "", want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := labelValue(tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("labelValue(%q) (-want +got):\n%s", tc.in, diff)
			}
			if errs := validation.IsValidLabelValue(got); len(errs) != 0 {
				t.Errorf("labelValue(%q) = %q is not a valid label value: %v", tc.in, got, errs)
			}
		})
	}
}
