// Package enrich learns what an incident touches from the live cluster: the
// target object, its owner chain, images, node and service account. It reads
// through a client.Reader, which in the manager is the informer cache.
package enrich

import (
	"k8s.io/apimachinery/pkg/util/validation"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// labelKinds maps alert labels to the kind they name, most specific first:
// an alert with both pod and deployment labels is about the pod.
var labelKinds = []struct {
	label, apiVersion, kind string
	namespaced              bool
}{
	{"pod", "v1", "Pod", true},
	{"deployment", "apps/v1", "Deployment", true},
	{"statefulset", "apps/v1", "StatefulSet", true},
	{"daemonset", "apps/v1", "DaemonSet", true},
	{"node", "v1", "Node", false},
}

// namespaceLabels are the labels that carry the target's namespace, in order
// of preference. When Prometheus scrapes kube-state-metrics without
// honor_labels, the target's own namespace moves to exported_namespace and
// namespace becomes kube-state-metrics' own, so exported_ wins.
var namespaceLabels = []string{"exported_namespace", "namespace"}

// TargetFromIncident returns the object the incident is about: the spec's
// explicit target when set, else the first kind its labels name. It returns
// nil when nothing names a target.
func TargetFromIncident(spec *riposte.IncidentSpec) *riposte.ObjectReference {
	if spec.Target != nil {
		t := *spec.Target
		return &t
	}
	ns := ""
	for _, l := range namespaceLabels {
		if v := spec.Labels[l]; v != "" && len(validation.IsDNS1123Label(v)) == 0 {
			ns = v
			break
		}
	}
	for _, k := range labelKinds {
		name := spec.Labels["exported_"+k.label]
		if name == "" {
			name = spec.Labels[k.label]
		}
		if name == "" {
			continue
		}
		if k.namespaced && ns == "" {
			continue
		}
		ref := &riposte.ObjectReference{APIVersion: k.apiVersion, Kind: k.kind, Name: name}
		if k.namespaced {
			ref.Namespace = ns
		}
		return ref
	}
	return nil
}
