package intake

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const maxGeneratorURL = 2048

// IncidentName is the deterministic name of an alert's Incident: the same
// alert always lands on the same object, so repeats never duplicate.
func IncidentName(fingerprint string) string { return "am-" + strings.ToLower(fingerprint) }

// IncidentFor is the Incident intake stores for an alert: in the alert's
// namespace when it names a valid one, else in defaultNamespace.
func IncidentFor(a Alert, defaultNamespace string) *riposte.Incident {
	ns := defaultNamespace
	if v := a.Labels["namespace"]; v != "" && len(validation.IsDNS1123Label(v)) == 0 {
		ns = v
	}
	labels := map[string]string{"riposte.dev/source": "alertmanager"}
	if name := a.Labels["alertname"]; len(validation.IsValidLabelValue(name)) == 0 {
		labels["riposte.dev/alertname"] = name
	}
	inc := &riposte.Incident{
		TypeMeta:   metav1.TypeMeta{APIVersion: riposte.GroupVersion.String(), Kind: "Incident"},
		ObjectMeta: metav1.ObjectMeta{Name: IncidentName(a.Fingerprint), Namespace: ns, Labels: labels},
		Spec: riposte.IncidentSpec{
			Source:       riposte.SourceAlertmanager,
			AlertName:    a.Labels["alertname"],
			Fingerprint:  a.Fingerprint,
			Severity:     a.Labels["severity"],
			Status:       riposte.AlertStatus(a.Status),
			Labels:       a.Labels,
			Annotations:  a.Annotations,
			GeneratorURL: truncate(a.GeneratorURL, maxGeneratorURL),
		},
	}
	if !a.StartsAt.IsZero() {
		t := metav1.NewTime(a.StartsAt)
		inc.Spec.StartsAt = &t
	}
	if a.Status == string(riposte.AlertResolved) && !a.EndsAt.IsZero() {
		t := metav1.NewTime(a.EndsAt)
		inc.Spec.EndsAt = &t
	}
	return inc
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
