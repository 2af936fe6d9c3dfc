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
		{reason: "a Manual incident's target counts", spec: riposte.IncidentSpec{Source: riposte.SourceManual,
			Labels: map[string]string{"namespace": "other-team", "pod": "payments"},
			Target: &riposte.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "db-0"}},
			want: &riposte.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "db-0"}},
		{reason: "a pod without a namespace names nothing", spec: riposte.IncidentSpec{Labels: map[string]string{"pod": "web-1"}}},
		{reason: "an invalid namespace label is ignored", spec: riposte.IncidentSpec{Labels: map[string]string{"namespace": "Not_A_Namespace", "pod": "x"}}},
		{reason: "an explicit target wins over labels", spec: riposte.IncidentSpec{
			Labels: map[string]string{"namespace": "shop", "pod": "web-1"},
			Target: &riposte.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "db-0"}},
			want: &riposte.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "db-0"}},
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
		labels map[string]string
		want   string
	}{
		{map[string]string{"container": "app"}, "app"},
		{map[string]string{"container": "kube-state-metrics", "exported_container": "app"}, "app"},
		{map[string]string{"k8s_container_name": "app"}, "app"},
		{map[string]string{}, ""},
	} {
		if got := ContainerFromIncident(&riposte.IncidentSpec{Labels: tc.labels}); got != tc.want {
			t.Errorf("ContainerFromIncident(%v) = %q, want %q", tc.labels, got, tc.want)
		}
	}
}
