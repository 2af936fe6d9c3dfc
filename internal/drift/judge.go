package drift

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Lister returns the objects of a kind in a namespace ("" for all, or for a
// cluster-scoped kind), as a rule's lookups see them.
type Lister func(gvk schema.GroupVersionKind, namespace string) ([]any, error)

// RefOf is the reference to an object as its manifest or the API gives it.
func RefOf(obj map[string]any) riposte.ObjectReference {
	md, _ := obj["metadata"].(map[string]any)
	return riposte.ObjectReference{APIVersion: str(obj, "apiVersion"), Kind: str(obj, "kind"),
		Namespace: str(md, "namespace"), Name: str(md, "name"), UID: str(md, "uid")}
}

// LabelsOf returns an object's labels.
func LabelsOf(obj map[string]any) map[string]string {
	md, _ := obj["metadata"].(map[string]any)
	raw, _ := md["labels"].(map[string]any)
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// ScopeNamespace is the namespace a rule's selectors and lookups use for an
// object: its own, or for a Namespace, the namespace it is.
func ScopeNamespace(obj map[string]any) string {
	ref := RefOf(obj)
	if ref.Kind == "Namespace" && ref.APIVersion == "v1" {
		return ref.Name
	}
	return ref.Namespace
}

// Judgement is what judging one object found.
type Judgement struct {
	Findings []Finding
	// Evaluated counts the rules that selected the object and ran to a
	// verdict (a violation or not).
	Evaluated int
	// Errors are the rules that selected the object but could not be evaluated.
	Errors []error
	// Unselected and Failed hold, by RuleKey, the rules of the object's kind
	// that did not select it, and those that could not be evaluated: an
	// incident of either is not one the object fixed.
	Unselected, Failed map[string]bool
}

// RuleKey names one rule of one playbook.
func RuleKey(playbook types.NamespacedName, rule string) string {
	return playbook.String() + "\x00" + rule
}

// Judge evaluates every rule of the object's kind against it. namespace is
// the object's Namespace (for a Namespace, itself), nil when there is none.
// Namespaced lookups are listed in the object's scope namespace;
// namespaced(gvk) says which kinds are namespaced.
func Judge(rules []*Rule, obj, namespace map[string]any, namespaced func(schema.GroupVersionKind) bool, list Lister) Judgement {
	ref := RefOf(obj)
	scope := ScopeNamespace(obj)
	var nsLabels map[string]string
	if namespace != nil {
		nsLabels = LabelsOf(namespace)
	}
	objLabels := LabelsOf(obj)
	out := Judgement{Unselected: map[string]bool{}, Failed: map[string]bool{}}
	for _, r := range rules {
		if r.GVK.GroupKind() != (schema.GroupKind{Group: groupOf(ref.APIVersion), Kind: ref.Kind}) {
			continue
		}
		key := RuleKey(r.Playbook, r.Name)
		if !r.Selects(scope, objLabels, nsLabels) {
			out.Unselected[key] = true
			continue
		}
		in := Input{Object: obj, Lookups: map[string][]any{}}
		if ref.Namespace != "" {
			in.Namespace = namespace
		}
		failed := false
		for name, gvk := range r.Lookups {
			ns := ""
			if namespaced(gvk) {
				ns = scope
			}
			items, err := list(gvk, ns)
			if err != nil {
				out.Errors = append(out.Errors, err)
				out.Failed[key] = true
				failed = true
				break
			}
			in.Lookups[name] = items
		}
		if failed {
			continue
		}
		v, err := r.Evaluate(in)
		if err != nil {
			out.Errors = append(out.Errors, err)
			out.Failed[key] = true
			continue
		}
		out.Evaluated++
		if v.Violates {
			out.Findings = append(out.Findings, Finding{Playbook: r.Playbook, Rule: r.Name, Target: ref, Source: ref,
				Message: v.Message, Severity: r.Severity})
		}
	}
	return out
}

func groupOf(apiVersion string) string {
	gv, _ := schema.ParseGroupVersion(apiVersion)
	return gv.Group
}
