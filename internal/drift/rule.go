// Package drift judges objects against playbooks' drift rules: it compiles
// the rules (CEL in ValidatingAdmissionPolicy's conventions: `object`,
// `namespaceObject`, plus `lookups`), decides which objects a rule selects,
// evaluates it, and names the Incident each finding opens. It reads nothing
// from a cluster, so the controller and the offline check share it.
package drift

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/cel/library"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/expr"
)

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

// environment is CEL with the variables a rule sees and the string, set,
// list and regex functions Kubernetes' own policies have.
func environment() (*cel.Env, error) {
	envOnce.Do(func() {
		env, envErr = cel.NewEnv(
			cel.Variable("object", cel.DynType),
			cel.Variable("namespaceObject", cel.DynType),
			cel.Variable("lookups", cel.MapType(cel.StringType, cel.ListType(cel.DynType))),
			ext.Strings(ext.StringsVersion(2)),
			ext.Sets(),
			ext.Bindings(),
			library.Lists(),
			library.Regex(),
			library.URLs(),
			library.Quantity(),
		)
	})
	return env, envErr
}

// Rule is a compiled drift rule.
type Rule struct {
	Playbook types.NamespacedName
	Name     string
	GVK      schema.GroupVersionKind
	// Lookups are the other kinds the rule reads, by the name it reads them.
	Lookups  map[string]schema.GroupVersionKind
	Severity string
	// Spec is the rule as written, to tell a changed rule from the same one.
	Spec riposte.DriftRule
	// ClusterWide is true for a playbook in Riposte's namespace; any other
	// playbook judges objects in its own namespace only.
	ClusterWide bool
	// Controllers are the workload kinds whose pod templates a Pod rule also
	// judges; empty for other rules.
	Controllers map[schema.GroupKind]bool

	key string

	namespaces labels.Selector
	objects    labels.Selector
	rule       cel.Program
	message    cel.Program
}

// Error is a rule an author must fix, with the field that is wrong.
type Error struct {
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

// Compile compiles every drift rule of a playbook. Rules whose kind cannot
// be known without a cluster are returned as written; the caller resolves
// them (Resolve) before watching.
func Compile(pb *riposte.Playbook, operatorNamespace string) ([]*Rule, error) {
	e, err := environment()
	if err != nil {
		return nil, err
	}
	var rules []*Rule
	for i, spec := range pb.Spec.Triggers.Drift {
		field := fmt.Sprintf("spec.triggers.drift[%d]", i)
		gvk, err := kindOf(spec.Resource)
		if err != nil {
			return nil, &Error{Field: field + ".resource", Message: err.Error()}
		}
		r := &Rule{
			Playbook:    types.NamespacedName{Namespace: pb.Namespace, Name: pb.Name},
			Name:        spec.Name,
			GVK:         gvk,
			Lookups:     map[string]schema.GroupVersionKind{},
			Severity:    spec.Severity,
			Spec:        *spec.DeepCopy(),
			ClusterWide: pb.Namespace == operatorNamespace,
		}
		if r.Severity == "" {
			r.Severity = "warning"
		}
		r.key = RuleKey(r.Playbook, r.Name)
		if gvk.GroupKind() == PodKind.GroupKind() {
			r.Controllers = controllerKinds(spec.PodControllers)
		}
		for j, l := range spec.Lookups {
			if r.Lookups[l.Name], err = kindOf(l.Resource); err != nil {
				return nil, &Error{Field: fmt.Sprintf("%s.lookups[%d].resource", field, j), Message: err.Error()}
			}
		}
		if r.namespaces, err = selector(spec.NamespaceSelector); err != nil {
			return nil, &Error{Field: field + ".namespaceSelector", Message: err.Error()}
		}
		if r.objects, err = selector(spec.ObjectSelector); err != nil {
			return nil, &Error{Field: field + ".objectSelector", Message: err.Error()}
		}
		if r.rule, err = expr.CompileIn(e, spec.Rule, cel.BoolType); err != nil {
			return nil, &Error{Field: field + ".rule", Message: err.Error()}
		}
		if spec.MessageExpression != "" {
			if r.message, err = expr.CompileIn(e, spec.MessageExpression, cel.StringType); err != nil {
				return nil, &Error{Field: field + ".messageExpression", Message: err.Error()}
			}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func kindOf(k riposte.ResourceKind) (schema.GroupVersionKind, error) {
	gv, err := schema.ParseGroupVersion(k.APIVersion)
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("apiVersion %q: %v", k.APIVersion, err)
	}
	if k.Kind == "" {
		return schema.GroupVersionKind{}, fmt.Errorf("kind is empty")
	}
	return gv.WithKind(k.Kind), nil
}

func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

// Selects reports whether the rule judges an object in namespace ns (""
// for cluster-scoped ones) with these labels, given its namespace's labels
// (for a Namespace, its own). A namespaced playbook judges only its own
// namespace.
func (r *Rule) Selects(ns string, objectLabels, namespaceLabels map[string]string) bool {
	if !r.ClusterWide && ns != r.Playbook.Namespace {
		return false
	}
	if !r.objects.Matches(labels.Set(objectLabels)) {
		return false
	}
	if r.namespaces.Empty() {
		return true
	}
	if namespaceLabels == nil && ns == "" {
		// A cluster-scoped object other than a Namespace has no namespace to select.
		return false
	}
	return r.namespaces.Matches(labels.Set(namespaceLabels))
}

// Judges reports whether the rule judges objects of a kind: its own, or a
// workload's pod template.
func (r *Rule) Judges(gk schema.GroupKind) bool {
	return r.GVK.GroupKind() == gk || r.Controllers[gk]
}

// Kinds are the kinds whose objects the rule judges, at the versions
// Riposte reads them.
func (r *Rule) Kinds() []schema.GroupVersionKind {
	var workloads []schema.GroupVersionKind
	for gvk := range PodControllers {
		if r.Controllers[gvk.GroupKind()] {
			workloads = append(workloads, gvk)
		}
	}
	slices.SortFunc(workloads, func(a, b schema.GroupVersionKind) int { return strings.Compare(a.Kind, b.Kind) })
	return append([]schema.GroupVersionKind{r.GVK}, workloads...)
}

// Key is the rule's RuleKey.
func (r *Rule) Key() string { return r.key }

// UsesNamespaces says whether the rule must be judged again when a
// namespace's labels change.
func (r *Rule) UsesNamespaces() bool { return !r.namespaces.Empty() }

// Input is what a rule sees.
type Input struct {
	Object map[string]any
	// Namespace is the object's Namespace; nil for cluster-scoped objects.
	Namespace map[string]any
	// Lookups holds the objects of each declared lookup.
	Lookups map[string][]any
}

// Verdict is the outcome of judging one object.
type Verdict struct {
	Violates bool
	Message  string
}

// Evaluate judges one object. An error (a field the rule reads is missing
// and not guarded with has()) is not a violation: the caller counts and
// reports it, and the offline check shows it to the author.
func (r *Rule) Evaluate(in Input) (Verdict, error) {
	lookups := map[string][]any{}
	for name := range r.Lookups {
		lookups[name] = in.Lookups[name]
		if lookups[name] == nil {
			lookups[name] = []any{}
		}
	}
	var ns any
	if in.Namespace != nil {
		ns = in.Namespace
	}
	vars := map[string]any{"object": in.Object, "namespaceObject": ns, "lookups": lookups}
	out, _, err := r.rule.Eval(vars)
	if err != nil {
		return Verdict{}, fmt.Errorf("rule %s: %w", r.Name, err)
	}
	ok, isBool := out.Value().(bool)
	if !isBool {
		return Verdict{}, fmt.Errorf("rule %s returned %T, not a boolean", r.Name, out.Value())
	}
	if ok {
		return Verdict{}, nil
	}
	v := Verdict{Violates: true, Message: r.Spec.Message}
	if r.message != nil {
		// A message that fails to evaluate falls back to the static one;
		// the violation itself stands.
		if out, _, err := r.message.Eval(vars); err == nil {
			if s, ok := out.Value().(string); ok && s != "" {
				v.Message = s
			}
		}
	}
	return v, nil
}
