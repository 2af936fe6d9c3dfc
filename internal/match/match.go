// Package match decides which Playbook answers an Incident: alert triggers
// (names, severities, label matchers as Alertmanager writes them), the
// playbook's scope, and its CEL `when`.
package match

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/runtime"

	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/expr"
)

var regexps sync.Map // source -> *regexp.Regexp or error

// compileAnchored compiles a matcher's regular expression anchored at both
// ends, as Alertmanager does.
func compileAnchored(src string) (*regexp.Regexp, error) {
	if v, ok := regexps.Load(src); ok {
		if re, ok := v.(*regexp.Regexp); ok {
			return re, nil
		}
		return nil, v.(error)
	}
	re, err := regexp.Compile("^(?:" + src + ")$")
	if err != nil {
		err = fmt.Errorf("regular expression %q: %w", src, err)
		regexps.Store(src, err)
		return nil, err
	}
	regexps.Store(src, re)
	return re, nil
}

// LabelMatches reports whether labels satisfy one matcher. A missing label
// has the empty value, as in Alertmanager.
func LabelMatches(m riposte.LabelMatcher, labels map[string]string) (bool, error) {
	value := labels[m.Name]
	switch m.Operator {
	case riposte.MatchEqual, "":
		return value == m.Value, nil
	case riposte.MatchNotEqual:
		return value != m.Value, nil
	case riposte.MatchRegexp, riposte.MatchNotRegexp:
		re, err := compileAnchored(m.Value)
		if err != nil {
			return false, err
		}
		return re.MatchString(value) == (m.Operator == riposte.MatchRegexp), nil
	default:
		return false, fmt.Errorf("unknown operator %q", m.Operator)
	}
}

// AlertTriggerMatches reports whether one alert trigger selects the incident.
func AlertTriggerMatches(t riposte.AlertTrigger, spec *riposte.IncidentSpec) (bool, error) {
	if len(t.AlertNames) > 0 && !slices.Contains(t.AlertNames, spec.AlertName) {
		return false, nil
	}
	if len(t.Severities) > 0 && !slices.Contains(t.Severities, spec.Severity) {
		return false, nil
	}
	for _, m := range t.Matchers {
		ok, err := LabelMatches(m, spec.Labels)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// InScope reports whether a playbook may answer incidents in namespace ns:
// a playbook acts only in its own namespace, unless it lives in the
// operator's namespace, where it is cluster-wide.
func InScope(pb *riposte.Playbook, ns, operatorNamespace string) bool {
	return pb.Namespace == operatorNamespace || pb.Namespace == ns
}

// Validate compiles everything in a playbook that admission cannot judge:
// its CEL expressions and regular expressions. It returns the reason and a
// message for the author, or "" when the playbook is usable.
func Validate(pb *riposte.Playbook, exprs *expr.Cache) (reason, message string) {
	for i, t := range pb.Spec.Triggers.Alerts {
		for j, m := range t.Matchers {
			if m.Operator == riposte.MatchRegexp || m.Operator == riposte.MatchNotRegexp {
				if _, err := compileAnchored(m.Value); err != nil {
					return riposte.ReasonInvalidMatcher, fmt.Sprintf("spec.triggers.alerts[%d].matchers[%d]: %v", i, j, err)
				}
			}
		}
	}
	if pb.Spec.When != "" {
		if _, err := exprs.Get(pb.Spec.When); err != nil {
			return riposte.ReasonInvalidCEL, "spec.when: " + err.Error()
		}
	}
	if a := pb.Spec.Approval.AutoApprove; a != nil && a.When != "" {
		if _, err := exprs.Get(a.When); err != nil {
			return riposte.ReasonInvalidCEL, "spec.approval.autoApprove.when: " + err.Error()
		}
	}
	for i, step := range pb.Spec.Steps {
		for field, tpl := range templatesOf(step) {
			if err := expr.CheckTemplate(tpl); err != nil {
				return riposte.ReasonInvalidCEL, fmt.Sprintf("spec.steps[%d].%s: %v", i, field, err)
			}
		}
	}
	return "", ""
}

// templatesOf lists a step's template parameters by field path.
func templatesOf(s riposte.Step) map[string]string {
	out := map[string]string{}
	if p := s.RevokeBinding; p != nil {
		out["revokeBinding.name"] = p.Name
		if p.Subject != nil {
			out["revokeBinding.subject.name"] = p.Subject.Name
			out["revokeBinding.subject.namespace"] = p.Subject.Namespace
		}
	}
	if p := s.Metadata; p != nil {
		for k, v := range p.Set {
			out["metadata.set."+k] = v
		}
	}
	if p := s.Taint; p != nil {
		out["taint.value"] = p.Value
	}
	if p := s.Notify; p != nil {
		out["notify.text"] = p.Text
	}
	for field, raw := range map[string]*runtime.RawExtension{"manifest": s.Manifest, "patch": s.Patch} {
		if raw == nil {
			continue
		}
		var v any
		if err := json.Unmarshal(raw.Raw, &v); err != nil {
			out[field] = "{{ " // reported as a template error by the caller
			continue
		}
		collectStrings(field, v, out)
	}
	return out
}

func collectStrings(path string, v any, out map[string]string) {
	switch v := v.(type) {
	case string:
		out[path] = v
	case map[string]any:
		for k, e := range v {
			collectStrings(path+"."+k, e, out)
		}
	case []any:
		for i, e := range v {
			collectStrings(fmt.Sprintf("%s[%d]", path, i), e, out)
		}
	}
}

// Candidate is a playbook that was considered, with why it was or was not chosen.
type Candidate struct {
	Playbook *riposte.Playbook
	Matched  bool
	// Err is set when the playbook could not be judged (an invalid expression).
	Err error
}

// Select returns the playbook that answers the incident: among those in scope
// whose triggers and `when` hold, the highest priority, then the first by
// namespace and name. It also returns every playbook it could not judge.
func Select(playbooks []riposte.Playbook, inc *riposte.Incident, operatorNamespace string, exprs *expr.Cache) (*riposte.Playbook, []Candidate) {
	var matched []*riposte.Playbook
	var broken []Candidate
	var incidentObject map[string]any
	for i := range playbooks {
		pb := &playbooks[i]
		if !pb.DeletionTimestamp.IsZero() || !InScope(pb, inc.Namespace, operatorNamespace) {
			continue
		}
		if inc.Spec.Source == riposte.SourceManual && ManualRequestsOf(pb, operatorNamespace) == riposte.ManualRefuse {
			continue // answers alerts and drift only
		}
		// A playbook with an error only its author can fix is not used at all;
		// its own status says why.
		if reason, msg := Validate(pb, exprs); reason != "" {
			broken = append(broken, Candidate{Playbook: pb, Err: fmt.Errorf("%s: %s", reason, msg)})
			continue
		}
		ok, err := triggersMatch(pb, &inc.Spec)
		if err == nil && ok && pb.Spec.When != "" {
			if incidentObject == nil {
				incidentObject, err = expr.IncidentObject(inc)
			}
			if err == nil {
				ok, err = evalWhen(exprs, pb.Spec.When, incidentObject)
			}
		}
		if err != nil {
			broken = append(broken, Candidate{Playbook: pb, Err: err})
			continue
		}
		if ok {
			matched = append(matched, pb)
		}
	}
	if len(matched) == 0 {
		return nil, broken
	}
	sort.SliceStable(matched, func(i, j int) bool {
		a, b := matched[i], matched[j]
		if a.Spec.Priority != b.Spec.Priority {
			return a.Spec.Priority > b.Spec.Priority
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return matched[0], broken
}

// driftMatches reports whether pb is the playbook whose rule a drift
// incident breaks, and still has that rule: a drift incident is answered by
// the playbook that found it, or by none.
func driftMatches(pb *riposte.Playbook, d *riposte.DriftFinding) bool {
	if pb.Namespace != d.Playbook.Namespace || pb.Name != d.Playbook.Name {
		return false
	}
	if strings.Contains(d.Rule, "/") { // policy/rule of a PolicyReport result
		return len(pb.Spec.Triggers.PolicyReports) > 0
	}
	return slices.ContainsFunc(pb.Spec.Triggers.Drift, func(r riposte.DriftRule) bool { return r.Name == d.Rule })
}

func triggersMatch(pb *riposte.Playbook, spec *riposte.IncidentSpec) (bool, error) {
	if spec.Drift != nil {
		return driftMatches(pb, spec.Drift), nil
	}
	for _, t := range pb.Spec.Triggers.Alerts {
		ok, err := AlertTriggerMatches(t, spec)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func evalWhen(exprs *expr.Cache, source string, incident map[string]any) (bool, error) {
	prg, err := exprs.Get(source)
	if err != nil {
		return false, err
	}
	return prg.Eval(incident)
}

// ManualRequestsOf is whether the playbook answers people's requests: as its
// spec says, else RequireAccess in a team's namespace and Refuse for a
// cluster-wide playbook, which must opt in to act for people.
func ManualRequestsOf(pb *riposte.Playbook, operatorNamespace string) riposte.ManualRequests {
	if m := pb.Spec.Approval.ManualRequests; m != "" {
		return m
	}
	if pb.Namespace == operatorNamespace {
		return riposte.ManualRefuse
	}
	return riposte.ManualRequireAccess
}

// NamespacedReportsOf is whether autoApprove may approve a finding read from
// a namespaced report: as the playbook's spec says, else Automatic in a
// team's namespace and RequirePerson for a cluster-wide playbook, whose
// automatic approval would otherwise rest on what anyone who may create a
// report in some namespace wrote.
func NamespacedReportsOf(pb *riposte.Playbook, operatorNamespace string) riposte.NamespacedReports {
	if m := pb.Spec.Approval.NamespacedReports; m != "" {
		return m
	}
	if pb.Namespace == operatorNamespace {
		return riposte.NamespacedReportsRequirePerson
	}
	return riposte.NamespacedReportsAutomatic
}
