package controllers_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/intake"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// quarantineOf reads the pod's quarantine label and its holders, fresh.
func quarantineOf(t *testing.T, ns, name string) (label string, holders []string) {
	t.Helper()
	var p corev1.Pod
	get(t, &p, ns, name)
	for _, entry := range strings.Split(p.Annotations[actions.QuarantinedByAnnotation], ",") {
		if holder, _, _ := strings.Cut(entry, "="); holder != "" {
			holders = append(holders, holder)
		}
	}
	slices.Sort(holders)
	return p.Labels[actions.QuarantineLabel], holders
}

func holderNames(ns string, incidents ...string) []string {
	out := make([]string, 0, len(incidents))
	for _, name := range incidents {
		out = append(out, ns+"/"+name)
	}
	slices.Sort(out)
	return out
}

// Every plan is built and committed from one read of the pod before any is
// applied, so each recorded patch lists only its own incident: the old
// executor wrote those patches as recorded and the last one erased the
// others' holds, every time. Each hold must be written against the pod as
// it is when written, and each release too, however they interleave.
func TestHoldsPlannedFromOneReadAreAllKept(t *testing.T) {
	for _, n := range []int{2, 5} {
		t.Run(fmt.Sprintf("%d incidents", n), func(t *testing.T) {
			ctx := context.Background()
			ns := newNamespace(t)
			pod := deployedPod(t, ns, "web")
			// The playbook's account, as the executor writes in the manager.
			writer, err := env.UserClient("system:serviceaccount:"+ns+":"+remediatorAccount, "system:serviceaccounts", "system:serviceaccounts:"+ns)
			if err != nil {
				t.Fatal(err)
			}
			exe := &executor.Executor{Reader: k8sClient, Writer: writer, Scheme: env.Scheme, Mapper: k8sClient.RESTMapper()}
			target := &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod.Name, UID: string(pod.UID)}
			pb := isolatePlaybook(ns, "isolate", "KubePodCrashLooping", &riposte.AutoApprove{})
			var names []string
			records := make([][]riposte.StepRecord, n)
			for i := range n {
				names = append(names, fmt.Sprintf("am-%016x", i+1))
				inc := alertIncident(ns, names[i], "KubePodCrashLooping", ns, pod.Name)
				if i%2 == 1 {
					pb.Spec.Steps[0].IsolatePod = &riposte.IsolatePodParams{AllowDNS: true}
				} else {
					pb.Spec.Steps[0].IsolatePod = nil
				}
				plan, err := exe.Build(ctx, inc, pb, target, executor.WithDryRun)
				if err != nil {
					t.Fatal(err)
				}
				if records[i], err = exe.Commit(ctx, plan); err != nil {
					t.Fatal(err)
				}
			}
			all := func(do func(i int) error, which ...int) {
				t.Helper()
				var wg sync.WaitGroup
				errs := make([]error, n)
				for _, i := range which {
					wg.Go(func() { errs[i] = do(i) })
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("incident %s: %v", names[i], err)
					}
				}
			}
			every := make([]int, n)
			for i := range every {
				every[i] = i
			}
			all(func(i int) error {
				return exe.Run(ctx, &records[i][0], ns+"/"+names[i]+"/isolate", func(context.Context) error { return nil })
			}, every...)
			if label, holders := quarantineOf(t, ns, pod.Name); label != "deny-all" || !slices.Equal(holders, holderNames(ns, names...)) {
				t.Fatalf("after %d concurrent isolations: label %q, holders %v; want deny-all held by all of %v", n, label, holders, names)
			}
			for i := range n {
				if !records[i][0].Changes[1].Done || !strings.Contains(records[i][0].Changes[1].Request, ns+"/"+names[i]+"=") {
					t.Errorf("%s: the record of the label %+v does not hold what was written", names[i], records[i][0].Changes[1])
				}
			}

			// Undoing the first leaves the others holding the pod.
			undo := func(i int) error {
				_, err := exe.Undo(ctx, &records[i][0])
				return err
			}
			all(undo, 0)
			if label, holders := quarantineOf(t, ns, pod.Name); label == "" || !slices.Equal(holders, holderNames(ns, names[1:]...)) {
				t.Fatalf("after undoing %s: label %q, holders %v; want the pod still held by %v", names[0], label, holders, names[1:])
			}
			// The rest, all at once: the pod is free.
			all(undo, every[1:]...)
			if label, holders := quarantineOf(t, ns, pod.Name); label != "" || len(holders) != 0 {
				t.Errorf("after undoing all: label %q, holders %v; want neither", label, holders)
			}
		})
	}
}

// kubePodAlert is an alert of the kubernetes-mixin rules kube-prometheus
// ships (alerts/apps_alerts.libsonnet), on kube-state-metrics as the
// kube-prometheus ServiceMonitor scrapes it (honorLabels: true, the target's
// pod, service, endpoint and namespace labels dropped, job from
// app.kubernetes.io/name, instance the exporter's https-main endpoint).
// KubePodCrashLooping keeps every label of
// kube_pod_container_status_waiting_reason (namespace, pod, uid, container,
// reason); KubePodNotReady sums by namespace and pod; KubeContainerWaiting
// by namespace, pod and container. All three are severity warning.
func kubePodAlert(alertname, fingerprint, namespace string, pod *corev1.Pod, container string) string {
	labels := map[string]string{"alertname": alertname, "namespace": namespace, "pod": pod.Name, "severity": "warning"}
	summary := "Pod is not ready."
	switch alertname {
	case "KubePodCrashLooping":
		summary = "Pod is crash looping."
		for k, v := range map[string]string{"container": container, "reason": "CrashLoopBackOff", "uid": string(pod.UID),
			"job": "kube-state-metrics", "instance": "10.244.1.7:8443"} {
			labels[k] = v
		}
	case "KubeContainerWaiting":
		summary = "Pod container waiting longer than 1 hour"
		labels["container"] = container
	}
	var pairs []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		pairs = append(pairs, fmt.Sprintf("%q:%q", k, labels[k]))
	}
	return fmt.Sprintf(`{"status":"firing","labels":{%s},"annotations":{"summary":%q,"runbook_url":"https://runbooks.prometheus-operator.dev/runbooks/kubernetes/%s"},
		"startsAt":"2026-11-26T10:00:00.000Z","endsAt":"0001-01-01T00:00:00Z",
		"generatorURL":"http://prometheus-k8s-0:9090/graph?g0.expr=kube_pod_container_status_waiting_reason","fingerprint":%q}`,
		strings.Join(pairs, ","), summary, strings.ToLower(alertname), fingerprint)
}

// postNotification posts one Alertmanager webhook notification holding the
// alerts, as Alertmanager groups alerts of one receiver together.
func postNotification(t *testing.T, srv *httptest.Server, alerts ...string) {
	t.Helper()
	body := `{"version":"4","groupKey":"{}:{namespace=\"shop\"}","truncatedAlerts":0,"status":"firing","receiver":"riposte",
		"groupLabels":{},"commonLabels":{"severity":"warning"},"commonAnnotations":{},"externalURL":"http://alertmanager-main-0:9093",
		"alerts":[` + strings.Join(alerts, ",") + `]}`
	if code, answer := postBody(t, srv, body); code != http.StatusOK {
		t.Fatalf("intake answered %d: %s", code, answer)
	}
}

// Alerts about one pod posted together are remediated at the same time by
// the real controllers: every incident's hold is on the pod, undoing one
// keeps the others', undoing all frees it. They list each other as related.
func TestConcurrentIsolationsOfOnePodKeepEveryHold(t *testing.T) {
	for _, n := range []int{2, 5} {
		t.Run(fmt.Sprintf("%d alerts", n), func(t *testing.T) {
			ns := newNamespace(t)
			sibling := deployedPod(t, ns, "web")
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-5d4f-m9q4z", Namespace: ns, Labels: sibling.Labels, OwnerReferences: sibling.OwnerReferences},
				Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{
					{Name: "app", Image: "nginx:1.27"}, {Name: "proxy", Image: "envoyproxy/envoy:v1.31.0"}}}}
			mustCreate(t, pod)
			pb := isolatePlaybook(ns, "isolate", "", &riposte.AutoApprove{})
			pb.Spec.Triggers.Alerts[0].AlertNames = []string{"KubePodCrashLooping", "KubePodNotReady", "KubeContainerWaiting"}
			pb.Spec.Triggers.Alerts[0].Severities = []string{"warning"}
			mustCreate(t, pb)
			alerts := []string{
				kubePodAlert("KubePodCrashLooping", "a1b2c3d4e5f60001", ns, pod, "app"),
				kubePodAlert("KubePodNotReady", "a1b2c3d4e5f60002", ns, pod, ""),
				kubePodAlert("KubePodCrashLooping", "a1b2c3d4e5f60003", ns, pod, "proxy"),
				kubePodAlert("KubeContainerWaiting", "a1b2c3d4e5f60004", ns, pod, "app"),
				kubePodAlert("KubeContainerWaiting", "a1b2c3d4e5f60005", ns, pod, "proxy"),
			}[:n]
			var names []string
			for i := range n {
				names = append(names, intake.IncidentName(fmt.Sprintf("a1b2c3d4e5f6%04d", i+1)))
			}
			postNotification(t, intakeServer(t), alerts...)
			incidents := make([]*riposte.Incident, n)
			for i, name := range names {
				incidents[i] = waitForPhase(t, ns, name, riposte.PhaseRemediated)
			}
			if label, holders := quarantineOf(t, ns, pod.Name); label != "deny-all" || !slices.Equal(holders, holderNames(ns, names...)) {
				t.Fatalf("with %d incidents remediated: label %q, holders %v; want deny-all held by all of %v", n, label, holders, names)
			}
			for i, inc := range incidents {
				others := slices.Delete(slices.Clone(names), i, i+1)
				testenv.Eventually(t, waitFor, func(ctx context.Context) error {
					cur, err := getIncident(ctx, ns, inc.Name)
					if err != nil {
						return err
					}
					if got := cur.Status.Context.RelatedIncidents; !slices.Equal(got, others) {
						return fmt.Errorf("%s lists related %v, want %v", inc.Name, got, others)
					}
					return nil
				})
			}

			undoAs(t, "alice", incidents[0])
			if label, holders := quarantineOf(t, ns, pod.Name); label != "deny-all" || !slices.Equal(holders, holderNames(ns, names[1:]...)) {
				t.Fatalf("after undoing %s: label %q, holders %v; want the pod still held by %v", names[0], label, holders, names[1:])
			}
			for _, inc := range incidents[1:] {
				askUndo(t, "alice", inc.Namespace, inc.Name)
			}
			for _, inc := range incidents[1:] {
				waitForPhase(t, ns, inc.Name, riposte.PhaseUndone)
			}
			if label, holders := quarantineOf(t, ns, pod.Name); label != "" || len(holders) != 0 {
				t.Errorf("after undoing all: label %q, holders %v; want neither", label, holders)
			}
		})
	}
}

// Undo restores a prior value only if nobody changed what Riposte set, and
// the check and the write must be one: here a person scales the Deployment
// right after undo's check read it. The old undo then wrote the prior count
// over the person's; the restore now carries the resourceVersion it
// checked, is refused, checks again and leaves the person's decision.
func TestUndoNeverOverwritesAChangeMadeAfterItsCheck(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	dep := &appsv1.Deployment{}
	get(t, dep, ns, "web")
	target := &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: dep.Name, UID: string(dep.UID)}
	pb := isolatePlaybook(ns, "stop", "KubePodCrashLooping", &riposte.AutoApprove{})
	pb.Spec.Steps = []riposte.Step{{Name: "stop", Action: riposte.ActionScaleWorkload, Scale: &riposte.ScaleParams{Replicas: 0}}}
	inc := alertIncident(ns, "am-00000000000000a1", "KubePodCrashLooping", ns, pod.Name)

	real, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	var person sync.Once
	checking := false
	writer := interceptor.NewClient(real, interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if err := c.Get(ctx, key, obj, opts...); err != nil || !checking || key.Name != dep.Name {
			return err
		}
		person.Do(func() {
			scaled := &appsv1.Deployment{}
			get(t, scaled, ns, dep.Name)
			scaled.Spec.Replicas = ptr.To[int32](5)
			if err := k8sClient.Update(ctx, scaled); err != nil {
				t.Errorf("the person's scale: %v", err)
			}
		})
		return nil
	}})
	exe := &executor.Executor{Reader: k8sClient, Writer: writer, Scheme: env.Scheme, Mapper: k8sClient.RESTMapper()}
	plan, err := exe.Build(ctx, inc, pb, target, executor.WithDryRun)
	if err != nil {
		t.Fatal(err)
	}
	records, err := exe.Commit(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := exe.Run(ctx, &records[0], ns+"/"+inc.Name+"/stop", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	checking = true
	notes, err := exe.Undo(ctx, &records[0])
	if err != nil {
		t.Fatal(err)
	}
	get(t, dep, ns, dep.Name)
	if *dep.Spec.Replicas != 5 {
		t.Errorf("replicas = %d after undo, want the person's 5", *dep.Spec.Replicas)
	}
	if !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "changed by someone else") }) {
		t.Errorf("undo notes %q do not say the Deployment was left as the person set it", notes)
	}
}
