package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

const waitFor = 20 * time.Second

var nsCounter atomic.Int32

// newNamespace creates a namespace of the test's own.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	remediator(t, name, "riposte-action-isolate", "riposte-action-pods", "riposte-action-workloads")
	return name
}

// remediatorAccount is the service account test playbooks run as.
const remediatorAccount = testenv.RemediatorAccount

// remediator creates the playbooks' account in ns and binds the given
// action ClusterRoles to it there.
func remediator(t *testing.T, ns string, clusterRoles ...string) {
	t.Helper()
	if err := env.Remediator(context.Background(), ns, clusterRoles...); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	c := k8sClient
	if _, ok := obj.(*riposte.Incident); ok {
		c = intakeClient // only Riposte itself opens alert incidents
	}
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// deployedPod creates a Deployment, its ReplicaSet and one pod owned by it,
// as the controllers would (no controllers run in envtest).
func deployedPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
			},
		},
	}
	mustCreate(t, dep)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-5d4f", Namespace: ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "Deployment", dep.Name, dep.UID)}},
		Spec: appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: dep.Spec.Template},
	}
	mustCreate(t, rs)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-5d4f-x7k2p", Namespace: ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID)}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "default",
			NodeName:           "node-a",
			InitContainers:     []corev1.Container{{Name: "init", Image: "busybox:1.36"}},
			Containers:         []corev1.Container{{Name: "app", Image: "nginx:1.27"}},
		},
	}
	mustCreate(t, pod)
	return pod
}

func controllerRef(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}
}

// isolatePlaybook answers alertName with one IsolatePod step.
func isolatePlaybook(ns, name, alertName string, auto *riposte.AutoApprove) *riposte.Playbook {
	return &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers: riposte.Triggers{Alerts: []riposte.AlertTrigger{{
				AlertNames: []string{alertName},
				Severities: []string{"critical"},
			}}},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
			Approval:           riposte.ApprovalPolicy{AutoApprove: auto},
			ServiceAccountName: remediatorAccount,
		},
	}
}

// alertIncident is the Incident intake stores for an alert about a pod.
func alertIncident(ns, name, alertName, podNamespace, podName string) *riposte.Incident {
	return &riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: riposte.IncidentSpec{
			Source: riposte.SourceAlertmanager, AlertName: alertName, Fingerprint: "0123456789abcdef",
			Severity: "critical", Status: riposte.AlertFiring,
			Labels: map[string]string{"alertname": alertName, "severity": "critical",
				"namespace": podNamespace, "pod": podName},
			StartsAt: &metav1.Time{Time: time.Now().Add(-time.Minute).Truncate(time.Second)},
		},
	}
}

func getIncident(ctx context.Context, ns, name string) (*riposte.Incident, error) {
	inc := &riposte.Incident{}
	return inc, k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, inc)
}

// waitForPhase waits until the incident reaches phase and returns it.
func waitForPhase(t *testing.T, ns, name string, phase riposte.IncidentPhase) *riposte.Incident {
	t.Helper()
	var inc *riposte.Incident
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		var err error
		if inc, err = getIncident(ctx, ns, name); err != nil {
			return err
		}
		if inc.Status.Phase != phase {
			return fmt.Errorf("phase %q, want %q; conditions: %s", inc.Status.Phase, phase, conditionSummary(inc.Status.Conditions))
		}
		return nil
	})
	return inc
}

func conditionSummary(conds []metav1.Condition) string {
	var parts []string
	for _, c := range conds {
		parts = append(parts, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(parts, "; ")
}

func condition(t *testing.T, conds []metav1.Condition, condType string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(conds, condType)
	if c == nil {
		t.Fatalf("no %s condition in %s", condType, conditionSummary(conds))
	}
	return *c
}

// resolveAlert records that an alert resolved, as intake does on
// Alertmanager's resolved notification: as Riposte, the only identity that
// may change what an alert's incident observed.
func resolveAlert(t *testing.T, ns, name string, endsAt *metav1.Time) {
	t.Helper()
	ctx := context.Background()
	inc := &riposte.Incident{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, inc); err != nil {
		t.Fatal(err)
	}
	base := inc.DeepCopy()
	inc.Spec.Status, inc.Spec.EndsAt = riposte.AlertResolved, endsAt
	if err := intakeClient.Patch(ctx, inc, client.MergeFrom(base)); err != nil {
		t.Fatalf("marking alert %s/%s resolved: %v", ns, name, err)
	}
}
