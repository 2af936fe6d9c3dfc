package enrich

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// testScheme knows the built-in kinds and Riposte's, for fake readers.
func testScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = riposte.AddToScheme(scheme)
	return scheme
}

// Which incidents are related is a function of what the reader holds; a
// fake reader is enough here. Alerts posted together are tested against the
// real API server in controllers/ (TestConcurrentIsolationsOfOnePodKeepEveryHold).
func TestRelatedNamesPlacesIncidentsNotEnrichedYet(t *testing.T) {
	scheme := testScheme()
	now := time.Now()
	owned := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d4f", Controller: ptr.To(true)}}}, Spec: corev1.PodSpec{NodeName: node}}
	}
	// kube-state-metrics' kube_pod_* labels (namespace, pod), as in
	// TestTargetFromIncident.
	about := func(name string, labels map[string]string, ic *riposte.IncidentContext) *riposte.Incident {
		return &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", CreationTimestamp: metav1.NewTime(now)},
			Spec:   riposte.IncidentSpec{Source: riposte.SourceAlertmanager, Labels: labels},
			Status: riposte.IncidentStatus{Context: ic}}
	}
	pod := func(name string) map[string]string { return map[string]string{"namespace": "shop", "pod": name} }
	objects := []client.Object{
		owned("web-5d4f-a", "node-a"), owned("web-5d4f-b", "node-b"),
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "shop"}, Spec: corev1.PodSpec{NodeName: "node-c"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cache-0", Namespace: "shop"}, Spec: corev1.PodSpec{NodeName: "node-a"}},
		about("same-pod", pod("web-5d4f-a"), nil),
		about("same-replicaset", pod("web-5d4f-b"), nil),
		about("same-node", pod("cache-0"), nil),
		about("elsewhere", pod("db-0"), nil),
		about("gone-pod", pod("web-5d4f-zzz"), nil),
		about("no-target", map[string]string{"alertname": "Watchdog"}, nil),
		// node-exporter's series as kube-prometheus scrapes it, instance
		// being the node's address (TestTargetFromRealLabelSets).
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.5"}}}},
		about("node-exporter-by-address", map[string]string{"job": "node-exporter", "container": "node-exporter", "namespace": "monitoring",
			"pod": "node-exporter-x7k2p", "instance": "10.0.0.5:9100", "service": "node-exporter", "endpoint": "https"}, nil),
		about("enriched-same-node", nil, &riposte.IncidentContext{Target: &riposte.ObjectReference{Kind: "Pod", Name: "x"}, Node: "node-a"}),
		about("enriched-elsewhere", nil, &riposte.IncidentContext{Target: &riposte.ObjectReference{Kind: "Pod", Name: "y"}, Node: "node-z"}),
	}
	e := &Enricher{Reader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects...).
		WithIndex(&corev1.Node{}, NodeAddressIndex, NodeAddresses).
		WithIndex(&riposte.Incident{}, IncidentPlaceIndex, incidentPlaces).Build()}
	self := about("self", pod("web-5d4f-a"), nil)
	ic := &riposte.IncidentContext{Target: &riposte.ObjectReference{Kind: "Pod", Name: "web-5d4f-a"}, Node: "node-a",
		OwnerChain: []riposte.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d4f"}}}
	got, err := e.relatedNames(context.Background(), self, now, ic)
	if err != nil {
		t.Fatal(err)
	}
	// The ReplicaSet is the top: no Deployment exists in the fake reader.
	want := []string{"enriched-same-node", "node-exporter-by-address", "same-node", "same-pod", "same-replicaset"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("related (-want +got):\n%s", diff)
	}
}
