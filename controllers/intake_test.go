package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/testenv"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/intake"
)

type token string

// intakeServer serves the Alertmanager webhook as the manager does, storing
// and recording Events as Riposte's own account, with the bearer token t0ken.
func intakeServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(&intake.Handler{
		Store:            &intake.ApplyStore{Client: intakeClient, Seen: intakeClient, FieldOwner: "riposte-intake", DefaultNamespace: operatorNamespace},
		Token:            token("t0ken"),
		DefaultNamespace: operatorNamespace,
		Log:              logr.Discard(),
		Recorder:         intakeRecorder(t),
	})
	t.Cleanup(srv.Close)
	return srv
}

// intakeRecorder records Events through a broadcaster, as the manager's
// recorder does, with the manager's own RBAC.
func intakeRecorder(t *testing.T) events.EventRecorder {
	t.Helper()
	cfg, err := env.ManagerConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	stop := make(chan struct{})
	b.StartRecordingToSink(stop)
	t.Cleanup(func() { close(stop); b.Shutdown() })
	return b.NewRecorder(env.Scheme, "riposte-intake")
}

// postBody posts body to srv as Alertmanager would and returns the
// answer's code and body.
func postBody(t *testing.T, srv *httptest.Server, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

func (t token) Token(context.Context) ([]byte, error) { return []byte(t), nil }

// Intake stores what Alertmanager sends on the real API server: one incident
// per alert, repeats change nothing, resolution is recorded, and what the API
// server refuses is answered 400 without touching what is stored.
func TestIntakeStoresIncidentsOnTheAPIServer(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	srv := intakeServer(t)
	send := func(body string) int {
		code, _ := postBody(t, srv, body)
		return code
	}
	notification := func(status, namespace, fingerprint, extra string) string {
		return fmt.Sprintf(`{"version":"4","status":%q,"alerts":[{"status":%q,"fingerprint":%q,
			"labels":{"alertname":"ContainerShell","severity":"warning","namespace":%q%s},
			"startsAt":"2026-11-26T10:00:00Z","endsAt":"2026-11-26T10:05:00Z"}]}`, status, status, fingerprint, namespace, extra)
	}

	if code := send(notification("firing", ns, "c0ffee01", "")); code != 200 {
		t.Fatalf("first notification: %d", code)
	}
	inc, err := getIncident(ctx, ns, "am-c0ffee01")
	if err != nil {
		t.Fatalf("the incident is stored before the 200: %v", err)
	}
	if inc.Spec.Source != riposte.SourceAlertmanager || inc.Spec.Severity != "warning" || inc.Spec.Status != riposte.AlertFiring ||
		inc.Spec.StartsAt == nil || inc.Spec.EndsAt != nil || inc.Labels["riposte.dev/source"] != "alertmanager" {
		t.Errorf("stored incident = %+v %v", inc.Spec, inc.Labels)
	}
	// Set at creation, so the remediation path writes no finalizer itself.
	if !slices.Contains(inc.Finalizers, riposte.RecordFinalizer) {
		t.Errorf("finalizers %v, want %s from the start", inc.Finalizers, riposte.RecordFinalizer)
	}

	if code := send(notification("firing", ns, "c0ffee01", "")); code != 200 {
		t.Fatalf("repeat: %d", code)
	}
	again, _ := getIncident(ctx, ns, "am-c0ffee01")
	if again.Generation != inc.Generation || again.UID != inc.UID {
		t.Errorf("a repeated notification changed the incident: generation %d -> %d", inc.Generation, again.Generation)
	}

	if code := send(notification("resolved", ns, "c0ffee01", "")); code != 200 {
		t.Fatalf("resolution: %d", code)
	}
	resolved, _ := getIncident(ctx, ns, "am-c0ffee01")
	if resolved.Spec.Status != riposte.AlertResolved || resolved.Spec.EndsAt == nil || resolved.UID != inc.UID {
		t.Errorf("after resolution: status %s endsAt %v", resolved.Spec.Status, resolved.Spec.EndsAt)
	}

	// A namespace that does not exist: stored in Riposte's namespace, not lost.
	if code := send(notification("firing", "no-such-namespace", "c0ffee02", "")); code != 200 {
		t.Fatalf("unknown namespace: %d", code)
	}
	if _, err := getIncident(ctx, operatorNamespace, "am-c0ffee02"); err != nil {
		t.Errorf("incident for an unknown namespace: %v", err)
	}

	// The API server refuses a 64+ character severity: 400, and the stored
	// incident keeps its spec.
	// A new episode (after the stored endsAt), so that only the severity is wrong.
	long := `,"severity2":"x"`
	bad := strings.Replace(notification("firing", ns, "c0ffee01", long), `"severity":"warning"`, `"severity":"`+strings.Repeat("s", 70)+`"`, 1)
	bad = strings.Replace(bad, `"startsAt":"2026-11-26T10:00:00Z"`, `"startsAt":"2026-11-26T11:00:00Z"`, 1)
	if code := send(bad); code != 400 {
		t.Errorf("an incident the API server refuses: %d, want 400", code)
	}
	kept, _ := getIncident(ctx, ns, "am-c0ffee01")
	if kept.Spec.Severity != "warning" || kept.Spec.Status != riposte.AlertResolved {
		t.Errorf("the refused notification changed the stored incident: %+v", kept.Spec)
	}
}

// An incident a person created under an alert's name is never taken over:
// that alert is answered 500 saying why, so Alertmanager retries rather than
// drops the notification, and the notification's other alerts are stored,
// fingerprints differing only in case as distinct incidents.
func TestIntakeNeverTakesOverAnIncidentItDidNotStore(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	srv := intakeServer(t)

	squatted := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-c0ffee10", Namespace: ns},
		Spec: riposte.IncidentSpec{Source: riposte.SourceManual, AlertName: "Decoy", RequestedBy: "dave"}}
	// The admission policy keeps am- names for Riposte (see
	// TestAttackSquattingAnAlertsName); dave's incident under that name is
	// what a cluster holds from before the policy, so it is stored here by
	// the one identity the policy lets through.
	if err := people["dave"].Create(ctx, squatted.DeepCopy()); !apierrors.IsForbidden(err) {
		t.Fatalf("dave pre-creating the alert's incident: %v, want Forbidden", err)
	}
	if err := intakeClient.Create(ctx, squatted); err != nil {
		t.Fatal(err)
	}

	alert := func(fingerprint string) string {
		return fmt.Sprintf(`{"status":"firing","fingerprint":%q,"labels":{"alertname":"ContainerShell","namespace":%q}}`, fingerprint, ns)
	}
	body := `{"version":"4","status":"firing","alerts":[` + alert("c0ffee10") + "," + alert("ABCDEF11") + "," + alert("abcdef11") + `]}`
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(answer), "am-c0ffee10 exists but is not this alert's (its source is Manual") {
		t.Errorf("answer = %d %s, want 500 naming the incident that holds the name", resp.StatusCode, answer)
	}

	kept, err := getIncident(ctx, ns, "am-c0ffee10")
	if err != nil || kept.Spec.Source != riposte.SourceManual || kept.Spec.AlertName != "Decoy" || kept.UID != squatted.UID {
		t.Errorf("the person's incident was changed: %v %+v", err, kept.Spec)
	}
	for _, fingerprint := range []string{"ABCDEF11", "abcdef11"} {
		inc, err := getIncident(ctx, ns, intake.IncidentName(fingerprint))
		if err != nil {
			t.Errorf("the alert %s beside the refused one was not stored: %v", fingerprint, err)
			continue
		}
		if inc.Spec.Fingerprint != fingerprint {
			t.Errorf("incident %s holds fingerprint %q, want %q verbatim", inc.Name, inc.Spec.Fingerprint, fingerprint)
		}
	}
	if intake.IncidentName("abcdef11") != "am-abcdef11" {
		t.Errorf("a lowercase fingerprint is named %s, want am-abcdef11", intake.IncidentName("abcdef11"))
	}
}

// falcoAlertJSON is a Falco event as Alertmanager notifies it after
// Falcosidekick's Alertmanager output posted it: no alertname; rule,
// priority, severity, source="falco", eventsource, hostname, tags and the
// output fields with dots made underscores (falcosecurity/falcosidekick,
// outputs/alertmanager.go); the output fields of Falco's "Terminal shell in
// container" rule, priority NOTICE (falcosecurity/rules, falco_rules.yaml).
func falcoAlertJSON(fingerprint, ns, pod string) string {
	return fmt.Sprintf(`{"status":"firing","fingerprint":%q,"startsAt":"2026-11-26T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
	 "labels":{"rule":"Terminal shell in container","priority":"Notice","severity":"information","source":"falco","eventsource":"syscall",
	  "hostname":"worker-1","tags":"T1059,container,maturity_stable,mitre_execution,shell","evt_type":"execve","user_name":"root",
	  "user_uid":"0","proc_name":"bash","proc_cmdline":"bash","proc_tty":"34816","container_id":"3ad7c2b1f0e4","container_name":"web",
	  "k8s_ns_name":%q,"k8s_pod_name":%q},
	 "annotations":{"summary":"Terminal shell in container",
	  "description":"Notice A shell was spawned in a container with an attached terminal | evt_type=execve user=root process=bash terminal=34816"}}`,
		fingerprint, ns, pod)
}

// crashLoopingJSON is kube-prometheus' KubePodCrashLooping as Prometheus
// labels it from kube-state-metrics scraped with honorLabels
// (prometheus-operator/kube-prometheus, kubernetesControlPlane-prometheusRule.yaml
// and kubeStateMetrics-serviceMonitor.yaml).
func crashLoopingJSON(status, fingerprint, ns, pod, startsAt, endsAt string) string {
	return fmt.Sprintf(`{"status":%q,"fingerprint":%q,"startsAt":%q,"endsAt":%q,
	 "labels":{"alertname":"KubePodCrashLooping","severity":"warning","namespace":%q,"pod":%q,"container":"web",
	  "reason":"CrashLoopBackOff","job":"kube-state-metrics","service":"kube-state-metrics","endpoint":"https-main",
	  "instance":"10.244.1.7:8443","uid":"5b0c3a44-8f3e-4c55-9d2a-1f6f4b2a9c10","prometheus":"monitoring/k8s"},
	 "annotations":{"summary":"Pod is crash looping.","runbook_url":"https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"}}`,
		status, fingerprint, startsAt, endsAt, ns, pod)
}

// A Falco alert carries no alertname. It used to cost its whole
// notification a 400, which Alertmanager drops for good, with the alerts
// grouped beside it. Now each alert that can be stored is, the Falco one
// named after its rule with an Event saying so; the one that can never be
// stored is listed in the answer; Alertmanager's truncatedAlerts reaches
// each stored incident as an Event.
func TestIntakeStoresAFalcoAlertAndItsNeighbours(t *testing.T) {
	ns := newNamespace(t)
	srv := intakeServer(t)
	body := `{"version":"4","status":"firing","receiver":"riposte","truncatedAlerts":3,"alerts":[` +
		falcoAlertJSON("fa1c0000000000a1", ns, "web-1") + "," +
		crashLoopingJSON("firing", "c1a5000000000001", ns, "web-1", "2026-11-26T10:00:00Z", "0001-01-01T00:00:00Z") + "," +
		`{"status":"firing","fingerprint":"../../etc","labels":{"alertname":"Broken"}}` + `]}`
	code, answer := postBody(t, srv, body)
	if code != http.StatusOK {
		t.Fatalf("answer %d %s, want 200: the storable alerts are stored", code, answer)
	}
	var got struct {
		Incidents []intake.StoredIncident `json:"incidents"`
		Refused   []intake.AlertError     `json:"refused"`
	}
	if err := json.Unmarshal([]byte(answer), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Incidents) != 2 || len(got.Refused) != 1 || got.Refused[0].Index != 2 || got.Refused[0].Reason != intake.RefusedFingerprint {
		t.Fatalf("answer %s, want two incidents and the third alert refused for its fingerprint", answer)
	}

	ctx := context.Background()
	falco, err := getIncident(ctx, got.Incidents[0].Namespace, got.Incidents[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if falco.Spec.AlertName != "Terminal shell in container" || falco.Labels[intake.LabelAlertName] != "Terminal-shell-in-container" ||
		falco.Spec.Severity != "information" || falco.Spec.Labels["k8s_pod_name"] != "web-1" {
		t.Errorf("Falco incident: alertName %q, labels %v, severity %q", falco.Spec.AlertName, falco.Labels, falco.Spec.Severity)
	}
	crash, err := getIncident(ctx, ns, "am-c1a5000000000001")
	if err != nil || crash.Spec.AlertName != "KubePodCrashLooping" {
		t.Fatalf("the Prometheus alert beside it: %v %+v", err, crash)
	}

	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		if err := expectEventSaying(ctx, falco.Namespace, falco.Name, intake.ReasonAlertNameDerived, "named \"Terminal shell in container\" after its rule label"); err != nil {
			return err
		}
		for _, inc := range []*riposte.Incident{falco, crash} {
			if err := expectEventSaying(ctx, inc.Namespace, inc.Name, intake.ReasonAlertsTruncated, "left 3 alerts of this notification's group out"); err != nil {
				return err
			}
		}
		return nil
	})
	if n, err := countEvents(ctx, ns, crash.Name, intake.ReasonAlertNameDerived); err != nil || n != 0 {
		t.Errorf("%d %s events on the alert that has an alertname (err %v)", n, intake.ReasonAlertNameDerived, err)
	}

	// Nothing in the body can ever be stored: only then 400.
	code, answer = postBody(t, srv, `{"version":"4","status":"firing","alerts":[{"status":"pending","fingerprint":"ab"}]}`)
	if code != http.StatusBadRequest || !strings.Contains(answer, "1 of 1 alerts can never be stored: alerts[0].status") {
		t.Errorf("answer %d %s, want 400 naming the field", code, answer)
	}
}

func expectEventSaying(ctx context.Context, ns, name, reason, note string) error {
	var list corev1.EventList
	if err := k8sClient.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name && e.Reason == reason && strings.Contains(e.Message, note) {
			return nil
		}
	}
	return fmt.Errorf("no %s event on %s/%s saying %q", reason, ns, name, note)
}

// Alertmanager's HA peers and retries deliver out of order. An alert is
// ordered by its own times, as Alertmanager merges it: a firing
// notification of an episode already stored as ended, or a resolution of an
// earlier episode, changes nothing, atomically on the API server, and is
// answered 200: the playbook never sees the alert fire again. A firing
// that starts after the stored end is a new episode and reopens the alert.
func TestIntakeIgnoresAStaleNotification(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	srv := intakeServer(t)
	const fp = "57a1e00000000001"
	starts := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	ends := starts.Add(5 * time.Minute)
	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }
	send := func(status string, startsAt, endsAt time.Time) string {
		t.Helper()
		e := "0001-01-01T00:00:00Z"
		if !endsAt.IsZero() {
			e = rfc(endsAt)
		}
		body := `{"version":"4","status":"` + status + `","receiver":"riposte","alerts":[` + crashLoopingJSON(status, fp, ns, pod.Name, rfc(startsAt), e) + `]}`
		code, answer := postBody(t, srv, body)
		if code != http.StatusOK {
			t.Fatalf("%s notification: %d %s, want 200", status, code, answer)
		}
		return answer
	}
	name := intake.IncidentName(fp)
	stored := func() *riposte.Incident {
		t.Helper()
		inc, err := getIncident(ctx, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		return inc
	}

	// Fired and resolved before any playbook answered it.
	send("firing", starts, time.Time{})
	send("resolved", starts, ends)
	if inc := stored(); inc.Spec.Status != riposte.AlertResolved || !inc.Spec.EndsAt.Time.Equal(ends) {
		t.Fatalf("after the resolution: %s endsAt %v", inc.Spec.Status, inc.Spec.EndsAt)
	}
	waitForPhase(t, ns, name, riposte.PhaseResolved)
	pb := isolatePlaybook(ns, "isolate-crashloop", "KubePodCrashLooping", &riposte.AutoApprove{})
	pb.Spec.Triggers.Alerts[0].Severities = []string{"warning"}
	mustCreate(t, pb)

	// The older firing notification, from a peer or a retry, arrives last.
	if answer := send("firing", starts, time.Time{}); !strings.Contains(answer, `"stale":true`) {
		t.Errorf("answer %s, want the incident reported stale", answer)
	}
	testenv.Consistently(t, 2*time.Second, func(ctx context.Context) error {
		inc, err := getIncident(ctx, ns, name)
		if err != nil {
			return err
		}
		if inc.Spec.Status != riposte.AlertResolved || inc.Spec.EndsAt == nil || !inc.Spec.EndsAt.Time.Equal(ends) {
			return fmt.Errorf("the stale notification reopened the incident: %s endsAt %v", inc.Spec.Status, inc.Spec.EndsAt)
		}
		if len(inc.Status.Steps) != 0 {
			return fmt.Errorf("steps %+v for an alert that had ended", inc.Status.Steps)
		}
		live := &corev1.Pod{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), live); err != nil {
			return err
		}
		if _, isolated := live.Labels[actions.QuarantineLabel]; isolated {
			return fmt.Errorf("the pod was isolated for an alert that had ended: %v", live.Labels)
		}
		return nil
	})

	// Nor does a firing notification that gives no startsAt at all.
	if answer := send("firing", time.Time{}, time.Time{}); !strings.Contains(answer, `"stale":true`) {
		t.Errorf("answer %s, want a firing without startsAt reported stale", answer)
	}
	if inc := stored(); inc.Spec.Status != riposte.AlertResolved || inc.Spec.StartsAt == nil || !inc.Spec.EndsAt.Time.Equal(ends) {
		t.Errorf("a firing without startsAt rewrote the resolved incident: %s startsAt %v endsAt %v", inc.Spec.Status, inc.Spec.StartsAt, inc.Spec.EndsAt)
	}

	// A new episode, starting after the stored end, is a new incident: the
	// first keeps its record, and the playbook answers the new one.
	again := ends.Add(time.Minute)
	if answer := send("firing", again, time.Time{}); strings.Contains(answer, `"stale"`) || !strings.Contains(answer, intake.EpisodeName(fp, again)) {
		t.Errorf("answer %s: want the new episode stored as %s, not stale", answer, intake.EpisodeName(fp, again))
	}
	episode := waitForPhase(t, ns, intake.EpisodeName(fp, again), riposte.PhaseRemediated)
	if episode.Spec.Status != riposte.AlertFiring || !episode.Spec.StartsAt.Time.Equal(again) || episode.Spec.Fingerprint != fp {
		t.Errorf("the new episode's incident: %s startsAt %v fingerprint %s", episode.Spec.Status, episode.Spec.StartsAt, episode.Spec.Fingerprint)
	}
	if inc := stored(); inc.Spec.Status != riposte.AlertResolved || !inc.Spec.EndsAt.Time.Equal(ends) || inc.Status.Phase != riposte.PhaseResolved || len(inc.Status.Steps) != 0 {
		t.Errorf("the first episode's incident changed: %s endsAt %v, phase %s, steps %d", inc.Spec.Status, inc.Spec.EndsAt, inc.Status.Phase, len(inc.Status.Steps))
	}
	// The new episode's own notifications land on it.
	send("firing", again, time.Time{})
	if _, err := getIncident(ctx, ns, intake.EpisodeName(fp, again.Add(time.Second))); !apierrors.IsNotFound(err) {
		t.Errorf("a repeated notification of the episode made another incident: %v", err)
	}

	// The first episode's resolution arriving again changes nothing.
	send("resolved", starts, ends)
	if inc := stored(); inc.Spec.Status != riposte.AlertResolved || !inc.Spec.EndsAt.Time.Equal(ends) {
		t.Errorf("the first episode's resolution, again: %s endsAt %v", inc.Spec.Status, inc.Spec.EndsAt)
	}
	if inc, err := getIncident(ctx, ns, intake.EpisodeName(fp, again)); err != nil || inc.Spec.Status != riposte.AlertFiring {
		t.Errorf("an earlier episode's resolution closed the new one: %v %v", inc.Spec.Status, err)
	}

	// With the first episode's incident deleted (an admin's clean-up), the
	// episode's notifications still land on its own incident, which is not
	// remediated twice.
	first := stored()
	if err := k8sClient.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	waitForGone(t, ns, name)
	send("firing", again, time.Time{})
	if _, err := getIncident(ctx, ns, name); !apierrors.IsNotFound(err) {
		t.Errorf("the episode's notification re-created the first episode's incident %s: %v", name, err)
	}
	if inc, err := getIncident(ctx, ns, intake.EpisodeName(fp, again)); err != nil || len(inc.Status.Steps) != 1 {
		t.Errorf("the episode's incident after another notification: %v (want one step, applied once)", err)
	}
}

// An alert whose resolution is the first Riposte hears of it (the firing
// notification went to a peer that failed) has ended: it is not remediated.
func TestIntakeNeverRemediatesAnAlertThatHadEnded(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	srv := intakeServer(t)
	pb := isolatePlaybook(ns, "isolate-crashloop", "KubePodCrashLooping", &riposte.AutoApprove{})
	pb.Spec.Triggers.Alerts[0].Severities = []string{"warning"}
	mustCreate(t, pb)
	const fp = "57a1e00000000002"
	postEndedCrashLoop(t, srv, fp, ns, pod.Name)
	inc := waitForPhase(t, ns, intake.IncidentName(fp), riposte.PhaseResolved)
	if c := condition(t, inc.Status.Conditions, riposte.IncidentPlanned); c.Status != metav1.ConditionFalse || c.Reason != riposte.ReasonAlertResolved {
		t.Errorf("Planned = %s %s: %s; want False AlertResolved", c.Status, c.Reason, c.Message)
	}
	if inc.Status.ApprovalGate != "" || len(inc.Status.Steps) != 0 {
		t.Errorf("gate %q, %d steps for an alert that had ended", inc.Status.ApprovalGate, len(inc.Status.Steps))
	}
	live := &corev1.Pod{}
	if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(pod), live); err != nil {
		t.Fatal(err)
	}
	if _, isolated := live.Labels[actions.QuarantineLabel]; isolated {
		t.Errorf("the pod was isolated for an alert that had ended")
	}
}

// The rules on an alert's times compare a change with what was stored, never
// the stored incident with itself: one stored with odd times (before intake
// refused them) still takes an admin's edit and Riposte's own writes.
func TestOddStoredTimesNeverFreezeAnIncident(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	starts := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	ends := metav1.NewTime(starts.Add(-time.Hour))
	inc := &riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{Name: "am-0dd71e5", Namespace: ns},
		Spec: riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: "Odd", Fingerprint: "0dd71e5",
			Status: riposte.AlertResolved, StartsAt: &starts, EndsAt: &ends},
	}
	mustCreate(t, inc)
	if err := updateAs(ctx, k8sClient, &riposte.Incident{}, client.ObjectKeyFromObject(inc), func(o client.Object) {
		o.SetLabels(map[string]string{"team": "web"})
	}); err != nil {
		t.Errorf("an admin's label edit of an incident stored with odd times: %v", err)
	}
	waitForPhase(t, ns, inc.Name, riposte.PhaseResolved)
}

// A quarantine hold is its own record only if the next pass commits: a
// pass cut off after isolating the pod and before storing its record, then
// an alert that resolves before the manager is back, would leave the pod
// isolated with no record. The hold found in the incident's name is
// recorded instead, and undo releases it.
func TestOrphanHoldIsRecordedForUndo(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	srv := intakeServer(t)
	pb := isolatePlaybook(ns, "isolate-crashloop", "KubePodCrashLooping", &riposte.AutoApprove{})
	pb.Spec.Triggers.Alerts[0].Severities = []string{"warning"}
	mustCreate(t, pb)
	const fp = "57a1e00000000003"
	name := intake.IncidentName(fp)
	// What the cut-off pass wrote, as the playbook's account would have.
	if err := updateAs(ctx, k8sClient, &corev1.Pod{}, client.ObjectKeyFromObject(pod), func(o client.Object) {
		o.SetLabels(map[string]string{"app": "web", actions.QuarantineLabel: "deny-all"})
		o.SetAnnotations(map[string]string{actions.QuarantinedByAnnotation: ns + "/" + name + "=deny-all"})
	}); err != nil {
		t.Fatal(err)
	}
	// Someone who may edit pods in another namespace writes the same hold
	// there: it is not this incident's, and is never adopted.
	other := newNamespace(t)
	elsewhere := barePod(t, other, "decoy", func(p *corev1.Pod) {
		p.Labels = map[string]string{actions.QuarantineLabel: "deny-all"}
		p.Annotations = map[string]string{actions.QuarantinedByAnnotation: ns + "/" + name + "=deny-all"}
	})
	postEndedCrashLoop(t, srv, fp, ns, pod.Name)
	inc := waitForPhase(t, ns, name, riposte.PhaseResolved)
	if len(inc.Status.Steps) != 1 || len(inc.Status.Steps[0].Changes) != 1 || inc.Status.Steps[0].Changes[0].Object.Namespace != ns {
		t.Fatalf("steps %+v, want the hold found in place recorded", inc.Status.Steps)
	}
	c := inc.Status.Steps[0].Changes[0]
	if inc.Status.Steps[0].Phase != riposte.StepApplied || !c.Done || c.Undo != riposte.UndoRelease || c.Restore != ns+"/"+name || c.Object.UID != string(pod.UID) ||
		inc.Status.RunAs != "system:serviceaccount:"+ns+":"+remediatorAccount {
		t.Errorf("recorded %+v as %q, want the pod's hold, applied, released by undo, as the playbook's account", c, inc.Status.RunAs)
	}
	undoAs(t, "alice", inc)
	expectUnisolated(t, pod)
	expectQuarantined(t, elsewhere, true)
}

// postEndedCrashLoop posts, as the first Riposte hears of it, the resolution
// of a KubePodCrashLooping alert about pod that ended five minutes after it
// started.
func postEndedCrashLoop(t *testing.T, srv *httptest.Server, fp, ns, pod string) {
	t.Helper()
	starts := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	body := `{"version":"4","status":"resolved","receiver":"riposte","alerts":[` +
		crashLoopingJSON("resolved", fp, ns, pod, starts.Format(time.RFC3339), starts.Add(5*time.Minute).Format(time.RFC3339)) + `]}`
	if code, answer := postBody(t, srv, body); code != http.StatusOK {
		t.Fatalf("resolved notification: %d %s", code, answer)
	}
}
