package drift_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/controllers"
	"github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/guard"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// The drift tests run on a control plane of their own: the policy pack is
// cluster-wide, and its incidents would land in every other test's namespace.

const (
	operatorNamespace = testenv.OperatorNamespace
	waitFor           = 20 * time.Second
	// resync is short so the restart test sees a full re-evaluation.
	resync = 2 * time.Second
)

var (
	env       *testenv.Env
	k8sClient client.Client
	approver  client.Client
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(1))))
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8sClient = env.Client
	ctx := context.Background()
	if err := setUp(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop, err := startManager()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	stop()
	return code
}

// setUp installs what an install has: the manager's RBAC, the action roles,
// and a person allowed to approve.
func setUp(ctx context.Context) error {
	if _, err := env.ManagerConfig(ctx); err != nil {
		return err
	}
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "rbac", "approver_role.yaml")); err != nil {
		return err
	}
	if err := k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sam-approver"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "riposte-approver"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "sam"}},
	}); err != nil {
		return err
	}
	var err error
	approver, err = env.UserClient("sam", "security-team")
	return err
}

// managerRunning is the stop function of the manager now running.
var managerRunning atomic.Pointer[func()]

// startManager runs Riposte's manager in this process until the returned
// function is called.
func startManager() (func(), error) { return startManagerWith(guard.Budget{}) }

// startManagerWith is startManager with a cluster-wide budget.
func startManagerWith(budget guard.Budget) (func(), error) {
	stop, err := env.RunManager(func(cfg *rest.Config) (ctrl.Manager, error) {
		return controllers.NewManager(cfg, controllers.ManagerOptions{
			Options: controllers.Options{
				OperatorNamespace:       operatorNamespace,
				ProtectedNamespaces:     []string{operatorNamespace, "kube-system", "kube-public"},
				MaxConcurrentReconciles: 4,
				DriftResync:             resync,
				Budget:                  budget,
			},
			// No listeners, whose ports would clash between test binaries
			// running at once.
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			// restartManager builds it again in this process.
			SkipNameValidation: true,
		})
	})
	if err != nil {
		return nil, err
	}
	managerRunning.Store(&stop)
	return stop, nil
}

// restartManager stops the running manager and starts a new one, as a
// rollout or a crash would.
func restartManager(t *testing.T) { restartManagerWith(t, guard.Budget{}) }

// restartManagerWith restarts the manager with a budget; the test's
// cleanup restarts it without one.
func restartManagerWith(t *testing.T, budget guard.Budget) {
	t.Helper()
	(*managerRunning.Load())()
	if _, err := startManagerWith(budget); err != nil {
		t.Fatal(err)
	}
	if budget != (guard.Budget{}) {
		t.Cleanup(func() { restartManager(t) })
	}
}

// kubeEdit is the part of Kubernetes' aggregated edit ClusterRole (as
// kubernetes/kubernetes' bootstrap policy grants it) the attacks here use.
// The test control plane runs no controller-manager, so nothing aggregates
// ClusterRoles: the test binds what aggregation would.
var kubeEdit = &rbacv1.ClusterRole{
	ObjectMeta: metav1.ObjectMeta{Name: "test-kube-edit"},
	Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services", "configmaps", "serviceaccounts", "persistentvolumeclaims"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
	},
}

// namespaceEditor is a new user holding the edit role in ns, as a
// RoleBinding to edit gives on a real cluster.
func namespaceEditor(t *testing.T, user, ns string) client.Client {
	t.Helper()
	if err := k8sClient.Create(context.Background(), kubeEdit.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	mustCreate(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-edit", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: kubeEdit.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	})
	c, err := env.UserClient(user)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var nsCounter atomic.Int32

// namespace creates a namespace of the test's own, with the given labels.
func namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("d%d-%s", nsCounter.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 50 {
		name = strings.TrimRight(name[:50], "-")
	}
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	return name
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8sClient.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// incidentsFor lists the drift incidents for one rule and target, oldest first.
func incidentsFor(ctx context.Context, ns, rule, kind, name string) ([]riposte.Incident, error) {
	var list riposte.IncidentList
	if err := k8sClient.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{drift.LabelSource: drift.SourceDrift}); err != nil {
		return nil, err
	}
	var out []riposte.Incident
	for _, inc := range list.Items {
		if inc.Spec.Drift != nil && inc.Spec.Drift.Rule == rule && inc.Spec.Target != nil && inc.Spec.Target.Kind == kind && inc.Spec.Target.Name == name {
			out = append(out, inc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// waitForIncident waits until the rule's incident about the object is in
// phase, and returns it (the newest occurrence).
func waitForIncident(t *testing.T, ns, rule, kind, name string, phase riposte.IncidentPhase) *riposte.Incident {
	t.Helper()
	var found *riposte.Incident
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		list, err := incidentsFor(ctx, ns, rule, kind, name)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return fmt.Errorf("no %s incident about %s %s/%s", rule, kind, ns, name)
		}
		last := list[len(list)-1]
		if last.Status.Phase != phase {
			return fmt.Errorf("incident %s is %q, want %q (%s)", last.Name, last.Status.Phase, phase, conditions(last.Status.Conditions))
		}
		found = &last
		return nil
	})
	return found
}

// noIncident checks for a while that no incident of any of the rules is
// opened about the object.
func noIncident(t *testing.T, ns, rule, kind, name string, more ...string) {
	t.Helper()
	testenv.Consistently(t, 1500*time.Millisecond, func(ctx context.Context) error {
		for _, r := range append([]string{rule}, more...) {
			list, err := incidentsFor(ctx, ns, r, kind, name)
			if err != nil {
				return err
			}
			if len(list) > 0 {
				return fmt.Errorf("incident %s opened about a compliant %s %s: %s", list[0].Name, kind, name, list[0].Spec.Annotations["summary"])
			}
		}
		return nil
	})
}

func conditions(conds []metav1.Condition) string {
	var parts []string
	for _, c := range conds {
		parts = append(parts, c.Type+"="+string(c.Status)+"/"+c.Reason+": "+c.Message)
	}
	return strings.Join(parts, "; ")
}

// approve approves an incident's gate as a person allowed to.
func approve(t *testing.T, inc *riposte.Incident) {
	t.Helper()
	ctx := context.Background()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		gate := &riposte.ApprovalGate{}
		if err := approver.Get(ctx, client.ObjectKey{Namespace: inc.Namespace, Name: inc.Name}, gate); err != nil {
			return err
		}
		now := metav1.Now()
		gate.Spec.Decisions = append(gate.Spec.Decisions, riposte.Decision{User: "sam", Decision: riposte.DecisionApprove, Reason: "confirmed", At: &now})
		return approver.Update(ctx, gate)
	})
	_ = ctx
}
