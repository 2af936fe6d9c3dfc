package drift

import (
	"fmt"

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

// Getter reads one object (nil when it does not exist), for checking that
// a workload another workload controls is really controlled by it.
type Getter func(ref riposte.ObjectReference) (map[string]any, error)

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

// Judge evaluates every rule that judges the object's kind against it: a
// Pod rule judges pods, and the pod templates of the workload kinds it
// covers as the Pod they would create. namespace is the object's Namespace
// (for a Namespace, itself), nil when there is none. Namespaced lookups are
// listed in the object's scope namespace; namespaced(gvk) says which kinds
// are namespaced.
//
// A pod is always judged on its own, whatever its ownerReferences say: they
// are written by whoever creates the pod, so a finding is never dropped
// because of them. get reads the owner a workload names (a Deployment's
// ReplicaSet, a CronJob's Job), so that such a workload is judged through
// its owner only when the owner exists with that UID; nil reads nothing,
// and every workload is judged on its own.
func Judge(rules []*Rule, obj, namespace map[string]any, namespaced func(schema.GroupVersionKind) bool, list Lister, get Getter) Judgement {
	ref := RefOf(obj)
	gk := schema.GroupKind{Group: groupOf(ref.APIVersion), Kind: ref.Kind}
	scope := ScopeNamespace(obj)
	var nsLabels map[string]string
	if namespace != nil {
		nsLabels = LabelsOf(namespace)
	}
	out := Judgement{Unselected: map[string]bool{}, Failed: map[string]bool{}}
	for _, r := range rules {
		if !r.Judges(gk) {
			continue
		}
		key := r.Key()
		subject := obj
		if gk != r.GVK.GroupKind() {
			// A workload another workload controls (a Deployment's
			// ReplicaSet, a CronJob's Job) is judged through its owner: its
			// template is a copy, and the copies of old revisions are history.
			through, err := r.judgedThroughOwner(obj, get)
			if err != nil {
				// Unknown, not on its own: judging it alone could open an
				// incident its owner's judgment already stands for.
				out.Errors = append(out.Errors, fmt.Errorf("rule %s: reading the owner: %w", r.Name, err))
				out.Failed[key] = true
				continue
			}
			if through {
				out.Unselected[key] = true
				continue
			}
			pod, ok := PodFromTemplate(obj)
			if !ok {
				out.Unselected[key] = true
				continue
			}
			subject = pod
		}
		if !r.Selects(scope, LabelsOf(subject), nsLabels) {
			out.Unselected[key] = true
			continue
		}
		in := Input{Object: subject, Lookups: map[string][]any{}}
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
		if !v.Violates {
			continue
		}
		out.Findings = append(out.Findings, Finding{Playbook: r.Playbook, Rule: r.Name, Target: ref, Source: ref,
			Message: v.Message, Severity: r.Severity})
	}
	return out
}

// judgedThroughOwner reports whether the rule judges the workload's
// controller in its place: the controller is of a kind the rule judges, and
// reading it finds it with the UID the reference names. A reference anyone
// could have written to an owner that is not there (or is a namesake) is
// not trusted: the workload is judged on its own.
func (r *Rule) judgedThroughOwner(obj map[string]any, get Getter) (bool, error) {
	owner, ok := ControllerOf(obj)
	if !ok || get == nil || owner.UID == "" || !r.Controllers[schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind).GroupKind()] {
		return false, nil
	}
	got, err := get(owner)
	if err != nil || got == nil {
		return false, err
	}
	ref := RefOf(got)
	return ref.UID == owner.UID && ref.Kind == owner.Kind && groupOf(ref.APIVersion) == groupOf(owner.APIVersion), nil
}

func groupOf(apiVersion string) string {
	gv, _ := schema.ParseGroupVersion(apiVersion)
	return gv.Group
}
