//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// actionCase is one action of the catalogue: its step, and how to make a
// fresh target for the i-th incident (the labels an alert would carry).
type actionCase struct {
	step        riposte.Step
	clusterWide bool
	target      func(t *testing.T, c client.Client, i int) map[string]string
}

// TestBenchActions measures, for every action, the time from an incident's
// creation to Remediated (enrich, plan with the API server's dry run as the
// playbook's account, gate, commit, apply), the time the step's writes take
// (the manager's riposte_action_seconds), and the time an undo takes.
func TestBenchActions(t *testing.T) {
	n := envInt("BENCH_ACTION_INCIDENTS", 10)
	env := testenv.StartForTest(t)
	ctx := context.Background()
	c := env.Client
	const ns = "actions"
	env.TeamNamespace(t, ns, "riposte-action-isolate", "riposte-action-pods", "riposte-action-workloads", "riposte-action-rbac")
	must(t, c.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "generic", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"chat"}, Verbs: []string{"get"}},
	}}))
	must(t, c.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "generic", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "generic"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: testenv.RemediatorAccount, Namespace: ns}}}))
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer sink.Close()
	must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns}, StringData: map[string]string{"url": sink.URL}}))

	dir := t.TempDir()
	amAddr := testenv.FreeAddr(t)
	testenv.StartProcess(t, dir, "alertmanager", testenv.AlertmanagerBinary(t), "--config.file", writeAMConfig(t, dir),
		"--storage.path", filepath.Join(dir, "am"), "--web.listen-address", amAddr, "--cluster.listen-address=")
	testenv.WaitHTTP(t, "http://"+amAddr+"/-/ready")
	manager := env.StartManager(t, token, "--alertmanager-url", "http://"+amAddr, "--budget-steps-per-minute=0")
	intake, err := env.IntakeClient(ctx)
	must(t, err)
	review := &authenticationv1.SelfSubjectReview{}
	must(t, c.Create(ctx, review))
	admin := review.Status.UserInfo.Username

	pod := func(name string, mutate func(*corev1.Pod)) map[string]string {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
		if mutate != nil {
			mutate(p)
		}
		must(t, c.Create(ctx, p))
		return map[string]string{"namespace": ns, "pod": name}
	}
	deployed := func(name string) map[string]string {
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}}}
		must(t, c.Create(ctx, d))
		// The ReplicaSet between, as the Deployment controller makes it:
		// IsolateWorkload finds a Deployment's pods through its ReplicaSets.
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name + "-5d4f", Namespace: ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: d.UID, Controller: ptr.To(true)}}},
			Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Selector: d.Spec.Selector, Template: d.Spec.Template}}
		must(t, c.Create(ctx, rs))
		return pod(name+"-5d4f-x", func(p *corev1.Pod) {
			p.Labels = labels
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}
		})
	}
	jobPod := func(name string) map[string]string {
		tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "j", Image: "busybox:1.36"}}}}
		cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: batchv1.CronJobSpec{Schedule: "0 1 * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
		must(t, c.Create(ctx, cj))
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: ptr.To(true)}}}, Spec: batchv1.JobSpec{Template: tmpl}}
		must(t, c.Create(ctx, j))
		return pod(name+"-1-x", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: j.Name, UID: j.UID, Controller: ptr.To(true)}}
		})
	}
	node := func(name string, pods int) map[string]string {
		must(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}))
		for k := 0; k < pods; k++ {
			pod(fmt.Sprintf("%s-p%d", name, k), func(p *corev1.Pod) { p.Spec.NodeName = name })
		}
		return map[string]string{"node": name}
	}
	name := func(prefix string, i int) string { return fmt.Sprintf("%s-%03d", prefix, i) }
	raw := func(s string) *runtime.RawExtension { return &runtime.RawExtension{Raw: []byte(s)} }

	cases := []actionCase{
		{step: riposte.Step{Action: riposte.ActionIsolatePod}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return pod(name("iso", i), nil) }},
		{step: riposte.Step{Action: riposte.ActionIsolateWorkload}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return deployed(name("isow", i)) }},
		{step: riposte.Step{Action: riposte.ActionDeletePod}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return pod(name("del", i), nil) }},
		{step: riposte.Step{Action: riposte.ActionEvictPod}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return pod(name("evict", i), nil) }},
		{step: riposte.Step{Action: riposte.ActionScaleWorkload, Scale: &riposte.ScaleParams{Replicas: 0}}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return deployed(name("scale", i)) }},
		{step: riposte.Step{Action: riposte.ActionRolloutRestart}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return deployed(name("restart", i)) }},
		{step: riposte.Step{Action: riposte.ActionSuspendCronJob}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return jobPod(name("cron", i)) }},
		{step: riposte.Step{Action: riposte.ActionSuspendJob}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return jobPod(name("job", i)) }},
		{step: riposte.Step{Action: riposte.ActionCordonNode}, clusterWide: true, target: func(t *testing.T, _ client.Client, i int) map[string]string { return node(name("cordon", i), 0) }},
		{step: riposte.Step{Action: riposte.ActionDrainNode}, clusterWide: true, target: func(t *testing.T, _ client.Client, i int) map[string]string { return node(name("drain", i), 3) }},
		{step: riposte.Step{Action: riposte.ActionTaint}, clusterWide: true, target: func(t *testing.T, _ client.Client, i int) map[string]string { return node(name("taint", i), 0) }},
		{step: riposte.Step{Action: riposte.ActionRevokeBinding, RevokeBinding: &riposte.RevokeBindingParams{Name: "{{ incident.spec.labels.pod }}", Subject: &riposte.BindingSubject{Name: "default"}}},
			target: func(t *testing.T, _ client.Client, i int) map[string]string {
				labels := pod(name("rb", i), nil)
				must(t, c.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name("rb", i), Namespace: ns},
					RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
					Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}, {Kind: "User", APIGroup: rbacv1.GroupName, Name: "bob"}}}))
				return labels
			}},
		{step: riposte.Step{Action: riposte.ActionLabel, Metadata: &riposte.MetadataParams{Set: map[string]string{"incident": "{{ incident.metadata.name }}"}}}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return pod(name("label", i), nil) }},
		{step: riposte.Step{Action: riposte.ActionAnnotate, Metadata: &riposte.MetadataParams{Set: map[string]string{"note": "{{ incident.spec.alertName }}"}}}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return pod(name("annot", i), nil) }},
		{step: riposte.Step{Action: riposte.ActionApplyManifest, Manifest: raw(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"evidence-{{ incident.metadata.name }}"},"data":{"a":"b"}}`)}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return pod(name("manifest", i), nil) }},
		{step: riposte.Step{Action: riposte.ActionPatch, Patch: raw(`{"metadata":{"labels":{"patched":"yes"}}}`)}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return pod(name("patch", i), nil) }},
		{step: riposte.Step{Action: riposte.ActionNotify, Notify: &riposte.NotifyParams{URLSecretRef: riposte.SecretKeyRef{Name: "chat", Key: "url"}, Text: "{{ incident.spec.alertName }}"}}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return pod(name("notify", i), nil) }},
		{step: riposte.Step{Action: riposte.ActionSilence}, target: func(t *testing.T, _ client.Client, i int) map[string]string { return pod(name("silence", i), nil) }},
	}

	var rows []actionRow
	for _, ac := range cases {
		alert := "Bench" + string(ac.step.Action)
		pbNS, sa := ns, testenv.RemediatorAccount
		if ac.clusterWide {
			pbNS, sa = operatorNamespace, ""
		}
		step := ac.step
		step.Name = "act"
		must(t, c.Create(ctx, &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Name: strings.ToLower(alert), Namespace: pbNS},
			Spec: riposte.PlaybookSpec{Triggers: riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{alert}}}},
				Steps: []riposte.Step{step}, ServiceAccountName: sa, Approval: riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}}}}))
		r := actionRow{action: ac.step.Action}
		for i := 0; i < n; i++ {
			labels := ac.target(t, c, i)
			labels["alertname"] = alert
			inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("am-%s-%d", strings.ToLower(string(ac.step.Action)), i), Namespace: ns},
				Spec: riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: alert, Fingerprint: fmt.Sprintf("%x", i+1), Labels: labels}}
			start := time.Now()
			must(t, intake.Create(ctx, inc))
			r.remediate = append(r.remediate, waitPhase(t, c, inc, riposte.PhaseRemediated, start))
			start = time.Now()
			must(t, updateIncident(ctx, c, inc, func(inc *riposte.Incident) { inc.Spec.Undo = &riposte.UndoRequest{RequestedBy: admin, Reason: "bench"} }))
			r.undo = append(r.undo, waitPhase(t, c, inc, riposte.PhaseUndone, start))
		}
		rows = append(rows, r)
	}
	writeActionResults(t, rows, scrapeActionSeconds(t, manager.MetricsAddr), n)
}

type actionRow struct {
	action          riposte.ActionType
	remediate, undo []time.Duration
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func updateIncident(ctx context.Context, c client.Client, inc *riposte.Incident, mutate func(*riposte.Incident)) error {
	for {
		cur := &riposte.Incident{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(inc), cur); err != nil {
			return err
		}
		mutate(cur)
		if err := c.Update(ctx, cur); err == nil || !strings.Contains(err.Error(), "modified") {
			return err
		}
	}
}

// waitPhase polls the API server every millisecond until the phase shows, and
// returns the time since start.
func waitPhase(t *testing.T, c client.Client, inc *riposte.Incident, phase riposte.IncidentPhase, start time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cur := &riposte.Incident{}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(inc), cur); err == nil && cur.Status.Phase == phase {
			return time.Since(start)
		} else if err == nil && cur.Status.Phase == riposte.PhaseFailed {
			t.Fatalf("incident %s failed: %+v", inc.Name, cur.Status.Conditions)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("incident %s did not reach %s", inc.Name, phase)
	return 0
}

// scrapeMetrics reads the manager's metrics endpoint: each series (its
// name and labels as the endpoint writes them) to its value.
func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	must(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			out[f[0]], _ = strconv.ParseFloat(f[1], 64)
		}
	}
	return out
}

// scrapeActionSeconds reads the mean step write time per action from the manager.
func scrapeActionSeconds(t *testing.T, addr string) map[riposte.ActionType]time.Duration {
	series := scrapeMetrics(t, addr)
	out := map[riposte.ActionType]time.Duration{}
	const count, sum = `riposte_action_seconds_count{action="`, `riposte_action_seconds_sum{action="`
	for name, n := range series {
		action, ok := strings.CutPrefix(name, count)
		if !ok || n == 0 {
			continue
		}
		action = strings.TrimSuffix(action, `"}`)
		out[riposte.ActionType(action)] = time.Duration(series[sum+action+`"}`] / n * float64(time.Second))
	}
	return out
}

func writeActionResults(t *testing.T, rows []actionRow, writes map[riposte.ActionType]time.Duration, n int) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Riposte benchmarks: time per action\n\nWritten by `make bench` on %s.\n\n## Machine\n\n%s\n", time.Now().UTC().Format(time.RFC3339), machine())
	fmt.Fprintf(&b, "## Per action, %d incidents each, one at a time\n\n", n)
	b.WriteString("*Incident to Remediated*: from creating the Incident (as intake does) to reading it Remediated from the API server: enrichment, the plan dry-run by the API server as the playbook's service account (impersonated), the automatic gate, the recorded commit, the writes and the final status. *Step writes*: the mean of the manager's `riposte_action_seconds`, the writes alone. *Undo*: from the undo request to reading it Undone. The manager runs as its own process, as its service account; Silence talks to a real Alertmanager, Notify to a local HTTP sink.\n\n")
	b.WriteString("| action | incident to Remediated p50 | p90 | max | step writes (mean) | undo p50 | undo max |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		sort.Slice(r.remediate, func(i, j int) bool { return r.remediate[i] < r.remediate[j] })
		sort.Slice(r.undo, func(i, j int) bool { return r.undo[i] < r.undo[j] })
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.action, ms(percentile(r.remediate, 0.5)), ms(percentile(r.remediate, 0.9)),
			ms(r.remediate[len(r.remediate)-1]), ms(writes[r.action]), ms(percentile(r.undo, 0.5)), ms(r.undo[len(r.undo)-1]))
	}
	b.WriteString("\nDrainNode evicts 3 pods per node; IsolateWorkload labels 1 pod and applies the policy; the polling read adds up to 1 ms to each figure.\n")
	out := filepath.Join(testenv.RepoRoot(), "test", "bench", "results-actions.md")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

func writeAMConfig(t *testing.T, dir string) string {
	p := filepath.Join(dir, "am.yml")
	must(t, os.WriteFile(p, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o600))
	return p
}
