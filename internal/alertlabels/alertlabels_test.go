package alertlabels

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// The real tools' label sets are in internal/enrich/target_test.go and
// internal/intake/incident_test.go; these cases hold each part of the rule.
func TestOf(t *testing.T) {
	pod := func(ns, name string) *riposte.ObjectReference {
		return &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: name}
	}
	node := &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "worker-1"}
	cases := []struct {
		reason string
		labels map[string]string
		want   Subject
	}{
		{reason: "an application's own scrape labels name it",
			labels: map[string]string{"namespace": "shop", "pod": "web-1", "container": "app", "job": "web"},
			want:   Subject{Target: pod("shop", "web-1"), Namespace: "shop", Container: "app"}},
		{reason: "a renamed label makes the plain ones the scrape's, whatever the job",
			labels: map[string]string{"namespace": "monitoring", "pod": "pushgateway-0", "exported_job": "backup", "job": "pushgateway"},
			want:   Subject{Exporter: "pushgateway"}},
		{reason: "a renamed label with no job still sets the scrape aside",
			labels: map[string]string{"namespace": "monitoring", "pod": "x-0", "exported_instance": "a"},
			want:   Subject{Exporter: "unknown"}},
		{reason: "kube-state-metrics known by its container alone",
			labels: map[string]string{"namespace": "shop", "deployment": "web", "pod": "ksm-0", "container": KubeStateMetrics, "job": "monitoring/ksm"},
			want: Subject{Target: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"},
				Namespace: "shop", Exporter: KubeStateMetrics}},
		{reason: "kube-state-metrics honoured: a pod not of the scrape's Service is the object's",
			labels: map[string]string{"namespace": "shop", "pod": "web-1", "node": "worker-1", "service": "ksm", "job": KubeStateMetrics},
			want:   Subject{Target: pod("shop", "web-1"), Namespace: "shop", Exporter: KubeStateMetrics}},
		{reason: "kube-state-metrics honoured: the scrape Service's own pod is the exporter's, and so is its container",
			labels: map[string]string{"namespace": "monitoring", "pod": "ksm-5f-x", "container": KubeStateMetrics, "node": "worker-1", "service": "ksm", "job": KubeStateMetrics},
			want:   Subject{Target: node, Exporter: KubeStateMetrics}},
		{reason: "kube-state-metrics: its Service label is the scrape's",
			labels: map[string]string{"namespace": "shop", "service": "ksm", "job": KubeStateMetrics},
			want:   Subject{Namespace: "shop", Exporter: KubeStateMetrics}},
		{reason: "kube-state-metrics without honorLabels, a Service: exported_service",
			labels: map[string]string{"namespace": "monitoring", "exported_namespace": "shop", "service": "ksm", "exported_service": "web", "job": KubeStateMetrics},
			want: Subject{Target: &riposte.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: "shop", Name: "web"},
				Namespace: "shop", Exporter: KubeStateMetrics}},
		{reason: "node-exporter: the node label wins over the instance",
			labels: map[string]string{"node": "worker-1", "instance": "10.0.0.5:9100", "namespace": "monitoring", "pod": "ne-1", "job": NodeExporter},
			want:   Subject{Target: node, ByAddress: true, Exporter: NodeExporter}},
		{reason: "node-exporter: an IPv6 instance",
			labels: map[string]string{"instance": "[fd00::5]:9100", "job": NodeExporter},
			want:   Subject{Target: &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "fd00::5"}, ByAddress: true, Exporter: NodeExporter}},
		{reason: "node-exporter: an instance that is neither a name nor an address names nothing, and its namespace is the exporter's",
			labels: map[string]string{"instance": "Not A Host:9100", "namespace": "monitoring", "job": NodeExporter},
			want:   Subject{Exporter: NodeExporter}},
		{reason: "node-exporter known by its container",
			labels: map[string]string{"instance": "10.0.0.5:9100", "container": NodeExporter, "namespace": "monitoring", "pod": "ne-1", "job": "node"},
			want:   Subject{Target: &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "10.0.0.5"}, ByAddress: true, Exporter: NodeExporter}},
		{reason: "no target: the namespace the labels name",
			labels: map[string]string{"namespace": "shop", "resourcequota": "compute"},
			want:   Subject{Namespace: "shop"}},
		{reason: "an invalid namespace is passed over for the next",
			labels: map[string]string{"namespace": "Bad_NS", "k8s_ns_name": "shop", "k8s_pod_name": "web-1"},
			want:   Subject{Target: pod("shop", "web-1"), Namespace: "shop"}},
		{reason: "a node target is cluster-scoped, whatever namespace is written beside it",
			labels: map[string]string{"namespace": "shop", "node": "worker-1"},
			want:   Subject{Target: node}},
		{reason: "exported_job is Prometheus' job renamed, not a batch Job",
			labels: map[string]string{"exported_namespace": "shop", "exported_job": "backup", "job": "pushgateway"},
			want:   Subject{Namespace: "shop", Exporter: "pushgateway"}},
		{reason: "no labels, nothing"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Of(tc.labels)); diff != "" {
				t.Errorf("Of(%v) (-want +got):\n%s", tc.labels, diff)
			}
		})
	}
}

// An alert's namespace is always one a namespace label wrote: no other
// label (a pod's, a node's, an instance) can move an alert into a
// namespace, Riposte's own included, that its namespace labels did not name.
func TestNamespaceComesOnlyFromNamespaceLabels(t *testing.T) {
	namespaceLabels := []string{"namespace", "exported_namespace", "k8s_ns_name", "k8s.ns.name"}
	values := []string{"", "shop", "riposte-system"}
	others := []map[string]string{
		{},
		{"pod": "riposte-system"},
		{"exported_pod": "web-1"},
		{"deployment": "riposte-system"},
		{"node": "riposte-system"},
		{"instance": "riposte-system:9100", "job": NodeExporter},
		{"job": KubeStateMetrics, "service": "riposte-system", "pod": "riposte-system-1"},
	}
	for _, other := range others {
		for _, a := range values {
			for _, b := range values {
				labels := map[string]string{namespaceLabels[0]: a, namespaceLabels[1]: b, namespaceLabels[2]: b}
				for k, v := range other {
					labels[k] = v
				}
				got := Of(labels).Namespace
				if got == "" {
					continue
				}
				named := false
				for _, l := range namespaceLabels {
					named = named || labels[l] == got
				}
				if !named {
					t.Errorf("Of(%v).Namespace = %q, which no namespace label names", labels, got)
				}
			}
		}
	}
}

// Intake reads every alert's labels once: this must stay far below the
// cost of the write that stores it (milliseconds).
func BenchmarkOf(b *testing.B) {
	labels := map[string]string{"alertname": "KubeDeploymentReplicasMismatch", "severity": "warning", "namespace": "shop", "deployment": "web",
		"pod": "kube-prometheus-stack-kube-state-metrics-6d8f7c9b4-m5n6p", "container": "kube-state-metrics",
		"service": "kube-prometheus-stack-kube-state-metrics", "endpoint": "http", "job": "kube-state-metrics", "instance": "10.244.1.17:8080"}
	b.ReportAllocs()
	for b.Loop() {
		_ = Of(labels)
	}
}
