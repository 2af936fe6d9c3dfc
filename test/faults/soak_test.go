package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// notifyPlaybook answers alertname by posting to the chat: a remediation
// that leaves nothing in place, so its incident may go once it closes.
func notifyPlaybook(ns, alertname string) *riposte.Playbook {
	return &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "tell", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{alertname}}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			Steps:              []riposte.Step{{Name: "tell", Action: riposte.ActionNotify, Notify: &riposte.NotifyParams{URLSecretRef: riposte.SecretKeyRef{Name: "chat", Key: "url"}, Text: "seen {{ incident.spec.alertName }}"}}},
		},
	}
}

// TestSoakStorageLevelsOff pushes alerts through one manager with
// accelerated retention: each fires, is stored, answered (one in ten by a
// playbook that notifies, the rest by none) and resolved, and its incident
// is deleted once the retention passes. etcd's space in use must level off
// while alerts keep coming, and be given back once they stop.
func TestSoakStorageLevelsOff(t *testing.T) {
	// Long enough at either scale for each third of the sending to hold
	// some 15 samples or more: etcd's space in use swings by a quarter
	// between samples, with compaction, even once it has levelled off.
	alerts := scaled(50000, 10000)
	// A sustained rate the pipeline keeps up with on the 2-core machine
	// the suite runs on (an unpaced burst is the storm benchmark's job).
	const rate = 40 // alerts a second
	retention := time.Duration(scaled(15, 5)) * time.Second
	const ns = "noisy"
	env := startFaults(t, testenv.Faults{APIServerArgs: map[string]string{
		// kube-apiserver compacts etcd's history every 5 minutes by default,
		// and keeps Events an hour: both shortened with retention.
		"etcd-compaction-interval": "10s",
		"event-ttl":                "1m",
	}})
	ctx, c := context.Background(), env.Client
	env.TeamNamespace(t, ns)
	sink := newChat(t)
	allowNotify(t, c, ns, sink.URL)
	if err := c.Create(ctx, notifyPlaybook(ns, "Noisy")); err != nil {
		t.Fatal(err)
	}
	m := env.StartManager(t, token, "--incident-retention", retention.String())
	s := newSender(func() []string { return []string{m.IntakeAddr} })

	type sample struct {
		at                   time.Duration
		sent, stored, closed int
		size, inUse, keys    float64
	}
	const sampleEvery = 5 * time.Second
	var samples []sample
	var sent atomic.Int64
	start := time.Now()
	sampleNow := func() sample {
		etcd := env.ControlPlane.Etcd.URL.String() + "/metrics"
		var values [3]float64
		for i, name := range []string{"etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes", "etcd_debugging_mvcc_keys_total"} {
			v, err := metricValue(etcd, name)
			if err != nil {
				t.Errorf("reading etcd's %s: %v", name, err)
			}
			values[i] = v
		}
		size, inUse, keys := values[0], values[1], values[2]
		stored, err := storedIncidents(ctx, c, ns)
		if err != nil {
			t.Error(err)
		}
		return sample{at: time.Since(start), sent: int(sent.Load()), stored: stored, closed: closedIncidents(m.MetricsAddr), size: size, inUse: inUse, keys: keys}
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			samples = append(samples, sampleNow())
			select {
			case <-stopSampling:
				return
			case <-time.After(sampleEvery):
			}
		}
	}()

	// Four senders, 100 alerts a notification as Alertmanager batches them;
	// each batch resolves 5 s after it fired, in a later notification, so
	// the playbook's alerts are remediated before they resolve.
	const batch = 100
	type fired struct {
		first int
		at    time.Time
	}
	work, resolve := make(chan int), make(chan fired, alerts/batch+1)
	var senders, resolvers sync.WaitGroup
	for w := 0; w < 4; w++ {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for first := range work {
				if code := s.send(batchBody(first, min(batch, alerts-first), ns, "firing")); code != http.StatusOK {
					t.Errorf("batch %d firing answered %d", first, code)
				}
				sent.Add(int64(min(batch, alerts-first)))
				resolve <- fired{first, time.Now()}
			}
		}()
	}
	for w := 0; w < 4; w++ {
		resolvers.Add(1)
		go func() {
			defer resolvers.Done()
			for f := range resolve {
				time.Sleep(time.Until(f.at.Add(5 * time.Second)))
				if code := s.send(batchBody(f.first, min(batch, alerts-f.first), ns, "resolved")); code != http.StatusOK {
					t.Errorf("batch %d resolved answered %d", f.first, code)
				}
			}
		}()
	}
	pace := time.NewTicker(time.Second * batch / rate)
	for first := 0; first < alerts; first += batch {
		work <- first
		<-pace.C
	}
	pace.Stop()
	close(work)
	senders.Wait()
	close(resolve)
	resolvers.Wait()
	sending := time.Since(start)
	// Drained: every incident closed and deleted after its retention.
	testenv.Eventually(t, 10*time.Minute, func(ctx context.Context) error {
		n, err := storedIncidents(ctx, c, ns)
		if err == nil && n > 0 {
			err = fmt.Errorf("%d incidents still stored", n)
		}
		return err
	})
	time.Sleep(20 * time.Second) // two compactions
	close(stopSampling)
	<-sampled
	last := sampleNow()
	samples = append(samples, last)

	// Levelled off: once deletions keep pace with intake, the space in use
	// in the last third of the sending is on average no more than a
	// quarter above the middle third's (checked when the sending lasted
	// long enough for that: six times the retention, and the time to
	// close). Averages, not peaks: a single sample swings by a quarter with
	// where it falls between two compactions, while incidents that are not
	// deleted, or history that is not compacted, raise every sample after
	// them. Given back: drained, the space in use is at most a quarter of
	// the peak.
	var middle, lastThird []float64
	var peak float64
	for _, s := range samples {
		switch {
		case s.at > sending:
		case s.at > 2*sending/3:
			lastThird = append(lastThird, s.inUse)
		case s.at > sending/3:
			middle = append(middle, s.inUse)
		}
		peak = max(peak, s.inUse)
	}
	middleMean, lastMean := mean(middle), mean(lastThird)
	plateau := sending >= 6*retention+30*time.Second
	if plateau && lastMean > 1.25*middleMean {
		t.Errorf("etcd in use averaged %s in the last third of the soak (%d samples), over a quarter above the middle third's %s (%d samples): storage did not level off", mb(lastMean), len(lastThird), mb(middleMean), len(middle))
	}
	if last.inUse > peak/4 {
		t.Errorf("etcd in use at the end %s, over a quarter of the peak %s: deleted incidents' space was not given back", mb(last.inUse), mb(peak))
	}
	deleted, _ := metricValue("http://"+m.MetricsAddr+"/metrics", "riposte_retention_deleted_total")
	// Deleted by retention, each decided incident left its last record:
	// every one the chain holds a record of has its Deleted record too.
	rep := env.VerifyRecords(t)
	recorded, deletedRecords := map[string]bool{}, map[string]bool{}
	for _, r := range rep.Bodies {
		recorded[r.Body.Incident.UID] = true
		if r.Body.Milestone == record.MilestoneDeleted {
			deletedRecords[r.Body.Incident.UID] = true
		}
	}
	recordBytes := 0
	if rep.Records > 0 {
		recordBytes = int(rep.Bytes / int64(rep.Records))
	}
	sink.mu.Lock()
	messages := len(sink.got)
	sink.mu.Unlock()

	var b strings.Builder
	fmt.Fprintf(&b, "## Soak: storage with retention\n\n")
	fmt.Fprintf(&b, "%d alerts through one manager with `--incident-retention %s`, %d a second in notifications of 100 alerts (as Alertmanager batches them), each batch resolved 5 s after it fired; one alert in ten is answered by a playbook that notifies a chat webhook (%d messages), the rest by no playbook (Unmatched). kube-apiserver runs with `--etcd-compaction-interval 10s` and `--event-ttl 1m` (defaults 5m and 1h), so that history and Events age at the pace of the accelerated retention. Sent in %s; etcd sampled every %s (the table shows about 40 of the samples, and the drain in full).\n\n",
		alerts, retention, rate, messages, round(sending), sampleEvery)
	fmt.Fprintf(&b, "| time | alerts sent | incidents stored | of them closed | etcd keys | db size on disk | db in use |\n|---|---|---|---|---|---|---|\n")
	// About 40 rows whatever the soak's length; the last ones all (the drain).
	every := max(1, len(samples)/40)
	for i, s := range samples {
		if i%every == 0 || i >= len(samples)-4 {
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %.0f | %s | %s |\n", s.at.Round(time.Second), s.sent, s.stored, s.closed, s.keys, mb(s.size), mb(s.inUse))
		}
	}
	fmt.Fprintf(&b, "\n| figure | value | goal |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| incidents deleted by retention | %.0f | %d |\n", deleted, alerts)
	fmt.Fprintf(&b, "| decided incidents (the notifying playbook's, remediated before their alert resolved) recorded, and of them with their Deleted record | %d, %d | one per message, each with its Deleted record |\n", len(recorded), len(deletedRecords))
	fmt.Fprintf(&b, "| record chain | %d records, %d bytes each on average, %d problems, %d written twice | 0 problems |\n", rep.Records, recordBytes, len(rep.Problems), rep.Duplicates)
	fmt.Fprintf(&b, "| intake answers | %s | no 4xx |\n", s.summary())
	levelled := "not checked: the soak was too short to reach its plateau"
	if plateau {
		levelled = fmt.Sprintf("%s, then %s (peaks %s, then %s)", mb(middleMean), mb(lastMean), mb(slices.Max(middle)), mb(slices.Max(lastThird)))
	}
	fmt.Fprintf(&b, "| etcd in use: average of the middle third of the sending, then of the last third | %s | the last at most 25%% above the middle |\n", levelled)
	fmt.Fprintf(&b, "| etcd in use: peak, and once drained | %s, %s | drained at most 25%% of the peak |\n", mb(peak), mb(last.inUse))
	fmt.Fprintf(&b, "\nThe size on disk is etcd's high-water mark: etcd reuses the pages compaction frees but gives them back to the file system only when defragmented (`etcdctl defrag`), so the space in use is the figure that must level off.\n")
	section(t, 5, b.String())
	if int(deleted) < alerts {
		t.Errorf("retention deleted %.0f incidents, want all %d", deleted, alerts)
	}
	// Decided: the playbook's alerts that were remediated (a message each)
	// before they resolved; the others resolved first and decided nothing.
	if len(recorded) < messages || len(deletedRecords) != len(recorded) {
		t.Errorf("%d decided incidents recorded, %d of them with a Deleted record; want at least one per remediation (%d messages), each with its Deleted record", len(recorded), len(deletedRecords), messages)
	}
}

// mean is the average of xs, 0 when there are none.
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// batchBody is one notification of alerts first..first+n-1, in status.
func batchBody(first, n int, ns, status string) []byte {
	ends := "0001-01-01T00:00:00Z"
	if status == "resolved" {
		ends = time.Now().UTC().Format(time.RFC3339)
	}
	var alerts []map[string]any
	for i := first; i < first+n; i++ {
		name := "Unrouted"
		if i%10 == 0 {
			name = "Noisy"
		}
		alerts = append(alerts, map[string]any{"status": status, "fingerprint": fingerprint(i),
			"labels":   map[string]string{"alertname": name, "severity": "warning", "namespace": ns, "instance": fmt.Sprintf("node-%05d", i)},
			"startsAt": "2026-12-01T00:00:00Z", "endsAt": ends})
	}
	body, _ := json.Marshal(map[string]any{"version": "4", "status": status, "receiver": "riposte", "alerts": alerts})
	return body
}

// storedIncidents counts ns's incidents with one paginated list request.
func storedIncidents(ctx context.Context, c client.Client, ns string) (int, error) {
	var l riposte.IncidentList
	if err := c.List(ctx, &l, client.InNamespace(ns), client.Limit(1)); err != nil {
		return 0, err
	}
	n := len(l.Items)
	if l.RemainingItemCount != nil {
		n += int(*l.RemainingItemCount)
	}
	return n, nil
}

// closedIncidents sums the manager's riposte_incidents gauge over the
// closed phases.
func closedIncidents(metricsAddr string) int {
	resp, err := metricsClient.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	n := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "riposte_incidents{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `phase="`)
		phase, _, _ := strings.Cut(rest, `"`)
		if riposte.IncidentPhase(phase).Closed() {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += v
		}
	}
	return int(n)
}

func mb(bytes float64) string { return fmt.Sprintf("%.1f MB", bytes/1e6) }
