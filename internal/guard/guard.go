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
	Playbook *riposte.Playbook
	Target   *riposte.ObjectReference
	// Objects are every object the plan writes, once it is built; each is
	// held to the same rules as the target.
	Objects             []riposte.ObjectReference
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
	for _, o := range f.touched() {
		if o.Namespace != "" && slices.Contains(f.ProtectedNamespaces, o.Namespace) {
			return "ProtectedNamespace", fmt.Sprintf("namespace %s is protected: Riposte does not act in it (%s)", o.Namespace, o), true
		}
	}
	return "", "", false
}

// PlaybookScope enforces that a playbook acts only in its own namespace,
// unless it lives in the operator's namespace, where it is cluster-wide.
// Cluster-scoped objects (nodes, cluster role bindings) therefore need a
// cluster-wide playbook.
func PlaybookScope(f Facts) (string, string, bool) {
	if f.Playbook.Namespace == f.OperatorNamespace {
		return "", "", false
	}
	for _, o := range f.touched() {
		if o.Namespace == f.Playbook.Namespace {
			continue
		}
		where := "cluster-scoped " + o.Kind
		if o.Namespace != "" {
			where = "namespace " + o.Namespace
		}
		return "OutOfScope", fmt.Sprintf("playbook %s/%s may act only in namespace %s, not on %s %s",
			f.Playbook.Namespace, f.Playbook.Name, f.Playbook.Namespace, where, o.Name), true
	}
	return "", "", false
}

// touched is the target and every planned object.
func (f Facts) touched() []riposte.ObjectReference {
	out := make([]riposte.ObjectReference, 0, len(f.Objects)+1)
	if f.Target != nil {
		out = append(out, *f.Target)
	}
	return append(out, f.Objects...)
}
