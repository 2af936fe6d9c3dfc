package drift_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/guard"
	"github.com/riposte-dev/riposte/internal/testenv"
)

var packOnce sync.Once

// installPack applies config/samples/policies as a user would, and waits
// until every playbook in it is Ready.
func installPack(t *testing.T) {
	t.Helper()
	packOnce.Do(func() {
		if err := testenv.ApplyDir(context.Background(), env.Config, filepath.Join(testenv.RepoRoot(), "config", "samples", "policies")); err != nil {
			t.Fatal(err)
		}
	})
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		var list riposte.PlaybookList
		if err := k8sClient.List(ctx, &list, client.InNamespace(operatorNamespace)); err != nil {
			return err
		}
		ready := 0
		for _, pb := range list.Items {
			if !strings.HasPrefix(pb.Name, "policy-") {
				continue
			}
			if c := meta.FindStatusCondition(pb.Status.Conditions, riposte.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("playbook %s is not ready: %s", pb.Name, conditions(pb.Status.Conditions))
			}
			ready++
		}
		if ready < 7 {
			return fmt.Errorf("%d pack playbooks ready, want 7", ready)
		}
		return nil
	})
}

// compliantPod breaks no rule of the pack; edit makes it break one.
func compliantPod(ns, name string, edit func(*corev1.Pod)) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
			Containers:      []corev1.Container{{Name: "app", Image: "registry.example.com/shop/web:1.4.2"}},
		},
	}
	if edit != nil {
		edit(pod)
	}
	return pod
}

// Each policy of the pack opens an incident for an object that breaks it,
// with the object as target and a gate waiting for people, and none for an
// object that complies.
func TestPolicyPackPods(t *testing.T) {
	installPack(t)
	ns := namespace(t, nil)
	mustCreate(t, compliantPod(ns, "fine", nil))
	cases := []struct {
		rule, message string
		edit          func(*corev1.Pod)
	}{
		{"no-privileged-containers", "privileged containers: app", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		}},
		{"no-host-namespaces", "host", func(p *corev1.Pod) { p.Spec.HostPID = true }},
		{"no-hostpath", "hostPath volumes: root (/)", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		}},
		{"run-as-non-root", "containers that may run as root: app", func(p *corev1.Pod) { p.Spec.SecurityContext = nil }},
		{"allowed-registries", "docker.io/evil/miner:1.0", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "docker.io/evil/miner:1.0" }},
		{"no-latest-tag", "registry.example.com/shop/web:latest", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "registry.example.com/shop/web:latest" }},
	}
	for _, tc := range cases {
		t.Run(tc.rule, func(t *testing.T) {
			mustCreate(t, compliantPod(ns, tc.rule, tc.edit))
			inc := waitForIncident(t, ns, tc.rule, "Pod", tc.rule, riposte.PhaseAwaitingApproval)
			if !strings.Contains(inc.Spec.Annotations["summary"], tc.message) {
				t.Errorf("summary %q does not say %q", inc.Spec.Annotations["summary"], tc.message)
			}
			if inc.Spec.Target.UID == "" || inc.Status.Context == nil || inc.Status.Context.Target == nil {
				t.Errorf("the incident is not about the pod, enriched: target %+v, context %+v", inc.Spec.Target, inc.Status.Context)
			}
			if inc.Spec.Source != riposte.SourceDrift || inc.Status.Playbook == nil || !strings.HasPrefix(inc.Status.Playbook.Name, "policy-") {
				t.Errorf("source %s, playbook %v", inc.Spec.Source, inc.Status.Playbook)
			}
		})
	}
	t.Run("compliant pod", func(t *testing.T) {
		var rules []string
		for _, tc := range cases {
			rules = append(rules, tc.rule)
		}
		noIncident(t, ns, rules[0], "Pod", "fine", rules[1:]...)
	})
}

// A namespace without a default-deny policy opens an incident; approving
// it applies one, and the incident resolves by itself as the namespace
// now complies. A namespace that has one opens none.
func TestPolicyPackDefaultDeny(t *testing.T) {
	installPack(t)
	ctx := context.Background()
	bare := namespace(t, nil)
	inc := waitForIncident(t, bare, "default-deny-ingress", "Namespace", bare, riposte.PhaseAwaitingApproval)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		pb := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: "policy-default-deny"}, pb); err != nil {
			return err
		}
		if d := pb.Status.Drift; d == nil || d.OpenIncidents < 1 || strings.Join(d.Watching, ",") != "Namespace,NetworkPolicy.networking.k8s.io" {
			return fmt.Errorf("status.drift %+v", d)
		}
		return nil
	})
	approve(t, inc)
	resolved := waitForIncident(t, bare, "default-deny-ingress", "Namespace", bare, riposte.PhaseResolved)
	if resolved.Name != inc.Name || resolved.Spec.Drift.Resolution != riposte.DriftComplies || resolved.Status.ResolvedAt == nil {
		t.Errorf("incident %s: resolution %q, resolvedAt %v", resolved.Name, resolved.Spec.Drift.Resolution, resolved.Status.ResolvedAt)
	}
	if len(resolved.Status.Steps) != 1 || resolved.Status.Steps[0].Phase != riposte.StepApplied {
		t.Errorf("steps %+v", resolved.Status.Steps)
	}
	np := &networkingv1.NetworkPolicy{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: bare, Name: "default-deny-ingress"}, np); err != nil {
		t.Fatalf("the remediation did not apply the policy: %v", err)
	}

	// Deleting the policy is drift again: a new incident, a new name.
	if err := k8sClient.Delete(ctx, np); err != nil {
		t.Fatal(err)
	}
	again := waitForIncident(t, bare, "default-deny-ingress", "Namespace", bare, riposte.PhaseAwaitingApproval)
	if again.Name != inc.Name+"-2" {
		t.Errorf("second occurrence named %s, want %s-2", again.Name, inc.Name)
	}

	// Exempting the namespace ends the open incident as no longer selected,
	// not as fixed.
	bareNS := &corev1.Namespace{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Name: bare}, bareNS); err != nil {
		t.Fatal(err)
	}
	bareNS.Labels["riposte.dev/policy-exempt"] = "true"
	if err := k8sClient.Update(ctx, bareNS); err != nil {
		t.Fatal(err)
	}
	exempted := waitForIncident(t, bare, "default-deny-ingress", "Namespace", bare, riposte.PhaseResolved)
	if exempted.Name != again.Name || exempted.Spec.Drift.Resolution != riposte.DriftNotSelected {
		t.Errorf("incident %s resolution %q, want NotSelected", exempted.Name, exempted.Spec.Drift.Resolution)
	}

	// A namespace exempted by label from the start opens none.
	exempt := namespace(t, map[string]string{"riposte.dev/policy-exempt": "true"})
	noIncident(t, exempt, "default-deny-ingress", "Namespace", exempt)
}

// A ServiceAccount bound to cluster-admin, or to a wildcard role, opens an
// incident; approving revokes the binding and the incident resolves as the
// object is gone. A narrow binding opens none.
func TestPolicyPackBindings(t *testing.T) {
	installPack(t)
	ctx := context.Background()
	ns := namespace(t, nil)
	sa := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "ci", Namespace: ns}}
	admin := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-ci-admin"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}, Subjects: sa}
	mustCreate(t, admin)
	inc := waitForIncident(t, operatorNamespace, "no-serviceaccount-cluster-admin", "ClusterRoleBinding", admin.Name, riposte.PhaseAwaitingApproval)
	if !strings.Contains(inc.Spec.Annotations["summary"], ns+"/ci hold cluster-admin") {
		t.Errorf("summary %q", inc.Spec.Annotations["summary"])
	}
	approve(t, inc)
	gone := waitForIncident(t, operatorNamespace, "no-serviceaccount-cluster-admin", "ClusterRoleBinding", admin.Name, riposte.PhaseResolved)
	if gone.Spec.Drift.Resolution != riposte.DriftObjectDeleted {
		t.Errorf("resolution %q, want ObjectDeleted", gone.Spec.Drift.Resolution)
	}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(admin), &rbacv1.ClusterRoleBinding{}); !apierrors.IsNotFound(err) {
		t.Errorf("the binding is still there: %v", err)
	}

	wildcard := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-everything"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}}
	mustCreate(t, wildcard)
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "ci-everything", Namespace: ns},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: wildcard.Name}, Subjects: sa}
	mustCreate(t, rb)
	waitForIncident(t, ns, "no-serviceaccount-wildcard-role", "RoleBinding", rb.Name, riposte.PhaseAwaitingApproval)

	narrow := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "ci-view", Namespace: ns},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}, Subjects: sa}
	mustCreate(t, narrow)
	viewCRB := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-ci-view"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}, Subjects: sa}
	mustCreate(t, viewCRB)
	noIncident(t, ns, "no-serviceaccount-wildcard-role", "RoleBinding", narrow.Name)
	noIncident(t, operatorNamespace, "no-serviceaccount-cluster-admin", "ClusterRoleBinding", viewCRB.Name)

	// Narrowing the role is compliance too: the lookup is watched.
	wildcard.Rules = []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}}
	if err := k8sClient.Update(ctx, wildcard); err != nil {
		t.Fatal(err)
	}
	narrowed := waitForIncident(t, ns, "no-serviceaccount-wildcard-role", "RoleBinding", rb.Name, riposte.PhaseResolved)
	if narrowed.Spec.Drift.Resolution != riposte.DriftComplies {
		t.Errorf("resolution %q, want Complies", narrowed.Spec.Drift.Resolution)
	}
}

// NodePort and LoadBalancer Services break the policy in restricted
// namespaces only; approving makes the Service ClusterIP.
func TestPolicyPackServices(t *testing.T) {
	installPack(t)
	ctx := context.Background()
	restricted := namespace(t, map[string]string{"riposte.dev/restricted": "true"})
	open := namespace(t, nil)
	svc := func(ns, name string, typ corev1.ServiceType) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Type: typ, Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	mustCreate(t, svc(restricted, "nodeport", corev1.ServiceTypeNodePort))
	mustCreate(t, svc(restricted, "lb", corev1.ServiceTypeLoadBalancer))
	mustCreate(t, svc(restricted, "internal", corev1.ServiceTypeClusterIP))
	mustCreate(t, svc(open, "nodeport", corev1.ServiceTypeNodePort))
	inc := waitForIncident(t, restricted, "no-nodeport-or-loadbalancer", "Service", "nodeport", riposte.PhaseAwaitingApproval)
	waitForIncident(t, restricted, "no-nodeport-or-loadbalancer", "Service", "lb", riposte.PhaseAwaitingApproval)
	noIncident(t, restricted, "no-nodeport-or-loadbalancer", "Service", "internal")
	noIncident(t, open, "no-nodeport-or-loadbalancer", "Service", "nodeport")

	approve(t, inc)
	waitForIncident(t, restricted, "no-nodeport-or-loadbalancer", "Service", "nodeport", riposte.PhaseResolved)
	got := &corev1.Service{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: restricted, Name: "nodeport"}, got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("the Service is %s after remediation", got.Spec.Type)
	}
}

// privileged makes a pod (or a template) break no-privileged-containers.
func privileged(p *corev1.Pod) {
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
}

// deployment is a Deployment whose template is compliantPod's, edited.
func deployment(ns, name string, edit func(*corev1.Pod)) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	tmpl := compliantPod(ns, name, edit)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: tmpl.Spec},
		},
	}
}

// replicaSetOf is the ReplicaSet the Deployment controller makes for the
// Deployment's template as it is now: named and labelled with the
// template's pod-template-hash, which its selector adds to the
// Deployment's, and controlled by the Deployment's uid (as
// kubernetes/kubernetes' pkg/controller/deployment/sync.go writes it).
func replicaSetOf(t *testing.T, d *appsv1.Deployment, hash string) *appsv1.ReplicaSet {
	t.Helper()
	withHash := func(m map[string]string) map[string]string {
		out := map[string]string{"pod-template-hash": hash}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	tmpl := *d.Spec.Template.DeepCopy()
	tmpl.Labels = withHash(tmpl.Labels)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: tmpl.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: withHash(d.Spec.Selector.MatchLabels)}, Template: tmpl},
	}
	mustCreate(t, rs)
	return rs
}

// replicaOf is a pod the ReplicaSet controller makes: named after the
// ReplicaSet with a random suffix, the template's labels and spec,
// controlled by the ReplicaSet's uid (pkg/controller/controller_utils.go).
func replicaOf(t *testing.T, rs *appsv1.ReplicaSet, suffix string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-" + suffix, Namespace: rs.Namespace, Labels: rs.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
		Spec: *rs.Spec.Template.Spec.DeepCopy(),
	}
	mustCreate(t, pod)
	return pod
}

// editDeployment changes a Deployment's template, retrying on conflicts.
func editDeployment(t *testing.T, d *appsv1.Deployment, edit func(*corev1.PodSpec)) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &appsv1.Deployment{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(d), got); err != nil {
			return err
		}
		edit(&got.Spec.Template.Spec)
		return k8sClient.Update(ctx, got)
	})
}

func quarantined(t *testing.T, pod *corev1.Pod) bool {
	t.Helper()
	got := &corev1.Pod{}
	if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	return got.Labels["riposte.dev/quarantine"] != ""
}

// The pack's pod rules judge workloads by their pod templates, and every
// pod on its own: a Deployment that would create privileged pods is drift
// before any pod exists (envtest runs no controller-manager, so the test
// makes the ReplicaSet and pods as it would), with the Deployment as the
// incident's target; each privileged replica has its own incident and is
// isolated once approved, and so is its replacement; fixing the template
// resolves the Deployment's incident. A CronJob is judged by its
// jobTemplate, the pods of its Jobs on their own.
func TestPolicyPackWorkloads(t *testing.T) {
	installPack(t)
	ctx := context.Background()
	ns := namespace(t, nil)
	const rule = "no-privileged-containers"
	deploy := deployment(ns, "web", privileged)
	mustCreate(t, deploy)
	inc := waitForIncident(t, ns, rule, "Deployment", "web", riposte.PhaseFailed)
	if inc.Spec.Target.APIVersion != "apps/v1" || inc.Spec.Target.UID != string(deploy.UID) || inc.Spec.Drift.Source.Kind != "Deployment" ||
		!strings.Contains(inc.Spec.Annotations["summary"], "privileged containers: app") {
		t.Errorf("incident %s: target %+v, source %+v, summary %q", inc.Name, inc.Spec.Target, inc.Spec.Drift.Source, inc.Spec.Annotations["summary"])
	}
	// IsolatePod isolates the pods a workload runs; this one runs none yet,
	// and the plan says what covers them.
	if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentPlanned); c == nil || !strings.Contains(c.Message, "judged on their own as they run") {
		t.Errorf("planned: %s", conditions(inc.Status.Conditions))
	}

	// Its ReplicaSet is judged through it; its privileged replica on its own.
	rs := replicaSetOf(t, deploy, "7d4b9c")
	replica := replicaOf(t, rs, "x2x9p")
	own := waitForIncident(t, ns, rule, "Pod", replica.Name, riposte.PhaseAwaitingApproval)
	if own.Spec.Target.UID != string(replica.UID) {
		t.Errorf("the replica's incident targets %+v", own.Spec.Target)
	}
	noIncident(t, ns, rule, "ReplicaSet", rs.Name)
	approve(t, own)
	waitForIncident(t, ns, rule, "Pod", replica.Name, riposte.PhaseRemediated)
	if !quarantined(t, replica) {
		t.Errorf("the approved replica %s is not isolated", replica.Name)
	}

	// The isolated replica deleted, its replacement runs privileged too:
	// an incident of its own.
	if err := k8sClient.Delete(ctx, replica); err != nil {
		t.Fatal(err)
	}
	replacement := replicaOf(t, rs, "k4m7n")
	next := waitForIncident(t, ns, rule, "Pod", replacement.Name, riposte.PhaseAwaitingApproval)
	approve(t, next)
	waitForIncident(t, ns, rule, "Pod", replacement.Name, riposte.PhaseRemediated)

	// Fixed: the Deployment complies. Its replica stays privileged on its
	// own (a rollout would replace it).
	editDeployment(t, deploy, func(s *corev1.PodSpec) { s.Containers[0].SecurityContext = nil })
	fixed := waitForIncident(t, ns, rule, "Deployment", "web", riposte.PhaseResolved)
	if fixed.Name != inc.Name || fixed.Spec.Drift.Resolution != riposte.DriftComplies {
		t.Errorf("incident %s resolution %q, want %s Complies", fixed.Name, fixed.Spec.Drift.Resolution, inc.Name)
	}
	if left := waitForIncident(t, ns, rule, "Pod", replacement.Name, riposte.PhaseRemediated); left.Name != next.Name {
		t.Errorf("the replacement's incident is %s, want %s still", left.Name, next.Name)
	}

	// A CronJob's pods come from its jobTemplate; the pods its Jobs run are
	// judged on their own.
	cron := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "backup", Namespace: ns},
		Spec: batchv1.CronJobSpec{Schedule: "@daily", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: compliantPod(ns, "backup", func(p *corev1.Pod) {
				p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
				p.Spec.Volumes = []corev1.Volume{{Name: "etcd", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/etcd"}}}}
			}).Spec}}}},
	}
	mustCreate(t, cron)
	backup := waitForIncident(t, ns, "no-hostpath", "CronJob", "backup", riposte.PhaseFailed)
	if !strings.Contains(backup.Spec.Annotations["summary"], "etcd (/var/lib/etcd)") {
		t.Errorf("summary %q", backup.Spec.Annotations["summary"])
	}
	if c := meta.FindStatusCondition(backup.Status.Conditions, riposte.IncidentPlanned); c == nil || !strings.Contains(c.Message, "judged on their own as they run") {
		t.Errorf("planned: %s", conditions(backup.Status.Conditions))
	}
	// The Job as the CronJob controller makes it (named after the scheduled
	// minute, controlled by the CronJob's uid); the API server gives it its
	// selector and its template the labels naming its uid.
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "backup-28950240", Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cron, batchv1.SchemeGroupVersion.WithKind("CronJob"))}},
		Spec: *cron.Spec.JobTemplate.Spec.DeepCopy(),
	}
	mustCreate(t, job)
	run := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-q8x2z", Namespace: ns, Labels: job.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	mustCreate(t, run)
	waitForIncident(t, ns, "no-hostpath", "Pod", run.Name, riposte.PhaseAwaitingApproval)
	noIncident(t, ns, "no-hostpath", "Job", job.Name)
}

// IsolatePod of a Deployment isolates the pods the Deployment runs, found
// through its ReplicaSets by uid, not every pod its selector matches: a
// pod someone started by hand with app=payments is left alone.
func TestPolicyPackWorkloadIsolationTakesOnlyItsPods(t *testing.T) {
	installPack(t)
	ns := namespace(t, nil)
	const rule = "no-privileged-containers"
	deploy := deployment(ns, "payments", nil)
	mustCreate(t, deploy)
	replica := replicaOf(t, replicaSetOf(t, deploy, "6f8d5b"), "w9zq4")
	stray := compliantPod(ns, "payments-debug", nil)
	stray.Labels = map[string]string{"app": "payments"}
	mustCreate(t, stray)
	// The template turns privileged; the replica still runs the old one.
	editDeployment(t, deploy, func(s *corev1.PodSpec) {
		s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	})
	inc := waitForIncident(t, ns, rule, "Deployment", deploy.Name, riposte.PhaseAwaitingApproval)
	approve(t, inc)
	waitForIncident(t, ns, rule, "Deployment", deploy.Name, riposte.PhaseRemediated)
	if !quarantined(t, replica) {
		t.Errorf("the Deployment's replica %s is not isolated", replica.Name)
	}
	if quarantined(t, stray) {
		t.Errorf("%s, which the Deployment does not run, was isolated", stray.Name)
	}
}

// With --budget-max-workload-fraction, IsolatePod of a Deployment counts
// each pod it isolates: isolating both replicas of two, over half, waits.
func TestPolicyPackWorkloadIsolationIsBudgeted(t *testing.T) {
	installPack(t)
	restartManagerWith(t, guard.Budget{MaxWorkloadFraction: 0.5})
	ns := namespace(t, nil)
	const rule = "no-privileged-containers"
	deploy := deployment(ns, "web", nil)
	deploy.Spec.Replicas = ptr.To[int32](2)
	mustCreate(t, deploy)
	rs := replicaSetOf(t, deploy, "5d4f8c")
	replicas := []*corev1.Pod{replicaOf(t, rs, "b8n3q"), replicaOf(t, rs, "x7k2p")}
	editDeployment(t, deploy, func(s *corev1.PodSpec) {
		s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	})
	inc := waitForIncident(t, ns, rule, "Deployment", deploy.Name, riposte.PhaseAwaitingApproval)
	approve(t, inc)
	held := waitForIncident(t, ns, rule, "Deployment", deploy.Name, riposte.PhaseHeld)
	if c := meta.FindStatusCondition(held.Status.Conditions, riposte.IncidentHeld); c == nil || c.Reason != riposte.ReasonBudgetExhausted ||
		!strings.Contains(c.Message, "2 of the 2 pods of ReplicaSet/"+ns+"/"+rs.Name) {
		t.Errorf("held: %s", conditions(held.Status.Conditions))
	}
	for _, p := range replicas {
		if quarantined(t, p) {
			t.Errorf("%s was isolated over the budget", p.Name)
		}
	}
}

// A namespace editor cannot hide a privileged pod behind a forged
// controller reference: a decoy privileged Deployment with no replicas,
// then a privileged pod naming the decoy's uid as its controller. The pod
// has its own incident, and adding the reference to a pod already flagged
// leaves its incident open.
func TestAttackForgedOwnerReferenceHidesAPrivilegedPod(t *testing.T) {
	installPack(t)
	ctx := context.Background()
	ns := namespace(t, nil)
	const rule = "no-privileged-containers"
	mallory := namespaceEditor(t, "mallory-drift", ns)
	decoy := deployment(ns, "decoy", privileged)
	decoy.Spec.Replicas = ptr.To[int32](0)
	if err := mallory.Create(ctx, decoy); err != nil {
		t.Fatal(err)
	}
	waitForIncident(t, ns, rule, "Deployment", decoy.Name, riposte.PhaseFailed)
	// controller: true is all it takes; blockOwnerDeletion would need
	// rights on the decoy's finalizers.
	forgedRef := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: decoy.Name, UID: decoy.UID, Controller: ptr.To(true)}}

	hidden := compliantPod(ns, "miner", privileged)
	hidden.OwnerReferences = forgedRef
	if err := mallory.Create(ctx, hidden); err != nil {
		t.Fatal(err)
	}
	if inc := waitForIncident(t, ns, rule, "Pod", hidden.Name, riposte.PhaseAwaitingApproval); inc.Spec.Target.UID != string(hidden.UID) {
		t.Errorf("the forged pod's incident targets %+v", inc.Spec.Target)
	}

	flagged := compliantPod(ns, "miner-2", privileged)
	if err := mallory.Create(ctx, flagged); err != nil {
		t.Fatal(err)
	}
	open := waitForIncident(t, ns, rule, "Pod", flagged.Name, riposte.PhaseAwaitingApproval)
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &corev1.Pod{}
		if err := mallory.Get(ctx, client.ObjectKeyFromObject(flagged), got); err != nil {
			return err
		}
		got.OwnerReferences = forgedRef
		return mallory.Update(ctx, got)
	})
	// Two full re-evaluations later, the incident is still the open one.
	testenv.Consistently(t, 2*resync+time.Second, func(ctx context.Context) error {
		list, err := incidentsFor(ctx, ns, rule, "Pod", flagged.Name)
		if err != nil {
			return err
		}
		if len(list) != 1 || list[0].Name != open.Name || !drift.Open(&list[0]) {
			return fmt.Errorf("incidents about %s: %d, last %s resolution %q", flagged.Name, len(list), list[len(list)-1].Name, list[len(list)-1].Spec.Drift.Resolution)
		}
		return nil
	})
}
