package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/intake"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// postAlert sends one firing alert with the labels to intake as
// Alertmanager would, and returns the name of its incident.
func postAlert(t *testing.T, fingerprint string, labels map[string]string) string {
	t.Helper()
	srv := intakeServer(t)
	var pairs []string
	for k, v := range labels {
		pairs = append(pairs, fmt.Sprintf("%q:%q", k, v))
	}
	body := fmt.Sprintf(`{"version":"4","status":"firing","alerts":[{"status":"firing","fingerprint":%q,"labels":{%s},"startsAt":"2026-11-26T10:00:00Z"}]}`,
		fingerprint, strings.Join(pairs, ","))
	if code, answer := postBody(t, srv, body); code != http.StatusOK {
		t.Fatalf("intake answered %d: %s", code, answer)
	}
	return intake.IncidentName(fingerprint)
}

// kube-state-metrics scraped without honorLabels (its chart's default)
// reports a crash-looping pod: the plain namespace and pod are the
// exporter's, the exported_ ones the pod's (label sets as in
// internal/enrich/target_test.go). The incident is stored in the pod's
// namespace and answered there by the team's own playbook, about the pod
// and its container, not the exporter.
func TestKubeStateMetricsAlertLandsWithItsTarget(t *testing.T) {
	ns, monitoring := newNamespace(t), newNamespace(t)
	pod := deployedPod(t, ns, "web")
	exporter := deployedPod(t, monitoring, "kube-state-metrics")
	mustCreate(t, isolatePlaybook(ns, "isolate", "KubePodCrashLooping", nil))

	name := postAlert(t, "c0ffee21", map[string]string{"alertname": "KubePodCrashLooping", "severity": "critical",
		"reason": "CrashLoopBackOff", "uid": string(pod.UID),
		"exported_namespace": ns, "exported_pod": pod.Name, "exported_container": "app",
		"namespace": monitoring, "pod": exporter.Name, "container": "kube-state-metrics",
		"service": "kube-state-metrics", "endpoint": "http", "job": "kube-state-metrics", "instance": "10.244.1.17:8080"})

	inc := waitForPhase(t, ns, name, riposte.PhaseAwaitingApproval)
	if diff := cmp.Diff(&riposte.NamespacedName{Namespace: ns, Name: "isolate"}, inc.Status.Playbook); diff != "" {
		t.Errorf("answered by (-want +got):\n%s", diff)
	}
	c := inc.Status.Context
	if c.Target == nil || c.Target.Kind != "Pod" || c.Target.Namespace != ns || c.Target.Name != pod.Name || c.Container != "app" {
		t.Errorf("target %+v container %q, want Pod %s/%s container app", c.Target, c.Container, ns, pod.Name)
	}
	if _, err := getIncident(context.Background(), monitoring, name); err == nil {
		t.Errorf("the incident was also stored in the exporter's namespace %s", monitoring)
	}
}

// node-exporter, scraped as kube-prometheus-stack does (no relabelling:
// instance is the node's address and port, namespace and pod the
// exporter's), reports a filling filesystem. The incident is about the
// Node that has that address, kept in Riposte's namespace because a node is
// cluster-scoped, and never about the exporter's pod.
func TestNodeExporterAlertTargetsTheNode(t *testing.T) {
	ctx := context.Background()
	monitoring := newNamespace(t)
	exporter := deployedPod(t, monitoring, "kube-prometheus-stack-prometheus-node-exporter")
	n := nsCounter.Add(1)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("worker-%d", n)}}
	mustCreate(t, node)
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), node) })
	address := fmt.Sprintf("10.77.%d.5", n%250)
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: address}, {Type: corev1.NodeHostName, Address: node.Name}}
	if err := k8sClient.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}

	fingerprint := fmt.Sprintf("c0ffee%d", 30+n)
	name := postAlert(t, fingerprint, map[string]string{"alertname": "NodeFilesystemSpaceFillingUp", "severity": "warning",
		"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/", "instance": address + ":9100", "job": "node-exporter",
		"namespace": monitoring, "pod": exporter.Name, "container": "node-exporter",
		"service": "kube-prometheus-stack-prometheus-node-exporter", "endpoint": "http-metrics"})

	var inc *riposte.Incident
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		var err error
		if inc, err = getIncident(ctx, operatorNamespace, name); err != nil {
			return err
		}
		if inc.Status.Context == nil || inc.Status.Context.Target == nil {
			return fmt.Errorf("not enriched yet: %s", conditionSummary(inc.Status.Conditions))
		}
		return nil
	})
	want := &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: string(node.UID)}
	if diff := cmp.Diff(want, inc.Status.Context.Target); diff != "" {
		t.Errorf("target (-want +got):\n%s", diff)
	}
	if c := condition(t, inc.Status.Conditions, riposte.IncidentEnriched); c.Reason != riposte.ReasonTargetResolved {
		t.Errorf("Enriched = %s %q", c.Reason, c.Message)
	}
	if inc.Status.Context.Node != node.Name || inc.Status.Context.Container != "" {
		t.Errorf("node %q container %q, want %s and none", inc.Status.Context.Node, inc.Status.Context.Container, node.Name)
	}
}
