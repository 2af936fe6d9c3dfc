package faults

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// TestEtcdRestart streams alerts to two replicas and stops etcd for 20 s
// in the middle (kube-apiserver stays up and answers that it cannot
// store), then starts it again on the same data. Afterwards every alert
// has one incident, remediated once; once the alerts resolve, no incident
// is left open.
func TestEtcdRestart(t *testing.T) {
	alerts := scaled(400, 100)
	down := 20 * time.Second
	const ns = "shop"
	dir := t.TempDir()
	auditLog := dir + "/audit.log"
	env := startFaults(t, testenv.Faults{Dir: dir, AuditLog: auditLog})
	ctx, c := context.Background(), env.Client
	env.TeamNamespace(t, ns, "riposte-action-isolate")
	workloads(t, c, ns, alerts)
	if err := c.Create(ctx, isolatePlaybook(ns, "EtcdDrill")); err != nil {
		t.Fatal(err)
	}
	reps := startReplicas(t, env, 2)
	s := newSender(reps.intakes)
	readiness := &readinessLog{}
	go readiness.watch(reps, 50*time.Millisecond)
	defer readiness.stop()

	// The alerts over about 2×down, etcd stopped a quarter of the way in.
	interval := 2 * down / time.Duration(alerts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		senders := make(chan struct{}, 32)
		for i := 0; i < alerts; i++ {
			senders <- struct{}{}
			go func() {
				defer func() { <-senders }()
				if code := s.send(alertBody("EtcdDrill", fingerprint(i), ns, workloadName(i)+"-0", "firing")); code != http.StatusOK {
					t.Errorf("alert %d answered %d", i, code)
				}
			}()
			time.Sleep(interval)
		}
		for i := 0; i < cap(senders); i++ {
			senders <- struct{}{}
		}
	}()
	time.Sleep(down / 2)
	if err := env.ControlPlane.Etcd.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(down)
	exitsDuring := reps.unexpectedExits()
	notReady := readiness.allNotReadySince(stopped)
	if err := env.ControlPlane.Etcd.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	<-done

	remediated := func(want riposte.IncidentPhase) (time.Duration, []riposte.Incident) {
		var items []riposte.Incident
		testenv.Eventually(t, 5*time.Minute, func(ctx context.Context) error {
			var err error
			if items, err = incidentsIn(ctx, c, ns); err != nil {
				return err
			}
			n := 0
			for _, inc := range items {
				if inc.Status.Phase == want {
					n++
				}
			}
			if len(items) != alerts || n != alerts {
				return fmt.Errorf("%d incidents for %d alerts, %d %s", len(items), alerts, n, want)
			}
			return nil
		})
		return time.Since(started), items
	}
	drained, items := remediated(riposte.PhaseRemediated)
	perPod := map[string]int{}
	for _, inc := range items {
		perPod[inc.Spec.Labels["pod"]]++
	}
	duplicated := 0
	for _, n := range perPod {
		if n > 1 {
			duplicated++
		}
	}
	isolations, twice := podWrites(t, auditLog)
	// The alerts resolve: no incident stays open.
	for i := 0; i < alerts; i++ {
		if code := s.send(alertBody("EtcdDrill", fingerprint(i), ns, workloadName(i)+"-0", "resolved")); code != http.StatusOK {
			t.Errorf("resolving alert %d answered %d", i, code)
		}
	}
	_, final := remediated(riposte.PhaseResolved)
	open := 0
	for _, inc := range final {
		if !inc.Status.Phase.Closed() {
			open++
		}
	}

	if exitsDuring > 1 {
		t.Errorf("replicas exited %d times while etcd was down: want at most the leader's one (a crash loop?)", exitsDuring)
	}
	if len(isolations) != alerts {
		t.Errorf("the audit log shows %d pods isolated, want %d", len(isolations), alerts)
	}
	if duplicated > 0 || twice > 0 || len(perPod) != alerts {
		t.Errorf("%d alerts with more than one incident, %d pods isolated twice, %d of %d alerts stored", duplicated, twice, len(perPod), alerts)
	}
	if notReady < 0 {
		t.Errorf("a replica stayed ready while etcd was down: %s", readiness.summary(stopped, started))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## etcd restart\n\n")
	fmt.Fprintf(&b, "%d alerts over %s to two replicas (retried like Alertmanager); etcd is stopped for %s a quarter of the way in and started again on the same data, with kube-apiserver running throughout. Then every alert resolves.\n\n", alerts, 2*down, down)
	fmt.Fprintf(&b, "| figure | value | goal |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| alerts with one incident / alerts | %d / %d | equal |\n", len(perPod), alerts)
	fmt.Fprintf(&b, "| alerts with more than one incident | %d | 0 |\n", duplicated)
	fmt.Fprintf(&b, "| pods isolated more than once (audit log) | %d | 0 |\n", twice)
	fmt.Fprintf(&b, "| incidents left open after every alert resolved | %d | 0 |\n", open)
	fmt.Fprintf(&b, "| intake answers | %s | no 4xx |\n", s.summary())
	fmt.Fprintf(&b, "| both replicas not ready, after etcd stopped | %s | before etcd is back |\n", since(notReady))
	fmt.Fprintf(&b, "| replica exits while etcd was down (a leader that cannot renew its lease stops) | %d | at most 1 |\n", exitsDuring)
	fmt.Fprintf(&b, "| replica exits after | %d | 0 |\n", reps.unexpectedExits()-exitsDuring)
	fmt.Fprintf(&b, "| etcd start to every incident Remediated | %s | |\n", round(drained))
	section(t, 3, b.String())
	if reps.unexpectedExits() > exitsDuring {
		t.Errorf("replicas exited %d times after etcd came back", reps.unexpectedExits()-exitsDuring)
	}
}
