package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// pendingGate opens an incident under a playbook that needs people and
// returns the namespace, the pod and the gate's name once it waits.
func pendingGate(t *testing.T, mutate func(*riposte.Playbook)) (string, *corev1.Pod, string) {
	t.Helper()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	pb := isolatePlaybook(ns, "manual", "ContainerShell", nil)
	if mutate != nil {
		mutate(pb)
	}
	mustCreate(t, pb)
	mustCreate(t, alertIncident(ns, "am-gate", "ContainerShell", ns, pod.Name))
	waitForPhase(t, ns, "am-gate", riposte.PhaseAwaitingApproval)
	return ns, pod, "am-gate"
}

func expectUnisolated(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	live := &corev1.Pod{}
	if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(pod), live); err != nil {
		t.Fatal(err)
	}
	if _, ok := live.Labels[actions.QuarantineLabel]; ok {
		t.Errorf("pod %s was isolated without an approved plan", pod.Name)
	}
}

// The API server itself refuses decisions that are not the caller's own, by
// someone without the approve verb, or on a gate not opened by Riposte.
func TestDecisionsAreBoundToTheCaller(t *testing.T) {
	ns, pod, gate := pendingGate(t, nil)
	cases := []struct {
		reason       string
		caller, user string
		wantErr      string
	}{
		{reason: "a user without the approve verb cannot decide", caller: "carol", user: "carol", wantErr: "the RBAC verb approve on approvalgates is required"},
		{reason: "nobody can approve in another's name", caller: "alice", user: "bob", wantErr: "a decision must be recorded by the user it names: you are alice"},
		{reason: "nobody can reject in another's name either", caller: "bob", user: "alice", wantErr: "you are bob"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			err := decideAs(tc.caller, tc.user, ns, gate, riposte.DecisionApprove)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("decision error = %v, want Forbidden containing %q", err, tc.wantErr)
			}
		})
	}
	t.Run("a gate cannot be created with decisions in it", func(t *testing.T) {
		forged := &riposte.ApprovalGate{
			ObjectMeta: metav1.ObjectMeta{Name: "forged", Namespace: ns},
			Spec: riposte.ApprovalGateSpec{Incident: "am-gate", Playbook: riposte.NamespacedName{Namespace: ns, Name: "manual"},
				Plan:      riposte.Plan{Hash: "sha256:x", Steps: []riposte.PlannedStep{{Name: "isolate", Action: riposte.ActionIsolatePod}}},
				Decisions: []riposte.Decision{{User: "alice", Decision: riposte.DecisionApprove, Reason: "pre-approved"}}},
		}
		if err := people["alice"].Create(context.Background(), forged); !apierrors.IsForbidden(err) {
			t.Fatalf("creating a gate with decisions: %v, want Forbidden", err)
		}
	})
	cur := &riposte.ApprovalGate{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: gate}, cur); err != nil {
		t.Fatal(err)
	}
	if len(cur.Spec.Decisions) != 0 || cur.Status.Phase != riposte.GatePending {
		t.Errorf("gate after refused decisions: %d decisions, phase %s", len(cur.Spec.Decisions), cur.Status.Phase)
	}
	expectUnisolated(t, pod)
}

// A quorum of two needs two different people; until then nothing runs.
func TestQuorumOfTwoNeedsTwoPeople(t *testing.T) {
	ns, pod, gate := pendingGate(t, func(pb *riposte.Playbook) { pb.Spec.Approval.RequiredApprovals = 2 })
	appendDecision(t, ns, gate, "alice", riposte.DecisionApprove)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		g := &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: gate}, g); err != nil {
			return err
		}
		if g.Status.Approvals != 1 || g.Status.Phase != riposte.GatePending || g.Status.Message != "1 of 2 approvals" {
			return fmt.Errorf("gate %s, %d approvals, %q", g.Status.Phase, g.Status.Approvals, g.Status.Message)
		}
		return nil
	})
	if err := decideAs("alice", "alice", ns, gate, riposte.DecisionApprove); err == nil {
		t.Fatal("alice approved twice")
	}
	expectUnisolated(t, pod)

	appendDecision(t, ns, gate, "bob", riposte.DecisionApprove)
	waitForPhase(t, ns, "am-gate", riposte.PhaseRemediated)
	g := &riposte.ApprovalGate{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: gate}, g); err != nil {
		t.Fatal(err)
	}
	if strings.Join(g.Status.DecidedBy, ",") != "alice,bob" || g.Status.DecidedAt == nil {
		t.Errorf("decidedBy %v at %v, want alice and bob with a time", g.Status.DecidedBy, g.Status.DecidedAt)
	}
	if got := notifications.about(ns, gate); len(got) != 1 || !strings.Contains(got[0].Approve, "kubectl riposte approve -n "+ns+" "+gate) {
		t.Errorf("notifications for the waiting gate: %+v, want exactly one with the approve command", got)
	}
}

// A receiver down when a gate opens is told once it is back: nothing else
// would wake a gate nobody was told about.
func TestFailedNotificationIsSentAgain(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mustCreate(t, isolatePlaybook(ns, "manual", "ContainerShell", nil))
	notifications.failNext(ns, "am-down", 3) // every attempt of the first send
	mustCreate(t, alertIncident(ns, "am-down", "ContainerShell", ns, pod.Name))
	waitForPhase(t, ns, "am-down", riposte.PhaseAwaitingApproval)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error { return expectEvent(ctx, ns, "am-down", "NotificationFailed") })
	testenv.Eventually(t, 25*time.Second, func(ctx context.Context) error {
		if got := notifications.about(ns, "am-down"); len(got) != 1 {
			return fmt.Errorf("%d notifications received after %d attempts, want one once the receiver is back", len(got), notifications.attemptsAbout(ns, "am-down"))
		}
		g := &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "am-down"}, g); err != nil || g.Status.NotifiedAt == nil {
			return fmt.Errorf("gate not marked notified (err %v)", err)
		}
		return nil
	})
}

// An undecided gate expires as its policy says: rejected, and nothing runs.
func TestExpiryRejects(t *testing.T) {
	ns, pod, gate := pendingGate(t, func(pb *riposte.Playbook) {
		pb.Spec.Approval.Timeout = &metav1.Duration{Duration: 2 * time.Second}
	})
	inc := waitForPhase(t, ns, "am-gate", riposte.PhaseRejected)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentApproved); !strings.Contains(c.Message, "expired undecided") {
		t.Errorf("Approved condition %q, want the expiry", c.Message)
	}
	g := &riposte.ApprovalGate{}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: gate}, g); err != nil || g.Status.Phase != riposte.GateExpired {
		t.Errorf("gate phase %q (err %v), want Expired", g.Status.Phase, err)
	}
	expectUnisolated(t, pod)
}

// The person who opened an incident cannot approve its remediation; someone
// else can. People open only Manual incidents, in their own name.
func TestRequesterCannotApproveTheirOwnIncident(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "db")
	pb := isolatePlaybook(ns, "manual", "SuspiciousQuery", nil)
	pb.Spec.Approval.ManualRequests = riposte.ManualAnyone // dave holds no rights on pods
	mustCreate(t, pb)
	manual := func(name, requestedBy string, source riposte.IncidentSource) *riposte.Incident {
		return &riposte.Incident{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: riposte.IncidentSpec{Source: source, AlertName: "SuspiciousQuery", Severity: "critical", Fingerprint: "f00d",
				RequestedBy: requestedBy,
				Target:      &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod.Name}},
		}
	}
	for _, tc := range []struct {
		reason  string
		inc     *riposte.Incident
		wantErr string
	}{
		{reason: "in someone else's name", inc: manual("not-mine", "alice", riposte.SourceManual), wantErr: "spec.requestedBy must be you (dave)"},
		{reason: "passed off as an alert", inc: manual("fake-alert", "", riposte.SourceAlertmanager), wantErr: "only Riposte opens Alertmanager incidents"},
		{reason: "passed off as drift", inc: fakeDrift(manual("fake-drift", "", riposte.SourceDrift)), wantErr: "only Riposte opens Drift incidents"},
	} {
		if err := people["dave"].Create(ctx, tc.inc); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want Forbidden containing %q", tc.reason, err, tc.wantErr)
		}
	}

	if err := people["dave"].Create(ctx, manual("daves", "dave", riposte.SourceManual)); err != nil {
		t.Fatalf("dave opening a Manual incident in his own name: %v", err)
	}
	waitForPhase(t, ns, "daves", riposte.PhaseAwaitingApproval)
	err := decideAs("dave", "dave", ns, "daves", riposte.DecisionApprove)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "the person who opened the incident may not approve") {
		t.Fatalf("dave approving his own incident: %v, want Forbidden", err)
	}
	expectUnisolated(t, pod)
	appendDecision(t, ns, "daves", "alice", riposte.DecisionApprove)
	waitForPhase(t, ns, "daves", riposte.PhaseRemediated)
}

// Time to decision and pending gates are on the metrics endpoint.
func TestGateMetrics(t *testing.T) {
	gathered := func() map[string]uint64 {
		families, err := metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]uint64{}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				switch {
				case m.GetHistogram() != nil:
					out[f.GetName()] += m.GetHistogram().GetSampleCount()
				case m.GetGauge() != nil:
					out[f.GetName()] += uint64(m.GetGauge().GetValue())
				}
			}
		}
		return out
	}
	ns, _, gate := pendingGate(t, nil)
	if got := gathered()["riposte_approvalgates_pending"]; got < 1 {
		t.Errorf("riposte_approvalgates_pending = %d with a gate waiting", got)
	}
	before := gathered()["riposte_approvalgate_decision_seconds"]
	appendDecision(t, ns, gate, "alice", riposte.DecisionApprove)
	waitForPhase(t, ns, "am-gate", riposte.PhaseRemediated)
	if after := gathered()["riposte_approvalgate_decision_seconds"]; after <= before {
		t.Errorf("the decision was not timed: %d observations before, %d after", before, after)
	}
}

// An approver bound in one namespace only cannot decide gates elsewhere: the
// approve verb is checked on the gate itself.
func TestApproveVerbIsScopedByRoleBinding(t *testing.T) {
	ctx := context.Background()
	ns, pod, gate := pendingGate(t, nil)
	other := newNamespace(t)
	erin, err := env.UserClient("erin")
	if err != nil {
		t.Fatal(err)
	}
	if err := k8sClient.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "erin-approves-here", Namespace: other},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "riposte-approver"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "erin"}},
	}); err != nil {
		t.Fatal(err)
	}
	err = updateAs(ctx, erin, &riposte.ApprovalGate{}, client.ObjectKey{Namespace: ns, Name: gate}, func(o client.Object) {
		g := o.(*riposte.ApprovalGate)
		g.Spec.Decisions = append(g.Spec.Decisions, riposte.Decision{User: "erin", Decision: riposte.DecisionApprove, Reason: "ok"})
	})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("erin deciding outside her namespace: %v, want Forbidden", err)
	}
	expectUnisolated(t, pod)
}

// A person who points the incident at another target while its plan waits
// gets a new gate for the new plan: the approval of the old one runs nothing.
func TestChangedTargetAfterApprovalAsksAgain(t *testing.T) {
	ctx := context.Background()
	ns, first, gate := pendingGate(t, func(pb *riposte.Playbook) { pb.Spec.Approval.ManualRequests = riposte.ManualAnyone })
	second := deployedPod(t, ns, "api")
	if err := updateAs(ctx, people["dave"], &riposte.Incident{}, client.ObjectKey{Namespace: ns, Name: "am-gate"}, func(o client.Object) {
		inc := o.(*riposte.Incident)
		inc.Spec.Target = &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: second.Name}
		inc.Spec.TargetSetBy = "dave"
	}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		inc, err := getIncident(ctx, ns, "am-gate")
		if err != nil {
			return err
		}
		if inc.Status.Context == nil || inc.Status.Context.Target == nil || inc.Status.Context.Target.Name != second.Name {
			return fmt.Errorf("incident context target %+v, want %s", inc.Status.Context, second.Name)
		}
		return nil
	})
	appendDecision(t, ns, gate, "alice", riposte.DecisionApprove)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		next := &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: gate + "-2"}, next); err != nil {
			return err
		}
		if next.Spec.Plan.Steps[0].Target == nil || next.Spec.Plan.Steps[0].Target.Name != second.Name || next.Status.Phase != riposte.GatePending {
			return fmt.Errorf("new gate %s targets %+v", next.Status.Phase, next.Spec.Plan.Steps[0].Target)
		}
		return nil
	})
	expectUnisolated(t, first)
	expectUnisolated(t, second)
	appendDecision(t, ns, gate+"-2", "bob", riposte.DecisionApprove)
	waitForPhase(t, ns, "am-gate", riposte.PhaseRemediated)
	expectUnisolated(t, first)
	live := &corev1.Pod{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(second), live); err != nil || live.Labels[actions.QuarantineLabel] == "" {
		t.Errorf("the newly approved target was not isolated: %v (err %v)", live.Labels, err)
	}
}

// A waiting gate is announced on the incident and on the gate; an alert that
// resolves before anyone decides withdraws it.
func TestResolvedAlertCancelsAWaitingGate(t *testing.T) {
	ns, pod, gate := pendingGate(t, nil)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		if err := expectEvent(ctx, ns, "am-gate", riposte.ReasonAwaitingApproval); err != nil {
			return err
		}
		var events corev1.EventList
		if err := k8sClient.List(ctx, &events, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "ApprovalGate" && e.InvolvedObject.Name == gate && strings.Contains(e.Message, "kubectl riposte approve") {
				return nil
			}
		}
		return fmt.Errorf("no Event on gate %s telling how to approve", gate)
	})

	ends := metav1.Now()
	resolveAlert(t, ns, "am-gate", &ends)
	inc := waitForPhase(t, ns, "am-gate", riposte.PhaseResolved)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentApproved); c.Reason != riposte.ReasonAlertResolved {
		t.Errorf("Approved condition = %s %q, want AlertResolved", c.Reason, c.Message)
	}
	// The incident records that it withdrew, and why; the gate controller,
	// the only writer of gates' status, then closes the gate so.
	if w := inc.Status.WithdrawnGates; len(w) != 1 || w[0].Name != gate || w[0].Phase != riposte.GateCancelled || w[0].Reason != riposte.ReasonAlertResolved {
		t.Errorf("withdrawn gates %+v, want %s Cancelled for AlertResolved", w, gate)
	}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		g := &riposte.ApprovalGate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: gate}, g); err != nil || g.Status.Phase != riposte.GateCancelled {
			return fmt.Errorf("gate phase %q (err %v), want Cancelled", g.Status.Phase, err)
		}
		if !slices.Equal(g.Status.DecidedBy, []string{"riposte"}) || g.Status.Message != inc.Status.WithdrawnGates[0].Message {
			return fmt.Errorf("gate closed by %v saying %q, want riposte saying %q", g.Status.DecidedBy, g.Status.Message, inc.Status.WithdrawnGates[0].Message)
		}
		return nil
	})
	// A cancelled gate takes no more decisions, and changes nothing.
	if err := decideAs("alice", "alice", ns, gate, riposte.DecisionApprove); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "is Cancelled: it takes no more decisions") {
		t.Errorf("deciding a cancelled gate: %v, want Forbidden", err)
	}
	testenv.Consistently(t, time.Second, func(ctx context.Context) error {
		cur, err := getIncident(ctx, ns, "am-gate")
		if err != nil || cur.Status.Phase != riposte.PhaseResolved {
			return fmt.Errorf("incident moved to %q (err %v)", cur.Status.Phase, err)
		}
		return nil
	})
	expectUnisolated(t, pod)
}

// fakeDrift makes an incident look like one the drift detector opened.
func fakeDrift(inc *riposte.Incident) *riposte.Incident {
	inc.Spec.Drift = &riposte.DriftFinding{Playbook: riposte.NamespacedName{Namespace: inc.Namespace, Name: "manual"},
		Rule: "no-debug", Source: *inc.Spec.Target}
	return inc
}
