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
	env, auditLog := auditedSample(t, warmUp+n)
	manager := env.StartManager(t, token)
	remediated := watchIncidents(t, env, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseRemediated })

	var start time.Time
	for i := 0; i < warmUp+n; i++ {
		if i == warmUp {
			// Caches are warm and the shared quarantine policy exists.
			time.Sleep(time.Second)
			start = time.Now()
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
	end := time.Now()

	counts, err := countRequests(auditLog, start, end)
	if err != nil {
		t.Fatal(err)
	}
	writeRequestResults(t, n, counts, recordSection(t, env, warmUp+n))
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
func auditedSample(t *testing.T, pods int) (env *testenv.Env, auditLog string) {
	auditLog = filepath.Join(t.TempDir(), "audit.log")
	env, err := testenv.StartAudited(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	env.TeamNamespace(t, appNamespace, "riposte-action-isolate")
	if err := env.Client.Create(context.Background(), samplePlaybook()); err != nil {
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
	byKey := map[string]*requestCount{}
	err := testenv.ReadAudit(auditLog, func(e *testenv.AuditEvent) {
		if e.User.Username != testenv.ManagerUser ||
			e.RequestReceivedTimestamp.Before(start) || e.RequestReceivedTimestamp.After(end) {
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

func writeRequestResults(t *testing.T, n int, counts []requestCount, records string) {
	var b strings.Builder
	fmt.Fprintf(&b, "# API requests per remediation\n\nWritten by `make bench` on %s.\n\n## Machine\n\n%s\n", time.Now().UTC().Format(time.RFC3339), machine())
	fmt.Fprintf(&b, "%d alerts sent one at a time to the sample playbook (IsolatePod, approved by policy), each waited for until Remediated, after 5 alerts of warm-up. Counted from the API server's audit log: every request made by the manager's identity, its own or impersonating the playbook's account, except leader-election lease renewals.\n\n", n)
	var total, writes int
	for _, c := range counts {
		total += c.number
		if c.write {
			writes += c.number
		}
	}
	fmt.Fprintf(&b, "**%.2f requests per remediation, %.2f of them writes.**\n\n| request | per remediation | write |\n|---|---|---|\n", float64(total)/float64(n), float64(writes)/float64(n))
	for _, c := range counts {
		w := ""
		if c.write {
			w = "yes"
		}
		fmt.Fprintf(&b, "| %s | %.2f | %s |\n", c.key, float64(c.number)/float64(n), w)
	}
	b.WriteString("\nRecords are written after the Remediated status is stored, and where each landed is noted with the incident's next status write, so none of the requests above is a record's.\n")
	b.WriteString(records)
	out := filepath.Join(testenv.RepoRoot(), "test", "bench", "results-requests.md")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}
