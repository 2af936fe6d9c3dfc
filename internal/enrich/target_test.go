package enrich

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestTargetFromIncident(t *testing.T) {
	cases := []struct {
		reason string
		spec   riposte.IncidentSpec
		want   *riposte.ObjectReference
	}{
		{reason: "namespace and pod", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "shop", "pod": "web-1"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-1"}},
		{reason: "pod wins over deployment", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "shop", "pod": "web-1", "deployment": "web"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-1"}},
		{reason: "a deployment", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "shop", "deployment": "web"}},
			want: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"}},
		{reason: "a node needs no namespace", spec: riposte.IncidentSpec{Labels: map[string]string{"node": "n1"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "n1"}},
		{reason: "kube-state-metrics exported labels win over the scrape target's", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "monitoring", "pod": "kube-state-metrics-0", "exported_namespace": "shop", "exported_pod": "web-1"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-1"}},
		{reason: "a Manual incident's labels name nothing: its opener wrote them", spec: riposte.IncidentSpec{Source: riposte.SourceManual,
			Labels: map[string]string{"namespace": "other-team", "pod": "payments"}}},
		{reason: "a Manual incident's target counts, named by kind alone as people write it: its version is the kind's", spec: riposte.IncidentSpec{Source: riposte.SourceManual,
			Labels: map[string]string{"namespace": "other-team", "pod": "payments"},
			Target: &riposte.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "db-0"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "db-0"}},
		{reason: "a target's own version stands", spec: riposte.IncidentSpec{Source: riposte.SourceManual,
			Target: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"}},
			want: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"}},
		{reason: "a kind Riposte does not know keeps no version", spec: riposte.IncidentSpec{Source: riposte.SourceManual,
			Target: &riposte.ObjectReference{Kind: "Widget", Namespace: "shop", Name: "w"}},
			want: &riposte.ObjectReference{Kind: "Widget", Namespace: "shop", Name: "w"}},
		{reason: "a pod without a namespace names nothing", spec: riposte.IncidentSpec{Labels: map[string]string{"pod": "web-1"}}},
		{reason: "an invalid namespace label is ignored", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "Not_A_Namespace", "pod": "x"}}},
		{reason: "an explicit target wins over labels", spec: riposte.IncidentSpec{
			Labels: map[string]string{"namespace": "shop", "pod": "web-1"},
			Target: &riposte.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "db-0"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "db-0"}},
		{reason: "Falco through Falcosidekick", spec: riposte.IncidentSpec{Labels: map[string]string{"k8s_ns_name": "shop", "k8s_pod_name": "web-1"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-1"}},
		{reason: "Falco's dotted names", spec: riposte.IncidentSpec{Labels: map[string]string{"k8s.ns.name": "shop", "k8s.pod.name": "web-1"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-1"}},
		{reason: "a job_name wins over its cronjob", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "ops", "job_name": "nightly-29", "cronjob": "nightly"}},
			want: &riposte.ObjectReference{APIVersion: "batch/v1", Kind: "Job", Namespace: "ops", Name: "nightly-29"}},
		{reason: "a cronjob", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "ops", "cronjob": "nightly"}},
			want: &riposte.ObjectReference{APIVersion: "batch/v1", Kind: "CronJob", Namespace: "ops", Name: "nightly"}},
		{reason: "a persistent volume claim", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "db", "persistentvolumeclaim": "data-0"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "PersistentVolumeClaim", Namespace: "db", Name: "data-0"}},
		{reason: "a service", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "shop", "service": "web"}},
			want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: "shop", Name: "web"}},
		{reason: "an ingress", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "shop", "ingress": "public"}},
			want: &riposte.ObjectReference{APIVersion: "networking.k8s.io/v1", Kind: "Ingress", Namespace: "shop", Name: "public"}},
		{reason: "no labels, no target"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, TargetFromIncident(&tc.spec)); diff != "" {
				t.Errorf("TargetFromIncident (-want +got):\n%s", diff)
			}
		})
	}
}

func TestContainerFromIncident(t *testing.T) {
	for _, tc := range []struct {
		reason string
		labels map[string]string
		want   string
	}{
		{"a pod's container", map[string]string{"namespace": "shop", "pod": "web-1", "container": "app"}, "app"},
		{"the exported container is the pod's", map[string]string{"exported_namespace": "shop", "exported_pod": "web-1",
			"container": "kube-state-metrics", "exported_container": "app"}, "app"},
		{"a container name without the scrape's", map[string]string{"namespace": "shop", "pod": "web-1", "k8s_container_name": "app"}, "app"},
		{"no container is a deployment's", map[string]string{"namespace": "shop", "deployment": "web", "container": "app"}, ""},
		{"no pod, no container", map[string]string{"container": "app"}, ""},
		{"nothing", map[string]string{}, ""},
	} {
		if got := ContainerFromIncident(&riposte.IncidentSpec{Labels: tc.labels}); got != tc.want {
			t.Errorf("%s: ContainerFromIncident(%v) = %q, want %q", tc.reason, tc.labels, got, tc.want)
		}
	}
}

// The label sets real tools send, each with the target and container it
// names. Where each comes from:
//   - kube-state-metrics' own labels: kubernetes/kube-state-metrics
//     docs/metrics (pod-metrics.md: kube_pod_container_status_waiting_reason
//     has namespace, pod, uid, container, reason; deployment-metrics.md:
//     kube_deployment_spec_replicas has namespace, deployment; job-metrics.md:
//     kube_job_failed has namespace, job_name, condition; node-metrics.md:
//     kube_node_status_condition has node, condition, status).
//   - the alerts and what survives their expressions: kube-prometheus
//     manifests/kubernetesControlPlane-prometheusRule.yaml (KubePodCrashLooping,
//     KubeDeploymentReplicasMismatch, KubeJobFailed, KubeNodeNotReady; none
//     aggregates, so every series label reaches Alertmanager) and
//     manifests/nodeExporter-prometheusRule.yaml (NodeFilesystemSpaceFillingUp
//     over node_filesystem_avail_bytes: device, fstype, mountpoint).
//   - the scrape labels: prometheus-operator pkg/prometheus/promcfg.go adds
//     namespace, service, pod, container and endpoint; Prometheus job and
//     instance; with honor_labels false a colliding series label becomes
//     exported_<name> (prometheus/prometheus docs/configuration/configuration.md).
//   - the scrapes: kube-prometheus manifests/kubeStateMetrics-serviceMonitor.yaml
//     (honorLabels, labeldrop of pod|service|endpoint|namespace, port
//     https-main on container kube-rbac-proxy-main, 8443) and
//     nodeExporter-serviceMonitor.yaml (instance relabelled to the node's name,
//     port https on container kube-rbac-proxy); prometheus-community/helm-charts
//     kube-prometheus-stack (its kube-state-metrics ServiceMonitor honours
//     labels without a labeldrop; prometheus-node-exporter's ServiceMonitor
//     has no relabelling, port http-metrics, container node-exporter and
//     hostNetwork, so instance is the node's address and 9100; the values'
//     commented relabelling to nodename); the kube-state-metrics chart alone,
//     whose ServiceMonitor does not honour labels by default.
//   - Falco: falcosecurity/rules rules/falco_rules.yaml "Terminal shell in
//     container" (its output fields), the container and k8s fields Falco
//     appends (falco.yaml append_output), turned into labels by
//     falcosecurity/falcosidekick outputs/alertmanager.go (dots to
//     underscores, plus source, rule, eventsource, hostname, priority,
//     severity, tags).
var realLabelSets = []struct {
	reason    string
	labels    map[string]string
	want      *riposte.ObjectReference
	container string
}{
	{
		reason: "kube-state-metrics without honorLabels, a pod: the exported_ labels are the pod's, the plain ones the exporter's",
		labels: map[string]string{"alertname": "KubePodCrashLooping", "severity": "warning", "reason": "CrashLoopBackOff",
			"uid": "5a3c0d2e-8f1b-4c7a-9e61-0b2d4f6a8c10", "exported_namespace": "shop", "exported_pod": "web-5d4f-x7k2p", "exported_container": "app",
			"namespace": "monitoring", "pod": "kube-state-metrics-7d9c8f6b5-q2w4e", "container": "kube-state-metrics",
			"service": "kube-state-metrics", "endpoint": "http", "job": "kube-state-metrics", "instance": "10.244.1.17:8080"},
		want:      &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-5d4f-x7k2p"},
		container: "app",
	},
	{
		reason: "kube-state-metrics without honorLabels, a deployment: the exporter's pod and container are not the deployment's",
		labels: map[string]string{"alertname": "KubeDeploymentReplicasMismatch", "severity": "warning",
			"exported_namespace": "shop", "deployment": "web",
			"namespace": "monitoring", "pod": "kube-state-metrics-7d9c8f6b5-q2w4e", "container": "kube-state-metrics",
			"service": "kube-state-metrics", "endpoint": "http", "job": "kube-state-metrics", "instance": "10.244.1.17:8080"},
		want: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"},
	},
	{
		reason: "kube-prometheus, a failed Job: the proxy's container is not the Job's",
		labels: map[string]string{"alertname": "KubeJobFailed", "severity": "warning", "namespace": "ops", "job_name": "nightly-29",
			"condition": "true", "container": "kube-rbac-proxy-main", "instance": "10.244.1.17:8443", "job": "kube-state-metrics"},
		want: &riposte.ObjectReference{APIVersion: "batch/v1", Kind: "Job", Namespace: "ops", Name: "nightly-29"},
	},
	{
		reason: "kube-prometheus-stack, a deployment: honorLabels keeps the exporter's own pod beside the deployment",
		labels: map[string]string{"alertname": "KubeDeploymentReplicasMismatch", "severity": "warning", "namespace": "shop", "deployment": "web",
			"pod": "kube-prometheus-stack-kube-state-metrics-6d8f7c9b4-m5n6p", "container": "kube-state-metrics",
			"service": "kube-prometheus-stack-kube-state-metrics", "endpoint": "http", "job": "kube-state-metrics", "instance": "10.244.1.17:8080"},
		want: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"},
	},
	{
		reason: "kube-prometheus-stack, a pod: honorLabels keeps the pod's own namespace, pod and container",
		labels: map[string]string{"alertname": "KubePodCrashLooping", "severity": "warning", "reason": "CrashLoopBackOff",
			"uid": "5a3c0d2e-8f1b-4c7a-9e61-0b2d4f6a8c10", "namespace": "shop", "pod": "web-5d4f-x7k2p", "container": "app",
			"service": "kube-prometheus-stack-kube-state-metrics", "endpoint": "http", "job": "kube-state-metrics", "instance": "10.244.1.17:8080"},
		want:      &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-5d4f-x7k2p"},
		container: "app",
	},
	{
		reason: "kube-prometheus-stack, a node not ready: the node, not the exporter's pod",
		labels: map[string]string{"alertname": "KubeNodeNotReady", "severity": "warning", "node": "worker-1", "condition": "Ready", "status": "true",
			"namespace": "monitoring", "pod": "kube-prometheus-stack-kube-state-metrics-6d8f7c9b4-m5n6p", "container": "kube-state-metrics",
			"service": "kube-prometheus-stack-kube-state-metrics", "endpoint": "http", "job": "kube-state-metrics", "instance": "10.244.1.17:8080"},
		want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "worker-1"},
	},
	{
		reason: "node-exporter from kube-prometheus-stack: the node at the instance's address, not the exporter's pod",
		labels: map[string]string{"alertname": "NodeFilesystemSpaceFillingUp", "severity": "warning",
			"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/", "instance": "10.0.0.5:9100", "job": "node-exporter",
			"namespace": "monitoring", "pod": "kube-prometheus-stack-prometheus-node-exporter-7xk2d", "container": "node-exporter",
			"service": "kube-prometheus-stack-prometheus-node-exporter", "endpoint": "http-metrics"},
		want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "10.0.0.5"},
	},
	{
		reason: "node-exporter from kube-prometheus: the instance is the node's name",
		labels: map[string]string{"alertname": "NodeFilesystemAlmostOutOfSpace", "severity": "critical",
			"device": "/dev/nvme0n1p1", "fstype": "xfs", "mountpoint": "/var", "instance": "worker-1", "job": "node-exporter",
			"namespace": "monitoring", "pod": "node-exporter-9mz4c", "container": "kube-rbac-proxy", "service": "node-exporter", "endpoint": "https"},
		want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "worker-1"},
	},
	{
		reason: "node-exporter relabelled with nodename, as kube-prometheus-stack's values suggest",
		labels: map[string]string{"alertname": "NodeFilesystemSpaceFillingUp", "severity": "warning",
			"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/", "instance": "10.0.0.5:9100", "nodename": "worker-1", "job": "node-exporter",
			"namespace": "monitoring", "pod": "kube-prometheus-stack-prometheus-node-exporter-7xk2d", "container": "node-exporter",
			"service": "kube-prometheus-stack-prometheus-node-exporter", "endpoint": "http-metrics"},
		want: &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "worker-1"},
	},
	{
		reason: "Falco through Falcosidekick: the pod and container Falco names",
		labels: map[string]string{"source": "falco", "rule": "Terminal shell in container", "eventsource": "syscall", "hostname": "worker-1",
			"priority": "Notice", "severity": "information", "tags": "T1059,container,maturity_stable,mitre_execution,shell",
			"evt_type": "execve", "user_name": "root", "user_uid": "0", "user_loginuid": "-1", "proc_name": "bash", "proc_exepath": "/usr/bin/bash",
			"proc_pname": "runc", "proc_cmdline": "bash", "proc_tty": "34816", "evt_arg_flags": "EXE_WRITABLE",
			"container_id": "3ad7b26ded6d", "container_name": "app", "container_image_repository": "docker.io/library/nginx",
			"k8s_ns_name": "shop", "k8s_pod_name": "web-5d4f-x7k2p"},
		want:      &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-5d4f-x7k2p"},
		container: "app",
	},
	{
		reason: "an application scraped through its own ServiceMonitor: the scrape labels are the application's",
		labels: map[string]string{"alertname": "HighErrorRate", "severity": "critical", "namespace": "shop", "pod": "web-5d4f-x7k2p",
			"container": "app", "service": "web", "endpoint": "http", "job": "web", "instance": "10.244.2.9:8080"},
		want:      &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-5d4f-x7k2p"},
		container: "app",
	},
}

func TestTargetFromRealLabelSets(t *testing.T) {
	for _, tc := range realLabelSets {
		t.Run(tc.reason, func(t *testing.T) {
			spec := &riposte.IncidentSpec{Source: riposte.SourceAlertmanager, Labels: tc.labels}
			if diff := cmp.Diff(tc.want, TargetFromIncident(spec)); diff != "" {
				t.Errorf("TargetFromIncident (-want +got):\n%s", diff)
			}
			if got := ContainerFromIncident(spec); got != tc.container {
				t.Errorf("ContainerFromIncident = %q, want %q", got, tc.container)
			}
		})
	}
}
