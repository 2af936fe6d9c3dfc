package actions

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/json"

	"github.com/riposte-dev/riposte/internal/text"
)

// label sets labels on the target, only those keys.
func label(ctx context.Context, in *Input) ([]Change, error) {
	return setMetadata(in, "labels")
}

// annotate sets annotations on the target.
func annotate(ctx context.Context, in *Input) ([]Change, error) {
	return setMetadata(in, "annotations")
}

func setMetadata(in *Input, field string) ([]Change, error) {
	t := in.Target
	if t == nil {
		return nil, userErrorf("%s needs a target; the incident has none", in.Step.Action)
	}
	values := map[string]any{}
	var parts []string
	for k, tpl := range in.Step.Metadata.Set {
		v, err := in.Render(tpl)
		if err != nil {
			return nil, err
		}
		values[k] = v
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	// A merge patch of just these keys: a server-side apply would, on the
	// next apply by Riposte to the same object, drop keys it set before.
	patch := map[string]any{"metadata": map[string]any{field: values}}
	change := patchOf(t, patch, fmt.Sprintf("set %s on %s: %s", field, t, strings.Join(parts, ", ")))
	change.UID = t.UID
	return []Change{change}, nil
}

// applyManifest applies the step's object, its strings filled from the
// incident. A namespaced object without a namespace goes to the target's.
func applyManifest(ctx context.Context, in *Input) ([]Change, error) {
	raw, err := rawObject(in.Step.Manifest.Raw)
	if err != nil {
		return nil, userErrorf("manifest: %v", err)
	}
	filled, err := fill(in, raw)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: filled.(map[string]any)}
	gvk := u.GroupVersionKind()
	if gvk.Kind == "" || gvk.Version == "" || u.GetName() == "" {
		return nil, userErrorf("manifest needs apiVersion, kind and metadata.name")
	}
	namespaced, err := isNamespaced(in.Mapper, gvk)
	if err != nil {
		return nil, err
	}
	switch {
	case namespaced && u.GetNamespace() == "":
		if in.Target == nil || in.Target.Namespace == "" {
			u.SetNamespace(in.Incident.Namespace)
		} else {
			u.SetNamespace(in.Target.Namespace)
		}
	case !namespaced && u.GetNamespace() != "":
		return nil, userErrorf("manifest: %s is cluster-scoped; remove metadata.namespace", gvk.Kind)
	}
	return []Change{{Op: Apply, Object: u, Summary: fmt.Sprintf("apply %s %s", gvk.Kind, qualified(u.GetNamespace(), u.GetName()))}}, nil
}

// patchTarget merges the step's JSON merge patch into the target: the escape
// hatch, under every guardrail like any other action.
func patchTarget(ctx context.Context, in *Input) ([]Change, error) {
	t := in.Target
	if t == nil {
		return nil, userErrorf("Patch needs a target; the incident has none")
	}
	raw, err := rawObject(in.Step.Patch.Raw)
	if err != nil {
		return nil, userErrorf("patch: %v", err)
	}
	if md, ok := raw["metadata"].(map[string]any); ok {
		for _, k := range []string{"name", "namespace", "uid", "resourceVersion", "ownerReferences", "finalizers"} {
			if _, set := md[k]; set {
				return nil, userErrorf("patch may not change metadata.%s", k)
			}
		}
	}
	delete(raw, "apiVersion")
	delete(raw, "kind")
	filled, err := fill(in, raw)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(filled)
	return []Change{patchOf(t, filled.(map[string]any), fmt.Sprintf("merge patch %s: %s", t, text.Elide(string(b), 300)))}, nil
}

func rawObject(raw []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("must be an object")
	}
	return m, nil
}

// fill renders every string in v as a template.
func fill(in *Input, v any) (any, error) {
	switch v := v.(type) {
	case string:
		return in.Render(v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			f, err := fill(in, e)
			if err != nil {
				return nil, err
			}
			out[k] = f
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			f, err := fill(in, e)
			if err != nil {
				return nil, err
			}
			out[i] = f
		}
		return out, nil
	default:
		return v, nil
	}
}

func isNamespaced(mapper meta.RESTMapper, gvk schema.GroupVersionKind) (bool, error) {
	if mapper == nil {
		return true, nil
	}
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return false, userErrorf("the API server does not serve %s", gvk)
		}
		return false, fmt.Errorf("mapping %s: %w", gvk, err)
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}
