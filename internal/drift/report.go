package drift

import (
	"slices"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// The PolicyReport API of the Kubernetes Policy working group, and its
// successor OpenReports (openreports.io, which Kyverno writes when asked):
// the same report shape (scope, results with policy, rule, result,
// severity, message and resources) under new names.
var (
	PolicyReportGroup        = "wgpolicyk8s.io"
	PolicyReportKind         = schema.GroupKind{Group: PolicyReportGroup, Kind: "PolicyReport"}
	ClusterPolicyReportKind  = schema.GroupKind{Group: PolicyReportGroup, Kind: "ClusterPolicyReport"}
	OpenReportsGroup         = "openreports.io"
	OpenReportKind           = schema.GroupKind{Group: OpenReportsGroup, Kind: "Report"}
	ClusterOpenReportKind    = schema.GroupKind{Group: OpenReportsGroup, Kind: "ClusterReport"}
	defaultPolicyReportMatch = []riposte.PolicyReportResult{"fail"}
)

// ReportAPI is one report format Riposte reads: its namespaced and its
// cluster-scoped kind.
type ReportAPI struct {
	Name                string
	Namespaced, Cluster schema.GroupKind
}

// ReportAPIs are the report formats read, in the order they are named.
var ReportAPIs = []ReportAPI{
	{Name: "PolicyReport (" + PolicyReportGroup + ")", Namespaced: PolicyReportKind, Cluster: ClusterPolicyReportKind},
	{Name: "OpenReports (" + OpenReportsGroup + ")", Namespaced: OpenReportKind, Cluster: ClusterOpenReportKind},
}

// IsReportKind reports whether a kind is one of the report kinds Riposte
// reads as drift.
func IsReportKind(gk schema.GroupKind) bool {
	for _, api := range ReportAPIs {
		if gk == api.Namespaced || gk == api.Cluster {
			return true
		}
	}
	return false
}

// ReportResult is one result of a PolicyReport, with the objects it is about.
type ReportResult struct {
	Policy, Rule, Result, Severity, Message string
	Resources                               []riposte.ObjectReference
}

// ReportResults reads a PolicyReport's results. A result about no resource
// is about the report's scope (Kyverno writes one report per resource).
func ReportResults(report map[string]any) []ReportResult {
	var scope []riposte.ObjectReference
	if s, ok := report["scope"].(map[string]any); ok {
		if ref, ok := refOf(s); ok {
			scope = []riposte.ObjectReference{ref}
		}
	}
	results, _ := report["results"].([]any)
	out := make([]ReportResult, 0, len(results))
	for _, v := range results {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		r := ReportResult{Policy: str(m, "policy"), Rule: str(m, "rule"), Result: str(m, "result"),
			Severity: str(m, "severity"), Message: str(m, "message")}
		if resources, ok := m["resources"].([]any); ok {
			for _, res := range resources {
				if rm, ok := res.(map[string]any); ok {
					if ref, ok := refOf(rm); ok {
						r.Resources = append(r.Resources, ref)
					}
				}
			}
		}
		if len(r.Resources) == 0 {
			r.Resources = scope
		}
		out = append(out, r)
	}
	return out
}

func refOf(m map[string]any) (riposte.ObjectReference, bool) {
	ref := riposte.ObjectReference{APIVersion: str(m, "apiVersion"), Kind: str(m, "kind"),
		Namespace: str(m, "namespace"), Name: str(m, "name"), UID: str(m, "uid")}
	return ref, ref.Kind != "" && ref.Name != ""
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// ReportTriggerMatches reports whether a playbook's trigger answers a result.
func ReportTriggerMatches(t riposte.PolicyReportTrigger, r ReportResult) bool {
	results := t.Results
	if len(results) == 0 {
		results = defaultPolicyReportMatch
	}
	return slices.Contains(results, riposte.PolicyReportResult(r.Result)) &&
		(len(t.Policies) == 0 || slices.Contains(t.Policies, r.Policy)) &&
		(len(t.Rules) == 0 || slices.Contains(t.Rules, r.Rule)) &&
		(len(t.Severities) == 0 || slices.Contains(t.Severities, r.Severity))
}

// Why a report's resource is refused: a namespaced report is written by
// whoever may create reports in its namespace, so it may speak only for
// that namespace.
const (
	// RefusedOtherNamespace: a namespaced report names an object in
	// another namespace.
	RefusedOtherNamespace = "OtherNamespace"
	// RefusedClusterScoped: a namespaced report names a cluster-scoped
	// object (a Node, a Namespace).
	RefusedClusterScoped = "ClusterScoped"
	// RefusedUnknownKind: a namespaced report names a kind the API server
	// does not serve, so its scope cannot be known.
	RefusedUnknownKind = "UnknownKind"
)

// ReportScope is what one report may name.
type ReportScope struct {
	// Namespace is a namespaced report's own namespace; "" for a
	// cluster-scoped report, which only cluster-level writers can create
	// and which may name any object.
	Namespace string
	// Namespaced says whether the API server serves a kind namespaced;
	// known is false when it serves no such kind.
	Namespaced func(gvk schema.GroupVersionKind) (namespaced, known bool)
}

// Admit is the object a report's resource stands for, or why it is
// refused. A namespaced report names only namespaced objects in its own
// namespace (an object without a namespace is taken to be there). The UID
// a report writes is dropped either way: the incident's target UID comes
// from the live object when it is enriched, never from the report.
func (s ReportScope) Admit(ref riposte.ObjectReference) (riposte.ObjectReference, string) {
	ref.UID = ""
	if s.Namespace == "" {
		return ref, ""
	}
	namespaced, known := s.Namespaced(schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind))
	switch {
	case !known:
		return ref, RefusedUnknownKind
	case !namespaced:
		return ref, RefusedClusterScoped
	case ref.Namespace == "":
		ref.Namespace = s.Namespace
	case ref.Namespace != s.Namespace:
		return ref, RefusedOtherNamespace
	}
	return ref, ""
}

// Refusal is a resource of an answered result that its report may not name.
type Refusal struct {
	Rule   string
	Target riposte.ObjectReference
	Reason string
}

// ReportFindings are the findings a report gives one playbook: each
// resource of each result its triggers answer, within the report's scope
// and the playbook's; the resources of answered results the report may not
// name are returned as refusals.
func ReportFindings(pb *riposte.Playbook, operatorNamespace string, source riposte.ObjectReference, scope ReportScope, report map[string]any) ([]Finding, []Refusal) {
	team := pb.Namespace != operatorNamespace
	if len(pb.Spec.Triggers.PolicyReports) == 0 || (team && scope.Namespace != "" && scope.Namespace != pb.Namespace) {
		// Another team's report concerns a team's playbook in no way, not
		// even by what it was refused.
		return nil, nil
	}
	var out []Finding
	var refused []Refusal
	for _, r := range ReportResults(report) {
		answered := slices.ContainsFunc(pb.Spec.Triggers.PolicyReports, func(t riposte.PolicyReportTrigger) bool {
			return ReportTriggerMatches(t, r)
		})
		if !answered {
			continue
		}
		for _, res := range r.Resources {
			res, why := scope.Admit(res)
			if why != "" {
				refused = append(refused, Refusal{Rule: r.Policy + "/" + r.Rule, Target: res, Reason: why})
				continue
			}
			if team && res.Namespace != pb.Namespace {
				continue
			}
			msg := r.Message
			if msg == "" {
				msg = "policy " + r.Policy + " rule " + r.Rule + ": " + r.Result
			}
			out = append(out, Finding{
				Playbook: types.NamespacedName{Namespace: pb.Namespace, Name: pb.Name},
				Rule:     r.Policy + "/" + r.Rule,
				Target:   res,
				Source:   source,
				Message:  msg,
				Severity: r.Severity,
			})
		}
	}
	return out, refused
}

// IsNamespacedReport reports whether an incident's drift source is a
// namespaced report (PolicyReport, Report): one anybody who may create
// reports in its namespace could have written.
func IsNamespacedReport(source riposte.ObjectReference) bool {
	gk := schema.FromAPIVersionAndKind(source.APIVersion, source.Kind).GroupKind()
	for _, api := range ReportAPIs {
		if gk == api.Namespaced {
			return true
		}
	}
	return false
}
