package faults

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// TestRecordSinkOutage stores records in a real S3 server (SeaweedFS) that
// goes down while retention deletes the incidents whose records it has not
// got, and the manager is SIGKILLed meanwhile: every incident waits, saying
// why, the metrics say the sink is behind, and once the server is back each
// incident's last record is stored before it goes.
func TestRecordSinkOutage(t *testing.T) {
	alerts := scaled(200, 40)
	const ns, alertname = "recorded", "Recorded"
	env := startFaults(t, testenv.Faults{})
	ctx, c := context.Background(), env.Client
	env.TeamNamespace(t, ns)
	chat := newChat(t)
	allowNotify(t, c, ns, chat.URL)
	if err := c.Create(ctx, notifyPlaybook(ns, alertname)); err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartS3(t)
	srv.CreateBucket(t, "riposte-records")
	keyFile := filepath.Join(t.TempDir(), "signing.key")
	args := []string{"--record-s3-bucket", "riposte-records", "--record-s3-endpoint", srv.Endpoint, "--record-s3-path-style",
		"--cluster-name", "faults", "--record-signing-key", keyFile, "--record-create-signing-key", "--incident-retention", "2s"}
	launch := func() *testenv.Manager {
		m := env.LaunchManager(t, token, srv.Env(), args...)
		testenv.WaitHTTP(t, "http://"+m.ProbesAddr+"/readyz")
		return m
	}
	m := launch()
	send := func(status string) {
		t.Helper()
		s := newSender(func() []string { return []string{m.IntakeAddr} })
		for first := 0; first < alerts; first += 50 {
			if code := s.send(recordedBody(first, min(50, alerts-first), ns, alertname, status)); code != http.StatusOK {
				t.Fatalf("intake answered %d", code)
			}
		}
	}
	phases := func(ctx context.Context) (map[riposte.IncidentPhase]int, []riposte.Incident, error) {
		items, err := incidentsIn(ctx, c, ns)
		count := map[riposte.IncidentPhase]int{}
		for _, inc := range items {
			count[inc.Status.Phase]++
		}
		return count, items, err
	}
	send("firing")
	testenv.Eventually(t, 2*time.Minute, func(ctx context.Context) error {
		count, _, err := phases(ctx)
		if err == nil && count[riposte.PhaseRemediated] != alerts {
			err = fmt.Errorf("remediated: %v", count)
		}
		return err
	})
	// Every Remediated record is in the bucket before the outage: the
	// writer's queue is empty.
	testenv.Eventually(t, time.Minute, func(context.Context) error {
		if v, err := metricValue("http://"+m.MetricsAddr+"/metrics", "riposte_records_pending"); err != nil || v != 0 {
			return fmt.Errorf("records pending %v (%v)", v, err)
		}
		return nil
	})

	// The server goes down; the alerts resolve; retention deletes the
	// incidents, whose records cannot be stored.
	srv.Stop()
	outage := time.Now()
	send("resolved")
	var waiting riposte.Incident
	testenv.Eventually(t, 2*time.Minute, func(ctx context.Context) error {
		_, items, err := phases(ctx)
		deleting := 0
		for _, inc := range items {
			if !inc.DeletionTimestamp.IsZero() {
				if cond := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentRecorded); cond != nil && cond.Reason == riposte.ReasonRecordPending {
					deleting++
					waiting = inc
				}
			}
		}
		if err == nil && (len(items) != alerts || deleting != alerts) {
			err = fmt.Errorf("%d incidents stored, %d of them deleted and waiting for their record; want %d and %d", len(items), deleting, alerts, alerts)
		}
		return err
	})
	pending, _ := metricValue("http://"+m.MetricsAddr+"/metrics", "riposte_records_pending")
	errorsSeen, _ := metricValue("http://"+m.MetricsAddr+"/metrics", "riposte_record_sink_errors_total")
	oldest, _ := metricValue("http://"+m.MetricsAddr+"/metrics", "riposte_records_oldest_pending_seconds")
	if pending < float64(alerts) || errorsSeen == 0 {
		t.Errorf("while the sink is down: riposte_records_pending %v (want at least %d), riposte_record_sink_errors_total %v", pending, alerts, errorsSeen)
	}
	cond := meta.FindStatusCondition(waiting.Status.Conditions, riposte.IncidentRecorded)
	if !strings.Contains(cond.Message, "deletion waits until the incident's record is stored in s3://riposte-records/faults") || !strings.Contains(cond.Message, "the sink fails") {
		t.Errorf("a waiting incident's Recorded condition says %q", cond.Message)
	}

	// Killed while its queue waits in memory: the queue is lost, the
	// incidents are not, and the next manager hands their records in again.
	if err := syscall.Kill(m.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-m.Exited
	m = launch()
	time.Sleep(5 * time.Second)
	if _, items, err := phases(ctx); err != nil || len(items) != alerts {
		t.Fatalf("after a restart with the sink still down, %d incidents remain (%v), want all %d", len(items), err, alerts)
	}
	srv.Start()
	back := time.Now()
	testenv.Eventually(t, 3*time.Minute, func(ctx context.Context) error {
		_, items, err := phases(ctx)
		if err == nil && len(items) > 0 {
			err = fmt.Errorf("%d incidents still wait", len(items))
		}
		return err
	})
	drained := time.Since(back)

	sink, err := record.NewS3(record.S3Options{Endpoint: srv.Endpoint, Bucket: "riposte-records", Prefix: "faults", PathStyle: true, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	key, err := record.LoadKey(keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	trusted, _ := record.TrustedKeys(record.PublicPEM(key.Public().(ed25519.PublicKey)))
	rep, err := record.Verify(ctx, sink, record.VerifyOptions{Trusted: trusted})
	if err != nil {
		t.Fatal(err)
	}
	milestones := map[string]map[string]bool{}
	for _, b := range rep.Bodies {
		if milestones[b.Body.Incident.UID] == nil {
			milestones[b.Body.Incident.UID] = map[string]bool{}
		}
		milestones[b.Body.Incident.UID][b.Body.Milestone] = true
	}
	complete := 0
	for _, m := range milestones {
		if m["Remediated"] && m[record.MilestoneDeleted] {
			complete++
		}
	}
	for _, p := range rep.Problems {
		t.Errorf("the bucket's chain: %s: %s", p.Kind, p.Message)
	}
	if len(milestones) != alerts || complete != alerts {
		t.Errorf("%d incidents recorded, %d with both their Remediated and Deleted records; want %d and %d", len(milestones), complete, alerts, alerts)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Record sink outage (S3)\n\n")
	fmt.Fprintf(&b, "%d alerts remediated by a playbook that notifies, with records stored in a bucket of a real SeaweedFS S3 server (`--record-s3-bucket`) and `--incident-retention 2s`. Once every Remediated record was stored, the server was killed, the alerts resolved, and retention deleted every incident; the manager was SIGKILLed during the outage and started again; the server came back after %s.\n\n", alerts, round(time.Since(outage)-drained))
	fmt.Fprintf(&b, "| figure | value | goal |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| incidents deleted during the outage that waited, Recorded=False (RecordPending) | %d of %d | all |\n", alerts, alerts)
	fmt.Fprintf(&b, "| incidents lost across the manager's SIGKILL during the outage | 0 | 0 |\n")
	fmt.Fprintf(&b, "| `riposte_records_pending`, `riposte_record_sink_errors_total`, `riposte_records_oldest_pending_seconds` during the outage | %.0f, %.0f, %.0f s | pending >= %d, errors > 0 |\n", pending, errorsSeen, oldest, alerts)
	fmt.Fprintf(&b, "| all incidents gone, each after its record was stored, once the server was back | %s | |\n", round(drained))
	fmt.Fprintf(&b, "| incidents with both their Remediated and Deleted records in the bucket | %d of %d | all |\n", complete, alerts)
	fmt.Fprintf(&b, "| the bucket's chain | %d records, %d problems, %d written twice | 0 problems |\n", rep.Records, len(rep.Problems), rep.Duplicates)
	section(t, 6, b.String())
}

// recordedBody is one notification of n alerts from first, in status.
func recordedBody(first, n int, ns, alertname, status string) []byte {
	ends := "0001-01-01T00:00:00Z"
	if status == "resolved" {
		ends = time.Now().UTC().Format(time.RFC3339)
	}
	var alerts []map[string]any
	for i := first; i < first+n; i++ {
		alerts = append(alerts, map[string]any{"status": status, "fingerprint": fingerprint(i),
			"labels":   map[string]string{"alertname": alertname, "severity": "warning", "namespace": ns, "instance": fmt.Sprintf("node-%05d", i)},
			"startsAt": "2026-12-01T00:00:00Z", "endsAt": ends})
	}
	body, _ := json.Marshal(map[string]any{"version": "4", "status": status, "receiver": "riposte", "alerts": alerts})
	return body
}
