package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// The manager is killed right after its 1st remediation write, restarted and
// killed after its 2nd, and so on, until one run finishes: every write is
// cut off from its record once. The playbook still completes, each change
// takes effect once, and the prior state undo needs is the one from before
// the first write.
func TestRemediationSurvivesACrashAfterEveryWrite(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartForTest(t)
	c := env.Client
	const ns = "shop"
	env.TeamNamespace(t, ns, "riposte-action-isolate", "riposte-action-workloads")
	mustCreate(t, c, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "notify-and-evidence", Namespace: ns},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"chat"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "patch", "delete"}},
		}})
	mustCreate(t, c, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "notify-and-evidence", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "notify-and-evidence"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: testenv.RemediatorAccount, Namespace: ns}}})

	var mu sync.Mutex
	var deliveries []string // idempotency key + body
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		deliveries = append(deliveries, r.Header.Get("Idempotency-Key")+" "+string(b))
		mu.Unlock()
	}))
	defer sink.Close()
	mustCreate(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns}, StringData: map[string]string{"url": sink.URL}})

	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}}}
	mustCreate(t, c, dep)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: ns, Labels: labels,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
	mustCreate(t, c, pod)
	mustCreate(t, c, &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "contain", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"CryptoMiner"}}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			Steps: []riposte.Step{
				{Name: "isolate", Action: riposte.ActionIsolatePod},
				{Name: "mark", Action: riposte.ActionLabel, Metadata: &riposte.MetadataParams{Set: map[string]string{"security/incident": "{{ incident.metadata.name }}"}}},
				{Name: "stop", Action: riposte.ActionScaleWorkload, Scale: &riposte.ScaleParams{Replicas: 0}},
				{Name: "tell", Action: riposte.ActionNotify, Notify: &riposte.NotifyParams{URLSecretRef: riposte.SecretKeyRef{Name: "chat", Key: "url"}, Text: "contained {{ incident.status.context.target.name }}"}},
				{Name: "evidence", Action: riposte.ActionApplyManifest, Manifest: &runtime.RawExtension{Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"evidence"},"data":{"incident":"{{ incident.metadata.name }}"}}`)}},
			},
		},
	})
	// Open the incident as intake would, as the manager's own account.
	intake, err := env.IntakeClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-miner", Namespace: ns},
		Spec: riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: "CryptoMiner", Fingerprint: "c0ffee", Severity: "critical",
			Labels: map[string]string{"alertname": "CryptoMiner", "namespace": ns, "pod": pod.Name}}}
	if err := intake.Create(ctx, inc); err != nil {
		t.Fatal(err)
	}

	const writesInPlan = 6 // policy, pod label (isolate); label; scale; message; config map
	crashAfterEachWrite(t, env, inc, writesInPlan, nil)

	// Every step applied once, on the record.
	for _, s := range inc.Status.Steps {
		if s.Phase != riposte.StepApplied {
			t.Errorf("step %s = %s: %s", s.Name, s.Phase, s.Message)
		}
		for _, ch := range s.Changes {
			if !ch.Done {
				t.Errorf("step %s: change %s %s not marked done", s.Name, ch.Operation, ch.Object)
			}
		}
	}
	// The prior state is from before the first write: 3 replicas.
	if got := inc.Status.Steps[2].Changes[0].Restore; got != `{"spec":{"replicas":3}}` {
		t.Errorf("ScaleWorkload recorded prior state %s, want 3 replicas", got)
	}
	if got := inc.Status.Steps[0].Changes[1]; got.Undo != riposte.UndoRelease || got.Restore != ns+"/am-miner" {
		t.Errorf("IsolatePod recorded undo %s %q, want the release of this incident's hold", got.Undo, got.Restore)
	}
	// Each change took effect once: one spec change of the Deployment.
	if err := c.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 0 || dep.Generation != 2 {
		t.Errorf("Deployment replicas %d at generation %d, want 0 at generation 2 (one change)", *dep.Spec.Replicas, dep.Generation)
	}
	// The message is at least once, never a different one: every delivery
	// carries the same Idempotency-Key for the receiver to drop repeats.
	mu.Lock()
	if len(deliveries) == 0 || len(deliveries) > 2 {
		t.Errorf("the webhook got %d deliveries, want 1, or 2 when the crash fell between sending and recording", len(deliveries))
	}
	for _, d := range deliveries {
		if d != deliveries[0] || !strings.HasPrefix(d, ns+"/am-miner/tell/0 ") {
			t.Errorf("delivery %q differs from the first %q", d, deliveries[0])
		}
	}
	mu.Unlock()
	var evidence corev1.ConfigMap
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "evidence"}, &evidence); err != nil || evidence.Data["incident"] != "am-miner" {
		t.Errorf("evidence ConfigMap: %v %v", err, evidence.Data)
	}
	b, _ := json.Marshal(inc.Status.Steps)
	t.Logf("steps after %d crashes: %s", writesInPlan, b)
}

// A plan whose changes carry their own record (a quarantine hold names its
// incident on the pod) is not stored before its writes. The manager is
// killed right after each of its writes, before anything is recorded; the
// next run plans again, finds the hold in place, and records it as this
// incident's, so undo releases it; nothing is written twice.
func TestSelfRecordingRemediationSurvivesACrash(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartForTest(t)
	c := env.Client
	const ns = "shop"
	env.TeamNamespace(t, ns, "riposte-action-isolate")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: ns, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
	mustCreate(t, c, pod)
	mustCreate(t, c, &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "isolate", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"ContainerShell"}}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
		},
	})
	intake, err := env.IntakeClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-shell", Namespace: ns, Finalizers: []string{riposte.RecordFinalizer}},
		Spec: riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: "ContainerShell", Fingerprint: "5e11", Severity: "critical",
			Labels: map[string]string{"alertname": "ContainerShell", "namespace": ns, "pod": pod.Name}}}
	if err := intake.Create(ctx, inc); err != nil {
		t.Fatal(err)
	}

	const writesInPlan = 2 // the quarantine policy, the pod's hold
	crashLog := crashAfterEachWrite(t, env, inc, writesInPlan, func(crashes int) {
		// Cut off before any record: the incident shows nothing done.
		if err := c.Get(ctx, client.ObjectKeyFromObject(inc), inc); err != nil {
			t.Fatal(err)
		}
		if len(inc.Status.Steps) != 0 || inc.Status.PlanHash != "" {
			t.Errorf("after crash %d the incident holds steps %+v (plan %q): want nothing stored before the writes", crashes, inc.Status.Steps, inc.Status.PlanHash)
		}
	})
	if len(inc.Status.Steps) != 1 || len(inc.Status.Steps[0].Changes) != 2 {
		t.Fatalf("steps %+v, want one step of two changes", inc.Status.Steps)
	}
	hold := inc.Status.Steps[0].Changes[1]
	if !hold.Done || hold.Undo != riposte.UndoRelease || hold.Restore != ns+"/am-shell" || !strings.HasPrefix(hold.Summary, "found in place") {
		t.Errorf("the pod's change is recorded as %+v: want it done, found in place, released by undo", hold)
	}
	if a := inc.Status.AutoApproval; a == nil || a.PlanHash != inc.Status.PlanHash {
		t.Errorf("autoApproval %+v, plan %s: want the verdict on the plan that was applied", a, inc.Status.PlanHash)
	}
	live := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pod), live); err != nil {
		t.Fatal(err)
	}
	if got := live.Annotations["riposte.dev/quarantined-by"]; got != ns+"/am-shell=deny-all" || live.Labels["riposte.dev/quarantine"] != "deny-all" {
		t.Errorf("pod labels %v, holders %q: want isolated, held once by the incident", live.Labels, got)
	}
	// Each write was made once: the run that finished found both in place.
	if np := inc.Status.Steps[0].Changes[0]; np.Operation != riposte.OperationUnchanged || !np.Done {
		t.Errorf("the quarantine policy is recorded as %+v: want found in place by the last run, not written again", np)
	}
	b, _ := os.ReadFile(crashLog)
	if got := strings.Fields(string(b)); len(got) != writesInPlan {
		t.Errorf("writes cut off: %q, want %d distinct", got, writesInPlan)
	}
}

// crashAfterEachWrite runs the manager with the failpoint that exits right
// after each remediation write it has not exited after before, restarting it
// until a run finishes: every write is cut off from its record once. It
// checks the incident ends Remediated after exactly writes crashes (calling
// afterCrash after each), leaves inc as stored, and returns the failpoint's
// log of the writes cut off.
func crashAfterEachWrite(t *testing.T, env *testenv.Env, inc *riposte.Incident, writes int, afterCrash func(crashes int)) (crashLog string) {
	t.Helper()
	ctx, c := context.Background(), env.Client
	crashLog = filepath.Join(t.TempDir(), "crashes")
	crashes := 0
runs:
	for run := 1; run <= 2*writes; run++ {
		m := env.LaunchManager(t, intakeToken, []string{executor.FailpointEnv + "=" + crashLog})
		deadline := time.After(60 * time.Second)
		for {
			select {
			case <-m.Exited:
				crashes++
				if afterCrash != nil {
					afterCrash(crashes)
				}
				continue runs
			case <-deadline:
				t.Fatalf("run %d neither crashed nor finished", run)
			case <-time.After(100 * time.Millisecond):
				if c.Get(ctx, client.ObjectKeyFromObject(inc), inc) == nil && inc.Status.Phase == riposte.PhaseRemediated {
					break runs // this run got past every write
				}
			}
		}
	}
	testenv.Eventually(t, 60*time.Second, func(ctx context.Context) error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(inc), inc); err != nil {
			return err
		}
		if inc.Status.Phase != riposte.PhaseRemediated {
			return fmt.Errorf("phase %s; steps %+v", inc.Status.Phase, inc.Status.Steps)
		}
		return nil
	})
	if crashes != writes {
		t.Errorf("the manager crashed %d times, want %d (once after each write)", crashes, writes)
	}
	return crashLog
}
