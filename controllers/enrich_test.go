package controllers_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// enriched opens an incident with the given labels (no playbook answers it)
// and returns it once Riposte has enriched it.
func enriched(t *testing.T, ns, name string, labels map[string]string) *riposte.Incident {
	t.Helper()
	labels["alertname"] = "Unanswered"
	mustCreate(t, &riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: "Unanswered", Fingerprint: "e1",
			Severity: "warning", Labels: labels, Annotations: map[string]string{"summary": "something odd"},
			StartsAt: &metav1.Time{Time: time.Now().Add(-time.Minute).Truncate(time.Second)}},
	})
	return waitForPhase(t, ns, name, riposte.PhaseUnmatched)
}

// A Deployment behind a Service and an Ingress, whose service account is bound
// to a dangerous ClusterRole.
func TestEnrichmentOfAnExposedPrivilegedIdentity(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "shop")
	mustCreate(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}})
	mustCreate(t, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-too-much"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"pods", "pods/exec"}, Verbs: []string{"create"}},
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"escalate", "bind"}},
	}})
	mustCreate(t, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-too-much"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ns + "-too-much"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: ns}}})
	mustCreate(t, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-config", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}})
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read-config", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-config"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: ns}}})
	mustCreate(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "shop"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}}}})
	mustCreate(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "other"}, Ports: []corev1.ServicePort{{Port: 81}}}})
	pathType := networkingv1.PathTypePrefix
	mustCreate(t, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "public", Namespace: ns},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "shop.example.com", IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pathType,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "shop", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}}})
	route := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "shop-route", "namespace": ns},
		"spec": map[string]any{"hostnames": []any{"api.example.com"},
			"rules": []any{map[string]any{"backendRefs": []any{map[string]any{"name": "shop", "port": int64(80)}}}}},
	}}
	mustCreate(t, route)
	mustCreate(t, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow-web", Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}})
	mustCreate(t, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "pulled", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID},
		Reason:         "Pulled", Message: "Container image pulled", Type: corev1.EventTypeNormal,
		LastTimestamp: metav1.NewTime(time.Now().Add(-2 * time.Minute))})
	// Let the cache see the graph, as it would long before an alert.
	time.Sleep(300 * time.Millisecond)

	inc := enriched(t, ns, "exposed", map[string]string{"namespace": ns, "pod": pod.Name, "container": "app"})
	c := inc.Status.Context
	if c.Container != "app" || c.Replicas == nil || *c.Replicas != 1 {
		t.Errorf("container %q replicas %v, want app and the Deployment's 1", c.Container, c.Replicas)
	}
	wantIdentity := &riposte.IdentityContext{
		ServiceAccount: ns + "/default",
		Roles:          []string{"ClusterRole/" + ns + "-too-much via ClusterRoleBinding " + ns + "-too-much", "Role/read-config via RoleBinding read-config"},
		Permissions: []string{"create pods,pods/exec", "escalate,bind clusterroles.rbac.authorization.k8s.io",
			"get configmaps", "get,list secrets"},
		Dangerous: []string{"bind", "creates pods", "escalate", "pods/exec", "reads Secrets"},
	}
	if diff := cmp.Diff(wantIdentity, c.Identity); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
	wantExposure := &riposte.ExposureContext{Services: []string{"shop:80"}, Ingresses: []string{"public (shop.example.com)"},
		Routes: []string{ns + "/shop-route (api.example.com)"}, NetworkPolicies: []string{"allow-web"}}
	if diff := cmp.Diff(wantExposure, c.Exposure); diff != "" {
		t.Errorf("exposure (-want +got):\n%s", diff)
	}
	var timeline []string
	for _, e := range c.Timeline {
		timeline = append(timeline, e.Source+" "+e.Object+" "+e.Reason)
	}
	if diff := cmp.Diff([]string{"Event Pod/" + pod.Name + " Pulled", "Alert  Unanswered"}, timeline); diff != "" {
		t.Errorf("timeline, oldest first (-want +got):\n%s", diff)
	}
	if c.Exposure.Isolated {
		t.Error("an allow policy does not isolate")
	}
}

// A privileged DaemonSet pod shows every risk its spec carries.
func TestEnrichmentOfAPrivilegedDaemonSetPod(t *testing.T) {
	ns := newNamespace(t)
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent:1"}}}}}}
	mustCreate(t, ds)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent-x1", Namespace: ns, Labels: map[string]string{"app": "agent"},
		OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "DaemonSet", "agent", ds.UID)}},
		Spec: corev1.PodSpec{HostNetwork: true, HostPID: true, AutomountServiceAccountToken: ptr.To(false),
			Volumes: []corev1.Volume{{Name: "sock", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run/containerd.sock"}}}},
			Containers: []corev1.Container{{Name: "agent", Image: "agent:1", SecurityContext: &corev1.SecurityContext{
				Privileged: ptr.To(true), RunAsUser: ptr.To(int64(0)),
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}}}}}
	mustCreate(t, pod)
	inc := enriched(t, ns, "privileged", map[string]string{"namespace": ns, "pod": pod.Name})
	want := []string{"HostNetwork", "HostPID", "HostPath:/var/run/containerd.sock", "Privileged", "PrivilegeEscalation", "AddedCapability:SYS_ADMIN", "RunsAsRoot"}
	if diff := cmp.Diff(want, inc.Status.Context.RiskFlags); diff != "" {
		t.Errorf("risk flags (-want +got):\n%s", diff)
	}
	if got := inc.Status.Context.OwnerChain; len(got) != 1 || got[0].Kind != "DaemonSet" {
		t.Errorf("owner chain %v, want the DaemonSet", got)
	}
}

// A CronJob's Job's pod walks up to the CronJob; an alert carrying only
// kube-state-metrics labels finds the right pod.
func TestEnrichmentOwnerChainAndKubeStateMetricsLabels(t *testing.T) {
	ns := newNamespace(t)
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: ns},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "backup:2"}}}}}}}}
	mustCreate(t, cj)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "nightly-2900", Namespace: ns,
		OwnerReferences: []metav1.OwnerReference{controllerRef("batch/v1", "CronJob", "nightly", cj.UID)}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"job": "nightly"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "backup:2"}}}}}}
	mustCreate(t, job)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nightly-2900-abcde", Namespace: ns,
		OwnerReferences: []metav1.OwnerReference{controllerRef("batch/v1", "Job", job.Name, job.UID)}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "backup:2"}}}}
	mustCreate(t, pod)

	inc := enriched(t, ns, "ksm", map[string]string{"namespace": "monitoring", "pod": "kube-state-metrics-0",
		"exported_namespace": ns, "exported_pod": pod.Name})
	c := inc.Status.Context
	if c.Target == nil || c.Target.Name != pod.Name || c.Target.Namespace != ns {
		t.Fatalf("target %+v, want %s/%s", c.Target, ns, pod.Name)
	}
	want := []riposte.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name}, {APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly"}}
	if diff := cmp.Diff(want, c.OwnerChain); diff != "" {
		t.Errorf("owner chain (-want +got):\n%s", diff)
	}
}

// An alert about something that does not exist says so and still goes on.
func TestEnrichmentOfAMissingTarget(t *testing.T) {
	ns := newNamespace(t)
	inc := enriched(t, ns, "ghost", map[string]string{"namespace": ns, "deployment": "ghost"})
	c := condition(t, inc.Status.Conditions, riposte.IncidentEnriched)
	if c.Status != metav1.ConditionFalse || c.Reason != riposte.ReasonTargetNotFound || !strings.Contains(c.Message, "Deployment/"+ns+"/ghost does not exist") {
		t.Errorf("Enriched = %s/%s %q", c.Status, c.Reason, c.Message)
	}
	if m := condition(t, inc.Status.Conditions, riposte.IncidentMatched); m.Reason != riposte.ReasonNoPlaybook {
		t.Errorf("matching should still run: %s", m.Reason)
	}
}

// Nothing secret ever reaches an incident: not Secret data, not environment
// values, whatever the pod references.
func TestEnrichmentNeverCopiesSecrets(t *testing.T) {
	ns := newNamespace(t)
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, StringData: map[string]string{"password": "SECRET-DATA-4b1d"}})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1",
			Env: []corev1.EnvVar{{Name: "API_KEY", Value: "ENV-VALUE-77aa"},
				{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}},
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}}}}}}}}
	mustCreate(t, pod)
	inc := enriched(t, ns, "secrets", map[string]string{"namespace": ns, "pod": "app"})
	raw, err := json.Marshal(inc)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"SECRET-DATA-4b1d", "ENV-VALUE-77aa", "API_KEY", "DB_PASSWORD"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the incident contains %q", secret)
		}
	}
	if inc.Status.Context.Target == nil || inc.Status.Context.Target.UID == "" {
		t.Error("the pod should still be resolved")
	}
}

// The timeline is bounded, keeps the most recent entries, and says so.
func TestEnrichmentIsBounded(t *testing.T) {
	ns := newNamespace(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "noisy", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "c:1"}}}}
	mustCreate(t, pod)
	for i := 0; i < 60; i++ {
		mustCreate(t, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("e%02d", i), Namespace: ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID},
			Reason:         fmt.Sprintf("R%02d", i), Message: strings.Repeat("x", 2000), Type: corev1.EventTypeWarning,
			LastTimestamp: metav1.NewTime(time.Now().Add(time.Duration(i-60) * time.Second))})
	}
	time.Sleep(300 * time.Millisecond)
	inc := enriched(t, ns, "noisy", map[string]string{"namespace": ns, "pod": pod.Name})
	tl := inc.Status.Context.Timeline
	if len(tl) != 40 || tl[len(tl)-1].Reason != "R59" || len(tl[0].Message) > 512 {
		t.Errorf("timeline has %d entries ending with %q, first message %d bytes; want the 40 most recent, messages cut", len(tl), tl[len(tl)-1].Reason, len(tl[0].Message))
	}
	c := condition(t, inc.Status.Conditions, riposte.IncidentContextTruncated)
	if c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "timeline: 40 of 61 kept") {
		t.Errorf("ContextTruncated = %s %q", c.Status, c.Message)
	}
}

// Incidents about the same workload are linked, and a playbook can decide on
// the context.
func TestRelatedIncidentsAndContextInCEL(t *testing.T) {
	ns := newNamespace(t)
	first := deployedPod(t, ns, "api")
	second := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-5d4f-zzzzz", Namespace: ns, Labels: map[string]string{"app": "api"},
		OwnerReferences: first.OwnerReferences},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}}}
	mustCreate(t, second)
	pb := isolatePlaybook(ns, "privileged-only", "ContainerShell", &riposte.AutoApprove{})
	pb.Spec.When = "incident.status.context.riskFlags.exists(f, f == 'Privileged')"
	mustCreate(t, pb)
	mustCreate(t, alertIncident(ns, "am-first", "ContainerShell", ns, first.Name))
	waitForPhase(t, ns, "am-first", riposte.PhaseUnmatched) // not privileged: the playbook's when does not hold
	mustCreate(t, alertIncident(ns, "am-second", "ContainerShell", ns, second.Name))
	inc := waitForPhase(t, ns, "am-second", riposte.PhaseRemediated)
	if !slices.Contains(inc.Status.Context.RelatedIncidents, "am-first") {
		t.Errorf("related incidents %v, want am-first (same Deployment)", inc.Status.Context.RelatedIncidents)
	}
}
