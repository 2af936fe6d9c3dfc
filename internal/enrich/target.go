// Package enrich learns what an incident touches from the live cluster: the
// target object, its owner chain, images, risk flags, identity, exposure and a
// timeline. It reads through a client.Reader, which in the manager is the
// informer cache, never Secret data or environment values.
package enrich

import (
	"k8s.io/apimachinery/pkg/util/validation"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// labelKind maps the labels that name a kind of object to that kind. Label
// names are tried in order: kube-state-metrics' exported_ form first (when
// Prometheus scrapes it without honor_labels, the target's own labels move
// there), then the plain form, then Falco's through Falcosidekick.
type labelKind struct {
	labels           []string
	apiVersion, kind string
	namespaced       bool
}

// labelKinds are tried most specific first: an alert with both pod and
// deployment labels is about the pod.
var labelKinds = []labelKind{
	{labels: []string{"exported_pod", "pod", "k8s_pod_name", "k8s.pod.name", "pod_name"}, apiVersion: "v1", kind: "Pod", namespaced: true},
	{labels: []string{"exported_job", "job_name"}, apiVersion: "batch/v1", kind: "Job", namespaced: true},
	{labels: []string{"exported_cronjob", "cronjob"}, apiVersion: "batch/v1", kind: "CronJob", namespaced: true},
	{labels: []string{"exported_replicaset", "replicaset"}, apiVersion: "apps/v1", kind: "ReplicaSet", namespaced: true},
	{labels: []string{"exported_deployment", "deployment"}, apiVersion: "apps/v1", kind: "Deployment", namespaced: true},
	{labels: []string{"exported_statefulset", "statefulset"}, apiVersion: "apps/v1", kind: "StatefulSet", namespaced: true},
	{labels: []string{"exported_daemonset", "daemonset"}, apiVersion: "apps/v1", kind: "DaemonSet", namespaced: true},
	{labels: []string{"exported_persistentvolumeclaim", "persistentvolumeclaim"}, apiVersion: "v1", kind: "PersistentVolumeClaim", namespaced: true},
	{labels: []string{"exported_service", "service"}, apiVersion: "v1", kind: "Service", namespaced: true},
	{labels: []string{"exported_ingress", "ingress"}, apiVersion: "networking.k8s.io/v1", kind: "Ingress", namespaced: true},
	{labels: []string{"exported_node", "node", "k8s_node_name", "k8s.node.name"}, apiVersion: "v1", kind: "Node"},
}

var (
	namespaceLabels = []string{"exported_namespace", "namespace", "k8s_ns_name", "k8s.ns.name"}
	containerLabels = []string{"exported_container", "container", "k8s_container_name", "container_name"}
)

func first(labels map[string]string, names []string) string {
	for _, n := range names {
		if v := labels[n]; v != "" {
			return v
		}
	}
	return ""
}

// TargetFromIncident returns the object the incident is about: the spec's
// explicit target when set, else the first kind its labels name. It returns
// nil when nothing names a target. A Manual incident's labels were written
// by the person who opened it and are not checked by the API server as its
// target is (config/policies), so only its target counts.
func TargetFromIncident(spec *riposte.IncidentSpec) *riposte.ObjectReference {
	if spec.Target != nil {
		t := *spec.Target
		return &t
	}
	if spec.Source == riposte.SourceManual {
		return nil
	}
	ns := ""
	for _, l := range namespaceLabels {
		if v := spec.Labels[l]; v != "" && len(validation.IsDNS1123Label(v)) == 0 {
			ns = v
			break
		}
	}
	for _, k := range labelKinds {
		name := first(spec.Labels, k.labels)
		if name == "" || (k.namespaced && ns == "") {
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

// ContainerFromIncident is the container the alert names, if any.
func ContainerFromIncident(spec *riposte.IncidentSpec) string {
	return first(spec.Labels, containerLabels)
}
