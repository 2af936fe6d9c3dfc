package intake

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestIncidentFor(t *testing.T) {
	starts := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ends := starts.Add(5 * time.Minute)
	startsAt, endsAt := metav1.NewTime(starts), metav1.NewTime(ends)
	const defaultNS = "riposte-system"

	falcoLabels := map[string]string{"rule": "Terminal shell in container", "priority": "Notice", "severity": "information",
		"source": "falco", "eventsource": "syscall", "k8s_ns_name": "shop", "k8s_pod_name": "web-1"}

	// incident is the expected Incident for alertname "A", adjusted per case.
	incident := func(name, ns string, labels map[string]string, mutate func(*riposte.Incident)) *riposte.Incident {
		inc := &riposte.Incident{
			TypeMeta: metav1.TypeMeta{APIVersion: "riposte.dev/v1alpha1", Kind: "Incident"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
				"riposte.dev/source": "alertmanager", "riposte.dev/alertname": "A",
			}, Finalizers: []string{riposte.RecordFinalizer}},
			Spec: riposte.IncidentSpec{
				Source: riposte.SourceAlertmanager, AlertName: "A", Status: riposte.AlertFiring,
				Fingerprint: strings.TrimPrefix(name, "am-"), Labels: labels,
			},
		}
		if mutate != nil {
			mutate(inc)
		}
		return inc
	}

	cases := []struct {
		reason string
		alert  Alert
		want   *riposte.Incident
	}{
		{
			reason: "a fingerprint with capitals is hashed into the name and kept verbatim, in the alert's namespace, with severity and times",
			alert: Alert{Status: "firing", Fingerprint: "AB12", StartsAt: starts, EndsAt: ends, GeneratorURL: "http://prom/g",
				Labels:      map[string]string{"alertname": "A", "namespace": "shop", "severity": "critical"},
				Annotations: map[string]string{"summary": "s"}},
			want: incident(IncidentName("AB12"), "shop", map[string]string{"alertname": "A", "namespace": "shop", "severity": "critical"}, func(inc *riposte.Incident) {
				inc.Spec.Fingerprint = "AB12"
				inc.Spec.Severity = "critical"
				inc.Spec.Annotations = map[string]string{"summary": "s"}
				inc.Spec.StartsAt = &startsAt
				inc.Spec.GeneratorURL = "http://prom/g"
			}),
		},
		{
			reason: "no namespace label: the default namespace",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A"}},
			want:   incident("am-ab", defaultNS, map[string]string{"alertname": "A"}, nil),
		},
		{
			reason: "a namespace label that is not a DNS-1123 label: the default namespace",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A", "namespace": "Bad_NS"}},
			want:   incident("am-ab", defaultNS, map[string]string{"alertname": "A", "namespace": "Bad_NS"}, nil),
		},
		{
			reason: "a resolved alert carries endsAt",
			alert:  Alert{Status: "resolved", Fingerprint: "ab", Labels: map[string]string{"alertname": "A", "namespace": "shop"}, EndsAt: ends},
			want: incident("am-ab", "shop", map[string]string{"alertname": "A", "namespace": "shop"}, func(inc *riposte.Incident) {
				inc.Spec.Status = riposte.AlertResolved
				inc.Spec.EndsAt = &endsAt
			}),
		},
		{
			reason: "a resolved alert without endsAt leaves it unset",
			alert:  Alert{Status: "resolved", Fingerprint: "ab", Labels: map[string]string{"alertname": "A"}},
			want: incident("am-ab", defaultNS, map[string]string{"alertname": "A"}, func(inc *riposte.Incident) {
				inc.Spec.Status = riposte.AlertResolved
			}),
		},
		{
			reason: "a firing alert's endsAt is Alertmanager's guess, not stored",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A"}, EndsAt: ends},
			want:   incident("am-ab", defaultNS, map[string]string{"alertname": "A"}, nil),
		},
		{
			reason: "an alertname that is not a label value is sanitised for the label, kept as is in the spec",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "Pod shell (exec)!"}},
			want: incident("am-ab", defaultNS, map[string]string{"alertname": "Pod shell (exec)!"}, func(inc *riposte.Incident) {
				inc.Spec.AlertName = "Pod shell (exec)!"
				inc.Labels["riposte.dev/alertname"] = "Pod-shell--exec"
			}),
		},
		{
			reason: "an alertname with nothing usable for a label value omits the label",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "¡¿!"}},
			want: incident("am-ab", defaultNS, map[string]string{"alertname": "¡¿!"}, func(inc *riposte.Incident) {
				inc.Spec.AlertName = "¡¿!"
				delete(inc.Labels, "riposte.dev/alertname")
			}),
		},
		{
			reason: "a long generatorURL is cut to 2048 bytes without splitting a character",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A"}, GeneratorURL: strings.Repeat("a", 2047) + "é"},
			want: incident("am-ab", defaultNS, map[string]string{"alertname": "A"}, func(inc *riposte.Incident) {
				inc.Spec.GeneratorURL = strings.Repeat("a", 2047)
			}),
		},
		{
			// Falcosidekick's labels (falcosecurity/falcosidekick, outputs/alertmanager.go).
			reason: "an alert without alertname is named after the label its source names it by",
			alert:  Alert{Status: "firing", Fingerprint: "ab", Labels: falcoLabels},
			want: incident("am-ab", "shop", falcoLabels, func(inc *riposte.Incident) {
				inc.Spec.AlertName, inc.Spec.Severity = "Terminal shell in container", "information"
				inc.Labels["riposte.dev/alertname"] = "Terminal-shell-in-container"
			}),
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := IncidentFor(tc.alert, defaultNS)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("IncidentFor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAlertName(t *testing.T) {
	cases := []struct {
		reason   string
		labels   map[string]string
		want     string
		wantFrom string
	}{
		// kube-prometheus' rule (prometheus-operator/kube-prometheus,
		// manifests/kubernetesControlPlane-prometheusRule.yaml) as
		// Prometheus labels it.
		{
			reason: "Prometheus' alertname", labels: map[string]string{"alertname": "KubePodCrashLooping", "severity": "warning", "namespace": "shop", "pod": "web-1", "container": "web"},
			want: "KubePodCrashLooping", wantFrom: "alertname",
		},
		// Falcosidekick's labels (falcosecurity/falcosidekick, outputs/alertmanager.go).
		{
			reason: "Falco's rule through Falcosidekick",
			labels: map[string]string{"rule": "Terminal shell in container", "priority": "Notice", "severity": "information", "source": "falco", "eventsource": "syscall", "k8s_ns_name": "shop", "k8s_pod_name": "web-1"},
			want:   "Terminal shell in container", wantFrom: "rule",
		},
		// KubeArmor's sidekick copies the alert's fields (kubearmor/sidekick, outputs/alertmanager_test.go).
		{
			reason: "KubeArmor's policy through its sidekick",
			labels: map[string]string{"PolicyName": "DefaultPosture", "Severity": "Medium", "NamespaceName": "wordpress-mysql", "PodName": "wordpress-7c966b5d85-xvsrl", "Operation": "File", "source": "Kubearmor"},
			want:   "DefaultPosture", wantFrom: "PolicyName",
		},
		{reason: "alertname wins over rule", labels: map[string]string{"alertname": "A", "rule": "R"}, want: "A", wantFrom: "alertname"},
		{reason: "a blank alertname is not a name", labels: map[string]string{"alertname": " ", "rule": "R"}, want: "R", wantFrom: "rule"},
		{reason: "no name anywhere: the fallback", labels: map[string]string{"severity": "critical"}, want: FallbackAlertName},
		{reason: "no labels: the fallback", want: FallbackAlertName},
		{reason: "a name longer than spec.alertName holds is cut", labels: map[string]string{"rule": strings.Repeat("r", 300)}, want: strings.Repeat("r", 253), wantFrom: "rule"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			name, from := AlertName(tc.labels)
			if diff := cmp.Diff([]string{tc.want, tc.wantFrom}, []string{name, from}); diff != "" {
				t.Errorf("AlertName (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIncidentName(t *testing.T) {
	cases := []struct {
		reason      string
		fingerprint string
		// want is the exact name; empty means a hashed one.
		want string
	}{
		{reason: "Alertmanager's own fingerprint is the name", fingerprint: "a1b2c3d4e5f60718", want: "am-a1b2c3d4e5f60718"},
		{reason: "a short lowercase fingerprint is the name", fingerprint: "c0ffee01", want: "am-c0ffee01"},
		{reason: "32 lowercase letters and digits are still the name", fingerprint: strings.Repeat("z", 32), want: "am-" + strings.Repeat("z", 32)},
		{reason: "capitals are hashed, not lowercased", fingerprint: "A1B2C3D4E5F60718"},
		{reason: "a long fingerprint is hashed", fingerprint: strings.Repeat("a", 33)},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := IncidentName(tc.fingerprint)
			hashed := strings.HasPrefix(got, "am-h-") && len(got) == len("am-h-")+32
			if tc.want == "" && !hashed || tc.want != "" && got != tc.want {
				t.Errorf("IncidentName(%q) = %q, want %q (empty: a hashed name)", tc.fingerprint, got, tc.want)
			}
			if errs := validation.IsDNS1123Label(got); len(errs) != 0 {
				t.Errorf("IncidentName(%q) = %q is not a valid name: %v", tc.fingerprint, got, errs)
			}
			if IncidentName(tc.fingerprint) != got {
				t.Errorf("IncidentName(%q) is not stable", tc.fingerprint)
			}
		})
	}

	// Fingerprints that differ only in case, or that a plain name could
	// spell, never share a name.
	seen := map[string]string{}
	for _, fp := range []string{"abc", "ABC", "Abc", "aBc", "abC", "a1b2c3d4e5f60718", "A1B2C3D4E5F60718", "h", "H", strings.Repeat("a", 32), strings.Repeat("a", 33), strings.Repeat("A", 64)} {
		name := IncidentName(fp)
		if other, taken := seen[name]; taken {
			t.Errorf("fingerprints %q and %q share the name %s", other, fp, name)
		}
		seen[name] = fp
	}
}

func TestLabelValue(t *testing.T) {
	cases := []struct {
		reason string
		in     string
		want   string
	}{
		{reason: "a valid value is kept", in: "KubePodCrashLooping", want: "KubePodCrashLooping"},
		{reason: "spaces and punctuation become dashes", in: "a b/c", want: "a-b-c"},
		{reason: "ends must be alphanumeric", in: "-_a.b_-", want: "a.b"},
		{reason: "too long is cut to 63", in: strings.Repeat("x", 100), want: strings.Repeat("x", 63)},
		{reason: "cut then trimmed", in: strings.Repeat("x", 62) + "-yy", want: strings.Repeat("x", 62)},
		{reason: "nothing usable", in: "***", want: ""},
		{reason: "empty", in: "", want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := labelValue(tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("labelValue(%q) (-want +got):\n%s", tc.in, diff)
			}
			if errs := validation.IsValidLabelValue(got); len(errs) != 0 {
				t.Errorf("labelValue(%q) = %q is not a valid label value: %v", tc.in, got, errs)
			}
		})
	}
}

// The Incident lives where its alert's target lives, whichever tool sent
// it. The label sets are the ones real tools send; where each comes from is
// written beside the same sets in internal/enrich/target_test.go
// (kube-state-metrics' docs/metrics, kube-prometheus' rules and
// ServiceMonitors, kube-prometheus-stack's charts, prometheus-operator's
// promcfg.go, Prometheus' honor_labels, falcosecurity/rules and
// falcosidekick's outputs/alertmanager.go).
func TestIncidentNamespaceFromRealLabelSets(t *testing.T) {
	const defaultNS = "riposte-system"
	ksmScrape := func(labels map[string]string) map[string]string {
		for k, v := range map[string]string{"namespace": "monitoring", "pod": "kube-state-metrics-7d9c8f6b5-q2w4e", "container": "kube-state-metrics",
			"service": "kube-state-metrics", "endpoint": "http", "job": "kube-state-metrics", "instance": "10.244.1.17:8080"} {
			if _, set := labels[k]; !set {
				labels[k] = v
			}
		}
		return labels
	}
	cases := []struct {
		reason string
		labels map[string]string
		want   string
	}{
		{reason: "kube-state-metrics without honorLabels, a pod: the pod's namespace, not the exporter's",
			labels: ksmScrape(map[string]string{"alertname": "KubePodCrashLooping", "reason": "CrashLoopBackOff", "uid": "5a3c0d2e-8f1b-4c7a-9e61-0b2d4f6a8c10",
				"exported_namespace": "shop", "exported_pod": "web-5d4f-x7k2p", "exported_container": "app"}),
			want: "shop"},
		{reason: "kube-state-metrics without honorLabels, a deployment",
			labels: ksmScrape(map[string]string{"alertname": "KubeDeploymentReplicasMismatch", "exported_namespace": "shop", "deployment": "web"}),
			want:   "shop"},
		{reason: "kube-state-metrics without honorLabels, a node: cluster-scoped, so the default namespace, not the exporter's",
			labels: ksmScrape(map[string]string{"alertname": "KubeNodeNotReady", "node": "worker-1", "condition": "Ready", "status": "true"}),
			want:   defaultNS},
		{reason: "kube-prometheus, a failed Job",
			labels: map[string]string{"alertname": "KubeJobFailed", "namespace": "ops", "job_name": "nightly-29", "condition": "true",
				"container": "kube-rbac-proxy-main", "instance": "10.244.1.17:8443", "job": "kube-state-metrics"},
			want: "ops"},
		{reason: "kube-prometheus-stack, a deployment: honorLabels kept the deployment's namespace",
			labels: map[string]string{"alertname": "KubeDeploymentReplicasMismatch", "namespace": "shop", "deployment": "web",
				"pod": "kube-prometheus-stack-kube-state-metrics-6d8f7c9b4-m5n6p", "container": "kube-state-metrics",
				"service": "kube-prometheus-stack-kube-state-metrics", "endpoint": "http", "job": "kube-state-metrics", "instance": "10.244.1.17:8080"},
			want: "shop"},
		{reason: "node-exporter: the node is cluster-scoped; the exporter's namespace is not the alert's",
			labels: map[string]string{"alertname": "NodeFilesystemSpaceFillingUp", "device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/",
				"instance": "10.0.0.5:9100", "job": "node-exporter", "namespace": "monitoring",
				"pod": "kube-prometheus-stack-prometheus-node-exporter-7xk2d", "container": "node-exporter",
				"service": "kube-prometheus-stack-prometheus-node-exporter", "endpoint": "http-metrics"},
			want: defaultNS},
		{reason: "Falco through Falcosidekick names the namespace k8s_ns_name",
			labels: map[string]string{"source": "falco", "rule": "Terminal shell in container", "eventsource": "syscall", "hostname": "worker-1",
				"priority": "Notice", "severity": "information", "proc_cmdline": "bash", "container_id": "3ad7b26ded6d", "container_name": "app",
				"k8s_ns_name": "shop", "k8s_pod_name": "web-5d4f-x7k2p"},
			want: "shop"},
		{reason: "an application's own alert: its namespace label",
			labels: map[string]string{"alertname": "HighErrorRate", "namespace": "shop", "pod": "web-5d4f-x7k2p", "container": "app",
				"service": "web", "endpoint": "http", "job": "web", "instance": "10.244.2.9:8080"},
			want: "shop"},
		{reason: "a namespace but no target: still the alert's namespace",
			labels: map[string]string{"alertname": "KubeQuotaExceeded", "namespace": "shop", "resourcequota": "compute", "resource": "cpu",
				"job": "kube-state-metrics", "container": "kube-rbac-proxy-main", "instance": "10.244.1.17:8443"},
			want: "shop"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := IncidentFor(Alert{Status: "firing", Fingerprint: "ab", Labels: tc.labels}, defaultNS)
			if got.Namespace != tc.want {
				t.Errorf("IncidentFor(%v).Namespace = %q, want %q", tc.labels, got.Namespace, tc.want)
			}
		})
	}
}

// Each episode of an alert has its own incident: every notification of one
// episode (Alertmanager keeps its startsAt) lands on the same name, no two
// episodes or fingerprints share one, and none is a first episode's name.
func TestEpisodeName(t *testing.T) {
	starts := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	seen := map[string]string{}
	for _, fp := range []string{"a1b2c3d4e5f60718", "h", "H", strings.Repeat("z", 32), strings.Repeat("A", 64)} {
		seen[IncidentName(fp)] = fp + " (first episode)"
		for i, at := range []time.Time{starts, starts.Add(time.Second), starts.Add(time.Hour)} {
			name := EpisodeName(fp, at)
			if errs := validation.IsDNS1123Label(name); len(errs) != 0 {
				t.Errorf("EpisodeName(%q, %s) = %q is not a valid name: %v", fp, at, name, errs)
			}
			if !strings.HasPrefix(name, IncidentName(fp)+"-") {
				t.Errorf("EpisodeName(%q, %s) = %q does not start with the first episode's name", fp, at, name)
			}
			if EpisodeName(fp, at.Add(300*time.Millisecond).In(time.FixedZone("CET", 3600))) != name {
				t.Errorf("EpisodeName(%q) differs for the same second in another zone: an episode's notifications would split", fp)
			}
			if other, taken := seen[name]; taken {
				t.Errorf("%s and %s episode %d share the name %s", other, fp, i, name)
			}
			seen[name] = fmt.Sprintf("%s episode %d", fp, i)
		}
	}
}
