//go:build bench

// Package bench measures Riposte on the local control plane and writes the
// figures, with the machine they ran on, to test/bench/results.md. Run it
// with `make bench`; it is not part of `make test`.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

const (
	operatorNamespace = "riposte-system"
	appNamespace      = "bench"
	token             = "bench-token"
)

type result struct {
	name    string
	count   int
	lat     []time.Duration
	elapsed time.Duration
}

func TestBenchWebhookToRemediated(t *testing.T) {
	sequential := envInt("BENCH_SEQUENTIAL", 300)
	burst := envInt("BENCH_BURST", 1000)

	env := testenv.StartForTest(t)
	ctx := context.Background()
	c := env.Client
	env.TeamNamespace(t, appNamespace, "riposte-action-isolate")
	if err := c.Create(ctx, samplePlaybook()); err != nil {
		t.Fatal(err)
	}
	total := sequential + burst
	createPods(t, c, total)

	manager := env.StartManager(t, token)
	intake := manager.IntakeAddr

	remediated := watchIncidents(t, env, func(inc *riposte.Incident) bool { return inc.Status.Phase == riposte.PhaseRemediated })
	isolated := watchIsolatedPods(t, env)

	// Sequential: one alert at a time, the latency a single alert sees.
	seq := result{name: "sequential", count: sequential}
	seqPod := result{name: "sequential, POST to pod isolated", count: sequential}
	start := time.Now()
	for i := 0; i < sequential; i++ {
		fp := fingerprint(i)
		t0 := time.Now()
		post(t, intake, i)
		select {
		case at := <-remediated.wait(appNamespace + "/am-" + fp):
			seq.lat = append(seq.lat, at.Sub(t0))
		case <-time.After(30 * time.Second):
			t.Fatalf("alert %d not remediated within 30s", i)
		}
		seqPod.lat = append(seqPod.lat, (<-isolated.wait(appNamespace + "/" + podName(i))).Sub(t0))
	}
	seq.elapsed = time.Since(start)
	seqPod.elapsed = seq.elapsed

	cpuBefore := cpuByProcess(manager.Pid)

	// Burst: every remaining alert at once, 8 senders, 10 alerts a request,
	// as Alertmanager batches them.
	br := result{name: "burst", count: burst}
	sent := make([]time.Time, total)
	start = time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := range work {
				idx := []int{}
				for i := first; i < min(first+10, total); i++ {
					idx = append(idx, i)
				}
				now := time.Now()
				for _, i := range idx {
					sent[i] = now
				}
				post(t, intake, idx...)
			}
		}()
	}
	for i := sequential; i < total; i += 10 {
		work <- i
	}
	close(work)
	wg.Wait()
	deadline := time.After(5 * time.Minute)
	for i := sequential; i < total; i++ {
		select {
		case at := <-remediated.wait(appNamespace + "/am-" + fingerprint(i)):
			br.lat = append(br.lat, at.Sub(sent[i]))
		case <-deadline:
			t.Fatalf("burst alert %d not remediated within 5 minutes", i)
		}
	}
	br.elapsed = time.Since(start)
	cpuAfter := cpuByProcess(manager.Pid)

	rss := peakRSS(manager.Pid)
	writeResults(t, []result{seq, seqPod, br}, rss, cpuBefore, cpuAfter, br.elapsed, recordSection(t, env, total))
}

// samplePlaybook is the sample playbook isolate-on-shell: IsolatePod,
// approved by policy, as the playbook's own account.
func samplePlaybook() *riposte.Playbook {
	return &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "isolate", Namespace: appNamespace},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"ContainerShellSpawned"}}}},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
		},
	}
}

// incidentWatch records when each incident was first seen in a state by a
// watch on the API server: what a user running kubectl get -w would see.
type incidentWatch struct {
	mu      sync.Mutex
	seen    map[string]time.Time
	waiters map[string]chan time.Time
}

// wait returns when the incident namespace/name was first seen.
func (r *incidentWatch) wait(key string) <-chan time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan time.Time, 1)
	if at, ok := r.seen[key]; ok {
		ch <- at
		return ch
	}
	r.waiters[key] = ch
	return ch
}

// watchIncidents records incidents as soon as reached says they are in the
// state the benchmark waits for.
func watchIncidents(t *testing.T, env *testenv.Env, reached func(*riposte.Incident) bool) *incidentWatch {
	return watchFirst(t, env, &riposte.Incident{}, func(obj client.Object) bool { return reached(obj.(*riposte.Incident)) })
}

// watchIsolatedPods records when each pod was first seen carrying the
// quarantine label, in a watch of the driver's own: the effect itself.
func watchIsolatedPods(t *testing.T, env *testenv.Env) *incidentWatch {
	return watchFirst(t, env, &corev1.Pod{}, func(obj client.Object) bool { return obj.GetLabels()["riposte.dev/quarantine"] != "" })
}

// watchFirst records when each object of kind was first seen in the state
// reached says, keyed namespace/name.
func watchFirst(t *testing.T, env *testenv.Env, kind client.Object, reached func(client.Object) bool) *incidentWatch {
	// An informer, not a bare watch: it re-lists and re-watches if the API
	// server closes the watch under load, so no transition is missed.
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	inf, err := c.GetInformer(ctx, kind)
	if err != nil {
		t.Fatal(err)
	}
	r := &incidentWatch{seen: map[string]time.Time{}, waiters: map[string]chan time.Time{}}
	observe := func(o any) {
		obj, ok := o.(client.Object)
		if !ok || !reached(obj) {
			return
		}
		now := time.Now()
		key := obj.GetNamespace() + "/" + obj.GetName()
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.seen[key]; ok {
			return
		}
		r.seen[key] = now
		if ch, ok := r.waiters[key]; ok {
			ch <- now
			delete(r.waiters, key)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, obj any) { observe(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatalf("%T informer did not sync", kind)
	}
	return r
}

func createPods(t *testing.T, c client.Client, n int) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			errs <- c.Create(context.Background(), &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: podName(i), Namespace: appNamespace, Labels: map[string]string{"app": "bench"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
			})
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func podName(i int) string     { return fmt.Sprintf("web-%05d", i) }
func fingerprint(i int) string { return fmt.Sprintf("%016x", 0xbe00000000+i) }

func post(t *testing.T, intake string, idx ...int) {
	alerts := []map[string]any{}
	for _, i := range idx {
		alerts = append(alerts, map[string]any{
			"status": "firing", "fingerprint": fingerprint(i),
			"labels":   map[string]string{"alertname": "ContainerShellSpawned", "severity": "critical", "namespace": appNamespace, "pod": podName(i)},
			"startsAt": time.Now().UTC().Format(time.RFC3339Nano), "endsAt": "0001-01-01T00:00:00Z",
		})
	}
	body, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "riposte", "alerts": alerts})
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+intake+"/webhook/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && attempt < 100 {
			time.Sleep(50 * time.Millisecond) // as Alertmanager would retry
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("webhook answered %d", resp.StatusCode)
		}
		return
	}
}

// postAlert sends one firing alert about a pod.
func postAlert(t *testing.T, intake, fingerprint, namespace, pod string) {
	body, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "riposte", "alerts": []map[string]any{{
		"status": "firing", "fingerprint": fingerprint, "startsAt": time.Now().UTC().Format(time.RFC3339Nano),
		"labels": map[string]string{"alertname": "Bench", "severity": "info", "namespace": namespace, "pod": pod}}}})
	req, _ := http.NewRequest(http.MethodPost, "http://"+intake+"/webhook/alertmanager", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// peakRSS is a process's peak resident memory (VmHWM).
func peakRSS(pid int) string { return procStatus(pid, "VmHWM") }

// procStatus reads one field of /proc/PID/status.
func procStatus(pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func machine() string {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"))
	}
	kernel, _ := exec.Command("uname", "-sr").Output()
	return fmt.Sprintf("- CPU: %s, %d cores\n- Memory: %s\n- Kernel: %s- Go: %s\n- Control plane: kube-apiserver %s and etcd built from source (hack/build-testbins.sh), on loopback\n",
		cpu, runtime.NumCPU(), mem, kernel, runtime.Version(), testenv.KubeVersion)
}

// cpuByProcess returns the CPU seconds used so far by the manager and by
// the control plane processes this test started.
func cpuByProcess(managerPid int) map[string]float64 {
	out := map[string]float64{"riposte": cpuSeconds(managerPid)}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		var ppid int
		_, _ = fmt.Sscanf(fields[1], "%d", &ppid)
		if ppid != os.Getpid() || pid == managerPid {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		out[strings.TrimSpace(string(cmd))] += cpuSeconds(pid)
	}
	out["bench client"] = cpuSeconds(os.Getpid())
	return out
}

func cpuSeconds(pid int) float64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	var utime, stime float64
	_, _ = fmt.Sscanf(fields[11], "%g", &utime)
	_, _ = fmt.Sscanf(fields[12], "%g", &stime)
	return (utime + stime) / 100 // clock ticks; 100 a second on Linux
}

func writeResults(t *testing.T, results []result, rss string, cpuBefore, cpuAfter map[string]float64, burst time.Duration, records string) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Riposte benchmarks\n\nWritten by `make bench` on %s.\n\n## Machine\n\n%s\n", time.Now().UTC().Format(time.RFC3339), machine())
	b.WriteString("## Webhook POST to Remediated Incident\n\n")
	if noFsync() {
		b.WriteString("etcd runs with `--unsafe-no-fsync` here (" + testenv.NoFsyncEnv + "=true); [results.md](results.md) has the same run with fsync.\n\n")
	}
	b.WriteString("From the moment the Alertmanager webhook request is sent to the moment a watch on the API server shows the Incident Remediated (its pod labelled and isolated by a NetworkPolicy, the plan approved by policy); `POST to pod isolated` is the same alerts until a watch shows the pod's quarantine label, the effect itself. The manager runs as its own process with default flags.\n\n")
	b.WriteString("| run | alerts | p50 | p95 | p99 | max | wall time | throughput |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %.0f alerts/s |\n", r.name, r.count,
			ms(percentile(r.lat, 0.50)), ms(percentile(r.lat, 0.95)), ms(percentile(r.lat, 0.99)), ms(r.lat[len(r.lat)-1]),
			r.elapsed.Round(time.Millisecond), float64(r.count)/r.elapsed.Seconds())
	}
	b.WriteString("\nCPU used during the burst, by process (2 cores give at most " + fmt.Sprintf("%.1f", 2*burst.Seconds()) + " CPU seconds):\n\n| process | CPU seconds | share of the machine |\n|---|---|---|\n")
	names := make([]string, 0, len(cpuAfter))
	for name := range cpuAfter {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		used := cpuAfter[name] - cpuBefore[name]
		fmt.Fprintf(&b, "| %s | %.1f | %.0f%% |\n", name, used, 100*used/(2*burst.Seconds()))
	}
	fmt.Fprintf(&b, "\n`sequential` sends one alert and waits for its remediation before the next; `burst` sends all its alerts at once from 8 senders, 10 alerts a request.\n\nManager peak resident memory (VmHWM) over the whole run: %s.\n", rss)
	b.WriteString(records)
	out := filepath.Join(testenv.RepoRoot(), "test", "bench", "results.md")
	if noFsync() {
		out = filepath.Join(testenv.RepoRoot(), "test", "bench", "results-nofsync.md")
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

func noFsync() bool { return os.Getenv(testenv.NoFsyncEnv) == "true" }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscanf(os.Getenv(name), "%d", &v); err != nil || v <= 0 {
		return def
	}
	return v
}
