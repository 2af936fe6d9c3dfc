// Package guard holds the checks that run before every remediation write.
// Each check is a pure function over gathered facts that returns why it
// refuses, in the shape of cert-manager's policy chain.
package guard

import (
	"fmt"
	"slices"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Facts is everything the checks look at, gathered before they run.
type Facts struct {
	Playbook            *riposte.Playbook
	Target              *riposte.ObjectReference
	OperatorNamespace   string
	ProtectedNamespaces []string
}

// Check refuses a write with a reason and a message, or passes.
type Check func(Facts) (reason, message string, refused bool)

// Chain is the guardrails in the order they are evaluated.
var Chain = []Check{ProtectedNamespace, PlaybookScope}

// Evaluate runs every check and returns the first refusal.
func Evaluate(f Facts) (reason, message string, refused bool) {
	for _, check := range Chain {
		if reason, message, refused = check(f); refused {
			return reason, message, true
		}
	}
	return "", "", false
}

// ProtectedNamespace refuses to act in a protected namespace (kube-system,
// kube-public and Riposte's own by default), whatever the playbook says.
func ProtectedNamespace(f Facts) (string, string, bool) {
	if f.Target == nil || f.Target.Namespace == "" {
		return "", "", false
	}
	if slices.Contains(f.ProtectedNamespaces, f.Target.Namespace) {
		return "ProtectedNamespace", fmt.Sprintf("namespace %s is protected: Riposte does not act in it", f.Target.Namespace), true
	}
	return "", "", false
}

// PlaybookScope enforces that a playbook acts only in its own namespace,
// unless it lives in the operator's namespace, where it is cluster-wide.
// Cluster-scoped targets (nodes) therefore need a cluster-wide playbook.
func PlaybookScope(f Facts) (string, string, bool) {
	if f.Target == nil || f.Playbook.Namespace == f.OperatorNamespace {
		return "", "", false
	}
	if f.Target.Namespace != f.Playbook.Namespace {
		where := "cluster-scoped " + f.Target.Kind
		if f.Target.Namespace != "" {
			where = "namespace " + f.Target.Namespace
		}
		return "OutOfScope", fmt.Sprintf("playbook %s/%s may act only in namespace %s, not on %s %s",
			f.Playbook.Namespace, f.Playbook.Name, f.Playbook.Namespace, where, f.Target.Name), true
	}
	return "", "", false
}
