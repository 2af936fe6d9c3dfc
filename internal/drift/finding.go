package drift

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/text"
)

// Labels and indexes on drift Incidents.
const (
	LabelSource   = "riposte.dev/source"
	LabelRule     = "riposte.dev/rule"
	LabelPlaybook = "riposte.dev/playbook"
	SourceDrift   = "drift"

	// IndexSource indexes open drift incidents by the object they were read
	// from (SourceKey).
	IndexSource = "riposte.dev/drift-source"

	maxMessage = 1024
)

// Finding is one object breaking one playbook rule.
type Finding struct {
	Playbook types.NamespacedName
	// Rule is the drift rule's name, or policy/rule for a PolicyReport result.
	Rule     string
	Target   riposte.ObjectReference
	Source   riposte.ObjectReference
	Message  string
	Severity string
}

// Key identifies a finding across restarts and replicas: the same playbook,
// rule and object always give the same key, whatever its UID or message.
func (f Finding) Key() string {
	return hash(f.Playbook.String(), f.Rule, refKey(f.Target))
}

// refKey identifies an object by group, kind, namespace and name.
func refKey(ref riposte.ObjectReference) string {
	group := ref.APIVersion
	if i := strings.Index(group, "/"); i >= 0 {
		group = group[:i]
	} else {
		group = ""
	}
	return group + "/" + ref.Kind + "/" + ref.Namespace + "/" + ref.Name
}

// SourceKey is the value of IndexSource for an object.
func SourceKey(ref riposte.ObjectReference) string { return hash(refKey(ref)) }

func hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:20]
}

// IncidentName is the name of a finding's incident: drift-<rule>-<key>,
// then -2, -3... for later occurrences once an earlier one was resolved.
func IncidentName(f Finding, occurrence int) string {
	rule := f.Rule
	if i := strings.LastIndex(rule, "/"); i >= 0 {
		rule = rule[i+1:]
	}
	rule = dnsLabel(rule, 40)
	name := "drift-" + rule + "-" + f.Key()[:10]
	if rule == "" {
		name = "drift-" + f.Key()[:10]
	}
	if occurrence > 1 {
		name += fmt.Sprintf("-%d", occurrence)
	}
	return name
}

// dnsLabel keeps what a DNS label may hold, lower-cased, at most n long.
func dnsLabel(s string, n int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if b.Len() == n {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

// IncidentNamespace is where a finding's incident lives: the object's
// namespace; a Namespace's own name; for other cluster-scoped objects, the
// playbook's namespace.
func IncidentNamespace(f Finding) string {
	switch {
	case f.Target.Namespace != "":
		return f.Target.Namespace
	case f.Target.Kind == "Namespace" && f.Target.APIVersion == "v1":
		return f.Target.Name
	default:
		return f.Playbook.Namespace
	}
}

// IncidentFor is the Incident that records a finding.
func IncidentFor(f Finding, occurrence int, now metav1.Time) *riposte.Incident {
	target := f.Target
	source := f.Source
	return &riposte.Incident{
		TypeMeta: metav1.TypeMeta{APIVersion: riposte.GroupVersion.String(), Kind: "Incident"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      IncidentName(f, occurrence),
			Namespace: IncidentNamespace(f),
			Labels: map[string]string{LabelSource: SourceDrift, LabelRule: dnsLabel(f.Rule, 63),
				LabelPlaybook: dnsLabel(f.Playbook.Name, 63)},
			// Set at creation, so keeping the record of what is done about
			// the finding costs no write of its own later.
			Finalizers: []string{riposte.RecordFinalizer},
		},
		Spec: riposte.IncidentSpec{
			Source:    riposte.SourceDrift,
			AlertName: text.Clip(f.Rule, 253),
			Severity:  f.Severity,
			Status:    riposte.AlertFiring,
			Labels: map[string]string{
				"rule":     f.Rule,
				"playbook": f.Playbook.String(),
				"kind":     f.Target.Kind,
			},
			Annotations: map[string]string{"summary": text.Clip(f.Message, maxMessage)},
			StartsAt:    &now,
			Target:      &target,
			Drift: &riposte.DriftFinding{
				Playbook: riposte.NamespacedName{Namespace: f.Playbook.Namespace, Name: f.Playbook.Name},
				Rule:     f.Rule,
				Source:   source,
			},
		},
	}
}

// Open reports whether a drift incident still stands (not yet resolved by
// the detector).
func Open(inc *riposte.Incident) bool {
	return inc.Spec.Drift != nil && inc.Spec.Status != riposte.AlertResolved
}
