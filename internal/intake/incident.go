package intake

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/alertlabels"
	"github.com/riposte-dev/riposte/internal/text"
)

// Labels intake puts on every Incident it stores, so they can be selected.
const (
	LabelSource    = "riposte.dev/source"
	LabelAlertName = "riposte.dev/alertname"

	sourceAlertmanager = "alertmanager"
	maxGeneratorURL    = 2048
	maxAlertName       = 253
)

// plainFingerprint is a fingerprint that is its own name: Alertmanager's
// (16 lowercase hex digits) and anything else already a valid, short name.
var plainFingerprint = regexp.MustCompile(`^[0-9a-z]{1,32}$`)

// IncidentName is the deterministic name of an alert's Incident: the same
// alert always lands on the same object, so repeats never duplicate, and
// distinct fingerprints never share one. A plain fingerprint is used as is;
// any other (upper case, which a name cannot hold, or too long) is hashed,
// under "am-h-", which no plain name can start with since a plain
// fingerprint holds no '-'.
func IncidentName(fingerprint string) string {
	if plainFingerprint.MatchString(fingerprint) {
		return "am-" + fingerprint
	}
	sum := sha256.Sum256([]byte(fingerprint))
	return "am-h-" + hex.EncodeToString(sum[:16])
}

// EpisodeName is the name of an alert's incident when it fires again after
// its first incident was resolved: the first incident's name and a digest
// of when this episode started. Alertmanager keeps an episode's startsAt
// (the earliest of its notifications), so every notification of the
// episode lands on the same object, and each episode on its own.
func EpisodeName(fingerprint string, startsAt time.Time) string {
	sum := sha256.Sum256([]byte(startsAt.UTC().Truncate(time.Second).Format(time.RFC3339)))
	return IncidentName(fingerprint) + "-" + hex.EncodeToString(sum[:5])
}

// IncidentFor is the Incident intake stores for an alert: in its target's
// namespace, or with no target in the namespace its labels name, as
// alertlabels reads them (never an exporter's own); else, and for a
// cluster-scoped target, in defaultNamespace. Labels alone decide, so
// intake asks the API server nothing per alert. The alert is expected to
// have passed Decode's validation.
func IncidentFor(a Alert, defaultNamespace string) *riposte.Incident {
	ns := defaultNamespace
	if v := alertlabels.Of(a.Labels).Namespace; v != "" {
		ns = v
	}
	labels := map[string]string{LabelSource: sourceAlertmanager}
	name, _ := AlertName(a.Labels)
	if v := labelValue(name); v != "" {
		labels[LabelAlertName] = v
	}
	inc := &riposte.Incident{
		TypeMeta: metav1.TypeMeta{APIVersion: riposte.GroupVersion.String(), Kind: "Incident"},
		// The finalizer that keeps the record of a remediation is set at
		// creation, so the remediation path costs no write of its own for it.
		ObjectMeta: metav1.ObjectMeta{Name: IncidentName(a.Fingerprint), Namespace: ns, Labels: labels,
			Finalizers: []string{riposte.RecordFinalizer}},
		Spec: riposte.IncidentSpec{
			Source:      riposte.SourceAlertmanager,
			AlertName:   name,
			Fingerprint: a.Fingerprint,
			Severity:    a.Labels["severity"],
			Status:      riposte.AlertStatus(a.Status),
			// Copied so the Incident never aliases the decoded payload.
			Labels:       maps.Clone(a.Labels),
			Annotations:  maps.Clone(a.Annotations),
			GeneratorURL: text.Clip(a.GeneratorURL, maxGeneratorURL),
		},
	}
	if !a.StartsAt.IsZero() {
		t := metav1.NewTime(a.StartsAt)
		inc.Spec.StartsAt = &t
	}
	// Alertmanager sends an endsAt in the future for firing alerts (its
	// resolve timeout); only a resolved alert's endsAt is a fact.
	if a.Status == string(riposte.AlertResolved) && !a.EndsAt.IsZero() {
		t := metav1.NewTime(a.EndsAt)
		inc.Spec.EndsAt = &t
	}
	return inc
}

// FallbackAlertName names an alert that carries none of nameLabels.
const FallbackAlertName = "UnnamedAlert"

// nameLabels are the labels an alert's name is read from, first found
// first. Prometheus and every ruler built like it (Thanos, Loki, Mimir,
// Grafana) set alertname; the others are what tools posting straight to
// Alertmanager put where alertname would be:
//   - rule: Falco's rule name, as Falcosidekick's Alertmanager output sets it
//     (falcosecurity/falcosidekick, outputs/alertmanager.go), beside
//     source="falco", priority, eventsource and the output fields (k8s_ns_name…);
//   - PolicyName: the KubeArmor policy matched, from KubeArmor's sidekick,
//     which copies the alert's fields as labels beside source="Kubearmor"
//     (kubearmor/sidekick, outputs/alertmanager_test.go).
var nameLabels = []string{"alertname", "rule", "PolicyName"}

// AlertName is the alert's name and the label it was read from: the first
// of nameLabels with a value, else FallbackAlertName and "". Clipped to what
// spec.alertName holds.
func AlertName(labels map[string]string) (name, from string) {
	for _, l := range nameLabels {
		if v := labels[l]; strings.TrimSpace(v) != "" {
			return text.Clip(v, maxAlertName), l
		}
	}
	return FallbackAlertName, ""
}

// labelValue turns s into a valid label value by replacing what a label
// value may not contain with '-', or returns "" when nothing usable is left.
func labelValue(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == validation.LabelValueMaxLength {
			break
		}
		switch {
		case r < utf8.RuneSelf && (isAlphanumeric(byte(r)) || r == '-' || r == '_' || r == '.'):
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	v := strings.TrimFunc(b.String(), func(r rune) bool { return r >= utf8.RuneSelf || !isAlphanumeric(byte(r)) })
	if len(validation.IsValidLabelValue(v)) != 0 {
		return ""
	}
	return v
}

func isAlphanumeric(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
