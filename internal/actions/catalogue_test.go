package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Every planner is a pure function of the incident, its parameters and what
// it reads; here each one's changes are checked against a fake reader. What
// the API server makes of them is tested against a real one in controllers/.
func TestCatalogue(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	ctrl := func(kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, Controller: ptr.To(true)}}
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	// The ReplicaSet and pods as the Deployment and ReplicaSet controllers
	// write them: each a controller reference with its owner's uid, the
	// pods labelled pod-template-hash (kubernetes/kubernetes,
	// pkg/controller/deployment/sync.go).
	owned := func(apiVersion, kind, name, uid string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(uid), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	}
	replica := map[string]string{"app": "web", "pod-template-hash": "5d4f"}
	// A CronJob's Job and its pod as the CronJob and Job controllers write
	// them: the Job's selector and its pod's labels name the Job's uid
	// (kubernetes/kubernetes, pkg/apis/batch/v1 defaults and the Job docs,
	// "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name").
	jobPod := map[string]string{"batch.kubernetes.io/controller-uid": "j1", "batch.kubernetes.io/job-name": "nightly-28950240",
		"controller-uid": "j1", "job-name": "nightly-28950240"}
	objects := []runtimeObject{
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "p1", Labels: replica, OwnerReferences: owned("apps/v1", "ReplicaSet", "web-5d4f", "r1")}, Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "web"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-2", Namespace: "shop", UID: "p2", Labels: replica, OwnerReferences: owned("apps/v1", "ReplicaSet", "web-5d4f", "r1")}, Spec: corev1.PodSpec{NodeName: "n1"}},
		// app=web, but no pod of the Deployment: one a person ran by hand,
		// and one claiming a controller of the same name that is not it.
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-debug", Namespace: "shop", UID: "p7", Labels: map[string]string{"app": "web"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-forged", Namespace: "shop", UID: "p8", Labels: replica, OwnerReferences: owned("apps/v1", "ReplicaSet", "web-5d4f", "forged")}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nightly-28950240-q8x2z", Namespace: "shop", UID: "p9", Labels: jobPod, OwnerReferences: owned("batch/v1", "Job", "nightly-28950240", "j1")}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "shop", UID: "p3", Labels: map[string]string{"app": "db"}}, Spec: corev1.PodSpec{NodeName: "n2"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "kube-system", UID: "p4", OwnerReferences: ctrl("DaemonSet", "agent")}, Spec: corev1.PodSpec{NodeName: "n1"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "static", Namespace: "kube-system", UID: "p5", Annotations: map[string]string{mirrorPodAnnotation: "x"}}, Spec: corev1.PodSpec{NodeName: "n1"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "done", Namespace: "shop", UID: "p6"}, Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}, {Key: "riposte.dev/compromised", Effect: corev1.TaintEffectNoSchedule, Value: "old"}}}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "d1"}, Spec: appsv1.DeploymentSpec{Selector: sel}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-5d4f", Namespace: "shop", UID: "r1", Labels: replica, OwnerReferences: owned("apps/v1", "Deployment", "web", "d1")},
			Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: replica}}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop", UID: "s1"}, Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}},
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "shop", UID: "c1"}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "nightly-28950240", Namespace: "shop", UID: "j1", OwnerReferences: owned("batch/v1", "CronJob", "nightly", "c1")},
			Spec: batchv1.JobSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "j1"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "web-edit", Namespace: "shop", UID: "b1"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "web", Namespace: "shop"}, {Kind: "ServiceAccount", Name: "web", Namespace: "other"}, {Kind: "User", Name: "bob"}}},
	}
	busyPods := func(n int) []runtimeObject {
		var out []runtimeObject
		for i := 0; i < n; i++ {
			out = append(out, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("busy-%03d", i), Namespace: "shop", UID: "b"}, Spec: corev1.PodSpec{NodeName: "busy"}})
		}
		return out
	}
	objects = append(objects, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "busy"}})
	objects = append(objects, busyPods(MaxChangesPerStep)...)
	builder := fake.NewClientBuilder().WithScheme(scheme)
	for _, o := range objects {
		builder = builder.WithRuntimeObjects(o)
	}
	reader := builder.Build()
	pod := &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-1", UID: "p1"}
	inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-1", Namespace: "shop"},
		Spec: riposte.IncidentSpec{AlertName: "Miner", Severity: "critical"},
		Status: riposte.IncidentStatus{Context: &riposte.IncidentContext{Target: pod, Node: "n1", ServiceAccountName: "web",
			OwnerChain: []riposte.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d4f"}, {Kind: "Deployment", Name: "web"}}}}}
	cronPod := inc.DeepCopy()
	cronPod.Status.Context.OwnerChain = []riposte.OwnerReference{{Kind: "Job", Name: "nightly-1"}, {Kind: "CronJob", Name: "nightly"}}

	cases := []struct {
		name    string
		step    riposte.Step
		inc     *riposte.Incident
		target  *riposte.ObjectReference
		want    []string // op object: patch or summary
		wantErr string
	}{
		{name: "IsolateWorkload labels the pods the Deployment controls, not others its selector matches", step: riposte.Step{Action: riposte.ActionIsolateWorkload},
			want: []string{"Apply NetworkPolicy/shop/riposte-quarantine-deny-all", "MergePatch Pod/shop/web-1 uid=p1", "MergePatch Pod/shop/web-2 uid=p2"}},
		// A drift finding about a Deployment's pod template targets the
		// Deployment: the pods it controls, each under the workload budget.
		{name: "IsolatePod of a Deployment isolates the pods it controls, each taken out", step: riposte.Step{Action: riposte.ActionIsolatePod}, inc: &riposte.Incident{ObjectMeta: inc.ObjectMeta},
			target: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web", UID: "d1"},
			want:   []string{"Apply NetworkPolicy/shop/riposte-quarantine-deny-all", "MergePatch Pod/shop/web-1 uid=p1 out", "MergePatch Pod/shop/web-2 uid=p2 out"}},
		{name: "IsolatePod of a Deployment replaced since the finding", step: riposte.Step{Action: riposte.ActionIsolatePod}, inc: &riposte.Incident{ObjectMeta: inc.ObjectMeta},
			target: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web", UID: "d0"}, wantErr: "was replaced"},
		{name: "IsolatePod of a CronJob isolates the pods of its Jobs", step: riposte.Step{Action: riposte.ActionIsolatePod}, inc: &riposte.Incident{ObjectMeta: inc.ObjectMeta},
			target: &riposte.ObjectReference{APIVersion: "batch/v1", Kind: "CronJob", Namespace: "shop", Name: "nightly"},
			want:   []string{"Apply NetworkPolicy/shop/riposte-quarantine-deny-all", "MergePatch Pod/shop/nightly-28950240-q8x2z uid=p9 out"}},
		// db-0 has the labels the StatefulSet selects, and no controller.
		{name: "IsolatePod of a workload running no pod says its pods are judged as they run", step: riposte.Step{Action: riposte.ActionIsolatePod}, inc: &riposte.Incident{ObjectMeta: inc.ObjectMeta},
			target: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "StatefulSet", Namespace: "shop", Name: "db", UID: "s1"}, wantErr: "judged on their own as they run"},
		{name: "DeletePod carries the pod's UID", step: riposte.Step{Action: riposte.ActionDeletePod}, want: []string{"Delete Pod/shop/web-1 uid=p1 irreversible out"}},
		{name: "EvictPod", step: riposte.Step{Action: riposte.ActionEvictPod}, want: []string{"Evict Pod/shop/web-1 uid=p1 irreversible out"}},
		{name: "ScaleWorkload scales the top owner", step: riposte.Step{Action: riposte.ActionScaleWorkload, Scale: &riposte.ScaleParams{Replicas: 0}},
			want: []string{`MergePatch Deployment/shop/web {"spec":{"replicas":0}}`}},
		{name: "RolloutRestart names the incident once", step: riposte.Step{Action: riposte.ActionRolloutRestart},
			want: []string{`MergePatch Deployment/shop/web {"spec":{"template":{"metadata":{"annotations":{"riposte.dev/restarted-for":"shop/am-1"}}}}} irreversible`}},
		{name: "SuspendCronJob finds the CronJob in the owner chain", step: riposte.Step{Action: riposte.ActionSuspendCronJob}, inc: cronPod,
			want: []string{`MergePatch CronJob/shop/nightly {"spec":{"suspend":true}}`}},
		{name: "SuspendCronJob of a pod without one", step: riposte.Step{Action: riposte.ActionSuspendCronJob}, wantErr: "needs a [CronJob] or a pod owned by one"},
		{name: "CordonNode uses the pod's node", step: riposte.Step{Action: riposte.ActionCordonNode},
			want: []string{`MergePatch Node/n1 {"spec":{"unschedulable":true}}`}},
		{name: "DrainNode skips DaemonSet, mirror and finished pods", step: riposte.Step{Action: riposte.ActionDrainNode},
			want: []string{`MergePatch Node/n1 {"spec":{"unschedulable":true}}`, "Evict Pod/shop/web-1 uid=p1 irreversible out", "Evict Pod/shop/web-2 uid=p2 irreversible out"}},
		{name: "Taint replaces its own key and keeps the others", step: riposte.Step{Action: riposte.ActionTaint, Taint: &riposte.TaintParams{Value: "{{ incident.spec.alertName }}"}},
			want: []string{`MergePatch Node/n1 {"spec":{"taints":[{"effect":"NoSchedule","key":"gpu"},{"effect":"NoSchedule","key":"riposte.dev/compromised","value":"Miner"}]}}`}},
		{name: "RevokeBinding removes only the subject in the target's namespace",
			step: riposte.Step{Action: riposte.ActionRevokeBinding, RevokeBinding: &riposte.RevokeBindingParams{Name: "web-edit", Subject: &riposte.BindingSubject{Kind: "ServiceAccount", Name: "{{ incident.status.context.serviceAccountName }}"}}},
			want: []string{`MergePatch RoleBinding/shop/web-edit {"subjects":[{"kind":"ServiceAccount","name":"web","namespace":"other"},{"kind":"User","name":"bob"}]}`}},
		{name: "RevokeBinding can delete the binding", step: riposte.Step{Action: riposte.ActionRevokeBinding, RevokeBinding: &riposte.RevokeBindingParams{Name: "web-edit", DeleteBinding: true}},
			want: []string{"Delete RoleBinding/shop/web-edit uid=b1"}},
		{name: "RevokeBinding of a missing binding", step: riposte.Step{Action: riposte.ActionRevokeBinding, RevokeBinding: &riposte.RevokeBindingParams{Name: "nope", DeleteBinding: true}},
			wantErr: "RoleBinding shop/nope does not exist"},
		{name: "Label fills its template", step: riposte.Step{Action: riposte.ActionLabel, Metadata: &riposte.MetadataParams{Set: map[string]string{"incident": "{{ incident.metadata.name }}"}}},
			want: []string{`MergePatch Pod/shop/web-1 {"metadata":{"labels":{"incident":"am-1"}}} uid=p1`}},
		{name: "a template over a missing field is the author's error", step: riposte.Step{Action: riposte.ActionAnnotate, Metadata: &riposte.MetadataParams{Set: map[string]string{"x": "{{ incident.spec.labels.team }}"}}},
			wantErr: "no such key"},
		{name: "ApplyManifest defaults the namespace to the target's", step: riposte.Step{Action: riposte.ActionApplyManifest, Manifest: raw(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"evidence-{{ incident.metadata.name }}"}}`)},
			want: []string{"Apply ConfigMap/shop/evidence-am-1"}},
		{name: "ApplyManifest needs a name", step: riposte.Step{Action: riposte.ActionApplyManifest, Manifest: raw(`{"apiVersion":"v1","kind":"ConfigMap"}`)},
			wantErr: "needs apiVersion, kind and metadata.name"},
		{name: "Patch may not rename", step: riposte.Step{Action: riposte.ActionPatch, Patch: raw(`{"metadata":{"namespace":"kube-system"}}`)},
			wantErr: "may not change metadata.namespace"},
		{name: "Patch merges into the target", step: riposte.Step{Action: riposte.ActionPatch, Patch: raw(`{"spec":{"automountServiceAccountToken":false}}`)},
			want: []string{`MergePatch Pod/shop/web-1 {"spec":{"automountServiceAccountToken":false}}`}},
		{name: "Notify renders its text and keeps the URL in its Secret", step: riposte.Step{Action: riposte.ActionNotify, Notify: &riposte.NotifyParams{URLSecretRef: riposte.SecretKeyRef{Name: "chat", Key: "url"}, Text: "{{ incident.spec.severity }}: {{ incident.spec.alertName }}"}},
			want: []string{"Send Secret/shop/chat text=critical: Miner irreversible"}},
		{name: "Silence matches exactly the alert's labels", step: riposte.Step{Action: riposte.ActionSilence, Silence: &riposte.SilenceParams{Comment: "by {{ incident.spec.severity }}"}},
			inc: withLabels(inc, map[string]string{"alertname": "Miner", "pod": "web-1"}), want: []string{`Silence Silence/am-1 {"labels":{"alertname":"Miner","pod":"web-1"},"duration":14400000000000,"comment":"by critical"}`}},
		{name: "Silence of an incident without alert labels", step: riposte.Step{Action: riposte.ActionSilence}, wantErr: "needs the alert's labels"},
		{name: "a drain too big to record is refused, not done in part", step: riposte.Step{Action: riposte.ActionDrainNode},
			target: &riposte.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "busy"}, wantErr: "would need 129 changes; one step records at most 128"},
		{name: "a node action on an incident without a node", step: riposte.Step{Action: riposte.ActionCordonNode}, inc: &riposte.Incident{}, target: &riposte.ObjectReference{Kind: "Deployment", Namespace: "shop", Name: "web"},
			wantErr: "needs a Node target or a pod scheduled on a node"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i := inc
			if tc.inc != nil {
				i = tc.inc
			}
			target := tc.target
			if target == nil {
				target = pod
			}
			tc.step.Name = "s"
			changes, err := Catalogue[tc.step.Action].Plan(context.Background(), &Input{Incident: i, Step: tc.step, Target: target,
				Reader: reader, Scheme: scheme, PlaybookNamespace: "shop"})
			if tc.wantErr != "" {
				var ue *UserError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &ue) {
					t.Fatalf("error = %v, want a UserError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range changes {
				got = append(got, describeChange(c))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

type runtimeObject = runtime.Object

func raw(s string) *runtime.RawExtension { return &runtime.RawExtension{Raw: []byte(s)} }

// describeChange renders the parts of a change that matter, briefly.
func describeChange(c Change) string {
	ref := c.Ref()
	ref.UID = ""
	s := fmt.Sprintf("%s %s", c.Op, ref)
	if c.Op == MergePatch {
		b, _ := json.Marshal(c.Patch)
		if !strings.Contains(string(b), QuarantineLabel) {
			s += " " + string(b)
		}
	}
	if c.UID != "" {
		s += " uid=" + c.UID
	}
	if c.Silence != nil {
		b, _ := json.Marshal(c.Silence)
		s += " " + string(b)
	}
	if c.Message != nil {
		s += fmt.Sprintf(" text=%s", c.Message.Body["text"])
	}
	if c.Irreversible {
		s += " irreversible"
	}
	if c.TakesPodOut {
		s += " out" // counted by the workload budget
	}
	return s
}

func withLabels(inc *riposte.Incident, labels map[string]string) *riposte.Incident {
	out := inc.DeepCopy()
	out.Spec.Labels = labels
	return out
}
