//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// TestBenchDrift measures drift detection with the policy pack installed:
// a violating pod's creation to its Incident, a full re-evaluation of every
// pod, and the manager's memory while it watches them.
func TestBenchDrift(t *testing.T) {
	pods := envInt("BENCH_DRIFT_PODS", 10000)
	violations := envInt("BENCH_DRIFT_VIOLATIONS", 200)
	bindings := envInt("BENCH_DRIFT_BINDINGS", 1000)
	const namespaces = 20
	const resync = 20 * time.Second

	env := testenv.StartForTest(t)
	ctx := context.Background()
	c := env.Client
	if _, err := env.ManagerConfig(ctx); err != nil { // riposte-system, the manager's RBAC, the action roles
		t.Fatal(err)
	}
	// Compliant namespaces (each with its default-deny policy) full of
	// compliant pods: the steady state the detector watches.
	for n := range namespaces {
		ns := fmt.Sprintf("team-%02d", n)
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		must(t, c.Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default-deny", Namespace: ns},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}))
	}
	createStart := time.Now()
	createMany(t, c, pods, func(i int) client.Object {
		return compliantBenchPod(fmt.Sprintf("team-%02d", i%namespaces), fmt.Sprintf("web-%05d", i))
	})
	// Compliant RoleBindings, so the rules that look up every ClusterRole
	// and Role have work to do.
	createMany(t, c, bindings, func(i int) client.Object {
		ns := fmt.Sprintf("team-%02d", i%namespaces)
		return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ci-view-%04d", i), Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "ci", Namespace: ns}}}
	})
	t.Logf("created %d pods and %d role bindings in %s", pods, bindings, time.Since(createStart).Round(time.Second))

	// BENCH_PROFILE=dir writes the manager's heap after the first
	// re-evaluation and at the end, and its CPU profile and the API server's over
	// the violations, for `go tool pprof`.
	profile := os.Getenv("BENCH_PROFILE")
	args := []string{"--drift-resync-interval", resync.String()}
	pprofAddr := ""
	if profile != "" {
		pprofAddr = testenv.FreeAddr(t)
		args = append(args, "--pprof-bind-address", pprofAddr)
	}
	box := newContainer(t)
	if box != nil {
		args = append(args, "--memory-limit-ratio", strconv.FormatFloat(box.ratio, 'f', -1, 64))
	}
	manager := env.StartManagerInCgroup(t, token, box.cgroupOrNil(), args...)
	if box != nil {
		box.checkSoftLimit(t, manager)
	}
	time.Sleep(5 * time.Second) // settled: every informer enrichment uses is synced
	withoutRules := memoryOf(t, manager)
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "samples", "policies")); err != nil {
		t.Fatal(err)
	}
	first := waitResyncs(t, manager.MetricsAddr, 1, pods)
	afterFirst := memoryOf(t, manager)
	var cpuDone chan struct{}
	if profile != "" {
		saveProfile(t, pprofAddr, "heap", filepath.Join(profile, "drift-heap-first.pprof"))
		cpuDone = make(chan struct{})
		go func() {
			defer close(cpuDone)
			saveProfile(t, pprofAddr, "profile?seconds=10", filepath.Join(profile, "drift-cpu.pprof"))
		}()
		go func() {
			// The API server's over the same window: what each Create waits behind.
			cs, err := kubernetes.NewForConfig(env.Config)
			if err != nil {
				t.Error(err)
				return
			}
			b, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "10").DoRaw(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			must(t, os.WriteFile(filepath.Join(profile, "drift-kube-apiserver.pprof"), b, 0o644))
		}()
	}

	// Violations, one at a time, between full re-evaluations: first each as
	// soon as the last one's Incident is seen (its gate, dry run and records
	// still being written), then each once the last one waits for people
	// (the remediation pipeline idle).
	seen := watchIncidents(t, env, func(*riposte.Incident) bool { return true }) // any incident, once created
	violate := func(i int, times *violationTimes) client.ObjectKey {
		ns := fmt.Sprintf("team-%02d", i%namespaces)
		name := fmt.Sprintf("priv-%04d", i)
		pod := compliantBenchPod(ns, name)
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		incident := drift.IncidentName(drift.Finding{
			Playbook: types.NamespacedName{Namespace: operatorNamespace, Name: "policy-no-privileged"},
			Rule:     "no-privileged-containers",
			Target:   riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: name},
		}, 1)
		sent := time.Now()
		must(t, c.Create(ctx, pod))
		created := time.Now()
		select {
		case at := <-seen.wait(ns + "/" + incident):
			times.fromCreated = append(times.fromCreated, at.Sub(created))
			times.fromSent = append(times.fromSent, at.Sub(sent))
			times.create = append(times.create, created.Sub(sent))
		case <-time.After(30 * time.Second):
			t.Fatalf("no incident %s/%s within 30s of its pod", ns, incident)
		}
		return client.ObjectKey{Namespace: ns, Name: incident}
	}
	var lat, paced violationTimes
	waitsBefore := scrapeMetrics(t, manager.MetricsAddr)
	for i := range violations {
		violate(i, &lat)
	}
	waits := cacheWaits(waitsBefore, scrapeMetrics(t, manager.MetricsAddr))
	for i := range violations / 2 {
		key := violate(violations+i, &paced)
		deadline := time.Now().Add(30 * time.Second)
		for inc := (&riposte.Incident{}); ; time.Sleep(5 * time.Millisecond) {
			must(t, c.Get(ctx, key, inc))
			if inc.Status.Phase == riposte.PhaseAwaitingApproval {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("incident %s not waiting for approval within 30s (phase %q)", key, inc.Status.Phase)
			}
		}
	}
	second := waitResyncs(t, manager.MetricsAddr, first.count+1, pods)
	if profile != "" {
		<-cpuDone
		saveProfile(t, pprofAddr, "heap", filepath.Join(profile, "drift-heap-end.pprof"))
		saveMemStats(t, manager.MetricsAddr, filepath.Join(profile, "drift-memstats-end.txt"))
	}
	end := memoryOf(t, manager)
	runtime := scrapeMetrics(t, manager.MetricsAddr)
	writeDriftResults(t, pods, bindings, lat, paced, waits, first, second, withoutRules, afterFirst, end,
		runtime["go_gc_cycles_total_gc_cycles_total"], runtime["go_gc_gomemlimit_bytes"], box)
}

// container is the drift bench run with the manager in a memory cgroup, as
// in a container with a memory limit (BENCH_DRIFT_CONTAINER_LIMIT, a
// quantity like 150Mi), with --memory-limit-ratio
// BENCH_DRIFT_MEMORY_LIMIT_RATIO (0.9 unless set): the manager reads the
// limit from its cgroup itself, and the kernel holds it to the limit.
type container struct {
	cgroup *testenv.MemoryCgroup
	ratio  float64
}

// newContainer makes the cgroup when BENCH_DRIFT_CONTAINER_LIMIT asks for
// one; nil when it does not. A machine where no cgroup can be made skips
// the run, saying why.
func newContainer(t *testing.T) *container {
	limit := os.Getenv("BENCH_DRIFT_CONTAINER_LIMIT")
	if limit == "" {
		return nil
	}
	q, err := resource.ParseQuantity(limit)
	must(t, err)
	ratio := 0.9
	if v := os.Getenv("BENCH_DRIFT_MEMORY_LIMIT_RATIO"); v != "" {
		ratio, err = strconv.ParseFloat(v, 64)
		must(t, err)
	}
	cg, err := testenv.NewMemoryCgroup(t, q.Value())
	if err != nil {
		t.Skipf("no memory cgroup can be made on this machine, so no container limit to run the manager under: %v", err)
	}
	return &container{cgroup: cg, ratio: ratio}
}

func (c *container) cgroupOrNil() *testenv.MemoryCgroup {
	if c == nil {
		return nil
	}
	return c.cgroup
}

// softLimit is the Go runtime's memory limit the manager should have set
// from its cgroup: the ratio of the container's limit.
func (c *container) softLimit() float64 { return float64(uint64(float64(c.cgroup.Limit) * c.ratio)) }

// checkSoftLimit fails the bench unless the manager read its limit from the
// cgroup and set the runtime's soft limit from it.
func (c *container) checkSoftLimit(t *testing.T, m *testenv.Manager) {
	if got := scrapeMetrics(t, m.MetricsAddr)["go_gc_gomemlimit_bytes"]; got != c.softLimit() {
		t.Fatalf("the manager's soft memory limit is %.0f bytes, want %.0f (%v of its cgroup's %d)", got, c.softLimit(), c.ratio, c.cgroup.Limit)
	}
}

// saveMemStats writes the manager's Go runtime memory figures, to tell
// the live heap from the collector's headroom and the runtime's own.
func saveMemStats(t *testing.T, metricsAddr, file string) {
	series := scrapeMetrics(t, metricsAddr)
	var names []string
	for name := range series {
		if strings.HasPrefix(name, "go_memstats_") || strings.HasPrefix(name, "go_goroutines") || strings.HasPrefix(name, "go_gc_") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "%s %.0f\n", name, series[name])
	}
	must(t, os.WriteFile(file, []byte(b.String()), 0o644))
}

// saveProfile writes one of the manager's /debug/pprof profiles to a file.
func saveProfile(t *testing.T, addr, name, file string) {
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + name)
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
		return
	}
	must(t, os.WriteFile(file, b, 0o644))
}

func compliantBenchPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
			Containers:      []corev1.Container{{Name: "app", Image: "registry.example.com/shop/web:1.4.2"}},
		},
	}
}

func createMany(t *testing.T, c client.Client, n int, build func(int) client.Object) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs <- c.Create(context.Background(), build(i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
}

// resyncs is what the manager's metrics say about full re-evaluations.
type resyncs struct {
	count, sum float64
	objects    float64
	// settled are the objects the last pass left alone.
	settled float64
}

// waitResyncs waits until the manager has finished at least n full
// re-evaluations covering at least minObjects objects.
func waitResyncs(t *testing.T, metricsAddr string, n float64, minObjects int) resyncs {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		r := scrapeResyncs(t, metricsAddr)
		if r.count >= n && r.objects >= float64(minObjects) {
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no full re-evaluation number %.0f within 5 minutes", n)
	return resyncs{}
}

func scrapeResyncs(t *testing.T, addr string) resyncs {
	series := scrapeMetrics(t, addr)
	return resyncs{count: series["riposte_drift_resync_seconds_count"], sum: series["riposte_drift_resync_seconds_sum"],
		objects: series["riposte_drift_resync_objects"], settled: series["riposte_drift_resync_settled_objects"]}
}

// memory is the manager's resident memory, how much of it is the binary's
// own pages (RssFile), the peak so far (VmHWM), and its Go heap allocated
// (go_memstats_heap_alloc_bytes: what the caches and the detector hold, plus
// garbage not collected yet); the rest of the resident memory is the
// collector's headroom.
type memory struct{ rss, file, peak, heap string }

func memoryOf(t *testing.T, m *testenv.Manager) memory {
	heap := scrapeMetrics(t, m.MetricsAddr)["go_memstats_heap_alloc_bytes"]
	return memory{rss: procStatus(m.Pid, "VmRSS"), file: procStatus(m.Pid, "RssFile"), peak: peakRSS(m.Pid),
		heap: fmt.Sprintf("%.0f MB", heap/1e6)}
}

// violationTimes are, for each violating pod, its Incident seen after the
// pod's Create was answered (the pod exists) and after it was sent, and
// the Create itself.
type violationTimes struct{ fromCreated, fromSent, create []time.Duration }

func latencyRow(name string, lat []time.Duration) string {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return fmt.Sprintf("| %s | %d | %s | %s | %s | %s |\n", name, len(lat),
		ms(percentile(lat, 0.5)), ms(percentile(lat, 0.9)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1]))
}

// cacheWait is how long the manager's reads of one kind of operation
// waited, over a window, for its cache to show the manager's own writes
// (controller-runtime's read-your-writes consistency).
type cacheWait struct {
	operation string
	reads     float64
	total     time.Duration
	over5ms   float64
}

// cacheWaits reads controller_runtime_client_consistency_wait_duration_seconds
// between two scrapes of the manager's metrics.
func cacheWaits(before, after map[string]float64) []cacheWait {
	const metric = "controller_runtime_client_consistency_wait_duration_seconds"
	var out []cacheWait
	for _, op := range []string{"get", "list"} {
		labels := `{operation="` + op + `",result="success"}`
		bucket := metric + `_bucket{operation="` + op + `",result="success",le="0.005"}`
		delta := func(name string) float64 { return after[name] - before[name] }
		count := delta(metric + "_count" + labels)
		out = append(out, cacheWait{operation: op, reads: count,
			total:   time.Duration(delta(metric+"_sum"+labels) * float64(time.Second)),
			over5ms: count - delta(bucket)})
	}
	return out
}

func writeDriftResults(t *testing.T, pods, bindings int, lat, paced violationTimes, waits []cacheWait, first, second resyncs, without, steady, end memory, gcs, softLimit float64, box *container) {
	var b strings.Builder
	inForce := "none"
	if softLimit < math.MaxInt64 {
		inForce = fmt.Sprintf("%.1f MiB", softLimit/(1<<20))
	}
	title, file, in := "", "results-drift.md", fmt.Sprintf(", in no memory cgroup with a limit (as `make run` starts it; the Go runtime's soft memory limit in force, go_gc_gomemlimit_bytes: %s; in a container limited to 150Mi: [results-drift-memlimit.md](results-drift-memlimit.md))", inForce)
	if box != nil {
		limit := resource.NewQuantity(box.cgroup.Limit, resource.BinarySI).String()
		title = ", in a container limited to " + limit
		file = "results-drift-memlimit.md"
		in = fmt.Sprintf(" in a memory cgroup limited to %s (the kernel holds it there, as in a container with `resources.limits.memory: %s`), with `--memory-limit-ratio %v`: it read the limit from its cgroup and set the Go runtime's soft limit to %.1f MiB (go_gc_gomemlimit_bytes: %s; without a limit: [results-drift.md](results-drift.md))",
			limit, limit, box.ratio, box.softLimit()/(1<<20), inForce)
	}
	fmt.Fprintf(&b, "# Riposte drift detection benchmarks%s\n\nWritten by `make bench` (TestBenchDrift) on %s.\n\n## Machine\n\n%s\n", title, time.Now().UTC().Format(time.RFC3339), machine())
	fmt.Fprintf(&b, "## Setup\n\n%d compliant pods and %d compliant RoleBindings (a ServiceAccount bound to `view`) in 20 namespaces, each namespace with its default-deny NetworkPolicy; the manager started as its own process, as its service account, with `--drift-resync-interval 20s`%s; then the policy pack (config/samples/policies: 8 playbooks, 10 drift rules, 6 of them on Pods) applied.\n\n", pods, bindings, in)
	b.WriteString("## A violating pod's creation to its Incident\n\n")
	b.WriteString("Pods with a privileged container, created one at a time, to the moment a watch on the API server shows the pod's Incident. Each Incident is answered by the pack's playbook (IsolatePod, approved by a person): until its gate waits, it costs the 9 API requests [results-requests.md](results-requests.md) counts for a person's gate (the incident stored, the dry run, the gate and its status, the incident's status, two Events, two reads of the decision policy). Back to back, each pod is created as soon as the last one's Incident is seen, while that pipeline is still writing; paced, once the last Incident waits for people. From the pod's creation counts from its Create answered (the pod exists); from the Create sent adds the API server's own Create. The first pod created in a namespace in 30 s waits about 90 ms inside its Create: the API server's LimitRanger lists that namespace's LimitRanges itself, a consistent read that waits for the watch cache (the audit log shows `list limitranges` by system:apiserver for as long).\n\n")
	b.WriteString("| pods | measured | violations | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|\n")
	for _, run := range []struct {
		name  string
		times violationTimes
	}{{"back to back", lat}, {"paced", paced}} {
		b.WriteString(latencyRow(run.name+" | from the pod's creation", run.times.fromCreated))
		b.WriteString(latencyRow(run.name+" | from the Create sent", run.times.fromSent))
		b.WriteString(latencyRow(run.name+" | the Create itself", run.times.create))
	}
	b.WriteString("\nWhile the violations came back to back, the manager's reads waited this long for its cache to show the manager's own earlier writes (controller-runtime's read-your-writes consistency, `controller_runtime_client_consistency_wait_duration_seconds`; a Get waits for writes to that object, a List for every write of its kind):\n\n| reads | in the window | waiting in all | of them over 5 ms |\n|---|---|---|---|\n")
	for _, w := range waits {
		fmt.Fprintf(&b, "| %s | %.0f | %s | %.0f |\n", w.operation, w.reads, ms(w.total), w.over5ms)
	}
	b.WriteString("\n## Full re-evaluation\n\n")
	b.WriteString("Every watched object judged again (the periodic safety net; changes are judged as they happen), read from the manager's `riposte_drift_resync_seconds` histogram. An object whose last judgment was made on what it reads now (the object's resourceVersion, its namespace, its lookups, its owner, the same rules) is not evaluated again; when that judgment found nothing and no open incident names the object, the pass leaves it alone (`riposte_drift_resync_settled_objects`).\n\n")
	fmt.Fprintf(&b, "| re-evaluation | objects judged | of them left alone | time |\n|---|---|---|---|\n| first | %.0f | %.0f | %s |\n| later ones (mean of %.0f; the last one's objects) | %.0f | %.0f | %s |\n\n",
		first.objects, first.settled, ms(time.Duration(first.sum/first.count*float64(time.Second))),
		second.count-first.count, second.objects, second.settled,
		ms(time.Duration((second.sum-first.sum)/(second.count-first.count)*float64(time.Second))))
	b.WriteString("## Manager memory\n\n")
	b.WriteString("The manager caches pods for enrichment whether or not drift rules exist; the first row is that baseline, before the pack is applied. Resident memory includes the pages of the binary itself that were read (RssFile). The Go heap allocated (go_memstats_heap_alloc_bytes) includes garbage not collected yet: the collector lets the heap grow to about twice what is live before it collects, and judging an object converts it to the map rules read. The peak is VmHWM at that moment.\n\n")
	fmt.Fprintf(&b, "| while watching | resident memory | of it the binary's pages | peak so far | Go heap allocated |\n|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		m    memory
	}{{fmt.Sprintf("%d pods, no drift rules yet", pods), without},
		{fmt.Sprintf("%d pods under the pack, after the first re-evaluation", pods), steady},
		{"after the violations and another re-evaluation (end of the run)", end}} {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", row.name, row.m.rss, row.m.file, row.m.peak, row.m.heap)
	}
	fmt.Fprintf(&b, "\nThe collector ran %.0f times in the whole run (go_gc_cycles_total_gc_cycles_total).\n", gcs)
	if box != nil {
		peak, err := box.cgroup.Peak()
		must(t, err)
		kills, err := box.cgroup.OOMKills()
		must(t, err)
		fmt.Fprintf(&b, "The most the kernel charged the cgroup (its anonymous memory and the page cache of the files it read or wrote, the binary and the manager's log included): %d kB, of a limit of %d kB; at the limit the kernel reclaims page cache (the binary's pages among them, read again when needed) rather than kill. Processes it killed for passing the limit: %d. The resident memory above is the manager's own (VmRSS, VmHWM).\n", peak/1024, box.cgroup.Limit/1024, kills)
	}
	out := filepath.Join(testenv.RepoRoot(), "test", "bench", file)
	must(t, os.WriteFile(out, []byte(b.String()), 0o644))
	t.Logf("\n%s", b.String())
}
