//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/enrich"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// TestBenchEnrichment measures enrichment with a realistic cluster size:
// 5,000 pods owned by ReplicaSets and Deployments, behind Services, in 20
// namespaces. It times the Enricher on the manager's kind of cache, and
// reads the real manager's memory once it has enriched incidents for them.
func TestBenchEnrichment(t *testing.T) {
	pods := envInt("BENCH_PODS", 5000)
	incidents := envInt("BENCH_ENRICH_INCIDENTS", 500)
	const namespaces = 20
	ctx := context.Background()
	env := testenv.StartForTest(t)
	c := env.Client

	type podRef struct{ ns, name string }
	var refs []podRef
	perNS := pods / namespaces
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var firstErr error
	create := func(obj client.Object) {
		if err := c.Create(ctx, obj); err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}
	}
	for n := 0; n < namespaces; n++ {
		ns := fmt.Sprintf("team-%02d", n)
		create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		create(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}})
		// A Deployment and ReplicaSet per 50 pods.
		for d := 0; d < perNS/50; d++ {
			dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%02d", d), Namespace: ns},
				Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(50)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
					Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
						Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}}}
			create(dep)
			rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-7f9c", Namespace: ns, Labels: map[string]string{"app": "web"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: ptr.To(true)}}},
				Spec: appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: dep.Spec.Template}}
			create(rs)
			for p := 0; p < 50; p++ {
				ref := podRef{ns, fmt.Sprintf("%s-%03d", rs.Name, p)}
				refs = append(refs, ref)
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					create(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: ref.name, Namespace: ref.ns, Labels: map[string]string{"app": "web"},
						OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}},
						Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%02d", p%10), Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27",
							Env: []corev1.EnvVar{{Name: "MODE", Value: "production"}}}}}})
				}()
			}
		}
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	t.Logf("created %d pods", len(refs))

	// The Enricher on the same kind of cache the manager uses.
	cch, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		t.Fatal(err)
	}
	for _, ix := range enrich.Indexes() {
		if err := cch.IndexField(ctx, ix.Object, ix.Field, ix.Extract); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = cch.Start(cctx) }()
	if !cch.WaitForCacheSync(cctx) {
		t.Fatal("cache did not start")
	}
	e := &enrich.Enricher{Reader: cch}
	warm := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "warm", Namespace: refs[0].ns},
		Spec: riposte.IncidentSpec{AlertName: "Warm", Labels: map[string]string{"namespace": refs[0].ns, "pod": refs[0].name}}}
	if _, err := e.Enrich(ctx, warm); err != nil { // starts and syncs every informer enrichment needs
		t.Fatal(err)
	}
	var lat []time.Duration
	step := max(len(refs)/incidents, 1)
	for i := 0; i < len(refs) && len(lat) < incidents; i += step {
		inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("b-%d", i), Namespace: refs[i].ns},
			Spec: riposte.IncidentSpec{AlertName: "Bench", StartsAt: &metav1.Time{Time: time.Now()},
				Labels: map[string]string{"namespace": refs[i].ns, "pod": refs[i].name}}}
		start := time.Now()
		res, err := e.Enrich(ctx, inc)
		lat = append(lat, time.Since(start))
		if err != nil || res.Reason != riposte.ReasonTargetResolved || len(res.Context.OwnerChain) != 2 || len(res.Context.Exposure.Services) != 1 {
			t.Fatalf("enrichment of %s/%s: %v %+v", refs[i].ns, refs[i].name, err, res)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })

	// The real manager's memory with all of it cached and incidents enriched.
	manager := env.StartManager(t, token)
	intake := manager.IntakeAddr
	sent := 0
	for i := 0; i < len(refs) && sent < incidents; i += step {
		postAlert(t, intake, fmt.Sprintf("%016x", 0xe0000000+i), refs[i].ns, refs[i].name)
		sent++
	}
	testenv.Eventually(t, 5*time.Minute, func(ctx context.Context) error {
		enrichedCount := 0
		for n := 0; n < namespaces; n++ {
			var list riposte.IncidentList
			if err := c.List(ctx, &list, client.InNamespace(fmt.Sprintf("team-%02d", n))); err != nil {
				return err
			}
			for _, inc := range list.Items {
				if inc.Status.EnrichedAt != nil {
					enrichedCount++
				}
			}
		}
		if enrichedCount < sent {
			return fmt.Errorf("%d of %d incidents enriched", enrichedCount, sent)
		}
		return nil
	})
	rss := peakRSS(manager.Pid)

	out := filepath.Join(testenv.RepoRoot(), "test", "bench", "results-enrichment.md")
	var b strings.Builder
	fmt.Fprintf(&b, "# Enrichment benchmark\n\nWritten by `make bench` on %s.\n\n## Machine\n\n%s\n", time.Now().UTC().Format(time.RFC3339), machine())
	fmt.Fprintf(&b, "## Cluster\n\n%d pods in %d namespaces, each owned by a ReplicaSet and a Deployment (50 pods each), behind one Service per namespace, on 10 nodes.\n\n", len(refs), namespaces)
	fmt.Fprintf(&b, "## Enrichment time per incident\n\nThe Enricher (target, owner chain, replicas, containers, risk flags, identity, exposure, timeline, related incidents) reading the manager's kind of informer cache, over %d incidents:\n\n", len(lat))
	fmt.Fprintf(&b, "| p50 | p90 | p99 | max |\n|---|---|---|---|\n| %s | %s | %s | %s |\n\n", ms(percentile(lat, 0.5)), ms(percentile(lat, 0.9)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1]))
	fmt.Fprintf(&b, "## Manager memory\n\nPeak resident memory (VmHWM) of the manager binary, caching this cluster and having enriched %d incidents: %s.\n", sent, rss)
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}
