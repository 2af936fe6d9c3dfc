package drift_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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

// The pack's pod rules judge workloads by their pod templates: a Deployment
// that would create privileged pods is drift before any pod exists (envtest
// runs no controller-manager, so none ever does), with the Deployment as the
// incident's target; a pod it made is reported through it, not on its own;
// fixing the template resolves the incident. A CronJob is judged by its
// jobTemplate.
func TestPolicyPackWorkloads(t *testing.T) {
	installPack(t)
	ctx := context.Background()
	ns := namespace(t, nil)
	const rule = "no-privileged-containers"
	labels := map[string]string{"app": "web"}
	template := compliantPod(ns, "web", func(p *corev1.Pod) {
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	})
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: template.Spec},
		},
	}
	mustCreate(t, deploy)
	inc := waitForIncident(t, ns, rule, "Deployment", "web", riposte.PhaseFailed)
	if inc.Spec.Target.APIVersion != "apps/v1" || inc.Spec.Target.UID != string(deploy.UID) || inc.Spec.Drift.Source.Kind != "Deployment" ||
		!strings.Contains(inc.Spec.Annotations["summary"], "privileged containers: app") {
		t.Errorf("incident %s: target %+v, source %+v, summary %q", inc.Name, inc.Spec.Target, inc.Spec.Drift.Source, inc.Spec.Annotations["summary"])
	}
	// IsolatePod isolates the pods a workload runs; this one runs none yet.
	if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentPlanned); c == nil || !strings.Contains(c.Message, "no pod a NetworkPolicy can isolate") {
		t.Errorf("planned: %s", conditions(inc.Status.Conditions))
	}

	// The pods a ReplicaSet of the Deployment makes: one incident, the
	// Deployment's, stands for them.
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d4b9c", Namespace: ns, Labels: labels, OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: deploy.UID, Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Selector: deploy.Spec.Selector, Template: deploy.Spec.Template},
	}
	mustCreate(t, rs)
	replica := compliantPod(ns, "web-7d4b9c-x2x9p", nil)
	replica.Labels = labels
	replica.Spec = template.Spec
	replica.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}
	mustCreate(t, replica)
	noIncident(t, ns, rule, "Pod", replica.Name)
	noIncident(t, ns, rule, "ReplicaSet", rs.Name)

	// Fixed: the Deployment complies. The replica left from before the fix
	// is privileged on its own now (a rollout would replace it).
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		got := &appsv1.Deployment{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(deploy), got); err != nil {
			return err
		}
		got.Spec.Template.Spec.Containers[0].SecurityContext = nil
		return k8sClient.Update(ctx, got)
	})
	fixed := waitForIncident(t, ns, rule, "Deployment", "web", riposte.PhaseResolved)
	if fixed.Name != inc.Name || fixed.Spec.Drift.Resolution != riposte.DriftComplies {
		t.Errorf("incident %s resolution %q, want %s Complies", fixed.Name, fixed.Spec.Drift.Resolution, inc.Name)
	}
	left := waitForIncident(t, ns, rule, "Pod", replica.Name, riposte.PhaseAwaitingApproval)
	if left.Spec.Target.UID != string(replica.UID) {
		t.Errorf("the replica's own incident targets %+v", left.Spec.Target)
	}
	if err := k8sClient.Delete(ctx, replica); err != nil {
		t.Fatal(err)
	}
	if gone := waitForIncident(t, ns, rule, "Pod", replica.Name, riposte.PhaseResolved); gone.Spec.Drift.Resolution != riposte.DriftObjectDeleted {
		t.Errorf("resolution %q, want ObjectDeleted", gone.Spec.Drift.Resolution)
	}

	// A CronJob's pods come from its jobTemplate.
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
}
