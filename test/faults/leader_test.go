package faults

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// containPlaybook isolates the alert's pod, marks it, scales its
// Deployment to zero and tells the chat: four steps, five writes, one
// message that must not be sent twice under different keys.
func containPlaybook(ns, alertname string) *riposte.Playbook {
	return &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "contain", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{alertname}}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			Steps: []riposte.Step{
				{Name: "isolate", Action: riposte.ActionIsolatePod},
				{Name: "mark", Action: riposte.ActionLabel, Metadata: &riposte.MetadataParams{Set: map[string]string{"security/incident": "{{ incident.metadata.name }}"}}},
				{Name: "stop", Action: riposte.ActionScaleWorkload, Scale: &riposte.ScaleParams{Replicas: 0}},
				{Name: "tell", Action: riposte.ActionNotify, Notify: &riposte.NotifyParams{URLSecretRef: riposte.SecretKeyRef{Name: "chat", Key: "url"}, Text: "contained {{ incident.status.context.target.name }}"}},
			},
		},
	}
}

// chat is a Notify receiver that keeps every delivery by its
// Idempotency-Key.
type chat struct {
	*httptest.Server
	mu  sync.Mutex
	got map[string][]string
}

func newChat(t *testing.T) *chat {
	c := &chat{got: map[string][]string{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.got[r.Header.Get("Idempotency-Key")] = append(c.got[r.Header.Get("Idempotency-Key")], string(b))
		c.mu.Unlock()
	}))
	t.Cleanup(c.Close)
	return c
}

// TestLeaderKills runs two replicas with leader election and a stream of
// alerts whose playbook has four steps, and SIGKILLs the leader at random
// moments, many of them mid-step; the other replica takes over each time.
// Then it counts, from the objects and the API server's audit log, what
// was done twice, what never finished and what undo could not put back.
func TestLeaderKills(t *testing.T) {
	kills := scaled(100, 8)
	const ns = "shop"
	dir := t.TempDir()
	auditLog := dir + "/audit.log"
	env := startFaults(t, testenv.Faults{Dir: dir, AuditLog: auditLog})
	ctx, c := context.Background(), env.Client
	env.TeamNamespace(t, ns, "riposte-action-isolate", "riposte-action-workloads")
	sink := newChat(t)
	allowNotify(t, c, ns, sink.URL)
	// An alert every 400ms over the whole run: takeovers take about 2s,
	// so several alerts are in flight at every kill.
	maxAlerts := kills*8 + 20
	workloads(t, c, ns, maxAlerts)
	if err := c.Create(ctx, containPlaybook(ns, "FaultDrill")); err != nil {
		t.Fatal(err)
	}

	reps := startReplicas(t, env, 2)
	s := newSender(reps.intakes)
	stopStream := make(chan struct{})
	streamed := make(chan int)
	go func() {
		n := 0
		defer func() { streamed <- n }()
		tick := time.NewTicker(400 * time.Millisecond)
		defer tick.Stop()
		for ; n < maxAlerts; n++ {
			select {
			case <-stopStream:
				return
			case <-tick.C:
			}
			if code := s.send(alertBody("FaultDrill", fingerprint(n), ns, workloadName(n)+"-0", "firing")); code != http.StatusOK {
				t.Errorf("alert %d answered %d", n, code)
			}
		}
	}()

	var takeovers []time.Duration
	inFlight := 0 // kills while some incident was mid-remediation
	for k := 0; k < kills; k++ {
		leader, _, err := reps.leader(30 * time.Second)
		if err != nil {
			t.Fatalf("before kill %d: %v", k+1, err)
		}
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		if items, err := incidentsIn(ctx, c, ns); err == nil {
			for _, inc := range items {
				if inc.Status.Phase == riposte.PhaseRemediating || inc.Status.Phase == riposte.PhaseDetected || inc.Status.Phase == "" {
					inFlight++
					break
				}
			}
		}
		killed := time.Now()
		reps.kill(leader)
		_, at, err := reps.leader(30 * time.Second)
		if err != nil {
			t.Fatalf("after kill %d: %v", k+1, err)
		}
		takeovers = append(takeovers, at.Sub(killed))
	}
	close(stopStream)
	alerts := <-streamed

	// Every alert stored once and remediated once.
	var items []riposte.Incident
	unfinished := 0
	testenv.Eventually(t, 3*time.Minute, func(ctx context.Context) error {
		var err error
		if items, err = incidentsIn(ctx, c, ns); err != nil {
			return err
		}
		unfinished = 0
		for _, inc := range items {
			if inc.Status.Phase != riposte.PhaseRemediated {
				unfinished++
			}
		}
		if len(items) != alerts || unfinished > 0 {
			return fmt.Errorf("%d incidents for %d alerts, %d not Remediated", len(items), alerts, unfinished)
		}
		return nil
	})
	remediatedAt := time.Now()

	// Records: every step applied, every change done, the prior state undo
	// needs is the one from before the first write.
	wrongRecords := 0
	recorded := map[string]int{} // writes on the record, by resource/namespace/name
	for _, inc := range items {
		if problem := containRecordProblem(&inc); problem != "" {
			wrongRecords++
			t.Errorf("%s: %s", inc.Name, problem)
		}
		for _, st := range inc.Status.Steps {
			for _, ch := range st.Changes {
				if ch.Operation == riposte.OperationUnchanged && !strings.HasPrefix(ch.Summary, "found in place") || ch.Operation == riposte.OperationSend {
					continue
				}
				recorded[resourceOf(ch.Object.Kind)+"/"+ch.Object.Namespace+"/"+ch.Object.Name]++
			}
		}
	}
	// Deployments: one spec change each (the generation counts them).
	changedTwice := 0
	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, d := range deps.Items {
		want := int64(1)
		if d.Spec.Replicas != nil && *d.Spec.Replicas == 0 {
			want = 2
		}
		if d.Generation != want {
			changedTwice++
			t.Errorf("Deployment %s at generation %d, want %d", d.Name, d.Generation, want)
		}
	}
	// Messages: one key per incident, each key's deliveries identical.
	sink.mu.Lock()
	repeatedMessages, differing := 0, 0
	for key, bodies := range sink.got {
		if len(bodies) > 1 {
			repeatedMessages++
		}
		for _, b := range bodies {
			if b != bodies[0] {
				differing++
				t.Errorf("key %s delivered different messages: %q", key, bodies)
				break
			}
		}
	}
	keys := len(sink.got)
	sink.mu.Unlock()
	if keys != alerts {
		t.Errorf("%d messages keys for %d incidents, want one each", keys, alerts)
	}
	// Writes the API server took from Riposte (as itself or as the
	// playbook's account) on what the playbook changes, beyond the record:
	// idempotent repeats (a pod labelled again with the same labels).
	// A write whose client was killed mid-request may be stored with the
	// answer lost (the audit log then shows no 2xx): the record may count
	// it, so it is checked against every write tried.
	writes, attempts := map[string]int{}, map[string]int{}
	auditOn := map[string][]string{} // every request on the object, for a failure's message
	readAudit(t, auditLog, func(e *testenv.AuditEvent) {
		if e.ObjectRef != nil {
			key := e.ObjectRef.Resource + "/" + e.ObjectRef.Namespace + "/" + e.ObjectRef.Name
			code := 0
			if e.ResponseStatus != nil {
				code = e.ResponseStatus.Code
			}
			auditOn[key] = append(auditOn[key], fmt.Sprintf("%s %s %s %d %s", e.RequestReceivedTimestamp.Format(time.StampMicro), e.User.Username, e.Verb, code, e.RequestURI))
		}
		if e.User.Username != testenv.ManagerUser || e.ObjectRef == nil || resourceKind[e.ObjectRef.Resource] == "" || e.RequestReceivedTimestamp.After(remediatedAt) {
			return
		}
		key := e.ObjectRef.Resource + "/" + e.ObjectRef.Namespace + "/" + e.ObjectRef.Name
		if e.SucceededWrite() {
			writes[key]++
		}
		if e.AttemptedWrite() {
			attempts[key]++
		}
	})
	repeats := map[string]int{}
	for obj, n := range writes {
		if extra := n - recorded[obj]; extra > 0 {
			repeats[strings.SplitN(obj, "/", 2)[0]] += extra
		}
	}
	for obj, n := range recorded {
		if attempts[obj] < n {
			t.Errorf("%s: %d changes on the record, %d writes tried in the audit log:\n%s\n%s", obj, n, attempts[obj], changesOn(items, obj), strings.Join(auditOn[obj], "\n"))
		}
	}

	// Undo every incident: what each recorded puts everything back.
	admin := adminName(t, c)
	for _, inc := range items {
		key := client.ObjectKeyFromObject(&inc)
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := &riposte.Incident{}
			if err := c.Get(ctx, key, cur); err != nil {
				return err
			}
			cur.Spec.Undo = &riposte.UndoRequest{RequestedBy: admin, Reason: "fault suite"}
			return c.Update(ctx, cur)
		}); err != nil {
			t.Fatal(err)
		}
	}
	notUndone := 0
	testenv.Eventually(t, 3*time.Minute, func(ctx context.Context) error {
		items, err := incidentsIn(ctx, c, ns)
		if err != nil {
			return err
		}
		notUndone = 0
		for _, inc := range items {
			if inc.Status.Phase != riposte.PhaseUndone {
				notUndone++
			}
		}
		if notUndone > 0 {
			return fmt.Errorf("%d incidents not Undone", notUndone)
		}
		return nil
	})
	notRestored := 0
	if err := c.List(ctx, &deps, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, d := range deps.Items {
		if *d.Spec.Replicas != 1 {
			notRestored++
			t.Errorf("Deployment %s has %d replicas after undo, want 1", d.Name, *d.Spec.Replicas)
		}
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Labels["riposte.dev/quarantine"] != "" || p.Labels["security/incident"] != "" || p.Annotations["riposte.dev/quarantined-by"] != "" {
			notRestored++
			t.Errorf("pod %s still carries %v %v after undo", p.Name, p.Labels, p.Annotations)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Leader kills\n\n")
	fmt.Fprintf(&b, "Two replicas with leader election (lease %s, renew deadline %s, retry %s), supervised as a kubelet would (a replica that exits is started again). "+
		"An alert every 400 ms to either replica's intake, retried like Alertmanager; each alert's playbook isolates its pod, labels it, scales its Deployment to 0 and posts to a chat webhook. "+
		"The leader is killed with SIGKILL after a random 0 to 1.5 s; the figures come from the objects, the chat receiver and the API server's audit log.\n\n",
		lease.duration, lease.renew, lease.retry)
	fmt.Fprintf(&b, "| figure | value | goal |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| leaders killed (SIGKILL) | %d | |\n", kills)
	fmt.Fprintf(&b, "| kills while an incident was mid-remediation | %d | |\n", inFlight)
	fmt.Fprintf(&b, "| takeover, kill to the other replica leading | %s | about the lease duration |\n", percentiles(takeovers))
	fmt.Fprintf(&b, "| other replica exits (lease lost, crash) | %d | 0 |\n", reps.unexpectedExits())
	fmt.Fprintf(&b, "| alerts sent / incidents | %d / %d | equal |\n", alerts, len(items))
	fmt.Fprintf(&b, "| intake answers | %s | no 4xx |\n", s.summary())
	fmt.Fprintf(&b, "| incidents never finished | %d | 0 |\n", unfinished)
	fmt.Fprintf(&b, "| records missing or wrong for undo (checked on the record) | %d | 0 |\n", wrongRecords)
	fmt.Fprintf(&b, "| incidents undo could not put back (undone, then checked on the objects) | %d | 0 |\n", notUndone+notRestored)
	fmt.Fprintf(&b, "| Deployments changed twice (generation) | %d | 0 |\n", changedTwice)
	fmt.Fprintf(&b, "| messages with a different body under one key | %d | 0 |\n", differing)
	fmt.Fprintf(&b, "| messages delivered again under the same key (at least once; the receiver drops repeats by Idempotency-Key) | %d | reported |\n", repeatedMessages)
	fmt.Fprintf(&b, "| idempotent writes repeated, beyond the record (audit log) | %s | reported |\n", spell(repeats))
	fmt.Fprintf(&b, "\nThe takeover is the lease's arithmetic: the survivor takes the Lease once it expires, lease duration after the dead leader's last renewal, at its next retry. With the production defaults (lease 15 s, renew deadline 10 s, retry 2 s), a leader that dies is so replaced within about 15 to 17 s; a replica stopped on purpose (a rollout, a drain) releases the Lease as it exits, and the other takes it at its next retry (up to 2 s). Neither default is measured here. Intake keeps serving on both replicas throughout: an alert is stored, not remediated, while no replica leads.\n")
	section(t, 1, b.String())
}

// containRecordProblem says what is wrong for undo in a contain
// incident's record, or "".
func containRecordProblem(inc *riposte.Incident) string {
	if len(inc.Status.Steps) != 4 {
		return fmt.Sprintf("%d steps on the record, want 4", len(inc.Status.Steps))
	}
	for _, st := range inc.Status.Steps {
		if st.Phase != riposte.StepApplied {
			return fmt.Sprintf("step %s %s", st.Name, st.Phase)
		}
		for _, ch := range st.Changes {
			if !ch.Done {
				return fmt.Sprintf("step %s: change on %s not done", st.Name, ch.Object.Name)
			}
		}
	}
	var hold, scale *riposte.ChangeRecord
	for i := range inc.Status.Steps[0].Changes {
		if ch := &inc.Status.Steps[0].Changes[i]; ch.Object.Kind == "Pod" {
			hold = ch
		}
	}
	if len(inc.Status.Steps[2].Changes) == 1 {
		scale = &inc.Status.Steps[2].Changes[0]
	}
	switch {
	case hold == nil || hold.Undo != riposte.UndoRelease || hold.Restore != inc.Namespace+"/"+inc.Name:
		return fmt.Sprintf("the pod's hold is recorded as %+v, want released by undo", hold)
	case scale == nil || scale.Restore != `{"spec":{"replicas":1}}`:
		return fmt.Sprintf("the scale is recorded as %+v, want the prior 1 replica", scale)
	}
	return ""
}

// changesOn spells out the recorded changes on obj (resource/ns/name).
func changesOn(items []riposte.Incident, obj string) string {
	var out []string
	for _, inc := range items {
		for _, st := range inc.Status.Steps {
			for _, ch := range st.Changes {
				if resourceOf(ch.Object.Kind)+"/"+ch.Object.Namespace+"/"+ch.Object.Name == obj {
					out = append(out, fmt.Sprintf("%s step %s: %s %s done=%t %q", inc.Name, st.Name, ch.Operation, ch.Method, ch.Done, ch.Summary))
				}
			}
		}
	}
	return strings.Join(out, "\n")
}

// resourceKind names the kinds the contain playbook writes by resource.
var resourceKind = map[string]string{"pods": "Pod", "deployments": "Deployment", "networkpolicies": "NetworkPolicy"}

func resourceOf(kind string) string {
	for r, k := range resourceKind {
		if k == kind {
			return r
		}
	}
	return ""
}

func spell(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range []string{"pods", "deployments", "networkpolicies"} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d on %s", m[k], k))
		}
	}
	return strings.Join(parts, ", ")
}

func fingerprint(i int) string { return fmt.Sprintf("%016x", 0xfa000000+i) }

// adminName is who the test's admin client is, as the API server says.
func adminName(t *testing.T, c client.Client) string {
	t.Helper()
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(context.Background(), review); err != nil {
		t.Fatal(err)
	}
	return review.Status.UserInfo.Username
}
