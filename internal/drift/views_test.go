package drift

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	roleKind = schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}
	nsKind   = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
)

// A view is loaded once and served until an event of its object (or of an
// object of its list) or of its whole kind drops it; a load that overlaps
// an event of its kind is not remembered; errors are not remembered.
func TestViews(t *testing.T) {
	type step struct {
		// one of: list (kind, namespace), object (kind, name), forget
		// (kind, namespace, name), forgetKind (kind), and list or object
		// with an event during the load (during).
		op              string
		gvk             schema.GroupVersionKind
		namespace, name string
		fail            bool
		wantLoad        bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a list is loaded once", []step{
			{op: "list", gvk: roleKind, namespace: "a", wantLoad: true},
			{op: "list", gvk: roleKind, namespace: "a"},
			{op: "list", gvk: roleKind, namespace: "b", wantLoad: true},
		}},
		{"a change in its namespace drops a list, and the cluster-wide one", []step{
			{op: "list", gvk: roleKind, namespace: "a", wantLoad: true},
			{op: "list", gvk: roleKind, namespace: "b", wantLoad: true},
			{op: "list", gvk: roleKind, wantLoad: true},
			{op: "forget", gvk: roleKind, namespace: "a", name: "r"},
			{op: "list", gvk: roleKind, namespace: "a", wantLoad: true},
			{op: "list", gvk: roleKind, wantLoad: true},
			{op: "list", gvk: roleKind, namespace: "b"},
		}},
		{"a change of another kind drops nothing", []step{
			{op: "list", gvk: roleKind, namespace: "a", wantLoad: true},
			{op: "object", gvk: nsKind, name: "a", wantLoad: true},
			{op: "forget", gvk: PodKind, namespace: "a", name: "p"},
			{op: "list", gvk: roleKind, namespace: "a"},
			{op: "object", gvk: nsKind, name: "a"},
		}},
		{"a change drops its object's view only", []step{
			{op: "object", gvk: nsKind, name: "a", wantLoad: true},
			{op: "object", gvk: nsKind, name: "b", wantLoad: true},
			{op: "forget", gvk: nsKind, name: "a"},
			{op: "object", gvk: nsKind, name: "a", wantLoad: true},
			{op: "object", gvk: nsKind, name: "b"},
		}},
		{"a load overlapping an event of its kind is not remembered", []step{
			{op: "during", gvk: roleKind, namespace: "a", wantLoad: true},
			{op: "list", gvk: roleKind, namespace: "a", wantLoad: true},
			{op: "list", gvk: roleKind, namespace: "a"},
		}},
		{"a failed load is not remembered", []step{
			{op: "list", gvk: roleKind, namespace: "a", fail: true, wantLoad: true},
			{op: "list", gvk: roleKind, namespace: "a", wantLoad: true},
			{op: "object", gvk: nsKind, name: "a", fail: true, wantLoad: true},
			{op: "object", gvk: nsKind, name: "a", wantLoad: true},
		}},
		{"a kind forgotten whole", []step{
			{op: "list", gvk: roleKind, namespace: "a", wantLoad: true},
			{op: "object", gvk: roleKind, namespace: "a", name: "r", wantLoad: true},
			{op: "object", gvk: nsKind, name: "a", wantLoad: true},
			{op: "forgetKind", gvk: roleKind},
			{op: "list", gvk: roleKind, namespace: "a", wantLoad: true},
			{op: "object", gvk: roleKind, namespace: "a", name: "r", wantLoad: true},
			{op: "object", gvk: nsKind, name: "a"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v Views
			for i, s := range tt.steps {
				loaded := false
				var err error
				fail := func() error {
					loaded = true
					if s.fail {
						return errors.New("cannot list")
					}
					return nil
				}
				switch s.op {
				case "list":
					_, err = v.List(s.gvk, s.namespace, func() ([]any, error) { return []any{map[string]any{}}, fail() })
				case "during":
					_, err = v.List(s.gvk, s.namespace, func() ([]any, error) {
						v.Forget(s.gvk, "elsewhere", "x")
						return []any{}, fail()
					})
				case "object":
					_, err = v.Object(s.gvk, s.namespace, s.name, func() (map[string]any, error) { return map[string]any{}, fail() })
				case "forget":
					v.Forget(s.gvk, s.namespace, s.name)
				case "forgetKind":
					v.ForgetKind(s.gvk)
				}
				if loaded != s.wantLoad {
					t.Errorf("step %d (%s %s %s/%s): loaded %v, want %v", i, s.op, s.gvk.Kind, s.namespace, s.name, loaded, s.wantLoad)
				}
				if (err != nil) != s.fail {
					t.Errorf("step %d: error %v", i, err)
				}
			}
		})
	}
}
