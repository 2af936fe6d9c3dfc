//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
	"github.com/riposte-dev/riposte/internal/text"
)

// The storm: for stormSeconds, stormRate POSTs a second, one alert each;
// every tenth is a new alert (stormAlerts in all), the others resend an
// alert already sent, as Alertmanager repeats a group's alerts.
const (
	stormSeconds = 10
	stormRate    = 1000
	stormAlerts  = stormSeconds * stormRate / 10
)

// TestBenchStorm sends the storm to the sample playbook and measures what
// the sender sees (round trips, refusals), when each alert's pod was
// remediated, what each process spent, and, from the API server's audit
// log, whether any pod was isolated twice. TestBenchStormKilled does the
// same with the manager killed (SIGKILL) 5 s in and started again.
func TestBenchStorm(t *testing.T) { runStorm(t, false) }

func TestBenchStormKilled(t *testing.T) { runStorm(t, true) }

type stormResult struct {
	killed bool
	// records is what the run left in the record sink, and report over it
	records string
	// first-attempt round trips of the POSTs, and how the POSTs ended
	roundTrips []time.Duration
	// the same, of each alert's first POST (intake stores it) and of the
	// resends (answered from what is stored)
	newRoundTrips, resendRoundTrips []time.Duration
	posts, accepted                 int
	answers                         map[int]int
	retries, connErrors             int
	// from the first POST: when every alert's incident was Remediated,
	// and each alert's own latency from its first POST
	allDone  time.Duration
	latency  []time.Duration
	lost     int
	cpu      map[string]float64
	window   time.Duration
	peakRSS  string
	requests []requestCount
	twice    int
	size     int
	// reconcileErrors counts the manager's failed reconciles (its log)
	reconcileErrors int
}

func runStorm(t *testing.T, kill bool) {
	env, auditLog := auditedSample(t, stormAlerts, samplePlaybook())
	ctx := context.Background()
	var profiling []string
	pprofAddr := ""
	if os.Getenv("BENCH_PROFILE") != "" {
		pprofAddr = testenv.FreeAddr(t)
		profiling = []string{"--pprof-bind-address", pprofAddr}
	}
	manager := env.StartManager(t, token, profiling...)
	var intake atomic.Value
	intake.Store(manager.IntakeAddr)
	remediated := watchIncidents(t, env, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseRemediated })
	res := &stormResult{killed: kill, answers: map[int]int{}}
	cpuBefore := cpuByProcess(manager.Pid)
	pids := []int{manager.Pid}

	var mu sync.Mutex
	firstSent := make([]time.Time, stormAlerts)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	send := func(i int, first bool) {
		body := stormBody(i)
		for attempt := 0; ; attempt++ {
			t0 := time.Now()
			code, retryAfter, err := postOnce(client, intake.Load().(string), body)
			mu.Lock()
			if attempt == 0 {
				res.posts++
				took := time.Since(t0)
				res.roundTrips = append(res.roundTrips, took)
				if first {
					res.newRoundTrips = append(res.newRoundTrips, took)
				} else {
					res.resendRoundTrips = append(res.resendRoundTrips, took)
				}
			} else {
				res.retries++
			}
			if err != nil {
				res.connErrors++
			} else {
				res.answers[code]++
			}
			mu.Unlock()
			if err == nil && code < 500 {
				if code == http.StatusOK {
					mu.Lock()
					res.accepted++
					mu.Unlock()
				}
				return
			}
			// As Alertmanager: retry a 5xx or a failed connection, after
			// Retry-After when given, else with a growing backoff.
			wait := min(time.Duration(50<<min(attempt, 5))*time.Millisecond, time.Second)
			if retryAfter > 0 {
				wait = retryAfter
			}
			time.Sleep(wait)
		}
	}

	if dir := os.Getenv("BENCH_PROFILE"); dir != "" {
		// The API server's CPU profile over most of the storm, for
		// `go tool pprof`: where its time per remediation goes.
		go func() {
			resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/profile?seconds=8")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			_ = os.WriteFile(filepath.Join(dir, "riposte.pprof"), b, 0o644)
		}()
		go func() {
			cs, err := kubernetes.NewForConfig(env.Config)
			if err != nil {
				t.Error(err)
				return
			}
			b, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "8").DoRaw(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			_ = os.WriteFile(filepath.Join(dir, "kube-apiserver.pprof"), b, 0o644)
			// And what the manager holds then, near the storm's peak.
			resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			heap, _ := io.ReadAll(resp.Body)
			_ = os.WriteFile(filepath.Join(dir, "riposte-heap.pprof"), heap, 0o644)
		}()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	inFlight := make(chan struct{}, 512)
	start := time.Now()
	killed := false
	for k := 0; k < stormSeconds*stormRate; k++ {
		at := start.Add(time.Duration(k) * time.Second / stormRate)
		time.Sleep(time.Until(at))
		if kill && !killed && time.Since(start) >= 5*time.Second {
			killed = true
			_ = syscall.Kill(manager.Pid, syscall.SIGKILL)
			<-manager.Exited
			// Started again at once, on a new address the sender moves to
			// (as a Service would route to the new pod).
			manager = env.LaunchManager(t, token, nil)
			intake.Store(manager.IntakeAddr)
			pids = append(pids, manager.Pid)
		}
		i := k / 10
		if k%10 != 0 {
			i = rng.IntN(i + 1)
		}
		if k%10 == 0 {
			firstSent[i] = at
		}
		inFlight <- struct{}{}
		wg.Add(1)
		go func(i int, first bool) {
			defer func() { <-inFlight; wg.Done() }()
			send(i, first)
		}(i, k%10 == 0)
	}
	wg.Wait()
	deadline := time.After(2 * time.Minute)
	var last time.Time
	for i := 0; i < stormAlerts; i++ {
		select {
		case at := <-remediated.wait(appNamespace + "/am-" + stormFingerprint(i)):
			res.latency = append(res.latency, at.Sub(firstSent[i]))
			if at.After(last) {
				last = at
			}
		case <-deadline:
			res.lost++
		}
	}
	res.allDone = last.Sub(start)
	res.window = time.Since(start)
	cpuAfter := cpuByProcess(manager.Pid)
	if kill {
		// The killed manager's CPU is gone with its process: only what its
		// successor used is counted for riposte.
		cpuBefore["riposte"] = 0
	}
	res.cpu = map[string]float64{}
	for name, v := range cpuAfter {
		res.cpu[name] = v - cpuBefore[name]
	}
	res.peakRSS = peakRSS(manager.Pid)
	time.Sleep(2 * time.Second) // the last Events land
	var err error
	if res.requests, err = countRequests(auditLog, start, time.Now()); err != nil {
		t.Fatal(err)
	}
	if res.twice, err = podsIsolatedTwice(auditLog); err != nil {
		t.Fatal(err)
	}
	res.size = incidentSize(t, env, appNamespace+"/am-"+stormFingerprint(0))
	if log, err := os.ReadFile(filepath.Join(manager.Dir, "riposte.log")); err == nil {
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "Reconciler error") {
				res.reconcileErrors++
				if res.reconcileErrors <= 3 {
					t.Logf("manager: %s", text.Elide(line, 600))
				}
			}
		}
	}
	res.records = recordSection(t, env, stormAlerts)
	writeStormResults(t, res)
	if res.lost > 0 {
		t.Errorf("%d alerts never remediated", res.lost)
	}
}

func stormFingerprint(i int) string { return fmt.Sprintf("%016x", 0x5700000000+i) }

func stormBody(i int) []byte {
	body, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "riposte", "alerts": []map[string]any{{
		"status": "firing", "fingerprint": stormFingerprint(i),
		"labels":   map[string]string{"alertname": "ContainerShellSpawned", "severity": "critical", "namespace": appNamespace, "pod": podName(i)},
		"startsAt": "2026-12-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
	}}})
	return body
}

func postOnce(c *http.Client, addr string, body []byte) (code int, retryAfter time.Duration, err error) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhook/alertmanager", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		retryAfter = time.Duration(s) * time.Second
	}
	return resp.StatusCode, retryAfter, nil
}

// podsIsolatedTwice counts pods the playbook's account patched more than
// once with success: a remediation done twice.
func podsIsolatedTwice(auditLog string) (int, error) {
	patches := map[string]int{}
	err := testenv.ReadAudit(auditLog, func(e *testenv.AuditEvent) {
		if e.Verb == "patch" && e.ImpersonatedUser != nil && e.ObjectRef != nil && e.ObjectRef.Resource == "pods" &&
			e.ResponseStatus != nil && e.ResponseStatus.Code == http.StatusOK && e.Write() {
			patches[e.ObjectRef.Name]++
		}
	})
	twice := 0
	for _, n := range patches {
		if n > 1 {
			twice++
		}
	}
	return twice, err
}

// incidentSize is the size of a remediated Incident as the API server
// serves it, in bytes of JSON.
func incidentSize(t *testing.T, env *testenv.Env, key string) int {
	ns, name, _ := strings.Cut(key, "/")
	inc := &riposte.Incident{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, inc); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("BENCH_PROFILE"); dir != "" {
		// The object as stored, managed fields and all: what each write costs.
		whole, _ := json.MarshalIndent(inc, "", "  ")
		_ = os.WriteFile(filepath.Join(dir, "incident.json"), whole, 0o644)
	}
	inc.ManagedFields = nil
	b, _ := json.Marshal(inc)
	return len(b)
}

func writeStormResults(t *testing.T, r *stormResult) {
	var b strings.Builder
	name, file := "Storm", "results-storm.md"
	if r.killed {
		name, file = "Storm with the manager killed", "results-storm-killed.md"
	}
	fmt.Fprintf(&b, "# %s\n\nWritten by `make bench` on %s.\n\n## Machine\n\n%s\n", name, time.Now().UTC().Format(time.RFC3339), machine())
	fmt.Fprintf(&b, "%d s at %d POST/s to intake, one alert a POST, %d distinct alerts (every tenth POST is a new alert, the rest resend one already sent), each about its own pod, to the sample playbook (IsolatePod, approved by policy). The sender retries a 5xx or a failed connection as Alertmanager does (after Retry-After when given). The control plane writes an audit log, so its CPU includes auditing.\n\n",
		stormSeconds, stormRate, stormAlerts)
	if r.killed {
		b.WriteString("The manager is killed with SIGKILL 5 s into the storm and started again at once; the sender moves to its new address.\n\n")
	}
	sort.Slice(r.roundTrips, func(i, j int) bool { return r.roundTrips[i] < r.roundTrips[j] })
	sort.Slice(r.latency, func(i, j int) bool { return r.latency[i] < r.latency[j] })
	codes := []string{}
	for code, n := range r.answers {
		codes = append(codes, fmt.Sprintf("%d: %d", code, n))
	}
	sort.Strings(codes)
	fmt.Fprintf(&b, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| POSTs sent | %d, %d accepted (200) |\n", r.posts, r.accepted)
	fmt.Fprintf(&b, "| answers, retries included | %s; %d retries, %d failed connections |\n", strings.Join(codes, ", "), r.retries, r.connErrors)
	fmt.Fprintf(&b, "| POST round trip p50 / p99 / max (first attempt) | %s / %s / %s |\n", ms(percentile(r.roundTrips, 0.5)), ms(percentile(r.roundTrips, 0.99)), ms(r.roundTrips[len(r.roundTrips)-1]))
	for _, trips := range []struct {
		name string
		d    []time.Duration
	}{{"an alert's first POST (stored)", r.newRoundTrips}, {"a resend (already stored)", r.resendRoundTrips}} {
		if len(trips.d) == 0 {
			continue
		}
		sort.Slice(trips.d, func(i, j int) bool { return trips.d[i] < trips.d[j] })
		fmt.Fprintf(&b, "| of them, %s: p50 / p90 / p99 | %s / %s / %s |\n", trips.name, ms(percentile(trips.d, 0.5)), ms(percentile(trips.d, 0.9)), ms(percentile(trips.d, 0.99)))
	}
	if len(r.latency) > 0 {
		fmt.Fprintf(&b, "| alert's first POST to Remediated p50 / p99 / max | %s / %s / %s |\n", ms(percentile(r.latency, 0.5)), ms(percentile(r.latency, 0.99)), ms(r.latency[len(r.latency)-1]))
	}
	fmt.Fprintf(&b, "| all %d remediated, after the first POST | %s (%.0f/s) |\n", stormAlerts, r.allDone.Round(time.Millisecond), float64(stormAlerts-r.lost)/r.allDone.Seconds())
	fmt.Fprintf(&b, "| lost (never remediated) | %d |\n", r.lost)
	fmt.Fprintf(&b, "| pods isolated twice (audit log) | %d |\n", r.twice)
	fmt.Fprintf(&b, "| failed reconciles (retried), in the log of the manager that finished | %d |\n", r.reconcileErrors)
	fmt.Fprintf(&b, "| manager peak resident memory (VmHWM) | %s |\n", r.peakRSS)
	fmt.Fprintf(&b, "| size of a remediated Incident (JSON, without managedFields) | %d bytes |\n", r.size)
	b.WriteString("\nCPU from the first POST until every alert was remediated, by process:\n\n| process | CPU seconds | per remediation |\n|---|---|---|\n")
	names := make([]string, 0, len(r.cpu))
	for n := range r.cpu {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "| %s | %.1f | %.1f ms |\n", n, r.cpu[n], 1000*r.cpu[n]/float64(stormAlerts))
	}
	var total int
	for _, c := range r.requests {
		total += c.number
	}
	fmt.Fprintf(&b, "\nThe manager's API requests during the storm (audit log, leases left out): %d, %.2f per remediation.\n\n| request | number | write |\n|---|---|---|\n", total, float64(total)/float64(stormAlerts))
	for _, c := range r.requests {
		w := ""
		if c.write {
			w = "yes"
		}
		fmt.Fprintf(&b, "| %s | %d | %s |\n", c.key, c.number, w)
	}
	b.WriteString(r.records)
	out := filepath.Join(testenv.RepoRoot(), "test", "bench", file)
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}
