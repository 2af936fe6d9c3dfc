// Package alertlabels reads from an alert's labels what the alert is about:
// the object, its namespace and its container. Intake takes the Incident's
// namespace from it and enrichment the target, so an incident lives where
// its target lives.
//
// # Scrape labels
//
// Prometheus gives every series the job and instance of the target it
// scraped, and the prometheus-operator adds the target's namespace, service,
// pod, container and endpoint (pkg/prometheus/promcfg.go). For an
// application scraped directly these describe the application, which is
// what its alerts are about. For an exporter they describe the exporter:
// kube-state-metrics reports on other objects, in labels of its own
// (namespace, pod, deployment, job_name, node...), and node-exporter on the
// node it runs on.
//
// An alert is an exporter's when
//   - Prometheus renamed a scrape label: the series carried its own
//     (exported_namespace, exported_pod...), the scrape did not honour it
//     (honor_labels false, the default), so the plain label is the scrape's;
//   - or its job or container names a known exporter, kube-state-metrics or
//     node-exporter (the names kube-prometheus and kube-prometheus-stack
//     give them).
//
// In an exporter's alert the scrape labels name nothing, with one exception:
// the labels kube-state-metrics set itself, which Prometheus kept because
// the scrape honours them (both kube-prometheus and kube-prometheus-stack
// scrape it with honorLabels). There namespace, pod and container are the
// object's, unless the pod is the exporter's own: one of the scrape
// Service's pods (its name starts with the Service's name and a dash, as a
// Deployment's pods are named after the Deployment and the charts name the
// Service after it), or one whose container is kube-state-metrics. A series
// about a Deployment or a Node has no pod of its own, so the scrape's is
// left on it. node-exporter's alerts are about the node: named
// by a node label when the scrape adds one, else by the scrape's instance,
// a node name (kube-prometheus relabels it so) or an address and port,
// which enrichment resolves to the Node whose address it is.
package alertlabels

import (
	"net"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// The exporters recognised by job or container name.
const (
	KubeStateMetrics = "kube-state-metrics"
	NodeExporter     = "node-exporter"
)

// exportedPrefix is what Prometheus puts before a series' own label when it
// collides with a scrape label and the scrape does not honour it.
const exportedPrefix = "exported_"

// scrapeLabels are the labels Prometheus and the prometheus-operator put on
// every series of a scrape.
var scrapeLabels = []string{"namespace", "pod", "container", "service", "endpoint", "job", "instance"}

// Subject is what an alert's labels say it is about.
type Subject struct {
	// Target is the object the labels name, nil when they name none.
	Target *riposte.ObjectReference
	// Namespace is where the alert belongs: its target's namespace, "" for a
	// cluster-scoped target; with no target, the valid namespace its labels
	// name, if any.
	Namespace string
	// Container is the target pod's container the labels name; "" unless
	// the target is a Pod. Labels cannot tell a pod's own container from a
	// scrape's left beside it, so whoever reads the pod keeps it only if
	// the pod has it.
	Container string
	// ByAddress says that Target is a Node named by a scrape's instance or
	// host name, which may be one of its addresses rather than its name.
	ByAddress bool
	// Exporter is the exporter whose scrape labels were set aside: a known
	// one's name, the job of another whose labels Prometheus renamed, or ""
	// when the scrape labels describe the subject.
	Exporter string
}

// kind is a kind of object alerts name, with the labels that name it.
type kind struct {
	apiVersion, kind string
	namespaced       bool
	// scrape is the scrape label that names this kind in an application's
	// own alerts, or "".
	scrape string
	// own are labels that name this kind and never a scrape.
	own []string
}

// kinds are tried most specific first: an alert with both pod and
// deployment labels is about the pod. Falco's names come through
// Falcosidekick, which turns k8s.pod.name into k8s_pod_name.
var kinds = []kind{
	{apiVersion: "v1", kind: "Pod", namespaced: true, scrape: "pod", own: []string{"k8s_pod_name", "k8s.pod.name", "pod_name"}},
	{apiVersion: "batch/v1", kind: "Job", namespaced: true, own: []string{"job_name"}},
	{apiVersion: "batch/v1", kind: "CronJob", namespaced: true, own: []string{"cronjob"}},
	{apiVersion: "apps/v1", kind: "ReplicaSet", namespaced: true, own: []string{"replicaset"}},
	{apiVersion: "apps/v1", kind: "Deployment", namespaced: true, own: []string{"deployment"}},
	{apiVersion: "apps/v1", kind: "StatefulSet", namespaced: true, own: []string{"statefulset"}},
	{apiVersion: "apps/v1", kind: "DaemonSet", namespaced: true, own: []string{"daemonset"}},
	{apiVersion: "v1", kind: "PersistentVolumeClaim", namespaced: true, own: []string{"persistentvolumeclaim"}},
	{apiVersion: "v1", kind: "Service", namespaced: true, scrape: "service"},
	{apiVersion: "networking.k8s.io/v1", kind: "Ingress", namespaced: true, own: []string{"ingress"}},
	{apiVersion: "v1", kind: "Node", own: []string{"node", "k8s_node_name", "k8s.node.name"}},
}

// APIVersionOf is the API version of a kind alerts name, and of the few
// others Riposte watches that a person or an agent may point an incident
// at (config/policies/incident-requester.yaml lists them); "" for any other.
func APIVersionOf(kind string) string {
	for _, k := range kinds {
		if k.kind == kind {
			return k.apiVersion
		}
	}
	switch kind {
	case "Role", "RoleBinding":
		return "rbac.authorization.k8s.io/v1"
	case "NetworkPolicy":
		return "networking.k8s.io/v1"
	}
	return ""
}

var (
	ownNamespaceLabels = []string{"k8s_ns_name", "k8s.ns.name"}
	ownContainerLabels = []string{"k8s_container_name", "container_name"}
	// nodeExporterNodeLabels name the node in node-exporter's series when the
	// scrape adds them (relabelled from __meta_kubernetes_pod_node_name) or
	// the series has one (node_uname_info's nodename).
	nodeExporterNodeLabels = []string{"node", "nodename", "kubernetes_node"}
)

// labels reads one alert's labels under the rule for its scrape.
type labels struct {
	set map[string]string
	// scrapeIsSubject says, per scrape label, whether its plain value
	// describes the subject.
	scrapeIsSubject func(name string) bool
}

// get is what label name says of the subject: its exported_ form first,
// then the plain one, if the plain one is the subject's.
func (l labels) get(name string) string {
	if v := l.set[exportedPrefix+name]; v != "" {
		return v
	}
	if isScrapeLabel(name) && !l.scrapeIsSubject(name) {
		return ""
	}
	return l.set[name]
}

func (l labels) first(names ...string) string {
	for _, n := range names {
		if v := l.get(n); v != "" {
			return v
		}
	}
	return ""
}

func isScrapeLabel(name string) bool {
	return slices.Contains(scrapeLabels, name)
}

// exporterOf names the exporter an alert's scrape labels describe, or ""
// when they describe the alert's subject (see the package comment).
func exporterOf(set map[string]string) string {
	for _, job := range []string{set["job"], set["container"]} {
		if job == KubeStateMetrics || job == NodeExporter {
			return job
		}
	}
	for _, s := range scrapeLabels {
		if set[exportedPrefix+s] != "" {
			if job := set["job"]; job != "" {
				return job
			}
			return "unknown"
		}
	}
	return ""
}

// renamed reports whether Prometheus renamed any of the series' own labels.
func renamed(set map[string]string) bool {
	for _, s := range scrapeLabels {
		if set[exportedPrefix+s] != "" {
			return true
		}
	}
	return false
}

// Of reads what the labels say the alert is about.
func Of(set map[string]string) Subject {
	exporter := exporterOf(set)
	l := labels{set: set, scrapeIsSubject: scrapeIsSubject(set, exporter)}
	s := Subject{Exporter: exporter}

	ns := ""
	for _, n := range append([]string{"namespace"}, ownNamespaceLabels...) {
		if v := l.get(n); v != "" && len(validation.IsDNS1123Label(v)) == 0 {
			ns = v
			break
		}
	}
	if exporter == NodeExporter {
		s.Target, s.ByAddress = nodeExporterNode(l)
	} else {
		s.Target = target(l, ns)
	}
	s.Namespace = ns
	if s.Target != nil {
		s.Namespace = s.Target.Namespace
	}
	if s.Target != nil && s.Target.Kind == "Pod" {
		s.Container = l.first(append([]string{"container"}, ownContainerLabels...)...)
	}
	return s
}

// scrapeIsSubject is, for the given exporter, which plain scrape labels
// describe the subject.
func scrapeIsSubject(set map[string]string, exporter string) func(string) bool {
	switch {
	case exporter == "":
		return func(string) bool { return true }
	case exporter != KubeStateMetrics || renamed(set):
		return func(string) bool { return false }
	}
	// kube-state-metrics scraped with honorLabels: its namespace, pod and
	// container stood, but a pod of the scrape's own Service, or with the
	// exporter's container, is the exporter's.
	own := set["service"] != "" && strings.HasPrefix(set["pod"], set["service"]+"-") || set["container"] == KubeStateMetrics
	return func(name string) bool {
		switch name {
		case "namespace":
			return true
		case "pod", "container":
			return !own
		}
		return false
	}
}

func target(l labels, ns string) *riposte.ObjectReference {
	for _, k := range kinds {
		names := k.own
		if k.scrape != "" {
			names = append([]string{k.scrape}, names...)
		}
		name := l.first(names...)
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

// nodeExporterNode is the node a node-exporter series is about.
func nodeExporterNode(l labels) (*riposte.ObjectReference, bool) {
	name := l.first(nodeExporterNodeLabels...)
	if name == "" {
		name = instanceHost(l.set["instance"])
	}
	if name == "" {
		return nil, false
	}
	return &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: name}, true
}

// instanceHost is the host of a scrape's instance ("10.0.0.5:9100",
// "[fd00::5]:9100", or a bare node name), if it can be a node's name or
// address.
func instanceHost(instance string) string {
	host := instance
	if h, _, err := net.SplitHostPort(instance); err == nil {
		host = h
	}
	if net.ParseIP(host) != nil || host != "" && len(validation.IsDNS1123Subdomain(host)) == 0 {
		return host
	}
	return ""
}
