package drift

import (
	"k8s.io/apimachinery/pkg/runtime/schema"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// PodKind is the kind whose rules also judge the pod templates of workloads.
var PodKind = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}

// PodControllers are the workload kinds a Pod rule judges by default, with
// the path of their pod template: the kinds Kyverno's autogen covers
// (ReplicationController aside, which Riposte may not watch).
var PodControllers = map[schema.GroupVersionKind][]string{
	{Group: "apps", Version: "v1", Kind: "Deployment"}:  {"spec", "template"},
	{Group: "apps", Version: "v1", Kind: "DaemonSet"}:   {"spec", "template"},
	{Group: "apps", Version: "v1", Kind: "StatefulSet"}: {"spec", "template"},
	{Group: "apps", Version: "v1", Kind: "ReplicaSet"}:  {"spec", "template"},
	{Group: "batch", Version: "v1", Kind: "Job"}:        {"spec", "template"},
	{Group: "batch", Version: "v1", Kind: "CronJob"}:    {"spec", "jobTemplate", "spec", "template"},
}

// controllerKinds are the workload kinds a rule's podControllers name.
func controllerKinds(names []riposte.PodController) map[schema.GroupKind]bool {
	out := map[schema.GroupKind]bool{}
	for gvk := range PodControllers {
		if len(names) == 0 {
			out[gvk.GroupKind()] = true
			continue
		}
		for _, n := range names {
			if string(n) == gvk.Kind {
				out[gvk.GroupKind()] = true
			}
		}
	}
	return out
}

// templatePath is the pod template's path in a workload of kind gk.
func templatePath(gk schema.GroupKind) ([]string, bool) {
	for gvk, path := range PodControllers {
		if gvk.GroupKind() == gk {
			return path, true
		}
	}
	return nil, false
}

// PodFromTemplate is a workload's pod template as the Pod a rule judges:
// the template's metadata and spec, in the workload's namespace, named after
// the workload. ok is false when obj is no workload kind or has no template.
func PodFromTemplate(obj map[string]any) (pod map[string]any, ok bool) {
	ref := RefOf(obj)
	path, known := templatePath(schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind).GroupKind())
	if !known {
		return nil, false
	}
	var cur any = obj
	for _, p := range path {
		m, isMap := cur.(map[string]any)
		if !isMap {
			return nil, false
		}
		cur = m[p]
	}
	tmpl, isMap := cur.(map[string]any)
	if !isMap {
		return nil, false
	}
	spec, isMap := tmpl["spec"].(map[string]any)
	if !isMap {
		return nil, false
	}
	md := map[string]any{}
	if tm, isMap := tmpl["metadata"].(map[string]any); isMap {
		for k, v := range tm {
			md[k] = v
		}
	}
	// The name and namespace are the workload's: a message naming the pod
	// names the workload its pods will come from.
	md["name"], md["namespace"] = ref.Name, ref.Namespace
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}, true
}

// ControllerOf is the object's controlling owner (the ownerReference with
// controller: true), in its namespace; ok is false when it has none.
func ControllerOf(obj map[string]any) (riposte.ObjectReference, bool) {
	md, _ := obj["metadata"].(map[string]any)
	owners, _ := md["ownerReferences"].([]any)
	for _, o := range owners {
		m, isMap := o.(map[string]any)
		if !isMap || m["controller"] != true {
			continue
		}
		ref := riposte.ObjectReference{APIVersion: str(m, "apiVersion"), Kind: str(m, "kind"),
			Namespace: str(md, "namespace"), Name: str(m, "name"), UID: str(m, "uid")}
		return ref, ref.Kind != "" && ref.Name != ""
	}
	return riposte.ObjectReference{}, false
}
