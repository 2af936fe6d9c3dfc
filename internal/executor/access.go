package executor

import (
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Access lists, as RBAC sees them, the requests the plan's writes make: what
// a person asking for this plan must be allowed to do themselves. Changes
// already in place make no request; messages and silences leave the cluster
// and need none.
func (p *Plan) Access(mapper meta.RESTMapper) ([]authorizationv1.ResourceAttributes, error) {
	var out []authorizationv1.ResourceAttributes
	for _, sp := range p.Steps {
		for i, c := range sp.Changes {
			if c.External() || sp.unchanged[i] {
				continue
			}
			gvk := schema.FromAPIVersionAndKind(c.Object.GetAPIVersion(), c.Object.GetKind())
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return nil, fmt.Errorf("mapping %s: %w", gvk, err)
			}
			attrs := authorizationv1.ResourceAttributes{Group: m.Resource.Group, Version: m.Resource.Version, Resource: m.Resource.Resource,
				Namespace: c.Object.GetNamespace(), Name: c.Object.GetName()}
			switch sp.operation(i) {
			case riposte.OperationDelete:
				attrs.Verb = "delete"
			case riposte.OperationEvict:
				attrs.Verb, attrs.Subresource = "create", "eviction"
			case riposte.OperationCreate: // an apply that creates is authorised as create
				attrs.Verb = "create"
			default:
				attrs.Verb = "patch"
			}
			out = append(out, attrs)
		}
	}
	return out, nil
}
