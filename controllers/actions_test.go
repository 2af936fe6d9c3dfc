package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
)

var alertCounter atomic.Int32

// remediate opens an incident about target (labels an alert would carry),
// answered by an auto-approving playbook in playbookNS with the given steps,
// and waits for phase.
func remediate(t *testing.T, incidentNS, playbookNS string, target map[string]string, phase riposte.IncidentPhase, steps ...riposte.Step) *riposte.Incident {
	t.Helper()
	alert := fmt.Sprintf("ActionTest%d", alertCounter.Add(1))
	pb := isolatePlaybook(playbookNS, strings.ToLower(alert), alert, &riposte.AutoApprove{})
	pb.Spec.Steps = steps
	if playbookNS == operatorNamespace {
		pb.Spec.ServiceAccountName = "" // the documented default, riposte-remediator
	}
	mustCreate(t, pb)
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), pb) })
	inc := alertIncident(incidentNS, "am-"+strings.ToLower(alert), alert, "", "")
	inc.Spec.Labels = map[string]string{"alertname": alert, "severity": "critical"}
	for k, v := range target {
		inc.Spec.Labels[k] = v
	}
	mustCreate(t, inc)
	return waitForPhase(t, incidentNS, inc.Name, phase)
}

// undoAs asks for the incident's undo as person and waits until it is undone.
func undoAs(t *testing.T, person string, inc *riposte.Incident) *riposte.Incident {
	t.Helper()
	askUndo(t, person, inc.Namespace, inc.Name)
	return waitForPhase(t, inc.Namespace, inc.Name, riposte.PhaseUndone)
}

// askUndo asks, as person, for the undo of incident ns/name.
func askUndo(t *testing.T, person, ns, name string) {
	t.Helper()
	if err := updateAs(context.Background(), people[person], &riposte.Incident{}, client.ObjectKey{Namespace: ns, Name: name}, func(o client.Object) {
		o.(*riposte.Incident).Spec.Undo = &riposte.UndoRequest{RequestedBy: person, Reason: "false positive"}
	}); err != nil {
		t.Fatalf("asking for undo as %s: %v", person, err)
	}
}

// get reads obj fresh from the API server.
func get(t *testing.T, obj client.Object, ns, name string) {
	t.Helper()
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("reading %T %s/%s: %v", obj, ns, name, err)
	}
}

func stepRecord(t *testing.T, inc *riposte.Incident, name string) riposte.StepRecord {
	t.Helper()
	for _, s := range inc.Status.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step record %q in %+v", name, inc.Status.Steps)
	return riposte.StepRecord{}
}

func deployment(t *testing.T, ns, name string, replicas int32) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}},
	}
	mustCreate(t, dep)
	return dep
}

func barePod(t *testing.T, ns, name string, mutate func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
	if mutate != nil {
		mutate(pod)
	}
	mustCreate(t, pod)
	return pod
}

// scaledToZero remediates a three-replica Deployment's pod by scaling the
// Deployment to 0.
func scaledToZero(t *testing.T) (string, *riposte.Incident) {
	t.Helper()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	updateDeployment(t, ns, "web", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](3) })
	return ns, remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseRemediated,
		riposte.Step{Name: "stop", Action: riposte.ActionScaleWorkload, Scale: &riposte.ScaleParams{Replicas: 0}})
}

// Every namespaced action against real objects, and its undo.
func TestWorkloadActionsAndTheirUndo(t *testing.T) {
	t.Run("ScaleWorkload remembers the replicas", func(t *testing.T) {
		ns, inc := scaledToZero(t)
		var dep appsv1.Deployment
		if get(t, &dep, ns, "web"); *dep.Spec.Replicas != 0 {
			t.Fatalf("replicas = %d after ScaleWorkload, want 0", *dep.Spec.Replicas)
		}
		rec := stepRecord(t, inc, "stop")
		if c := rec.Changes[0]; c.Object.Kind != "Deployment" || c.Undo != riposte.UndoRestore || c.Restore != `{"spec":{"replicas":3}}` {
			t.Errorf("change record = %+v, want a Deployment patch remembering 3 replicas", c)
		}
		undone := undoAs(t, "alice", inc)
		if get(t, &dep, ns, "web"); *dep.Spec.Replicas != 3 {
			t.Errorf("replicas = %d after undo, want 3 again", *dep.Spec.Replicas)
		}
		if s := stepRecord(t, undone, "stop"); s.Phase != riposte.StepUndone || s.UndoneBy != "alice" || s.UndoneAt == nil {
			t.Errorf("step after undo = %+v, want Undone by alice", s)
		}
		if c := condition(t, undone.Status.Conditions, riposte.IncidentUndone); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "alice (false positive)") {
			t.Errorf("Undone condition = %+v", c)
		}
	})

	t.Run("undo leaves a later change by someone else", func(t *testing.T) {
		ns, inc := scaledToZero(t)
		// The owning team brings one replica back by hand while investigating.
		updateDeployment(t, ns, "web", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](1) })
		undone := undoAs(t, "alice", inc)
		var dep appsv1.Deployment
		if get(t, &dep, ns, "web"); *dep.Spec.Replicas != 1 {
			t.Errorf("replicas = %d after undo, want the team's 1 kept", *dep.Spec.Replicas)
		}
		if c := condition(t, undone.Status.Conditions, riposte.IncidentUndone); !strings.Contains(c.Message, "changed by someone else since Riposte's change; left as it is") {
			t.Errorf("Undone condition %q does not say the later change was kept", c.Message)
		}
	})

	t.Run("RolloutRestart changes the template once and cannot be undone", func(t *testing.T) {
		ns := newNamespace(t)
		pod := deployedPod(t, ns, "web")
		inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseRemediated,
			riposte.Step{Name: "restart", Action: riposte.ActionRolloutRestart})
		var dep appsv1.Deployment
		get(t, &dep, ns, "web")
		if got := dep.Spec.Template.Annotations[actions.RestartedForAnnotation]; got != ns+"/"+inc.Name {
			t.Fatalf("template annotation = %q, want the incident", got)
		}
		undone := undoAs(t, "alice", inc)
		get(t, &dep, ns, "web")
		if _, still := dep.Spec.Template.Annotations[actions.RestartedForAnnotation]; !still {
			t.Error("undo of a restart must not restart again by removing the annotation")
		}
		if c := condition(t, undone.Status.Conditions, riposte.IncidentUndone); !strings.Contains(c.Message, "cannot be undone") {
			t.Errorf("Undone condition %q should say the restart cannot be undone", c.Message)
		}
	})

	t.Run("SuspendCronJob and SuspendJob", func(t *testing.T) {
		ns := newNamespace(t)
		tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "miner", Image: "busybox:1.36"}}}}
		cron := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: ns},
			Spec: batchv1.CronJobSpec{Schedule: "0 1 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
		mustCreate(t, cron)
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "nightly-1", Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{controllerRef("batch/v1", "CronJob", cron.Name, cron.UID)}},
			Spec: batchv1.JobSpec{Template: tmpl}}
		mustCreate(t, job)
		pod := barePod(t, ns, "nightly-1-abcde", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{controllerRef("batch/v1", "Job", job.Name, job.UID)}
		})
		inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseRemediated,
			riposte.Step{Name: "suspend-cron", Action: riposte.ActionSuspendCronJob},
			riposte.Step{Name: "suspend-job", Action: riposte.ActionSuspendJob})
		get(t, cron, ns, cron.Name)
		get(t, job, ns, job.Name)
		if !ptr.Deref(cron.Spec.Suspend, false) || !ptr.Deref(job.Spec.Suspend, false) {
			t.Fatalf("suspend: cronjob %v, job %v; want both true", cron.Spec.Suspend, job.Spec.Suspend)
		}
		undoAs(t, "alice", inc)
		get(t, cron, ns, cron.Name)
		get(t, job, ns, job.Name)
		if ptr.Deref(cron.Spec.Suspend, false) || ptr.Deref(job.Spec.Suspend, false) {
			t.Errorf("after undo: cronjob suspend %v, job suspend %v; want both false again", cron.Spec.Suspend, job.Spec.Suspend)
		}
	})

	t.Run("IsolateWorkload isolates every pod of the owner", func(t *testing.T) {
		ns := newNamespace(t)
		pod := deployedPod(t, ns, "web")
		sibling := barePod(t, ns, "web-5d4f-b8n3q", func(p *corev1.Pod) {
			p.Labels = map[string]string{"app": "web"}
			p.OwnerReferences = pod.OwnerReferences // another replica of the same ReplicaSet
		})
		other := barePod(t, ns, "db-0", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} })
		// The Deployment's selector matches it, but the Deployment does not
		// run it: a pod someone started by hand with the same labels.
		stray := barePod(t, ns, "web-debug", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "web"} })
		inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseRemediated,
			riposte.Step{Name: "isolate-all", Action: riposte.ActionIsolateWorkload})
		for _, name := range []string{pod.Name, sibling.Name} {
			var p corev1.Pod
			if get(t, &p, ns, name); p.Labels[actions.QuarantineLabel] != "deny-all" {
				t.Errorf("pod %s labels = %v, want it quarantined", name, p.Labels)
			}
		}
		for _, name := range []string{other.Name, stray.Name} {
			var o corev1.Pod
			if get(t, &o, ns, name); o.Labels[actions.QuarantineLabel] != "" {
				t.Errorf("pod %s, not the workload's, was quarantined", name)
			}
		}
		undoAs(t, "alice", inc)
		for _, name := range []string{pod.Name, sibling.Name} {
			var p corev1.Pod
			if get(t, &p, ns, name); p.Labels[actions.QuarantineLabel] != "" || p.Labels["app"] != "web" {
				t.Errorf("pod %s labels after undo = %v, want the quarantine label gone and its own labels kept", name, p.Labels)
			}
		}
		var np networkingv1.NetworkPolicy
		get(t, &np, ns, actions.QuarantinePolicyName("deny-all")) // shared: undo leaves it
	})
}

func updateDeployment(t *testing.T, ns, name string, mutate func(*appsv1.Deployment)) {
	t.Helper()
	if err := updateAs(context.Background(), k8sClient, &appsv1.Deployment{}, client.ObjectKey{Namespace: ns, Name: name}, func(o client.Object) {
		mutate(o.(*appsv1.Deployment))
	}); err != nil {
		t.Fatal(err)
	}
}

func TestPodActions(t *testing.T) {
	t.Run("DeletePod", func(t *testing.T) {
		ns := newNamespace(t)
		pod := barePod(t, ns, "miner", nil)
		inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseRemediated,
			riposte.Step{Name: "delete", Action: riposte.ActionDeletePod})
		if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
			t.Errorf("pod after DeletePod: %v, want not found", err)
		}
		if c := stepRecord(t, inc, "delete").Changes[0]; c.Operation != riposte.OperationDelete || c.Undo != riposte.UndoNone || c.Object.UID != string(pod.UID) {
			t.Errorf("change record = %+v, want a Delete of that pod's UID, not undoable", c)
		}
		// Approved by policy: the verdict is recorded with the plan it approved.
		if a := inc.Status.AutoApproval; a == nil || a.PlanHash != inc.Status.PlanHash || inc.Status.ApprovalGate != "" {
			t.Errorf("autoApproval %+v, gate %q, plan %s: want the automatic verdict on the applied plan, and no gate", a, inc.Status.ApprovalGate, inc.Status.PlanHash)
		}
	})

	t.Run("EvictPod goes through the eviction API", func(t *testing.T) {
		ns := newNamespace(t)
		pod := barePod(t, ns, "miner", nil)
		remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseRemediated,
			riposte.Step{Name: "evict", Action: riposte.ActionEvictPod})
		if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
			t.Errorf("pod after EvictPod: %v, want not found", err)
		}
	})

	t.Run("EvictPod respects a PodDisruptionBudget", func(t *testing.T) {
		ns := newNamespace(t)
		pod := barePod(t, ns, "db-0", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} })
		// The eviction API lets a pod that is not running go regardless of
		// budgets; this one runs and is ready, as a kubelet would report.
		pod.Status.Phase = corev1.PodRunning
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if err := k8sClient.Status().Update(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
		mustCreate(t, pdb)
		// What the disruption controller would report: one healthy pod, none may go.
		pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
		if err := k8sClient.Status().Update(context.Background(), pdb); err != nil {
			t.Fatal(err)
		}
		inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseFailed,
			riposte.Step{Name: "evict", Action: riposte.ActionEvictPod})
		// One write, approved by policy: the eviction itself is the API
		// server's check, and its refusal is the incident's answer.
		if c := condition(t, inc.Status.Conditions, riposte.ConditionReady); c.Reason != riposte.ReasonStepFailed || !strings.Contains(c.Message, "PodDisruptionBudget") {
			t.Errorf("Ready = %s: %s; want the budget's refusal", c.Reason, c.Message)
		}
		get(t, pod, ns, pod.Name)
		if pod.DeletionTimestamp != nil {
			t.Error("the protected pod is being deleted")
		}
	})
}

func TestMetadataPatchAndManifestActions(t *testing.T) {
	ns := newNamespace(t)
	// Generic actions act on what the playbook names; the team grants exactly that.
	mustCreate(t, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "remediator-generic", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "patch", "delete"}}}})
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "remediator-generic", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "remediator-generic"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: remediatorAccount, Namespace: ns}}})
	pod := deployedPod(t, ns, "web")
	manifest := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"evidence-{{ incident.metadata.name }}"},"data":{"alert":"{{ incident.spec.alertName }}","pod":"{{ incident.status.context.target.name }}"}}`
	inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseRemediated,
		riposte.Step{Name: "label", Action: riposte.ActionLabel, Metadata: &riposte.MetadataParams{Set: map[string]string{"security.example.com/incident": "{{ incident.metadata.name }}"}}},
		riposte.Step{Name: "annotate", Action: riposte.ActionAnnotate, Metadata: &riposte.MetadataParams{Set: map[string]string{"security.example.com/note": "seen {{ incident.spec.severity }}"}}},
		riposte.Step{Name: "evidence", Action: riposte.ActionApplyManifest, Manifest: &runtime.RawExtension{Raw: []byte(manifest)}},
		riposte.Step{Name: "no-token", Action: riposte.ActionPatch, Patch: &runtime.RawExtension{Raw: []byte(`{"metadata":{"labels":{"app":null,"tier":"{{ incident.spec.severity }}"}}}`)}},
	)
	var p corev1.Pod
	get(t, &p, ns, pod.Name)
	want := map[string]string{"security.example.com/incident": inc.Name, "tier": "critical"}
	for k, v := range want {
		if p.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (labels %v)", k, p.Labels[k], v, p.Labels)
		}
	}
	if _, has := p.Labels["app"]; has {
		t.Errorf("the merge patch's null did not remove label app: %v", p.Labels)
	}
	if got := p.Annotations["security.example.com/note"]; got != "seen critical" {
		t.Errorf("annotation = %q", got)
	}
	var cm corev1.ConfigMap
	if get(t, &cm, ns, "evidence-"+inc.Name); cm.Data["alert"] != inc.Spec.AlertName || cm.Data["pod"] != pod.Name {
		t.Errorf("ConfigMap from the template = %v", cm.Data)
	}

	undoAs(t, "bob", inc)
	get(t, &p, ns, pod.Name)
	if p.Labels["app"] != "web" || p.Labels["tier"] != "" || p.Labels["security.example.com/incident"] != "" || p.Annotations["security.example.com/note"] != "" {
		t.Errorf("after undo labels = %v annotations = %v; want exactly what was there before", p.Labels, p.Annotations)
	}
	if err := k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "evidence-" + inc.Name}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ConfigMap Riposte created is still there after undo: %v", err)
	}
}

func TestRevokeBinding(t *testing.T) {
	ns := newNamespace(t)
	// The account exists (newNamespace); RevokeBinding needs the RBAC family too.
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: remediatorAccount + "-rbac", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "riposte-action-rbac"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: remediatorAccount, Namespace: ns}}})
	pod := barePod(t, ns, "web", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "web" })
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "web-edit", Namespace: ns},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "web", Namespace: ns},
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "bob"}}}
	mustCreate(t, binding)
	inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseRemediated,
		riposte.Step{Name: "revoke", Action: riposte.ActionRevokeBinding, RevokeBinding: &riposte.RevokeBindingParams{
			Name: "web-edit", Subject: &riposte.BindingSubject{Name: "{{ incident.status.context.serviceAccountName }}"}}})
	get(t, binding, ns, "web-edit")
	if len(binding.Subjects) != 1 || binding.Subjects[0].Name != "bob" {
		t.Fatalf("subjects after RevokeBinding = %+v, want only bob", binding.Subjects)
	}
	undoAs(t, "alice", inc)
	get(t, binding, ns, "web-edit")
	if len(binding.Subjects) != 2 || binding.Subjects[0].Name != "web" {
		t.Errorf("subjects after undo = %+v, want web and bob back", binding.Subjects)
	}
}

func TestNodeActions(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-" + ns},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}}}
	mustCreate(t, node)
	t.Cleanup(func() { _ = k8sClient.Delete(ctx, node) })
	onNode := func(p *corev1.Pod) { p.Spec.NodeName = node.Name }
	victim := barePod(t, ns, "web", onNode)
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "busybox:1.36"}}}}}}
	mustCreate(t, ds)
	agent := barePod(t, ns, "agent-x", func(p *corev1.Pod) {
		onNode(p)
		p.OwnerReferences = []metav1.OwnerReference{controllerRef("apps/v1", "DaemonSet", ds.Name, ds.UID)}
	})
	mirror := barePod(t, ns, "static-"+node.Name, func(p *corev1.Pod) {
		onNode(p)
		p.Annotations = map[string]string{"kubernetes.io/config.mirror": "abc"}
	})

	get(t, node, "", node.Name)
	taintsBefore := node.Spec.Taints // the API server adds its own not-ready taint to a new node
	inc := remediate(t, ns, operatorNamespace, map[string]string{"node": node.Name}, riposte.PhaseRemediated,
		riposte.Step{Name: "taint", Action: riposte.ActionTaint, Taint: &riposte.TaintParams{Key: "riposte.dev/compromised", Value: "{{ incident.spec.alertName }}", Effect: "NoExecute"}},
		riposte.Step{Name: "drain", Action: riposte.ActionDrainNode})
	if inc.Status.RunAs != "system:serviceaccount:riposte-system:riposte-remediator" {
		t.Errorf("status.runAs = %q, want the default remediator of a cluster-wide playbook", inc.Status.RunAs)
	}
	get(t, node, "", node.Name)
	added := node.Spec.Taints[len(node.Spec.Taints)-1]
	if !node.Spec.Unschedulable || len(node.Spec.Taints) != len(taintsBefore)+1 || added.Key != "riposte.dev/compromised" || added.Value != inc.Spec.AlertName || added.Effect != corev1.TaintEffectNoExecute {
		t.Fatalf("node after Taint and DrainNode: unschedulable=%v taints=%+v", node.Spec.Unschedulable, node.Spec.Taints)
	}
	var p corev1.Pod
	if get(t, &p, ns, victim.Name); p.DeletionTimestamp == nil {
		t.Error("the ordinary pod on the node was not evicted")
	}
	for _, kept := range []*corev1.Pod{agent, mirror} {
		if get(t, &p, ns, kept.Name); p.DeletionTimestamp != nil {
			t.Errorf("drain evicted %s, which it must skip", kept.Name)
		}
	}
	drained := stepRecord(t, inc, "drain")
	if len(drained.Changes) != 2 || drained.Changes[1].Operation != riposte.OperationEvict {
		t.Errorf("drain records = %+v, want a cordon and one eviction", drained.Changes)
	}

	undoAs(t, "alice", inc)
	get(t, node, "", node.Name)
	if node.Spec.Unschedulable || !equality.Semantic.DeepEqual(node.Spec.Taints, taintsBefore) {
		t.Errorf("node after undo: unschedulable=%v taints=%+v; want it as it was", node.Spec.Unschedulable, node.Spec.Taints)
	}
}

// A namespaced playbook cannot touch a node, whatever its account may do.
func TestNodeActionsNeedAClusterWidePlaybook(t *testing.T) {
	ns := newNamespace(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-" + ns}}
	mustCreate(t, node)
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), node) })
	inc := remediate(t, ns, ns, map[string]string{"node": node.Name}, riposte.PhaseFailed,
		riposte.Step{Name: "cordon", Action: riposte.ActionCordonNode})
	if c := condition(t, inc.Status.Conditions, riposte.IncidentPlanned); c.Reason != riposte.ReasonGuardrail || !strings.Contains(c.Message, "cluster-scoped Node") {
		t.Errorf("Planned = %s: %s; want the scope guardrail", c.Reason, c.Message)
	}
	get(t, node, "", node.Name)
	if node.Spec.Unschedulable {
		t.Error("the node was cordoned")
	}
}

func TestNotifyPostsOnceWithTheURLFromASecret(t *testing.T) {
	ns := newNamespace(t)
	var mu sync.Mutex
	var bodies []map[string]any
	var keys []string
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		mu.Lock()
		bodies, keys = append(bodies, m), append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
	}))
	defer sink.Close()
	chatSecret(t, ns, sink.URL+"/hooks/T000/B000/secret")
	pod := deployedPod(t, ns, "web")
	inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseRemediated,
		riposte.Step{Name: "isolate", Action: riposte.ActionIsolatePod},
		riposte.Step{Name: "tell", Action: riposte.ActionNotify, Notify: &riposte.NotifyParams{
			URLSecretRef: riposte.SecretKeyRef{Name: "chat", Key: "url"},
			Text:         "Isolated {{ incident.status.context.target.name }} ({{ incident.spec.alertName }})"}})
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("the webhook got %d messages, want 1", len(bodies))
	}
	if want := "Isolated " + pod.Name + " (" + inc.Spec.AlertName + ")"; bodies[0]["text"] != want {
		t.Errorf("text = %q, want %q", bodies[0]["text"], want)
	}
	if keys[0] != ns+"/"+inc.Name+"/tell/0" {
		t.Errorf("Idempotency-Key = %q", keys[0])
	}
	b, _ := json.Marshal(inc.Status)
	if strings.Contains(string(b), "/hooks/T000") {
		t.Error("the webhook URL, a credential, appears in the incident's status")
	}
}

// chatSecret stores a webhook URL in the Secret chat, readable by the
// playbook's account, as a team would for a Notify step.
func chatSecret(t *testing.T, ns, url string) {
	t.Helper()
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns}, StringData: map[string]string{"url": url}})
	mustCreate(t, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-chat", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"chat"}, Verbs: []string{"get"}}}})
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read-chat", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-chat"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: remediatorAccount, Namespace: ns}}})
}

// A Notify step aimed at a host the admin did not list fails at once, its
// record naming the host, and onFailure: Continue runs the next step.
func TestNotifyToAnUnlistedHostFailsTheStepAndContinues(t *testing.T) {
	ns := newNamespace(t)
	chatSecret(t, ns, "http://169.254.169.254/latest/meta-data/iam")
	pod := deployedPod(t, ns, "web")
	inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": pod.Name}, riposte.PhaseFailed,
		riposte.Step{Name: "tell", Action: riposte.ActionNotify, OnFailure: riposte.OnFailureContinue, Notify: &riposte.NotifyParams{
			URLSecretRef: riposte.SecretKeyRef{Name: "chat", Key: "url"}, Text: "isolating"}},
		riposte.Step{Name: "isolate", Action: riposte.ActionIsolatePod})
	tell := stepRecord(t, inc, "tell")
	if tell.Phase != riposte.StepFailed || !strings.Contains(tell.Message, `host "169.254.169.254" (http) is not an allowed notification destination`) {
		t.Errorf("tell = %s %q, want Failed naming the host", tell.Phase, tell.Message)
	}
	if strings.Contains(tell.Message, "meta-data") {
		t.Errorf("the step's message holds the URL's path, a credential: %q", tell.Message)
	}
	if isolate := stepRecord(t, inc, "isolate"); isolate.Phase != riposte.StepApplied {
		t.Errorf("isolate = %s %q, want Applied after the failed Notify with onFailure Continue", isolate.Phase, isolate.Message)
	}
}

// The API server refuses what the playbook's account may not do, whatever
// Riposte itself may do; nothing changes. A plan of one write approved by
// policy is checked by that write; one of several by a dry run first.
func TestPlaybookAccountBoundsWhatChanges(t *testing.T) {
	ns := newNamespace(t)
	dep := deployment(t, ns, "web", 2)
	// Scaling needs riposte-action-workloads; take it away.
	if err := k8sClient.Delete(context.Background(), &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: remediatorAccount + "-workloads", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	inc := remediateTarget(t, ns, riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: dep.Name}, riposte.PhaseFailed,
		riposte.Step{Name: "stop", Action: riposte.ActionScaleWorkload, Scale: &riposte.ScaleParams{Replicas: 0}})
	c := condition(t, inc.Status.Conditions, riposte.ConditionReady)
	if !strings.Contains(c.Message, "forbidden") || !strings.Contains(c.Message, "system:serviceaccount:"+ns+":"+remediatorAccount) {
		t.Errorf("Ready = %s; want the API server's forbidden answer for the playbook's account", c.Message)
	}
	get(t, dep, ns, dep.Name)
	if *dep.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2: nothing may change", *dep.Spec.Replicas)
	}
}

// A plan approved by policy whose one write the API server refuses applies
// nothing and commits nothing, as a refused dry run: once the grant is back,
// the next look at the incident plans it again and it runs.
func TestRefusedSingleWriteIsPlannedAgain(t *testing.T) {
	ns := newNamespace(t)
	first, second := deployedPod(t, ns, "web"), deployedPod(t, ns, "db")
	// The first isolation creates the namespace's quarantine policy, so the
	// second plan makes one write: the pod's hold.
	remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": first.Name}, riposte.PhaseRemediated,
		riposte.Step{Name: "isolate", Action: riposte.ActionIsolatePod})
	grant := &rbacv1.RoleBinding{}
	get(t, grant, ns, remediatorAccount+"-isolate")
	if err := k8sClient.Delete(context.Background(), grant); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the API server's authorizer sees the grant gone
	inc := remediate(t, ns, ns, map[string]string{"namespace": ns, "pod": second.Name}, riposte.PhaseFailed,
		riposte.Step{Name: "isolate", Action: riposte.ActionIsolatePod})
	if c := condition(t, inc.Status.Conditions, riposte.ConditionReady); !strings.Contains(c.Message, "forbidden") {
		t.Errorf("Ready = %s; want the API server's refusal", c.Message)
	}
	if inc.Status.PlanHash != "" || len(inc.Status.Steps) != 0 || inc.Status.AutoApproval != nil {
		t.Errorf("plan %q, %d steps, autoApproval %+v: want nothing committed", inc.Status.PlanHash, len(inc.Status.Steps), inc.Status.AutoApproval)
	}
	if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentApproved); c != nil && c.Status == metav1.ConditionTrue {
		t.Errorf("Approved = %+v with no verdict recorded", c)
	}
	expectQuarantined(t, second, false)
	grant.ResourceVersion, grant.UID = "", ""
	mustCreate(t, grant)
	time.Sleep(300 * time.Millisecond) // the grant reaches the API server's authorizer
	if err := updateAs(context.Background(), k8sClient, &riposte.Incident{}, client.ObjectKeyFromObject(inc), func(o client.Object) {
		o.SetAnnotations(map[string]string{"example.com/retry": "1"})
	}); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ns, inc.Name, riposte.PhaseRemediated)
	expectQuarantined(t, second, true)
}

// remediateTarget is remediate for an incident that names its target.
func remediateTarget(t *testing.T, ns string, target riposte.ObjectReference, phase riposte.IncidentPhase, steps ...riposte.Step) *riposte.Incident {
	t.Helper()
	alert := fmt.Sprintf("ActionTest%d", alertCounter.Add(1))
	pb := isolatePlaybook(ns, strings.ToLower(alert), alert, &riposte.AutoApprove{})
	pb.Spec.Steps = steps
	mustCreate(t, pb)
	inc := alertIncident(ns, "am-"+strings.ToLower(alert), alert, "", "")
	inc.Spec.Labels = map[string]string{"alertname": alert, "severity": "critical"}
	inc.Spec.Target = &target
	mustCreate(t, inc)
	return waitForPhase(t, ns, inc.Name, phase)
}

// Two incidents isolating one pod each hold it; undoing either, in any order,
// keeps the other's isolation, at the strictest remaining hold.
func TestStackedIsolationIsReleasedInAnyOrder(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	target := map[string]string{"namespace": ns, "pod": pod.Name}
	strict := remediate(t, ns, ns, target, riposte.PhaseRemediated, riposte.Step{Name: "isolate", Action: riposte.ActionIsolatePod})
	lenient := remediate(t, ns, ns, target, riposte.PhaseRemediated, riposte.Step{Name: "isolate", Action: riposte.ActionIsolatePod, IsolatePod: &riposte.IsolatePodParams{AllowDNS: true}})
	labelled := func() (string, string) {
		var p corev1.Pod
		get(t, &p, ns, pod.Name)
		return p.Labels[actions.QuarantineLabel], p.Annotations[actions.QuarantinedByAnnotation]
	}
	// Holders are listed sorted by name; the names come from a counter
	// shared with other tests, so either may sort first.
	both := []string{ns + "/" + strict.Name + "=deny-all", ns + "/" + lenient.Name + "=allow-dns"}
	sort.Strings(both)
	if label, holders := labelled(); label != "deny-all" || holders != strings.Join(both, ",") {
		t.Fatalf("with both holding: label %q holders %q; want the strictest, deny-all, and both listed", label, holders)
	}
	// The older, stricter one undone first: the other still holds the pod.
	undone := undoAs(t, "alice", strict)
	if label, holders := labelled(); label != "allow-dns" || holders != ns+"/"+lenient.Name+"=allow-dns" {
		t.Errorf("after undoing %s: label %q holders %q; want the remaining allow-dns hold", strict.Name, label, holders)
	}
	if c := condition(t, undone.Status.Conditions, riposte.IncidentUndone); !strings.Contains(c.Message, "stays isolated: another incident still holds it") {
		t.Errorf("Undone condition %q does not say the pod stays isolated", c.Message)
	}
	undoAs(t, "alice", lenient)
	if label, holders := labelled(); label != "" || holders != "" {
		t.Errorf("after undoing both: label %q holders %q; want the pod free", label, holders)
	}
}
