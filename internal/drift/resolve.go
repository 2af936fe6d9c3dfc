package drift

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Resolver learns from the cluster what compiling cannot: whether each kind
// a rule names exists, whether it is namespaced, and whether Riposte may
// watch it.
type Resolver struct {
	Mapper meta.RESTMapper
	// CanWatch returns an error saying why Riposte may not list and watch a
	// resource cluster-wide, or nil.
	CanWatch          func(ctx context.Context, gvr schema.GroupVersionResource) error
	OperatorNamespace string
}

// Resolved is a playbook's rules, ready to watch.
type Resolved struct {
	Rules []*Rule
	// Namespaced says, for every kind the rules name, whether it is namespaced.
	Namespaced map[schema.GroupVersionKind]bool
}

// Problem is why a playbook's drift rules cannot be used, for its status.
type Problem struct {
	Reason, Message string
}

// Resolve compiles a playbook's drift rules and checks each kind they name.
func (r *Resolver) Resolve(ctx context.Context, pb *riposte.Playbook) (*Resolved, *Problem) {
	rules, err := Compile(pb, r.OperatorNamespace)
	if err != nil {
		return nil, &Problem{Reason: riposte.ReasonInvalidRule, Message: err.Error()}
	}
	out := &Resolved{Rules: rules, Namespaced: map[schema.GroupVersionKind]bool{}}
	clusterWide := pb.Namespace == r.OperatorNamespace
	for i, rule := range rules {
		field := fmt.Sprintf("spec.triggers.drift[%d]", i)
		kinds := map[string]schema.GroupVersionKind{field + ".resource": rule.GVK}
		for _, gvk := range rule.Kinds()[1:] {
			kinds[field+".podControllers["+gvk.Kind+"]"] = gvk
		}
		for name, gvk := range rule.Lookups {
			kinds[field+".lookups["+name+"]"] = gvk
		}
		for f, gvk := range kinds {
			namespaced, p := r.check(ctx, gvk)
			if p != nil {
				p.Message = f + ": " + p.Message
				return nil, p
			}
			if !namespaced && !clusterWide {
				return nil, &Problem{Reason: riposte.ReasonInvalidRule, Message: fmt.Sprintf(
					"%s: %s is cluster-scoped; only a playbook in %s may judge or look up cluster-scoped kinds", f, gvk.Kind, r.OperatorNamespace)}
			}
			out.Namespaced[gvk] = namespaced
		}
	}
	return out, nil
}

func (r *Resolver) check(ctx context.Context, gvk schema.GroupVersionKind) (bool, *Problem) {
	mapping, err := r.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return false, &Problem{Reason: riposte.ReasonUnknownKind, Message: fmt.Sprintf(
				"the API server serves no kind %s in %s", gvk.Kind, gvk.GroupVersion())}
		}
		return false, &Problem{Reason: riposte.ReasonUnknownKind, Message: fmt.Sprintf("looking up %s: %v", gvk, err)}
	}
	if r.CanWatch != nil {
		if err := r.CanWatch(ctx, mapping.Resource); err != nil {
			return false, &Problem{Reason: riposte.ReasonWatchForbidden, Message: err.Error()}
		}
	}
	return mapping.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// ReportKinds are the report kinds the API server serves, at their
// preferred version, with whether each is namespaced, and says which
// formats that is; a problem when none can be read: none installed, or
// none Riposte may watch. A format Riposte may not watch (a role from
// before it was read) is said, and the others are still read.
func (r *Resolver) ReportKinds(ctx context.Context) (map[schema.GroupVersionKind]bool, string, *Problem) {
	kinds := map[schema.GroupVersionKind]bool{}
	var read, missing, forbidden []string
	var lastForbidden error
	for _, api := range ReportAPIs {
		found := map[schema.GroupVersionKind]bool{}
		denied := false
		for _, gk := range []schema.GroupKind{api.Namespaced, api.Cluster} {
			mapping, err := r.Mapper.RESTMapping(gk)
			if err != nil {
				break
			}
			if r.CanWatch != nil {
				if err := r.CanWatch(ctx, mapping.Resource); err != nil {
					denied, lastForbidden = true, err
					break
				}
			}
			found[mapping.GroupVersionKind] = gk == api.Namespaced
		}
		if denied {
			forbidden = append(forbidden, api.Name)
			continue
		}
		if len(found) < 2 {
			missing = append(missing, api.Name)
			continue
		}
		read = append(read, api.Name)
		for gvk, ns := range found {
			kinds[gvk] = ns
		}
	}
	switch {
	case len(read) == 0 && len(forbidden) > 0:
		return nil, "", &Problem{Reason: riposte.ReasonWatchForbidden, Message: lastForbidden.Error()}
	case len(read) == 0:
		return nil, "", &Problem{Reason: riposte.ReasonNotInstalled, Message: fmt.Sprintf(
			"no report API is installed (%s); Riposte watches for them and reads reports once one is", strings.Join(missing, ", "))}
	}
	says := "failed results of " + strings.Join(read, " and ") + " reports are read as drift"
	if len(missing) > 0 {
		says += "; " + strings.Join(missing, ", ") + " is not installed"
	}
	if len(forbidden) > 0 {
		says += "; Riposte may not watch " + strings.Join(forbidden, ", ") + " (its role predates them: apply config/rbac/role.yaml)"
	}
	return kinds, says, nil
}
