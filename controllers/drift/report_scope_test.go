package drift_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// The policy and rule of Kyverno's Pod Security Standards subrule, as its
// background scan reports them (kyverno/kyverno test/conformance/chainsaw/
// reports/background/multiple-exceptions-with-pod-security/
// report-fail-assert.yaml).
const (
	pssPolicy = "psp-baseline"
	pssRule   = pssPolicy + "/baseline"
)

// pssResult is one failed result as Kyverno writes it, about the resources
// given (fields as in the report above and the wgpolicyk8s.io and
// openreports.io CRDs in test/testdata).
func pssResult(resources ...map[string]any) map[string]any {
	var rs []any
	for _, r := range resources {
		rs = append(rs, r)
	}
	return map[string]any{
		"message": "Validation rule 'baseline' failed. It violates PodSecurity \"baseline:v1.29\": (Forbidden reason: privileged, field error list: [spec.containers[0].securityContext.privileged is forbidden, forbidden values found: true])",
		"policy":  pssPolicy, "rule": "baseline", "result": "fail", "scored": true, "source": "kyverno", "severity": "high",
		"properties": map[string]any{"controls": "privileged", "standard": "baseline", "version": "v1.29"},
		"resources":  rs,
	}
}

func podResource(p *corev1.Pod) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "name": p.Name, "namespace": p.Namespace, "uid": string(p.UID)}
}

// report is a report of kind (PolicyReport, ClusterPolicyReport, Report)
// labelled as Kyverno labels its own.
func report(apiVersion, kind, ns, name string, results ...any) *unstructured.Unstructured {
	md := map[string]any{"name": name, "labels": map[string]any{"app.kubernetes.io/managed-by": "kyverno"}}
	if ns != "" {
		md["namespace"] = ns
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion, "kind": kind, "metadata": md, "source": "kyverno",
		"summary": map[string]any{"pass": int64(0), "fail": int64(len(results)), "warn": int64(0), "error": int64(0), "skip": int64(0)},
		"results": results,
	}}
}

// installReportAPIs installs the PolicyReport and OpenReports CRDs (the
// real ones) and waits until the API server serves both.
func installReportAPIs(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, dir := range []string{"policyreport", "openreports"} {
		if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "test", "testdata", dir)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		for _, l := range [][2]string{{"wgpolicyk8s.io/v1alpha2", "PolicyReportList"}, {"openreports.io/v1alpha1", "ReportList"}} {
			list := &unstructured.UnstructuredList{}
			list.SetAPIVersion(l[0])
			list.SetKind(l[1])
			if err := k8sClient.List(ctx, list); err != nil {
				return err
			}
		}
		return nil
	})
}

// reportsWatched waits until the playbook is Ready and reads both report
// formats, editing it once the API server serves them (as an author
// re-applies).
func reportsWatched(t *testing.T, pb *riposte.Playbook) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pb), got); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, riposte.PlaybookPolicyReports)
		ready := meta.FindStatusCondition(got.Status.Conditions, riposte.ConditionReady)
		if c != nil && c.Status == metav1.ConditionTrue && !strings.Contains(c.Message, "not installed") &&
			ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == got.Generation {
			return nil
		}
		if c != nil && c.ObservedGeneration == got.Generation && (c.Status != metav1.ConditionTrue || strings.Contains(c.Message, "not installed")) {
			got.Spec.Priority++
			_ = k8sClient.Update(ctx, got)
		}
		return fmt.Errorf("playbook %s: %s", pb.Name, conditions(got.Status.Conditions))
	})
}

// quarantined is the isolation label on a pod, "" when it has none.
func quarantineOf(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	got := &corev1.Pod{}
	if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(p), got); err != nil {
		t.Fatal(err)
	}
	return got.Labels["riposte.dev/quarantine"]
}

func counter(t *testing.T, reason string) float64 {
	t.Helper()
	v, _ := metricValue(t, "riposte_drift_report_resources_refused_total", "reason", reason)
	return v
}

// The security review's probe: a user holding exactly create on reports in
// their own namespace writes a report naming another namespace's pod and a
// node, with the policy a cluster-wide autoApprove playbook answers. No
// incident is opened there, nothing is isolated, and the refusal is
// counted and told on the playbook. The same report about a pod of their
// own namespace opens an incident there that people decide, unless the
// playbook opts in (namespacedReports: Automatic). A cluster-scoped report,
// which only cluster-level writers can create, still names any namespace.
func TestAttackNamespacedReportNamesAnotherNamespace(t *testing.T) {
	ctx := context.Background()
	installReportAPIs(t)
	// The policy pack's account: isolates pods in every namespace.
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "samples", "policies", "00-account.yaml")); err != nil {
		t.Fatal(err)
	}
	attacker, victim := namespace(t, nil), namespace(t, nil)
	db := pod(victim, "db", nil)
	own := pod(attacker, "own", nil)
	mine := pod(attacker, "mine", nil)
	for _, p := range []*corev1.Pod{db, own, mine} {
		mustCreate(t, p)
	}

	// mallory may create reports in her namespace, and nothing else.
	mustCreate(t, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "report-writer", Namespace: attacker},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"wgpolicyk8s.io"}, Resources: []string{"policyreports"}, Verbs: []string{"create"}},
			{APIGroups: []string{"openreports.io"}, Resources: []string{"reports"}, Verbs: []string{"create"}},
		},
	})
	mustCreate(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "mallory-report-writer", Namespace: attacker},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "report-writer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "mallory"}},
	})
	mallory, err := env.UserClient("mallory")
	if err != nil {
		t.Fatal(err)
	}

	pb := &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "isolate-pss-baseline", Namespace: operatorNamespace},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{PolicyReports: []riposte.PolicyReportTrigger{{Policies: []string{pssPolicy}}}},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			ServiceAccountName: "riposte-policy",
		},
	}
	mustCreate(t, pb)
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), pb) })
	reportsWatched(t, pb)

	otherBefore, clusterBefore := counter(t, "OtherNamespace"), counter(t, "ClusterScoped")
	node := map[string]any{"apiVersion": "v1", "kind": "Node", "name": "worker-1"}
	forged := []*unstructured.Unstructured{
		report("wgpolicyk8s.io/v1alpha2", "PolicyReport", attacker, "pol-psp-baseline", pssResult(podResource(db)), pssResult(node)),
		report("openreports.io/v1alpha1", "Report", attacker, string(db.UID), pssResult(podResource(db))),
	}
	for _, r := range forged {
		if err := mallory.Create(ctx, r); err != nil {
			t.Fatalf("mallory creating %s: %v", r.GetKind(), err)
		}
	}

	// Refused, counted, and told on the playbook with why.
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		if got := counter(t, "OtherNamespace"); got < otherBefore+2 {
			return fmt.Errorf("OtherNamespace refusals %v, want at least %v", got, otherBefore+2)
		}
		if got := counter(t, "ClusterScoped"); got < clusterBefore+1 {
			return fmt.Errorf("ClusterScoped refusals %v, want at least %v", got, clusterBefore+1)
		}
		var events corev1.EventList
		if err := k8sClient.List(ctx, &events, client.InNamespace(operatorNamespace)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Name == pb.Name && e.Reason == riposte.ReasonReportOutOfScope &&
				strings.Contains(e.Message, "PolicyReport "+attacker+"/pol-psp-baseline") && strings.Contains(e.Message, "2 result resource(s)") &&
				strings.Contains(e.Message, "Pod/"+victim+"/db") && strings.Contains(e.Message, "OtherNamespace") &&
				strings.Contains(e.Message, "Node/worker-1") && strings.Contains(e.Message, "ClusterScoped") {
				return nil
			}
		}
		var seen []string
		for _, e := range events.Items {
			if e.InvolvedObject.Name == pb.Name {
				seen = append(seen, e.Reason+": "+e.Message)
			}
		}
		return fmt.Errorf("no ReportOutOfScope Event on playbook %s naming the refused resources; its Events: %q", pb.Name, seen)
	})
	noIncident(t, victim, pssRule, "Pod", "db")
	noIncident(t, operatorNamespace, pssRule, "Node", "worker-1")
	if q := quarantineOf(t, db); q != "" {
		t.Fatalf("the victim's pod was isolated (riposte.dev/quarantine=%s)", q)
	}

	// Her cluster-level writes are refused by the API server.
	if err := mallory.Create(ctx, report("wgpolicyk8s.io/v1alpha2", "ClusterPolicyReport", "", "forged", pssResult(podResource(db)))); !apierrors.IsForbidden(err) {
		t.Fatalf("mallory creating a ClusterPolicyReport: %v, want forbidden", err)
	}

	// About a pod of her own namespace: an incident there, which people
	// decide although the playbook approves automatically.
	if err := mallory.Create(ctx, report("wgpolicyk8s.io/v1alpha2", "PolicyReport", attacker, "pol-own", pssResult(podResource(own)))); err != nil {
		t.Fatal(err)
	}
	inc := waitForIncident(t, attacker, pssRule, "Pod", "own", riposte.PhaseAwaitingApproval)
	if inc.Spec.Target.UID != "" {
		t.Errorf("the incident's target UID %q was taken from the report", inc.Spec.Target.UID)
	}
	gate := &riposte.ApprovalGate{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: attacker, Name: inc.Status.ApprovalGate}, gate); err != nil {
		t.Fatal(err)
	}
	if gate.Spec.Policy.Automatic || gate.Spec.Policy.OnExpiry != riposte.ExpiryReject {
		t.Errorf("gate policy %+v: want people to decide and an expiry to reject", gate.Spec.Policy)
	}
	if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentApproved); c == nil || !strings.Contains(c.Message, "namespacedReports: RequirePerson") {
		t.Errorf("the incident does not say why it was not approved automatically: %s", conditions(inc.Status.Conditions))
	}
	if q := quarantineOf(t, own); q != "" {
		t.Errorf("pod %s isolated without a person's approval (riposte.dev/quarantine=%s)", own.Name, q)
	}

	// The playbook opts in: the next such finding is approved automatically.
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pb), got); err != nil {
			return err
		}
		got.Spec.Approval.NamespacedReports = riposte.NamespacedReportsAutomatic
		return k8sClient.Update(ctx, got)
	})
	waitReady(t, pb.Namespace, pb.Name)
	if err := mallory.Create(ctx, report("wgpolicyk8s.io/v1alpha2", "PolicyReport", attacker, "pol-mine", pssResult(podResource(mine)))); err != nil {
		t.Fatal(err)
	}
	waitForIncident(t, attacker, pssRule, "Pod", "mine", riposte.PhaseRemediated)
	if q := quarantineOf(t, mine); q == "" {
		t.Errorf("pod %s not isolated once the playbook opted in", mine.Name)
	}

	// The admin path: a ClusterPolicyReport naming the victim's pod, with
	// a UID that is not the pod's, is answered; the target's UID is the
	// live pod's.
	admin := report("wgpolicyk8s.io/v1alpha2", "ClusterPolicyReport", "", "cpol-psp-baseline",
		pssResult(map[string]any{"apiVersion": "v1", "kind": "Pod", "name": db.Name, "namespace": victim, "uid": "00000000-0000-0000-0000-000000000000"}))
	mustCreate(t, admin)
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), admin) })
	answered := waitForIncident(t, victim, pssRule, "Pod", "db", riposte.PhaseRemediated)
	if answered.Spec.Target.UID != "" || answered.Status.Context == nil || answered.Status.Context.Target.UID != string(db.UID) {
		t.Errorf("target UID in spec %q, in context %+v; want none and the live pod's %s", answered.Spec.Target.UID, answered.Status.Context, db.UID)
	}
	if q := quarantineOf(t, db); q == "" {
		t.Error("a ClusterPolicyReport's finding was not remediated")
	}
}
