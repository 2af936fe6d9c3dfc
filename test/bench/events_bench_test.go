//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/riposte-dev/riposte/internal/enrich"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// TestBenchEventCache measures what the manager's cache holds for Events,
// which it caches cluster-wide for the timeline: a cluster's Events as the
// kubelet and scheduler write them (five per pod: scheduled, pulling,
// pulled, created, started), cached as served and as TrimEvent keeps them.
func TestBenchEventCache(t *testing.T) {
	pods := envInt("BENCH_EVENT_PODS", 4000)
	ctx := context.Background()
	env := testenv.StartForTest(t)
	const namespaces = 10
	for n := 0; n < namespaces; n++ {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("team-%02d", n)}}); err != nil {
			t.Fatal(err)
		}
	}
	kinds := []struct{ reason, message, component string }{
		{"Scheduled", "Successfully assigned %s/%s to node-%02d", "default-scheduler"},
		{"Pulling", "Pulling image \"registry.example.com/team/web:1.27.3\"", "kubelet"},
		{"Pulled", "Successfully pulled image \"registry.example.com/team/web:1.27.3\" in 1.234s (1.234s including waiting). Image size: 67823456 bytes.", "kubelet"},
		{"Created", "Created container: app", "kubelet"},
		{"Started", "Started container app", "kubelet"},
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var firstErr error
	now := metav1.Now()
	for p := 0; p < pods; p++ {
		ns, pod := fmt.Sprintf("team-%02d", p%namespaces), fmt.Sprintf("web-7f9c5d-%05d", p)
		for i, k := range kinds {
			msg := k.message
			if strings.Contains(msg, "%s") {
				msg = fmt.Sprintf(msg, ns, pod, p%10)
			}
			ev := &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", pod, 0x187a0000+i), Namespace: ns},
				InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod, UID: "6c1f3e2a-0000-4000-8000-000000000000", ResourceVersion: "123456", FieldPath: "spec.containers{app}"},
				Reason:         k.reason, Message: msg, Type: corev1.EventTypeNormal, Count: 1,
				Source:         corev1.EventSource{Component: k.component, Host: fmt.Sprintf("node-%02d", p%10)},
				FirstTimestamp: now, LastTimestamp: now, ReportingController: k.component, ReportingInstance: fmt.Sprintf("node-%02d", p%10),
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := env.Client.Create(ctx, ev); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	events := pods * len(kinds)

	// heldBy is the heap a synced cache of Events holds with the transform.
	heldBy := func(transform toolscache.TransformFunc) uint64 {
		before := liveHeap()
		c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, ByObject: map[client.Object]cache.ByObject{&corev1.Event{}: {Transform: transform}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, ix := range enrich.Indexes() {
			if _, ok := ix.Object.(*corev1.Event); ok {
				if err := c.IndexField(ctx, ix.Object, ix.Field, ix.Extract); err != nil {
					t.Fatal(err)
				}
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		go func() { _ = c.Start(cctx) }()
		inf, err := c.GetInformer(cctx, &corev1.Event{})
		if err != nil {
			t.Fatal(err)
		}
		if !toolscache.WaitForCacheSync(cctx.Done(), inf.HasSynced) {
			t.Fatal("the Event cache did not sync")
		}
		held := liveHeap() - before
		runtime.KeepAlive(c)
		cancel()
		time.Sleep(time.Second)
		return held
	}
	served := heldBy(cache.TransformStripManagedFields())
	trimmed := heldBy(enrich.TrimEvent)

	var b strings.Builder
	fmt.Fprintf(&b, "# Events in the manager's cache\n\nWritten by `make bench` (TestBenchEventCache) on %s.\n\n## Machine\n\n%s\n", time.Now().UTC().Format(time.RFC3339), machine())
	fmt.Fprintf(&b, "The manager caches Events cluster-wide, for the timeline of what happened to a target. %d Events as the scheduler and kubelet write them for %d pods (scheduled, pulling, pulled, created, started), read into a cache of the manager's kind with its field index; the Go heap it holds once synced, after a collection:\n\n", events, pods)
	fmt.Fprintf(&b, "| cached | heap held | per Event |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| as served (managed fields dropped, as before) | %.1f MB | %d bytes |\n", float64(served)/1e6, served/uint64(events))
	fmt.Fprintf(&b, "| as `enrich.TrimEvent` keeps them (what the timeline reads) | %.1f MB | %d bytes |\n", float64(trimmed)/1e6, trimmed/uint64(events))
	out := filepath.Join(testenv.RepoRoot(), "test", "bench", "results-events.md")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
