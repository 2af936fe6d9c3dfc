package retention_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/controllers"
	"github.com/riposte-dev/riposte/internal/testenv"
)

const (
	operatorNamespace = "riposte-system"
	// keep is the retention the manager runs with: short, so the test sees
	// incidents expire.
	keep = 3 * time.Second
)

// Retention deletes a closed incident once it has been closed for the
// retention period, and never an open one, nor one whose remediation is
// still in place (until what it changed is gone). The deletion of one that
// did something writes its record out first. Only Riposte writes the time
// retention counts from.
func TestRetentionDeletesOnlyWhatIsClosedAndHoldsNothing(t *testing.T) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	ctx := context.Background()
	env := testenv.StartForTest(t)
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		t.Fatal(err)
	}
	const ns = "shop"
	env.TeamNamespace(t, ns, "riposte-action-isolate")
	stop, err := env.RunManager(func(cfg *rest.Config) (ctrl.Manager, error) {
		return controllers.NewManager(cfg, controllers.ManagerOptions{
			Options: controllers.Options{
				OperatorNamespace:       operatorNamespace,
				ProtectedNamespaces:     []string{operatorNamespace},
				MaxConcurrentReconciles: 2,
				IncidentRetention:       keep,
			},
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
	mustCreate(t, c, pod)
	mustCreate(t, c, &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Name: "isolate", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"Shell"}}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
		}})
	mustCreate(t, c, &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Name: "ask", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"Miner"}}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
		}})
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		for _, name := range []string{"isolate", "ask"} {
			pb := &riposte.Playbook{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pb); err != nil {
				return err
			}
			if pb.Status.ObservedGeneration != pb.Generation {
				return fmt.Errorf("playbook %s not yet read", name)
			}
		}
		return nil
	})

	intake, err := env.IntakeClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	open := func(name, alert string, status riposte.AlertStatus) *riposte.Incident {
		inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: alert, Fingerprint: name, Status: status,
				Labels: map[string]string{"alertname": alert, "namespace": ns, "pod": pod.Name}}}
		if err := intake.Create(ctx, inc); err != nil {
			t.Fatal(err)
		}
		return inc
	}
	// Resolved before anything matched it: closed, holding nothing.
	resolved := open("am-gone", "Unknown", riposte.AlertResolved)
	// Waiting for people: open, whatever its age.
	waiting := open("am-waits", "Miner", riposte.AlertFiring)
	// Remediated, then resolved: closed, but the pod is still isolated.
	isolated := open("am-shell", "Shell", riposte.AlertFiring)

	closed := waitFor(t, c, resolved, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseResolved })
	if closed.Status.ClosedAt == nil {
		t.Fatalf("a Resolved incident has no closedAt: %+v", closed.Status)
	}
	waitFor(t, c, isolated, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseRemediated })
	waitFor(t, c, waiting, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseAwaitingApproval })

	// Only Riposte writes status: a namespace editor and an approver (who
	// may patch incidents) cannot backdate closedAt to have one deleted.
	for _, f := range []string{"approver_role.yaml", "playbook_editor_role.yaml"} {
		if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "rbac", f)); err != nil {
			t.Fatal(err)
		}
	}
	for _, role := range []string{"riposte-editor", "riposte-approver"} {
		user := "mallory-" + role
		mustCreate(t, c, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: user}}})
		mallory, err := env.UserClient(user)
		if err != nil {
			t.Fatal(err)
		}
		forged := &riposte.Incident{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(waiting), forged); err != nil {
			t.Fatal(err)
		}
		long := metav1.NewTime(time.Now().Add(-24 * time.Hour))
		forged.Status.Phase, forged.Status.ClosedAt = riposte.PhaseRejected, &long
		err = mallory.Status().Update(ctx, forged)
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s backdating closedAt: %v, want Forbidden", role, err)
		} else {
			t.Logf("%s backdating closedAt is refused: %v", role, err)
		}
		if err := mallory.Delete(ctx, forged); !apierrors.IsForbidden(err) {
			t.Errorf("%s deleting an incident: %v, want Forbidden", role, err)
		}
	}

	// The closed one goes once its time is up.
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		err := c.Get(ctx, client.ObjectKeyFromObject(resolved), &riposte.Incident{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("closed at %s, still there (%v)", closed.Status.ClosedAt, err)
	})

	// The remediated one closes when its alert resolves, and stays: the pod
	// is still isolated and the incident is what undoes it.
	resolve := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"status":"resolved"}}`))
	if err := intake.Patch(ctx, isolated.DeepCopy(), resolve); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, isolated, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseResolved })
	testenv.Consistently(t, 2*keep, func(ctx context.Context) error {
		for _, inc := range []*riposte.Incident{isolated, waiting} {
			got := &riposte.Incident{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(inc), got); err != nil {
				return fmt.Errorf("%s: %w", inc.Name, err)
			}
			if !got.DeletionTimestamp.IsZero() {
				return fmt.Errorf("%s (%s) is being deleted", inc.Name, got.Status.Phase)
			}
		}
		return nil
	})

	// Once what it changed is gone, it goes too, its record written out.
	if err := c.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		err := c.Get(ctx, client.ObjectKeyFromObject(isolated), &riposte.Incident{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there once its pod is gone (%v)", err)
	})
	testenv.Eventually(t, 10*time.Second, func(ctx context.Context) error {
		var events eventsv1.EventList
		if err := c.List(ctx, &events, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Reason == "RecordKept" && e.Regarding.Name == isolated.Name {
				t.Logf("record kept: %s", e.Note)
				return nil
			}
		}
		return fmt.Errorf("no RecordKept event for %s among %d events", isolated.Name, len(events.Items))
	})
	// The pod's deletion withdrew the plan that waited for people: the
	// incident is Cancelled, but its alert still fires, so it stays (deleted,
	// the next resend would store it anew and ask again).
	waitFor(t, c, waiting, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseCancelled })
	testenv.Consistently(t, 2*keep, func(ctx context.Context) error {
		return c.Get(ctx, client.ObjectKeyFromObject(waiting), &riposte.Incident{})
	})
	// Once its alert resolves, it goes.
	if err := intake.Patch(ctx, waiting.DeepCopy(), resolve); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		got := &riposte.Incident{}
		err := c.Get(ctx, client.ObjectKeyFromObject(waiting), got)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("%s is %s, still there (%v)", waiting.Name, got.Status.Phase, err)
	})
}

func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func waitFor(t *testing.T, c client.Client, inc *riposte.Incident, done func(*riposte.Incident) bool) *riposte.Incident {
	t.Helper()
	got := &riposte.Incident{}
	testenv.Eventually(t, 30*time.Second, func(ctx context.Context) error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(inc), got); err != nil {
			return err
		}
		if !done(got) {
			return fmt.Errorf("%s is %s: %v", inc.Name, got.Status.Phase, got.Status.Conditions)
		}
		return nil
	})
	return got
}
