//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
	"github.com/riposte-dev/riposte/internal/report"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// TestBenchRequestsPerRemediation counts, from the API server's own audit
// log, the requests Riposte makes per automatic single-step remediation
// (the sample playbook: IsolatePod, approved by policy), alert by alert.
// It runs on its own audited control plane so the latency benchmark's
// figures carry no audit cost.
func TestBenchRequestsPerRemediation(t *testing.T) {
	n := envInt("BENCH_REQUESTS", 100)
	const warmUp = 5
	env, auditLog := auditedSample(t, warmUp+n, samplePlaybook())
	manager := env.StartManager(t, token)
	remediated := watchIncidents(t, env, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseRemediated })
	var cpuBefore, idleBefore, idle map[string]float64
	var idleStart time.Time

	var start time.Time
	for i := 0; i < warmUp+n; i++ {
		if i == warmUp {
			// Caches are warm and the shared quarantine policy exists.
			time.Sleep(time.Second)
			// What each process spends with nothing to do (the API
			// server's own controllers, lease renewals), to tell from
			// what the remediations cost.
			idleStart, idleBefore = time.Now(), cpuByProcess(manager.Pid)
			time.Sleep(idleWindow)
			idleEnd, idleAfter := time.Now(), cpuByProcess(manager.Pid)
			idle = map[string]float64{}
			for name, used := range idleAfter {
				idle[name] = (used - idleBefore[name]) / idleEnd.Sub(idleStart).Seconds()
			}
			start, cpuBefore = time.Now(), cpuByProcess(manager.Pid)
		}
		post(t, manager.IntakeAddr, i)
		select {
		case <-remediated.wait(appNamespace + "/am-" + fingerprint(i)):
		case <-time.After(30 * time.Second):
			t.Fatalf("alert %d not remediated within 30s", i)
		}
	}
	// Work after Remediated (an Event, a gate's status) belongs to this
	// alert too: let it land before the window closes.
	time.Sleep(2 * time.Second)
	end, cpuAfter := time.Now(), cpuByProcess(manager.Pid)

	counts, err := countRequests(auditLog, start, end)
	if err != nil {
		t.Fatal(err)
	}
	writeRequestResults(t, n, counts, cpuPerRemediation(n, cpuBefore, cpuAfter, idle, end.Sub(start)), humanGate(t), recordSection(t, env, warmUp+n))
}

// humanGate counts the requests of the same remediation when a person
// approves it (the playbook needs one approval): from the POST to the gate
// waiting, and from the approval to Remediated. The person's own write is
// theirs, not Riposte's, and is not counted.
func humanGate(t *testing.T) string {
	n := envInt("BENCH_REQUESTS_HUMAN", 30)
	const warmUp = 3
	pb := samplePlaybook()
	pb.Spec.Approval = riposte.ApprovalPolicy{RequiredApprovals: 1}
	env, auditLog := auditedSample(t, warmUp+n, pb)
	manager := env.StartManager(t, token)
	oncall, err := env.UserClient("oncall", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	waiting := watchIncidents(t, env, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseAwaitingApproval })
	remediated := watchIncidents(t, env, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseRemediated })
	var toGate, toRemediated [][2]time.Time
	for i := 0; i < warmUp+n; i++ {
		if i == warmUp {
			time.Sleep(time.Second)
		}
		key := appNamespace + "/am-" + fingerprint(i)
		start := time.Now()
		post(t, manager.IntakeAddr, i)
		select {
		case <-waiting.wait(key):
		case <-time.After(30 * time.Second):
			t.Fatalf("alert %d not waiting for people within 30s", i)
		}
		// What follows the gate's opening (its notification, Events)
		// lands before the person decides, as it would for a person.
		time.Sleep(300 * time.Millisecond)
		opened := time.Now()
		approve(t, oncall, "am-"+fingerprint(i))
		select {
		case <-remediated.wait(key):
		case <-time.After(30 * time.Second):
			t.Fatalf("alert %d not remediated within 30s of its approval", i)
		}
		time.Sleep(300 * time.Millisecond)
		if i >= warmUp {
			toGate = append(toGate, [2]time.Time{start, opened})
			toRemediated = append(toRemediated, [2]time.Time{opened, time.Now()})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## With a person's approval\n\nThe same remediation, %d alerts one at a time, when the playbook needs one person's approval: counted from the POST until the gate waits (and 300 ms more, for what follows its opening), then from the person's approval (a write of theirs, not counted) until Remediated (and 300 ms more).\n\n", n)
	for _, window := range []struct {
		name  string
		spans [][2]time.Time
	}{{"POST to the gate waiting", toGate}, {"approval to Remediated", toRemediated}} {
		counts, err := countRequestsIn(auditLog, window.spans)
		if err != nil {
			t.Fatal(err)
		}
		total, writes := totals(counts)
		fmt.Fprintf(&b, "**%s: %.2f requests per remediation, %.2f of them writes.**\n\n", window.name, float64(total)/float64(n), float64(writes)/float64(n))
		countTable(&b, counts, n)
		b.WriteString("\n")
	}
	return b.String()
}

// approve appends the person's decision to the incident's gate.
func approve(t *testing.T, person client.Client, gate string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		g := &riposte.ApprovalGate{}
		if err := person.Get(context.Background(), client.ObjectKey{Namespace: appNamespace, Name: gate}, g); err != nil {
			return err
		}
		now := metav1.Now()
		g.Spec.Decisions = append(g.Spec.Decisions, riposte.Decision{User: "oncall", Decision: riposte.DecisionApprove, Reason: "bench", At: &now})
		return person.Update(context.Background(), g)
	})
	if err != nil {
		t.Fatalf("approving gate %s: %v", gate, err)
	}
}

// idleWindow is how long the processes are watched doing nothing.
const idleWindow = 3 * time.Second

// cpuPerRemediation is the CPU each process used in the window, per
// remediation, and the same without what it uses when idle.
func cpuPerRemediation(n int, before, after, idle map[string]float64, window time.Duration) string {
	var names []string
	for name := range after {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "CPU used in the same window (%.1f s), by process; the control plane writes the audit log, so its CPU includes auditing. Idle is each process's rate over %s with nothing sent, just before the window:\n\n| process | CPU seconds | per remediation | idle | per remediation, idle taken out |\n|---|---|---|---|---|\n", window.Seconds(), idleWindow)
	for _, name := range names {
		used := after[name] - before[name]
		net := used - idle[name]*window.Seconds()
		fmt.Fprintf(&b, "| %s | %.2f | %.1f ms | %.0f ms/s | %.1f ms |\n", name, used, 1000*used/float64(n), 1000*idle[name], 1000*net/float64(n))
	}
	return b.String()
}

// recordSection is what the run left in the record sink: the chain
// verified, the record size, and kubectl riposte report over it. The
// records of the last remediations may still be on their way: it waits up
// to 10 s for every alert's incident to have one.
func recordSection(t *testing.T, env *testenv.Env, alerts int) string {
	t.Helper()
	recorded := func(rep record.Report) int {
		incidents := map[string]bool{}
		for _, s := range rep.Bodies {
			incidents[s.Body.Incident.UID] = true
		}
		return len(incidents)
	}
	rep := env.VerifyRecords(t)
	for deadline := time.Now().Add(10 * time.Second); recorded(rep) < alerts && time.Now().Before(deadline); rep = env.VerifyRecords(t) {
		time.Sleep(200 * time.Millisecond)
	}
	if !rep.OK() {
		t.Errorf("the run's record chain does not verify: %v", rep.Problems)
	}
	var bodies []record.Body
	for i := len(rep.Bodies) - 1; i >= 0; i-- {
		bodies = append(bodies, rep.Bodies[i].Body)
	}
	var table strings.Builder
	if err := report.Build(bodies, time.Now().Add(-time.Hour), time.Now()).Table(&table); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Records\n\nWith the directory record sink on (as every manager the suites launch): %d records for %d alerts (the Remediated milestone of each, and any written again), %d bytes each on average, the chain verified (%d problems, %d written twice).\n\n", rep.Records, alerts, rep.Bytes/int64(max(rep.Records, 1)), len(rep.Problems), rep.Duplicates)
	fmt.Fprintf(&b, "`kubectl riposte report --dir ... --live=false --since 1h` over them (stage times to the microsecond, from the Incidents' `status.stages`):\n\n```\n%s```\n", table.String())
	return b.String()
}

type requestCount struct {
	key    string // verb resource[/subresource], and as whom
	write  bool
	number int
}

// auditedSample starts a control plane that writes an audit log, with the
// sample playbook and pods pods to isolate: the setup of the benchmarks that
// count requests.
func auditedSample(t *testing.T, pods int, playbook *riposte.Playbook) (env *testenv.Env, auditLog string) {
	auditLog = filepath.Join(t.TempDir(), "audit.log")
	env, err := testenv.StartAudited(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	env.TeamNamespace(t, appNamespace, "riposte-action-isolate")
	if err := env.Client.Create(context.Background(), playbook); err != nil {
		t.Fatal(err)
	}
	createPods(t, env.Client, pods)
	return env, auditLog
}

// countRequests counts the manager's requests (its own and those it made
// impersonating a playbook's account) received in [start, end], by verb
// and resource. Leader-election lease renewals are left out: they are
// periodic, not per remediation.
func countRequests(auditLog string, start, end time.Time) ([]requestCount, error) {
	return countRequestsIn(auditLog, [][2]time.Time{{start, end}})
}

// countRequestsIn counts them in any of the windows.
func countRequestsIn(auditLog string, windows [][2]time.Time) ([]requestCount, error) {
	byKey := map[string]*requestCount{}
	in := func(at time.Time) bool {
		for _, w := range windows {
			if !at.Before(w[0]) && !at.After(w[1]) {
				return true
			}
		}
		return false
	}
	err := testenv.ReadAudit(auditLog, func(e *testenv.AuditEvent) {
		if e.User.Username != testenv.ManagerUser || !in(e.RequestReceivedTimestamp) {
			return
		}
		resource := ""
		if e.ObjectRef != nil {
			resource = e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				resource += "/" + e.ObjectRef.Subresource
			}
		}
		if resource == "leases" {
			return
		}
		as := "as Riposte"
		if e.ImpersonatedUser != nil {
			as = "as the playbook's account"
		}
		key := e.Verb + " " + resource + ", " + as
		c, ok := byKey[key]
		if !ok {
			c = &requestCount{key: key, write: e.Verb != "get" && e.Verb != "list" && e.Verb != "watch"}
			byKey[key] = c
		}
		c.number++
	})
	if err != nil {
		return nil, err
	}
	out := make([]requestCount, 0, len(byKey))
	for _, c := range byKey {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].number != out[j].number {
			return out[i].number > out[j].number
		}
		return out[i].key < out[j].key
	})
	return out, nil
}

func totals(counts []requestCount) (total, writes int) {
	for _, c := range counts {
		total += c.number
		if c.write {
			writes += c.number
		}
	}
	return total, writes
}

func countTable(b *strings.Builder, counts []requestCount, n int) {
	b.WriteString("| request | per remediation | write |\n|---|---|---|\n")
	for _, c := range counts {
		w := ""
		if c.write {
			w = "yes"
		}
		fmt.Fprintf(b, "| %s | %.2f | %s |\n", c.key, float64(c.number)/float64(n), w)
	}
}

func writeRequestResults(t *testing.T, n int, counts []requestCount, cpu, human, records string) {
	var b strings.Builder
	fmt.Fprintf(&b, "# API requests per remediation\n\nWritten by `make bench` on %s.\n\n## Machine\n\n%s\n", time.Now().UTC().Format(time.RFC3339), machine())
	fmt.Fprintf(&b, "%d alerts sent one at a time to the sample playbook (IsolatePod, approved by policy), each waited for until Remediated, after 5 alerts of warm-up. Counted from the API server's audit log: every request made by the manager's identity, its own or impersonating the playbook's account, except leader-election lease renewals.\n\n", n)
	total, writes := totals(counts)
	fmt.Fprintf(&b, "**%.2f requests per remediation, %.2f of them writes.**\n\n", float64(total)/float64(n), float64(writes)/float64(n))
	countTable(&b, counts, n)
	b.WriteString("\nRecords are written after the Remediated status is stored, and where each landed is noted with the incident's next status write, so none of the requests above is a record's.\n\n")
	b.WriteString(cpu)
	b.WriteString(human)
	b.WriteString(records)
	out := filepath.Join(testenv.RepoRoot(), "test", "bench", "results-requests.md")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}
