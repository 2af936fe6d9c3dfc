package drift_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// noDebugRule is broken by a pod labelled debug.
func noDebugRule(name string) riposte.DriftRule {
	return riposte.DriftRule{
		Name:              name,
		Resource:          riposte.ResourceKind{APIVersion: "v1", Kind: "Pod"},
		Rule:              "!has(object.metadata.labels) || !('debug' in object.metadata.labels)",
		Message:           "debug pods must not run here",
		MessageExpression: "'pod ' + object.metadata.name + ' is labelled debug=' + object.metadata.labels['debug']",
		Severity:          "warning",
	}
}

// teamPlaybook is a namespaced playbook that isolates, without asking, pods
// that break its rules.
func teamPlaybook(ns, name string, rules ...riposte.DriftRule) *riposte.Playbook {
	return &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Drift: rules},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			ServiceAccountName: testenv.RemediatorAccount,
		},
	}
}

func pod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
	}
}

func teamNamespace(t *testing.T) string {
	t.Helper()
	ns := namespace(t, nil)
	if err := env.Remediator(context.Background(), ns, "riposte-action-isolate"); err != nil {
		t.Fatal(err)
	}
	return ns
}

func waitReady(t *testing.T, ns, name string) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		pb := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pb); err != nil {
			return err
		}
		c := meta.FindStatusCondition(pb.Status.Conditions, riposte.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != pb.Generation {
			return fmt.Errorf("playbook %s not ready: %s", name, conditions(pb.Status.Conditions))
		}
		return nil
	})
}

func setLabels(t *testing.T, ns, name string, labels map[string]string) {
	t.Helper()
	p := &corev1.Pod{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatal(err)
	}
	p.Labels = labels
	if err := k8sClient.Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

// Drift is found after a create and after an update, remediated, resolved
// when the object complies again or is deleted, and a new occurrence gets
// the next name.
func TestDriftLifecycle(t *testing.T) {
	ctx := context.Background()
	ns := teamNamespace(t)
	mustCreate(t, teamPlaybook(ns, "no-debug", noDebugRule("no-debug-pods")))
	waitReady(t, ns, "no-debug")

	// Update: a compliant pod gains the label.
	mustCreate(t, pod(ns, "web", map[string]string{"app": "web"}))
	noIncident(t, ns, "no-debug-pods", "Pod", "web")
	setLabels(t, ns, "web", map[string]string{"app": "web", "debug": "on"})
	first := waitForIncident(t, ns, "no-debug-pods", "Pod", "web", riposte.PhaseRemediated)
	if first.Spec.Annotations["summary"] != "pod web is labelled debug=on" || first.Spec.Severity != "warning" {
		t.Errorf("summary %q, severity %q", first.Spec.Annotations["summary"], first.Spec.Severity)
	}
	if first.Status.Context == nil || first.Status.Context.Target == nil || first.Status.Context.Target.UID == "" {
		t.Errorf("not enriched: %+v", first.Status.Context)
	}

	// The playbook sums it up for kubectl get playbooks.
	summary(t, ns, "no-debug", 1, "CronJob.batch", "DaemonSet.apps", "Deployment.apps", "Job.batch", "Pod", "ReplicaSet.apps", "StatefulSet.apps")

	// A storm of updates to the violating object keeps one incident.
	for i := range 30 {
		setLabels(t, ns, "web", map[string]string{"app": "web", "debug": "on", "n": fmt.Sprint(i)})
	}
	testenv.Consistently(t, time.Second, func(ctx context.Context) error {
		list, err := incidentsFor(ctx, ns, "no-debug-pods", "Pod", "web")
		if err != nil || len(list) != 1 {
			return fmt.Errorf("%d incidents after an update storm (%v), want 1", len(list), err)
		}
		return nil
	})

	// Fixed: resolved, with the time.
	setLabels(t, ns, "web", map[string]string{"app": "web"})
	fixed := waitForIncident(t, ns, "no-debug-pods", "Pod", "web", riposte.PhaseResolved)
	if fixed.Name != first.Name || fixed.Spec.Drift.Resolution != riposte.DriftComplies || fixed.Spec.EndsAt == nil || fixed.Status.ResolvedAt == nil {
		t.Errorf("incident %s: resolution %q endsAt %v resolvedAt %v", fixed.Name, fixed.Spec.Drift.Resolution, fixed.Spec.EndsAt, fixed.Status.ResolvedAt)
	}
	if c := meta.FindStatusCondition(fixed.Status.Conditions, riposte.ConditionReady); c == nil {
		t.Errorf("no Ready condition: %s", conditions(fixed.Status.Conditions))
	}
	summary(t, ns, "no-debug", 0, "CronJob.batch", "DaemonSet.apps", "Deployment.apps", "Job.batch", "Pod", "ReplicaSet.apps", "StatefulSet.apps")

	// Broken again: a second occurrence, named after the first.
	setLabels(t, ns, "web", map[string]string{"app": "web", "debug": "again"})
	second := waitForIncident(t, ns, "no-debug-pods", "Pod", "web", riposte.PhaseRemediated)
	if second.Name != first.Name+"-2" {
		t.Errorf("second occurrence is %s, want %s-2", second.Name, first.Name)
	}

	// Deleted: resolved as such.
	if err := k8sClient.Delete(ctx, pod(ns, "web", nil)); err != nil {
		t.Fatal(err)
	}
	deleted := waitForIncident(t, ns, "no-debug-pods", "Pod", "web", riposte.PhaseResolved)
	if deleted.Spec.Drift.Resolution != riposte.DriftObjectDeleted {
		t.Errorf("resolution %q, want ObjectDeleted", deleted.Spec.Drift.Resolution)
	}

	// Create: a pod that breaks the rule from the start.
	mustCreate(t, pod(ns, "shell", map[string]string{"debug": "yes"}))
	shell := waitForIncident(t, ns, "no-debug-pods", "Pod", "shell", riposte.PhaseRemediated)

	// The rule removed from the playbook: its open incident is closed with
	// that reason, even though the pod still carries the label.
	pb := &riposte.Playbook{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "no-debug"}, pb); err != nil {
		t.Fatal(err)
	}
	renamed := noDebugRule("no-debug-label")
	renamed.Rule = "!has(object.metadata.labels) || !('debug' in object.metadata.labels) || object.metadata.labels['debug'] == 'yes'"
	pb.Spec.Triggers.Drift = []riposte.DriftRule{renamed}
	if err := k8sClient.Update(ctx, pb); err != nil {
		t.Fatal(err)
	}
	closed := waitForIncident(t, ns, "no-debug-pods", "Pod", "shell", riposte.PhaseResolved)
	if closed.Name != shell.Name || closed.Spec.Drift.Resolution != riposte.DriftRuleRemoved {
		t.Errorf("incident %s resolution %q, want RuleRemoved", closed.Name, closed.Spec.Drift.Resolution)
	}
	noIncident(t, ns, "no-debug-label", "Pod", "shell")

	// The playbook removed: its open incidents are closed with that reason.
	mustCreate(t, pod(ns, "tools", map[string]string{"debug": "no"}))
	waitForIncident(t, ns, "no-debug-label", "Pod", "tools", riposte.PhaseRemediated)
	if err := k8sClient.Delete(ctx, pb); err != nil {
		t.Fatal(err)
	}
	gone := waitForIncident(t, ns, "no-debug-label", "Pod", "tools", riposte.PhaseResolved)
	if gone.Spec.Drift.Resolution != riposte.DriftPlaybookRemoved {
		t.Errorf("resolution %q, want PlaybookRemoved", gone.Spec.Drift.Resolution)
	}
	events := &corev1.EventList{}
	if err := k8sClient.List(ctx, events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	said := false
	for _, e := range events.Items {
		if e.InvolvedObject.Name == gone.Name && e.Reason == riposte.DriftPlaybookRemoved && strings.Contains(e.Message, "was removed") {
			said = true
		}
	}
	if !said {
		t.Errorf("no PlaybookRemoved Event on %s", gone.Name)
	}
}

// A namespaced playbook judges its own namespace only.
func TestDriftStaysInThePlaybooksNamespace(t *testing.T) {
	mine, other := teamNamespace(t), teamNamespace(t)
	mustCreate(t, teamPlaybook(mine, "no-debug", noDebugRule("scoped-no-debug")))
	waitReady(t, mine, "no-debug")
	mustCreate(t, pod(other, "elsewhere", map[string]string{"debug": "1"}))
	mustCreate(t, pod(mine, "here", map[string]string{"debug": "1"}))
	waitForIncident(t, mine, "scoped-no-debug", "Pod", "here", riposte.PhaseRemediated)
	noIncident(t, other, "scoped-no-debug", "Pod", "elsewhere")
}

// Restarts never duplicate: the same finding lands on the same name, and
// what changed while Riposte was down is caught up.
func TestDriftNamesSurviveRestart(t *testing.T) {
	ctx := context.Background()
	ns := teamNamespace(t)
	mustCreate(t, teamPlaybook(ns, "keep", noDebugRule("restart-no-debug")))
	mustCreate(t, teamPlaybook(ns, "drop", noDebugRule("restart-dropped")))
	waitReady(t, ns, "keep")
	waitReady(t, ns, "drop")
	mustCreate(t, pod(ns, "web", map[string]string{"debug": "1"}))
	before := waitForIncident(t, ns, "restart-no-debug", "Pod", "web", riposte.PhaseRemediated)
	waitForIncident(t, ns, "restart-dropped", "Pod", "web", riposte.PhaseRemediated)

	// While the manager is down, one playbook is deleted.
	(*managerRunning.Load())()
	if err := k8sClient.Delete(ctx, &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "drop"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := startManager(); err != nil {
		t.Fatal(err)
	}
	dropped := waitForIncident(t, ns, "restart-dropped", "Pod", "web", riposte.PhaseResolved)
	if dropped.Spec.Drift.Resolution != riposte.DriftPlaybookRemoved {
		t.Errorf("resolution %q, want PlaybookRemoved", dropped.Spec.Drift.Resolution)
	}
	// Two full re-evaluations later, still one incident, the same one.
	testenv.Consistently(t, 2*resync+time.Second, func(ctx context.Context) error {
		list, err := incidentsFor(ctx, ns, "restart-no-debug", "Pod", "web")
		if err != nil {
			return err
		}
		if len(list) != 1 || list[0].Name != before.Name || list[0].UID != before.UID || list[0].Status.Phase != riposte.PhaseRemediated {
			return fmt.Errorf("after the restart: %d incidents (first %s, %s), want only %s", len(list), list[0].Name, list[0].Status.Phase, before.Name)
		}
		return nil
	})
}

// Rules Riposte cannot use put a condition on the playbook that says why,
// and open nothing.
func TestDriftRulesThatCannotRun(t *testing.T) {
	ns := teamNamespace(t)
	mustCreate(t, pod(ns, "bad", map[string]string{"debug": "1"}))
	bad := func(edit func(*riposte.DriftRule)) riposte.DriftRule {
		r := noDebugRule("broken")
		edit(&r)
		return r
	}
	cases := []struct {
		name, reason, message string
		rule                  riposte.DriftRule
	}{
		{"does-not-compile", riposte.ReasonInvalidRule, "spec.triggers.drift[0].rule", bad(func(r *riposte.DriftRule) { r.Rule = "object.metadata.labels[" })},
		{"not-boolean", riposte.ReasonInvalidRule, "must return a bool", bad(func(r *riposte.DriftRule) { r.Rule = "'yes'" })},
		{"message-not-string", riposte.ReasonInvalidRule, "messageExpression", bad(func(r *riposte.DriftRule) { r.MessageExpression = "1 + 1" })},
		{"unknown-kind", riposte.ReasonUnknownKind, "serves no kind Gizmo in example.com/v1", bad(func(r *riposte.DriftRule) {
			r.Resource = riposte.ResourceKind{APIVersion: "example.com/v1", Kind: "Gizmo"}
		})},
		{"unknown-lookup", riposte.ReasonUnknownKind, "lookups[things]", bad(func(r *riposte.DriftRule) {
			r.Lookups = []riposte.DriftLookup{{Name: "things", Resource: riposte.ResourceKind{APIVersion: "v1", Kind: "Thing"}}}
		})},
		{"not-allowed-to-watch", riposte.ReasonWatchForbidden, "may not list configmaps", bad(func(r *riposte.DriftRule) {
			r.Resource = riposte.ResourceKind{APIVersion: "v1", Kind: "ConfigMap"}
			r.MessageExpression = ""
		})},
		{"cluster-scoped-from-a-team", riposte.ReasonInvalidRule, "ClusterRoleBinding is cluster-scoped", bad(func(r *riposte.DriftRule) {
			r.Resource = riposte.ResourceKind{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"}
			r.MessageExpression = ""
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustCreate(t, teamPlaybook(ns, tc.name, tc.rule))
			testenv.Eventually(t, waitFor, func(ctx context.Context) error {
				pb := &riposte.Playbook{}
				if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: tc.name}, pb); err != nil {
					return err
				}
				c := meta.FindStatusCondition(pb.Status.Conditions, riposte.ConditionReady)
				if c == nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) {
					return fmt.Errorf("conditions %s, want Ready=False/%s saying %q", conditions(pb.Status.Conditions), tc.reason, tc.message)
				}
				return nil
			})
		})
	}
	noIncident(t, ns, "broken", "Pod", "bad")
}

// Admission refuses rules it can judge without the cluster.
func TestDriftRuleAdmission(t *testing.T) {
	ns := teamNamespace(t)
	ctx := context.Background()
	cases := map[string]func(*riposte.Playbook){
		"a rule name that is not a DNS label": func(pb *riposte.Playbook) { pb.Spec.Triggers.Drift[0].Name = "No_Debug" },
		"two rules with one name": func(pb *riposte.Playbook) {
			pb.Spec.Triggers.Drift = append(pb.Spec.Triggers.Drift, pb.Spec.Triggers.Drift[0])
		},
		"a rule without a message": func(pb *riposte.Playbook) { pb.Spec.Triggers.Drift[0].Message = "" },
		"no trigger at all":        func(pb *riposte.Playbook) { pb.Spec.Triggers.Drift = nil },
		"a PolicyReport result that does not exist": func(pb *riposte.Playbook) {
			pb.Spec.Triggers.PolicyReports = []riposte.PolicyReportTrigger{{Results: []riposte.PolicyReportResult{"broken"}}}
		},
		"podControllers on a rule about another kind": func(pb *riposte.Playbook) {
			pb.Spec.Triggers.Drift[0].Resource = riposte.ResourceKind{APIVersion: "v1", Kind: "Service"}
			pb.Spec.Triggers.Drift[0].PodControllers = []riposte.PodController{riposte.PodControllerDeployment}
		},
		"podControllers None with a kind": func(pb *riposte.Playbook) {
			pb.Spec.Triggers.Drift[0].PodControllers = []riposte.PodController{riposte.PodControllerNone, riposte.PodControllerJob}
		},
		"a podController that is no workload kind": func(pb *riposte.Playbook) {
			pb.Spec.Triggers.Drift[0].PodControllers = []riposte.PodController{"ReplicationController"}
		},
	}
	for name, edit := range cases {
		pb := teamPlaybook(ns, "refused", noDebugRule("no-debug"))
		edit(pb)
		if err := k8sClient.Create(ctx, pb); err == nil {
			t.Errorf("%s: accepted", name)
			_ = k8sClient.Delete(ctx, pb)
		}
	}
	pods := teamPlaybook(ns, "pods-only", noDebugRule("no-debug"))
	pods.Spec.Triggers.Drift[0].PodControllers = []riposte.PodController{riposte.PodControllerNone}
	if err := k8sClient.Create(ctx, pods); err != nil {
		t.Errorf("podControllers [None] refused: %v", err)
	}
}

// A failed PolicyReport result becomes an incident about the resource it
// names, answered by the playbook whose trigger selects it, and resolves
// when the report passes.
func TestPolicyReportResultBecomesIncident(t *testing.T) {
	ctx := context.Background()
	ns := teamNamespace(t)
	pb := &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "from-reports", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers: riposte.Triggers{PolicyReports: []riposte.PolicyReportTrigger{{
				Policies: []string{"disallow-privileged-containers"},
			}}},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			ServiceAccountName: testenv.RemediatorAccount,
		},
	}
	mustCreate(t, pb)
	reportsCondition := func(want metav1.ConditionStatus, reason string) {
		t.Helper()
		waitForReportsCondition(t, pb, func(c, ready *metav1.Condition) bool {
			return c.Status == want && c.Reason == reason && ready != nil && ready.Status == metav1.ConditionTrue
		})
	}
	// Not installed yet: said on the playbook, which stays usable.
	reportsCondition(metav1.ConditionFalse, riposte.ReasonNotInstalled)

	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "test", "testdata", "policyreport")); err != nil {
		t.Fatal(err)
	}
	// Once the API server serves it, the author re-applies (any edit) and the
	// API is found.
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		reports := &unstructured.UnstructuredList{}
		reports.SetAPIVersion("wgpolicyk8s.io/v1alpha2")
		reports.SetKind("PolicyReportList")
		return k8sClient.List(ctx, reports, client.InNamespace(ns))
	})
	pb.Spec.Priority = 1
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pb), got); err != nil {
			return err
		}
		got.Spec.Priority = 1
		return k8sClient.Update(ctx, got)
	})
	reportsCondition(metav1.ConditionTrue, riposte.ReasonWatching)

	priv := pod(ns, "priv", nil)
	mustCreate(t, priv)
	mustCreate(t, pod(ns, "fine", nil))
	result := func(policy, rule, verdict, name string) map[string]any {
		return map[string]any{"policy": policy, "rule": rule, "result": verdict, "severity": "high",
			"message": "privileged mode is disallowed", "source": "kyverno",
			"resources": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns, "uid": string(priv.UID)}}}
	}
	report := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
		"metadata": map[string]any{"name": "pod-reports", "namespace": ns},
		"results": []any{
			result("disallow-privileged-containers", "privileged-containers", "fail", "priv"),
			result("disallow-privileged-containers", "privileged-containers", "pass", "fine"),
			result("require-labels", "check-team", "fail", "fine"),
		},
	}}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error { return k8sClient.Create(ctx, report.DeepCopy()) })
	const rule = "disallow-privileged-containers/privileged-containers"
	inc := waitForIncident(t, ns, rule, "Pod", "priv", riposte.PhaseRemediated)
	if inc.Spec.Drift.Source.Kind != "PolicyReport" || inc.Spec.Drift.Source.Name != "pod-reports" ||
		inc.Spec.Annotations["summary"] != "privileged mode is disallowed" || inc.Spec.Severity != "high" {
		t.Errorf("incident %s: source %+v, summary %q, severity %q", inc.Name, inc.Spec.Drift.Source, inc.Spec.Annotations["summary"], inc.Spec.Severity)
	}
	noIncident(t, ns, rule, "Pod", "fine")
	noIncident(t, ns, "require-labels/check-team", "Pod", "fine")

	// The engine reports the pod passes now.
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(report.GroupVersionKind())
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(report), got); err != nil {
			return err
		}
		got.Object["results"] = []any{result("disallow-privileged-containers", "privileged-containers", "pass", "priv")}
		return k8sClient.Update(ctx, got)
	})
	passed := waitForIncident(t, ns, rule, "Pod", "priv", riposte.PhaseResolved)
	if passed.Spec.Drift.Resolution != riposte.DriftComplies {
		t.Errorf("resolution %q, want Complies", passed.Spec.Drift.Resolution)
	}

	// Failing again opens the next occurrence; deleting the report ends it,
	// saying so (the pod itself is still there).
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(report.GroupVersionKind())
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(report), got); err != nil {
			return err
		}
		got.Object["results"] = []any{result("disallow-privileged-containers", "privileged-containers", "fail", "priv")}
		return k8sClient.Update(ctx, got)
	})
	again := waitForIncident(t, ns, rule, "Pod", "priv", riposte.PhaseRemediated)
	if again.Name != inc.Name+"-2" {
		t.Errorf("second occurrence named %s, want %s-2", again.Name, inc.Name)
	}
	if err := k8sClient.Delete(ctx, report); err != nil {
		t.Fatal(err)
	}
	removed := waitForIncident(t, ns, rule, "Pod", "priv", riposte.PhaseResolved)
	if removed.Name != again.Name || removed.Spec.Drift.Resolution != riposte.DriftReportRemoved {
		t.Errorf("incident %s resolution %q, want ReportRemoved", removed.Name, removed.Spec.Drift.Resolution)
	}
}

// OpenReports (openreports.io, the successor format Kyverno writes when
// asked) are read like PolicyReports, once their CRDs (the real ones, from
// openreports/reports-api) are installed; until then the playbook's
// condition does not claim them.
func TestOpenReportsBecomeIncidents(t *testing.T) {
	ctx := context.Background()
	ns := teamNamespace(t)
	pb := &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "from-openreports", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{PolicyReports: []riposte.PolicyReportTrigger{{Policies: []string{"disallow-privileged-containers"}}}},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			ServiceAccountName: testenv.RemediatorAccount,
		},
	}
	mustCreate(t, pb)
	reports := func(ok func(*metav1.Condition) bool) {
		t.Helper()
		waitForReportsCondition(t, pb, func(c, _ *metav1.Condition) bool { return ok(c) })
	}
	const openReports = "OpenReports (openreports.io)"
	// Not installed: NotInstalled, or (when the PolicyReport API is) True
	// for that format only.
	reports(func(c *metav1.Condition) bool {
		return c.Reason == riposte.ReasonNotInstalled || strings.Contains(c.Message, openReports+" is not installed")
	})
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "test", "testdata", "openreports")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion("openreports.io/v1alpha1")
		list.SetKind("ReportList")
		return k8sClient.List(ctx, list, client.InNamespace(ns))
	})
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pb), got); err != nil {
			return err
		}
		got.Spec.Priority = 1
		return k8sClient.Update(ctx, got)
	})
	reports(func(c *metav1.Condition) bool {
		return c.Status == metav1.ConditionTrue && strings.Contains(c.Message, openReports) && !strings.Contains(c.Message, openReports+" is not installed")
	})

	priv := pod(ns, "priv", nil)
	mustCreate(t, priv)
	// A Report as Kyverno writes one per resource: the scope is the pod,
	// each result names it too (field names from the OpenReports CRD).
	report := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "openreports.io/v1alpha1", "kind": "Report",
		"metadata": map[string]any{"name": string(priv.UID), "namespace": ns,
			"labels": map[string]any{"app.kubernetes.io/managed-by": "kyverno"}},
		"source":  "kyverno",
		"scope":   map[string]any{"apiVersion": "v1", "kind": "Pod", "name": "priv", "namespace": ns, "uid": string(priv.UID)},
		"summary": map[string]any{"pass": int64(0), "fail": int64(1), "warn": int64(0), "error": int64(0), "skip": int64(0)},
		"results": []any{map[string]any{
			"category": "Pod Security Standards (Baseline)", "policy": "disallow-privileged-containers", "rule": "privileged-containers",
			"result": "fail", "scored": true, "severity": "medium", "source": "kyverno",
			"message":   "validation error: Privileged mode is disallowed. The fields spec.containers[*].securityContext.privileged must be unset or set to `false`.",
			"timestamp": map[string]any{"seconds": int64(1679565894), "nanos": int64(0)},
			"resources": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": "priv", "namespace": ns, "uid": string(priv.UID)}},
		}},
	}}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error { return k8sClient.Create(ctx, report.DeepCopy()) })
	const rule = "disallow-privileged-containers/privileged-containers"
	inc := waitForIncident(t, ns, rule, "Pod", "priv", riposte.PhaseRemediated)
	if inc.Spec.Drift.Source.Kind != "Report" || inc.Spec.Drift.Source.APIVersion != "openreports.io/v1alpha1" || inc.Spec.Severity != "medium" ||
		!strings.HasPrefix(inc.Spec.Annotations["summary"], "validation error: Privileged mode is disallowed") {
		t.Errorf("incident %s: source %+v, severity %q, summary %q", inc.Name, inc.Spec.Drift.Source, inc.Spec.Severity, inc.Spec.Annotations["summary"])
	}
	if err := k8sClient.Delete(ctx, report); err != nil {
		t.Fatal(err)
	}
	if removed := waitForIncident(t, ns, rule, "Pod", "priv", riposte.PhaseResolved); removed.Spec.Drift.Resolution != riposte.DriftReportRemoved {
		t.Errorf("resolution %q, want ReportRemoved", removed.Spec.Drift.Resolution)
	}
}

// watched reports whether the detector's gauge says it watches kind.
func watched(t *testing.T, kind string) bool {
	t.Helper()
	v, ok := metricValue(t, "riposte_drift_watched_kinds", "kind", kind)
	return ok && v == 1
}

// metricValue reads the series of a metric with one label value from the
// in-process manager's registry.
func metricValue(t *testing.T, name, label, value string) (float64, bool) {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue(), true
					}
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// A watch starts when the first rule needs its kind, is shared by every
// rule on that kind, and stops when the last one goes.
func TestDriftWatchesFollowPlaybooks(t *testing.T) {
	ctx := context.Background()
	ns := teamNamespace(t)
	// Ingresses: a kind no other test's rule judges (Pod rules judge the
	// workload kinds too).
	const ingresses = "networking.k8s.io/v1, Kind=Ingress"
	if watched(t, ingresses) {
		t.Fatal("Ingresses are watched before any rule names them")
	}
	tls := func(name string) riposte.DriftRule {
		return riposte.DriftRule{Name: name, Resource: riposte.ResourceKind{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
			Rule: "has(object.spec.tls) && size(object.spec.tls) > 0", Message: "ingresses here serve TLS"}
	}
	first := teamPlaybook(ns, "tls-a", tls("ingress-tls-a"))
	first.Spec.Approval = riposte.ApprovalPolicy{}
	second := first.DeepCopy()
	second.Name, second.Spec.Triggers.Drift = "tls-b", []riposte.DriftRule{tls("ingress-tls-b")}
	mustCreate(t, first)
	mustCreate(t, second)
	testenv.Eventually(t, waitFor, func(context.Context) error {
		if !watched(t, ingresses) {
			return fmt.Errorf("Ingresses are not watched")
		}
		return nil
	})
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}
	mustCreate(t, ing)
	opened(t, ns, "ingress-tls-a", "Ingress", "shop")
	opened(t, ns, "ingress-tls-b", "Ingress", "shop")

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(k8sClient.Delete(ctx, first))
	testenv.Consistently(t, time.Second, func(context.Context) error {
		if !watched(t, ingresses) {
			return fmt.Errorf("Ingresses are no longer watched while a rule still needs them")
		}
		return nil
	})
	must(k8sClient.Delete(ctx, second))
	testenv.Eventually(t, waitFor, func(context.Context) error {
		if watched(t, ingresses) {
			return fmt.Errorf("Ingresses are still watched after the last rule on them went")
		}
		return nil
	})
	// Changes are no longer judged: nothing opens for a new Ingress.
	late := ing.DeepCopy()
	late.ResourceVersion, late.Name = "", "late"
	mustCreate(t, late)
	noIncident(t, ns, "ingress-tls-a", "Ingress", "late")
}

// opened waits until the rule has an incident about the object, whatever
// its phase.
func opened(t *testing.T, ns, rule, kind, name string) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		list, err := incidentsFor(ctx, ns, rule, kind, name)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return fmt.Errorf("no %s incident about %s %s/%s", rule, kind, ns, name)
		}
		return nil
	})
}

// A rule that cannot be evaluated on an object (a field read without has())
// neither opens nor closes anything for it: the open incident stays open
// until the rule can say the object complies, and the error is counted.
func TestDriftEvaluationErrorKeepsIncidentOpen(t *testing.T) {
	ns := teamNamespace(t)
	strict := riposte.DriftRule{Name: "debug-off", Resource: riposte.ResourceKind{APIVersion: "v1", Kind: "Pod"},
		Rule: "object.metadata.labels['debug'] == 'off'", Message: "debug must be off"}
	mustCreate(t, teamPlaybook(ns, "strict", strict))
	waitReady(t, ns, "strict")
	errorsBefore := evaluationErrors(t)
	mustCreate(t, pod(ns, "web", map[string]string{"app": "web", "debug": "on"}))
	open := waitForIncident(t, ns, "debug-off", "Pod", "web", riposte.PhaseRemediated)

	setLabels(t, ns, "web", map[string]string{"app": "web"}) // the rule now fails on it
	testenv.Eventually(t, waitFor, func(context.Context) error {
		if evaluationErrors(t) <= errorsBefore {
			return fmt.Errorf("no evaluation error counted")
		}
		return nil
	})
	testenv.Consistently(t, 2*resync, func(ctx context.Context) error {
		inc := &riposte.Incident{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(open), inc); err != nil {
			return err
		}
		if inc.Spec.Status == riposte.AlertResolved {
			return fmt.Errorf("resolved as %s by a rule that could not be evaluated", inc.Spec.Drift.Resolution)
		}
		return nil
	})
	setLabels(t, ns, "web", map[string]string{"app": "web", "debug": "off"})
	fixed := waitForIncident(t, ns, "debug-off", "Pod", "web", riposte.PhaseResolved)
	if fixed.Name != open.Name || fixed.Spec.Drift.Resolution != riposte.DriftComplies {
		t.Errorf("incident %s resolution %q, want Complies", fixed.Name, fixed.Spec.Drift.Resolution)
	}
}

func evaluationErrors(t *testing.T) float64 {
	t.Helper()
	v, _ := metricValue(t, "riposte_drift_evaluations_total", "outcome", "error")
	return v
}

// summary waits until a playbook's status.drift says it holds open
// incidents and watches kinds.
func summary(t *testing.T, ns, name string, open int32, kinds ...string) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		pb := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pb); err != nil {
			return err
		}
		d := pb.Status.Drift
		if d == nil || d.OpenIncidents != open || strings.Join(d.Watching, ",") != strings.Join(kinds, ",") {
			return fmt.Errorf("status.drift %+v, want %d open, watching %v", d, open, kinds)
		}
		return nil
	})
}

// waitForReportsCondition waits until the playbook's PolicyReportsWatched
// condition, with its Ready condition (nil when it has none), satisfies ok.
func waitForReportsCondition(t *testing.T, pb *riposte.Playbook, ok func(reports, ready *metav1.Condition) bool) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pb), got); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, riposte.PlaybookPolicyReports)
		if c == nil || !ok(c, meta.FindStatusCondition(got.Status.Conditions, riposte.ConditionReady)) {
			return fmt.Errorf("playbook %s: %s", pb.Name, conditions(got.Status.Conditions))
		}
		return nil
	})
}

// The periodic re-evaluation evaluates again only what changed: a pass
// over unchanged pods reuses their judgments, and their incidents stay as
// they were; a change is still judged as it happens.
func TestDriftReEvaluationReusesUnchangedJudgments(t *testing.T) {
	ns := teamNamespace(t)
	mustCreate(t, teamPlaybook(ns, "reuse", noDebugRule("reuse-no-debug")))
	waitReady(t, ns, "reuse")
	mustCreate(t, pod(ns, "quiet", map[string]string{"app": "web"}))
	mustCreate(t, pod(ns, "noisy", map[string]string{"app": "web", "debug": "1"}))
	open := waitForIncident(t, ns, "reuse-no-debug", "Pod", "noisy", riposte.PhaseRemediated)

	reused, passes := plainMetric(t, "riposte_drift_judgments_reused_total"), plainMetric(t, "riposte_drift_resync_seconds")
	testenv.Eventually(t, waitFor, func(context.Context) error {
		// Two passes ended: the second began after both pods were judged.
		if n := plainMetric(t, "riposte_drift_resync_seconds"); n < passes+2 {
			return fmt.Errorf("%v full re-evaluations since, want 2", n-passes)
		}
		return nil
	})
	if got := plainMetric(t, "riposte_drift_judgments_reused_total") - reused; got < 2 {
		t.Errorf("%v judgments reused by the re-evaluations, want both unchanged pods'", got)
	}
	list, err := incidentsFor(context.Background(), ns, "reuse-no-debug", "Pod", "noisy")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].UID != open.UID || list[0].Spec.Status == riposte.AlertResolved {
		t.Fatalf("after the re-evaluations: %d incidents, want only %s, open", len(list), open.Name)
	}

	setLabels(t, ns, "noisy", map[string]string{"app": "web"})
	fixed := waitForIncident(t, ns, "reuse-no-debug", "Pod", "noisy", riposte.PhaseResolved)
	if fixed.UID != open.UID || fixed.Spec.Drift.Resolution != riposte.DriftComplies {
		t.Errorf("incident %s resolution %q, want Complies", fixed.Name, fixed.Spec.Drift.Resolution)
	}
}

// plainMetric is an unlabelled counter's value, or a histogram's count.
func plainMetric(t *testing.T, name string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name || len(f.GetMetric()) == 0 {
			continue
		}
		m := f.GetMetric()[0]
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
		return m.GetCounter().GetValue()
	}
	return 0
}
