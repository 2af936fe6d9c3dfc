package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// With --budget-max-workload-fraction=0.5, Riposte isolates at most half of
// one workload's pods at once: the third isolation of four pods waits, says
// why, and runs once an earlier one is undone.
func TestWorkloadBudgetHoldsIsolation(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartForTest(t)
	c := env.Client
	const ns = "shop"
	env.TeamNamespace(t, ns, "riposte-action-isolate")
	labels := map[string]string{"app": "web"}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-5d4f", Namespace: ns},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](4), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}}}
	mustCreate(t, c, rs)
	for i := 0; i < 4; i++ {
		mustCreate(t, c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i), Namespace: ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}})
	}
	mustCreate(t, c, &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Name: "isolate", Namespace: ns},
		Spec: riposte.PlaybookSpec{Triggers: riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"Shell"}}}},
			ServiceAccountName: testenv.RemediatorAccount, Approval: riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			Steps: []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}}}})
	env.StartManager(t, intakeToken, "--budget-max-workload-fraction=0.5")
	intake, err := env.IntakeClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	open := func(i int) *riposte.Incident {
		inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("am-%d", i), Namespace: ns},
			Spec: riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: "Shell", Fingerprint: fmt.Sprint(i),
				Labels: map[string]string{"alertname": "Shell", "namespace": ns, "pod": fmt.Sprintf("web-%d", i)}}}
		if err := intake.Create(ctx, inc); err != nil {
			t.Fatal(err)
		}
		return inc
	}
	wait := func(inc *riposte.Incident, what string, ok func(*riposte.Incident) bool) {
		testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(inc), inc); err != nil {
				return err
			}
			if !ok(inc) {
				return fmt.Errorf("%s is %s, want %s; %+v", inc.Name, inc.Status.Phase, what, inc.Status.Conditions)
			}
			return nil
		})
	}
	remediated := func(i *riposte.Incident) bool { return i.Status.Phase == riposte.PhaseRemediated }
	first, second := open(0), open(1)
	wait(first, "Remediated", remediated)
	wait(second, "Remediated", remediated)
	third := open(2)
	wait(third, "held by the budget", func(i *riposte.Incident) bool {
		c := meta.FindStatusCondition(i.Status.Conditions, riposte.IncidentHeld)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == riposte.ReasonBudgetExhausted &&
			strings.Contains(c.Message, "3 of the 4 pods of ReplicaSet/shop/web-5d4f")
	})
	var p corev1.Pod
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-2"}, &p); err != nil || p.Labels["riposte.dev/quarantine"] != "" {
		t.Fatalf("web-2 was isolated over the budget: %v %v", err, p.Labels)
	}
	// An earlier isolation undone frees room under the budget.
	// As kubectl edit would: read again when the manager wrote in between
	// (a newly enriched incident updates the related incidents it lists).
	admin := adminName(t, c)
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		review := &riposte.Incident{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(first), review); err != nil {
			return err
		}
		review.Spec.Undo = &riposte.UndoRequest{RequestedBy: admin, Reason: "false positive"}
		return c.Update(ctx, review)
	}); err != nil {
		t.Fatal(err)
	}
	wait(third, "Remediated", remediated)
}

// adminName is who the test's admin client is, as the API server says.
func adminName(t *testing.T, c client.Client) string {
	t.Helper()
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(context.Background(), review); err != nil {
		t.Fatal(err)
	}
	return review.Status.UserInfo.Username
}
