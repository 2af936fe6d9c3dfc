//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/intake"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// TestBenchMinimumWrites measures the floor under the storm: what the API
// server spends on the writes an auto-approved IsolatePod cannot do
// without, sent by a driver with no Riposte at all, as fast as the machine
// takes them. Per alert: intake's server-side apply of the Incident (the
// same request intake sends), the pod's label patch as the playbook's
// account, and the Remediated status (the size of a real one), as the
// manager's identity; then the same with the Event a person reads. 8
// alerts are in flight at a time. The control plane writes an audit log,
// as in the storm.
func TestBenchMinimumWrites(t *testing.T) {
	n := envInt("BENCH_FLOOR_ALERTS", 1000)
	template, err := os.ReadFile(filepath.Join("testdata", "remediated-status.json"))
	if err != nil {
		t.Fatal(err)
	}
	audited, _ := auditedSample(t, 2*n, samplePlaybook())
	runs := minimumWrites(t, audited, n, "yes", string(template))
	_ = audited.Stop()
	plain := testenv.StartForTest(t)
	plain.TeamNamespace(t, appNamespace, "riposte-action-isolate")
	createPods(t, plain.Client, 2*n)
	runs = append(runs, minimumWrites(t, plain, n, "no", string(template))...)

	var b strings.Builder
	fmt.Fprintf(&b, "# The floor under the storm: the minimum writes, with no Riposte\n\nWritten by `make bench` (TestBenchMinimumWrites) on %s.\n\n## Machine\n\n%s\n", time.Now().UTC().Format(time.RFC3339), machine())
	fmt.Fprintf(&b, "A driver with no Riposte sends, for each of %d alerts, the writes an auto-approved IsolatePod cannot do without: intake's server-side apply of the Incident (the request intake sends), the pod's label patch as the playbook's account (impersonated), and the Remediated status of a real run's size (%d bytes of JSON), as the manager's identity; then the same with the Event a person reads. 8 alerts in flight at a time, as fast as the machine takes them; on a control plane writing the audit log, as in the storm, then on one without. The driver's own CPU is the client's: JSON encoding and TLS.\n\n", n, len(template))
	b.WriteString("| writes per alert | audit log | alerts/s | kube-apiserver CPU per alert | etcd CPU per alert | driver CPU per alert |\n|---|---|---|---|---|---|\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "| %s (%d) | %s | %.0f | %.1f ms | %.1f ms | %.1f ms |\n", r.name, r.writes, r.audit, r.perSecond,
			1000*r.apiserver/float64(n), 1000*r.etcd/float64(n), 1000*r.driver/float64(n))
	}
	b.WriteString("\nThe storm needs at least 100 remediations a second on these 2 cores (2,000 ms of CPU a second), so at most 20 ms of CPU per remediation for the API server, etcd, the sender and Riposte together.\n")
	out := filepath.Join(testenv.RepoRoot(), "test", "bench", "results-floor.md")
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

type floorRun struct {
	name, audit             string
	writes                  int
	apiserver, etcd, driver float64
	perSecond               float64
}

// minimumWrites runs the minimum writes for n alerts, then the same with
// the Event, on env; status is the Remediated status's JSON, with %NAME%,
// %POD% and %UID% for the incident, its pod and the pod's UID.
func minimumWrites(t *testing.T, env *testenv.Env, n int, audit, status string) []floorRun {
	ctx := context.Background()
	cfg, err := env.ManagerConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, -1
	manager, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	asPlaybook := rest.CopyConfig(cfg)
	asPlaybook.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + appNamespace + ":" + testenv.RemediatorAccount}
	playbook, err := client.New(asPlaybook, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	remediate := func(i int, event bool) error {
		a := intake.Alert{Status: "firing", Fingerprint: fmt.Sprintf("%016x", 0xf100000000+i), StartsAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			Labels: map[string]string{"alertname": "ContainerShellSpawned", "severity": "critical", "namespace": appNamespace, "pod": podName(i)}}
		inc := intake.IncidentFor(a, "")
		u, err := intake.ApplyObject(inc)
		if err != nil {
			return err
		}
		if err := manager.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(intake.DefaultFieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName(i), Namespace: appNamespace}}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"riposte.dev/quarantined-by":"%s/%s=deny-all"},"labels":{"riposte.dev/quarantine":"deny-all"}}}`, appNamespace, inc.Name)
		if err := playbook.Patch(ctx, pod, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			return fmt.Errorf("pod patch: %w", err)
		}
		remediated := strings.NewReplacer("%NAME%", inc.Name, "%POD%", podName(i), "%UID%", string(pod.UID)).Replace(status)
		stored := &riposte.Incident{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, stored); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(remediated), &stored.Status); err != nil {
			return err
		}
		if err := manager.Status().Update(ctx, stored); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if !event {
			return nil
		}
		// As the manager's recorder writes it (events.k8s.io/v1).
		return manager.Create(ctx, &eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", inc.Name, time.Now().UnixNano()), Namespace: appNamespace},
			Regarding:  corev1.ObjectReference{APIVersion: riposte.GroupVersion.String(), Kind: "Incident", Namespace: appNamespace, Name: inc.Name, UID: stored.UID},
			Reason:     riposte.ReasonStepsApplied, Action: "Remediate", Note: "1 step(s) of plan sha256:... applied", Type: corev1.EventTypeNormal,
			EventTime: metav1.NewMicroTime(time.Now()), ReportingController: "riposte-incident", ReportingInstance: "riposte-incident-bench",
		})
	}

	var runs []floorRun
	for r, shape := range []struct {
		name   string
		event  bool
		writes int
	}{{"apply, pod patch, status", false, 3}, {"the same and the Event", true, 4}} {
		before := cpuByProcess(os.Getpid())
		start := time.Now()
		var wg sync.WaitGroup
		next := make(chan int)
		var mu sync.Mutex
		var firstErr error
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if err := remediate(i, shape.event); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
				}
			}()
		}
		for i := r * n; i < (r+1)*n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		wall := time.Since(start)
		after := cpuByProcess(os.Getpid())
		if firstErr != nil {
			t.Fatal(firstErr)
		}
		runs = append(runs, floorRun{name: shape.name, audit: audit, writes: shape.writes,
			apiserver: after["kube-apiserver"] - before["kube-apiserver"], etcd: after["etcd"] - before["etcd"],
			driver: after["bench client"] - before["bench client"], perSecond: float64(n) / wall.Seconds()})
		time.Sleep(2 * time.Second)
	}

	return runs
}
