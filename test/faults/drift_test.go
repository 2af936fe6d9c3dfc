package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// ownedPlaybook finds pods without an owner label; a person must approve
// its plan (label the pod for review), so an incident stays open for as
// long as its pod breaks the rule.
func ownedPlaybook(ns string) *riposte.Playbook {
	return &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "owned", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers: riposte.Triggers{Drift: []riposte.DriftRule{{
				Name: "has-owner", Resource: riposte.ResourceKind{APIVersion: "v1", Kind: "Pod"},
				Rule: "has(object.metadata.labels) && 'owner' in object.metadata.labels", Message: "the pod names no owner",
			}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{RequiredApprovals: 1},
			Steps:              []riposte.Step{{Name: "flag", Action: riposte.ActionLabel, Metadata: &riposte.MetadataParams{Set: map[string]string{"review": "ownerless"}}}},
		},
	}
}

// TestManagerRestartDuringDriftResync watches a fleet of pods, some
// breaking a drift rule, and SIGKILLs the manager again and again while it
// re-evaluates every pod, as pods are fixed and others broken between
// kills. In the end no pod has two incidents, every pod that breaks the
// rule has its one open, and none that complies has one open.
func TestManagerRestartDuringDriftResync(t *testing.T) {
	pods := scaled(10000, 1000)
	restarts := scaled(6, 3)
	const ns = "fleet"
	resync := 5 * time.Second
	env := startFaults(t, testenv.Faults{})
	ctx, c := context.Background(), env.Client
	env.TeamNamespace(t, ns, "riposte-action-isolate", "riposte-action-workloads")
	// Every 20th pod breaks the rule at first.
	breaks := func(i int) bool { return i%20 == 0 }
	created := time.Now()
	parallel(t, pods, func(i int) error {
		labels := map[string]string{"app": "web", "owner": "shop"}
		if breaks(i) {
			delete(labels, "owner")
		}
		return c.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: workloadName(i), Namespace: ns, Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}})
	})
	t.Logf("created %d pods in %s", pods, time.Since(created).Round(time.Second))
	if err := c.Create(ctx, ownedPlaybook(ns)); err != nil {
		t.Fatal(err)
	}
	args := []string{"--drift-resync-interval", resync.String()}
	m := env.StartManager(t, token, args...)
	violating := map[string]bool{}
	for i := 0; i < pods; i++ {
		if breaks(i) {
			violating[workloadName(i)] = true
		}
	}
	waitOpen(t, c, ns, violating, 5*time.Minute)

	// Each round: fix a third of the violating pods and break as many
	// compliant ones (pods never broken before, so each has at most one
	// incident ever), then kill the manager at a random moment of the
	// next re-evaluations and start it again.
	next := 1 // the next compliant pod to break: 1, 2, 3... skipping breaks(i)
	for r := 0; r < restarts; r++ {
		var fix, brk []string
		for name := range violating {
			if len(fix) < max(1, len(violating)/3) {
				fix = append(fix, name)
			}
		}
		for len(brk) < len(fix) {
			if !breaks(next) {
				brk = append(brk, workloadName(next))
			}
			next++
		}
		for _, name := range fix {
			patchOwner(t, c, ns, name, `"shop"`)
			delete(violating, name)
		}
		for _, name := range brk {
			patchOwner(t, c, ns, name, "null")
			violating[name] = true
		}
		time.Sleep(time.Duration(rand.IntN(int(resync.Milliseconds()))) * time.Millisecond)
		_ = syscall.Kill(m.Pid, syscall.SIGKILL)
		<-m.Exited
		m = env.StartManager(t, token, args...)
	}
	// Settled: every pod's incidents match what it now breaks.
	waitOpen(t, c, ns, violating, 5*time.Minute)
	// How long a full pass takes, as the last manager measured its first.
	var passes, passSum float64
	testenv.Eventually(t, 2*time.Minute, func(context.Context) error {
		passes, _ = metricValue("http://"+m.MetricsAddr+"/metrics", "riposte_drift_resync_seconds_count")
		passSum, _ = metricValue("http://"+m.MetricsAddr+"/metrics", "riposte_drift_resync_seconds_sum")
		if passes == 0 {
			return fmt.Errorf("the manager finished no full pass yet")
		}
		return nil
	})
	pass := round(time.Duration(passSum / passes * float64(time.Second))).String()
	items, err := incidentsIn(ctx, c, ns)
	if err != nil {
		t.Fatal(err)
	}
	perPod, open := map[string]int{}, map[string]int{}
	for _, inc := range items {
		if inc.Spec.Drift == nil {
			continue
		}
		perPod[inc.Spec.Drift.Source.Name]++
		if !inc.Status.Phase.Closed() {
			open[inc.Spec.Drift.Source.Name]++
		}
	}
	duplicated, openCompliant, missing := 0, 0, 0
	for pod, n := range perPod {
		if n > 1 {
			duplicated++
			t.Errorf("pod %s has %d incidents", pod, n)
		}
		if open[pod] > 0 && !violating[pod] {
			openCompliant++
			t.Errorf("pod %s complies and has an open incident", pod)
		}
	}
	for pod := range violating {
		if open[pod] != 1 {
			missing++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Manager restart during a drift re-evaluation\n\n")
	fmt.Fprintf(&b, "%d pods watched by a drift rule (every 20th without an owner label at first), one manager re-evaluating every pod every %s. %d times: a third of the violating pods are fixed and as many compliant ones broken, then the manager is killed (SIGKILL) after a random 0 to %s and started again (a full pass over the pods takes %s on average). The figures are read once every pod's incidents match what it breaks.\n\n", pods, resync, restarts, resync, pass)
	fmt.Fprintf(&b, "| figure | value | goal |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| manager restarts (SIGKILL) | %d | |\n", restarts)
	fmt.Fprintf(&b, "| incidents in all / pods that broke the rule at some point | %d / %d | equal |\n", len(items), len(perPod))
	fmt.Fprintf(&b, "| pods with more than one incident | %d | 0 |\n", duplicated)
	fmt.Fprintf(&b, "| complying pods with an open incident | %d | 0 |\n", openCompliant)
	fmt.Fprintf(&b, "| violating pods without exactly one open incident | %d | 0 |\n", missing)
	section(t, 4, b.String())
}

// waitOpen waits until the pods in violating, and only they, have an open
// incident in ns.
func waitOpen(t *testing.T, c client.Client, ns string, violating map[string]bool, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func(ctx context.Context) error {
		items, err := incidentsIn(ctx, c, ns)
		if err != nil {
			return err
		}
		open := map[string]bool{}
		for _, inc := range items {
			if inc.Spec.Drift != nil && !inc.Status.Phase.Closed() {
				open[inc.Spec.Drift.Source.Name] = true
			}
		}
		wrong := 0
		for pod := range violating {
			if !open[pod] {
				wrong++
			}
		}
		for pod := range open {
			if !violating[pod] {
				wrong++
			}
		}
		if wrong > 0 {
			return fmt.Errorf("%d pods' incidents do not match what they break (%d open, %d violating)", wrong, len(open), len(violating))
		}
		return nil
	})
}

// patchOwner sets the pod's owner label to value (a JSON string, or null).
func patchOwner(t *testing.T, c client.Client, ns, name, value string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := c.Patch(context.Background(), pod, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"owner":`+value+`}}}`))); err != nil {
		t.Fatal(err)
	}
}

// parallel runs do(0..n-1) on 16 workers and fails on the first error.
func parallel(t *testing.T, n int, do func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := do(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}
