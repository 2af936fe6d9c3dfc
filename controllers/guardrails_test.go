package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/controllers/incident"
	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// waitForHeld waits until a guardrail holds the incident for reason, with
// the phase kubectl get shows saying so: the plan is approved and waits for
// no one, so it is Held, not AwaitingApproval.
func waitForHeld(t *testing.T, ns, name, reason string) *riposte.Incident {
	t.Helper()
	var inc *riposte.Incident
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		var err error
		if inc, err = getIncident(ctx, ns, name); err != nil {
			return err
		}
		for _, c := range inc.Status.Conditions {
			if c.Type == riposte.IncidentHeld && c.Status == metav1.ConditionTrue && c.Reason == reason && inc.Status.Phase == riposte.PhaseHeld {
				return nil
			}
		}
		return fmt.Errorf("not held for %s; phase %s; conditions: %s", reason, inc.Status.Phase, conditionSummary(inc.Status.Conditions))
	})
	return inc
}

func expectQuarantined(t *testing.T, pod *corev1.Pod, want bool) {
	t.Helper()
	var p corev1.Pod
	get(t, &p, pod.Namespace, pod.Name)
	if got := p.Labels[actions.QuarantineLabel] != ""; got != want {
		t.Errorf("pod %s quarantined = %v, want %v", pod.Name, got, want)
	}
}

// A person pauses every remediation with one object; approved plans wait,
// say why, and run when the pause lifts.
func TestGlobalPauseHoldsRemediation(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mustCreate(t, isolatePlaybook(ns, "isolate", "ShellPaused", &riposte.AutoApprove{}))
	pause := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: riposte.PauseConfigMapName, Namespace: operatorNamespace},
		Data: map[string]string{"reason": "maintenance window"}}
	mustCreate(t, pause)
	t.Cleanup(func() { _ = k8sClient.Delete(ctx, pause) })
	mustCreate(t, alertIncident(ns, "am-paused", "ShellPaused", ns, pod.Name))

	inc := waitForHeld(t, ns, "am-paused", riposte.ReasonPaused)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentHeld); !strings.Contains(c.Message, "maintenance window") {
		t.Errorf("Held message %q does not say why Riposte is paused", c.Message)
	}
	if c := condition(t, inc.Status.Conditions, riposte.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != riposte.ReasonPaused {
		t.Errorf("Ready = %s/%s, want False/Paused", c.Status, c.Reason)
	}
	if err := expectEvent(ctx, ns, "am-paused", riposte.ReasonPaused); err != nil {
		t.Error(err)
	}
	expectQuarantined(t, pod, false)
	if len(inc.Status.Steps) != 0 {
		t.Errorf("a held plan recorded steps: %+v", inc.Status.Steps)
	}

	// A held plan withdrawn by an undo is held no more.
	other := deployedPod(t, ns, "api")
	withdrawn := alertIncident(ns, "am-paused-withdrawn", "ShellPaused", ns, other.Name)
	withdrawn.Spec.Fingerprint = "00000000000000aa"
	mustCreate(t, withdrawn)
	waitForHeld(t, ns, withdrawn.Name, riposte.ReasonPaused)
	undone := undoAs(t, "alice", withdrawn)
	if c := condition(t, undone.Status.Conditions, riposte.IncidentHeld); c.Status != metav1.ConditionFalse || c.Reason != riposte.ReasonNotHeld {
		t.Errorf("Held = %s %s after the held plan was undone, want False NotHeld", c.Status, c.Reason)
	}

	if err := k8sClient.Delete(ctx, pause); err != nil {
		t.Fatal(err)
	}
	inc = waitForPhase(t, ns, "am-paused", riposte.PhaseRemediated)
	expectQuarantined(t, pod, true)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentHeld); c.Status != metav1.ConditionFalse {
		t.Errorf("Held = %s after the pause lifted", c.Status)
	}
}

func TestPlaybookLimitsHoldRemediation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits riposte.Limits
		reason string
	}{
		{"maxPerHour", riposte.Limits{MaxPerHour: ptr.To[int32](1)}, riposte.ReasonRateLimited},
		{"maxConcurrent", riposte.Limits{MaxConcurrent: ptr.To[int32](1)}, riposte.ReasonConcurrencyLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			first, second := deployedPod(t, ns, "web"), deployedPod(t, ns, "api")
			pb := isolatePlaybook(ns, "isolate", "ShellLimited", &riposte.AutoApprove{})
			pb.Spec.Limits = &tc.limits
			mustCreate(t, pb)
			mustCreate(t, alertIncident(ns, "am-first", "ShellLimited", ns, first.Name))
			waitForPhase(t, ns, "am-first", riposte.PhaseRemediated)
			mustCreate(t, alertIncident(ns, "am-second", "ShellLimited", ns, second.Name))
			inc := waitForHeld(t, ns, "am-second", tc.reason)
			if c := condition(t, inc.Status.Conditions, riposte.IncidentHeld); !strings.Contains(c.Message, "limits."+tc.name) {
				t.Errorf("Held message %q does not name the limit", c.Message)
			}
			expectQuarantined(t, second, false)
			if tc.limits.MaxConcurrent == nil {
				return
			}
			// Closing the open remediation frees the slot.
			resolveAlert(t, ns, "am-first", nil)
			waitForPhase(t, ns, "am-second", riposte.PhaseRemediated)
			expectQuarantined(t, second, true)
		})
	}
}

// Undo is asked for in one's own name, with the verb undo: the API server
// checks both.
func TestUndoRequestsCannotBeForged(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mustCreate(t, isolatePlaybook(ns, "isolate", "ShellUndo", &riposte.AutoApprove{}))
	mustCreate(t, alertIncident(ns, "am-undo", "ShellUndo", ns, pod.Name))
	inc := waitForPhase(t, ns, "am-undo", riposte.PhaseRemediated)
	key := client.ObjectKeyFromObject(inc)
	for _, tc := range []struct{ caller, requestedBy, wantErr string }{
		{"alice", "bob", "spec.undo.requestedBy must be you (alice)"},
		{"carol", "carol", "may not undo incidents"},
	} {
		err := updateAs(ctx, people[tc.caller], &riposte.Incident{}, key, func(o client.Object) {
			o.(*riposte.Incident).Spec.Undo = &riposte.UndoRequest{RequestedBy: tc.requestedBy}
		})
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s asking undo as %s: %v, want refused with %q", tc.caller, tc.requestedBy, err, tc.wantErr)
		}
	}
	expectQuarantined(t, pod, true)

	undone := undoAs(t, "alice", inc)
	expectQuarantined(t, pod, false)
	if err := expectEvent(ctx, ns, "am-undo", riposte.ReasonUndone); err != nil {
		t.Error(err)
	}
	// The request is on the record for good.
	err := updateAs(ctx, people["alice"], &riposte.Incident{}, key, func(o client.Object) { o.(*riposte.Incident).Spec.Undo = nil })
	if err == nil || !strings.Contains(err.Error(), "cannot be withdrawn") {
		t.Errorf("withdrawing the undo request: %v, want refused", err)
	}
	if s := stepRecord(t, undone, "isolate"); s.Phase != riposte.StepUndone {
		t.Errorf("step = %s, want Undone", s.Phase)
	}
}

// Temporary containment undoes itself when its duration runs out, unless
// the incident was escalated.
func TestTimedContainmentExpires(t *testing.T) {
	ns := newNamespace(t)
	short, kept := deployedPod(t, ns, "web"), deployedPod(t, ns, "api")
	pb := isolatePlaybook(ns, "isolate-briefly", "ShellBrief", &riposte.AutoApprove{})
	pb.Spec.Steps[0].Duration = &metav1.Duration{Duration: 2 * time.Second}
	mustCreate(t, pb)
	mustCreate(t, alertIncident(ns, "am-brief", "ShellBrief", ns, short.Name))
	escalated := alertIncident(ns, "am-escalated", "ShellBrief", ns, kept.Name)
	escalated.Spec.Escalated = true
	mustCreate(t, escalated)

	inc := waitForPhase(t, ns, "am-brief", riposte.PhaseRemediated)
	if s := stepRecord(t, inc, "isolate"); s.UndoAt == nil {
		t.Fatalf("step %+v has no undoAt", s)
	}
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		inc, err := getIncident(ctx, ns, "am-brief")
		if err != nil {
			return err
		}
		if s := inc.Status.Steps[0]; s.Phase != riposte.StepUndone || s.UndoneBy != incident.ExpiryUndoer {
			return fmt.Errorf("step %s undone by %q", s.Phase, s.UndoneBy)
		}
		return nil
	})
	expectQuarantined(t, short, false)
	if err := expectEvent(context.Background(), ns, "am-brief", riposte.ReasonContainmentExpired); err != nil {
		t.Error(err)
	}
	waitForPhase(t, ns, "am-escalated", riposte.PhaseRemediated)
	time.Sleep(3 * time.Second)
	expectQuarantined(t, kept, true)
}

// RBAC taken away between approval and apply: the step fails with the API
// server's answer, and nothing is changed.
func TestForbiddenStepFailsAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mustCreate(t, isolatePlaybook(ns, "isolate", "ShellForbidden", nil))
	mustCreate(t, alertIncident(ns, "am-forbidden", "ShellForbidden", ns, pod.Name))
	waitForPhase(t, ns, "am-forbidden", riposte.PhaseAwaitingApproval)
	if err := k8sClient.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: remediatorAccount + "-isolate", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	appendDecision(t, ns, "am-forbidden", "alice", riposte.DecisionApprove)
	inc := waitForPhase(t, ns, "am-forbidden", riposte.PhaseFailed)
	s := stepRecord(t, inc, "isolate")
	if s.Phase != riposte.StepFailed || !strings.Contains(s.Message, "forbidden") || !strings.Contains(s.Message, "system:serviceaccount:"+ns+":"+remediatorAccount) {
		t.Errorf("step = %s: %s; want Failed with the API server's forbidden answer for the playbook's account", s.Phase, s.Message)
	}
	for _, c := range s.Changes {
		if c.Done {
			t.Errorf("change %s %s is marked done", c.Operation, c.Object)
		}
	}
	expectQuarantined(t, pod, false)
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: actions.QuarantinePolicyName("deny-all")}, &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
		t.Errorf("the quarantine policy: %v, want not found", err)
	}
}

// A step that fails at apply time stops the steps after it, unless it says
// onFailure: Continue; what was applied stays on the record, undoable.
func TestOnFailureStopOrContinue(t *testing.T) {
	for _, tc := range []struct {
		onFailure riposte.OnFailure
		isolated  bool
		second    riposte.StepPhase
	}{
		{riposte.OnFailureStop, false, riposte.StepSkipped},
		{riposte.OnFailureContinue, true, riposte.StepApplied},
	} {
		t.Run(string(tc.onFailure), func(t *testing.T) {
			ctx := context.Background()
			ns := newNamespace(t)
			pod := deployedPod(t, ns, "web")
			pb := isolatePlaybook(ns, "evict-then-isolate", "ShellSteps", nil)
			pb.Spec.Steps = []riposte.Step{
				{Name: "evict", Action: riposte.ActionEvictPod, OnFailure: tc.onFailure},
				{Name: "isolate", Action: riposte.ActionIsolatePod},
			}
			mustCreate(t, pb)
			mustCreate(t, alertIncident(ns, "am-steps", "ShellSteps", ns, pod.Name))
			waitForPhase(t, ns, "am-steps", riposte.PhaseAwaitingApproval)
			// The account loses the eviction permission after the plan was dry-run.
			if err := k8sClient.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: remediatorAccount + "-pods", Namespace: ns}}); err != nil {
				t.Fatal(err)
			}
			appendDecision(t, ns, "am-steps", "alice", riposte.DecisionApprove)
			inc := waitForPhase(t, ns, "am-steps", riposte.PhaseFailed)
			if s := stepRecord(t, inc, "evict"); s.Phase != riposte.StepFailed || !strings.Contains(s.Message, "forbidden") {
				t.Errorf("evict step = %s: %s", s.Phase, s.Message)
			}
			if s := stepRecord(t, inc, "isolate"); s.Phase != tc.second {
				t.Errorf("isolate step = %s (%s), want %s", s.Phase, s.Message, tc.second)
			}
			expectQuarantined(t, pod, tc.isolated)
			if tc.isolated {
				undoAs(t, "alice", inc)
				expectQuarantined(t, pod, false)
			}
		})
	}
}
