package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// isolatePlaybook answers alertname by isolating the alert's pod.
func isolatePlaybook(ns, alertname string) *riposte.Playbook {
	return &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "isolate", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{alertname}}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
		},
	}
}

// service stands in for the intake Service: it forwards each request to
// one of the live replicas (502 when none answers) and keeps every answer,
// when it was given and the pods its alerts name.
type service struct {
	*httptest.Server
	mu      sync.Mutex
	answers []answer
}

type answer struct {
	at   time.Time
	code int
	pods []string
	body string
}

func newService(t *testing.T, endpoints func() []string) *service {
	s := &service{}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			eps := endpoints()
			r.SetURL(&url.URL{Scheme: "http", Host: eps[rand.IntN(len(eps))]})
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) },
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		proxy.ServeHTTP(rec, r)
		var n struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		_ = json.Unmarshal(body, &n)
		a := answer{at: time.Now(), code: rec.code, body: rec.body.String()}
		for _, al := range n.Alerts {
			a.pods = append(a.pods, al.Labels["pod"])
		}
		s.mu.Lock()
		s.answers = append(s.answers, a)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

type statusRecorder struct {
	http.ResponseWriter
	code int
	body bytes.Buffer // the first bytes of a 500's answer, for the log
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == http.StatusInternalServerError && r.body.Len() < 600 {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

// between returns the answers given in [from, to].
func (s *service) between(from, to time.Time) []answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []answer
	for _, a := range s.answers {
		if !a.at.Before(from) && !a.at.After(to) {
			out = append(out, a)
		}
	}
	return out
}

// startAlertmanager runs a real Alertmanager sending every alert, one per
// notification, to url with the suite's token.
func startAlertmanager(t *testing.T, dir, url string) (addr string) {
	t.Helper()
	tokenFile := filepath.Join(dir, "am-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`route:
  receiver: riposte
  group_by: ['...']
  group_wait: 0s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: riposte
    webhook_configs:
      - url: %s/webhook/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: %s
`, url, tokenFile)
	path := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr = testenv.FreeAddr(t)
	testenv.StartProcess(t, dir, "alertmanager", testenv.AlertmanagerBinary(t),
		"--config.file", path, "--storage.path", filepath.Join(dir, "am-data"),
		"--web.listen-address", addr, "--cluster.listen-address=")
	testenv.WaitHTTP(t, "http://"+addr+"/-/ready")
	return addr
}

// fire posts alerts on pods first..first+n-1 of ns to Alertmanager's API,
// as Prometheus would.
func fire(t *testing.T, amAddr, alertname, ns string, first, n int) {
	t.Helper()
	var alerts []map[string]any
	for i := first; i < first+n; i++ {
		alerts = append(alerts, map[string]any{
			"labels":   map[string]string{"alertname": alertname, "severity": "critical", "namespace": ns, "pod": workloadName(i) + "-0"},
			"startsAt": time.Now().UTC().Format(time.RFC3339),
		})
	}
	body, _ := json.Marshal(alerts)
	resp, err := http.Post("http://"+amAddr+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("posting to Alertmanager: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("Alertmanager answered %d: %s", resp.StatusCode, msg)
	}
}

// TestAPIServerOutage feeds a storm through a real Alertmanager to two
// replicas and stops kube-apiserver for 30 s in the middle. While it is
// down intake must never answer 2xx, the replicas must report not ready,
// and afterwards every alert must have exactly one incident, remediated
// once.
func TestAPIServerOutage(t *testing.T) {
	alerts := scaled(1000, 200)
	outage := 30 * time.Second
	const ns = "shop"
	dir := t.TempDir()
	auditLog := filepath.Join(dir, "audit.log")
	env := startFaults(t, testenv.Faults{Dir: dir, AuditLog: auditLog})
	ctx, c := context.Background(), env.Client
	env.TeamNamespace(t, ns, "riposte-action-isolate")
	workloads(t, c, ns, alerts)
	if err := c.Create(ctx, isolatePlaybook(ns, "OutageDrill")); err != nil {
		t.Fatal(err)
	}
	reps := startReplicas(t, env, 2)
	for i := 0; i < 2; i++ {
		testenv.WaitHTTP(t, "http://"+reps.manager(i).ProbesAddr+"/readyz")
	}
	svc := newService(t, reps.intakes)
	amAddr := startAlertmanager(t, dir, svc.URL)

	// The storm: alerts in batches of 50 every 250 ms; the API server
	// stops once half are in.
	batch := 50
	var stopped, started time.Time
	readiness := &readinessLog{}
	go readiness.watch(reps, 20*time.Millisecond)
	defer readiness.stop()
	for first := 0; first < alerts; first += batch {
		fire(t, amAddr, "OutageDrill", ns, first, min(batch, alerts-first))
		if stopped.IsZero() && first+batch >= alerts/2 {
			stopAPIServer(t, env)
			stopped = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
	if wait := outage - time.Since(stopped); wait > 0 {
		time.Sleep(wait)
	}
	exitsDuring := reps.unexpectedExits()
	notReadyAt := readiness.allNotReadySince(stopped)
	// Down until Start is called: kube-apiserver serves some requests
	// while it starts, before Start returns.
	down := time.Now()
	if err := env.ControlPlane.APIServer.Start(); err != nil {
		t.Fatal(err)
	}
	started = time.Now()

	// Drained: every alert one incident, each Remediated.
	var drained time.Duration
	testenv.Eventually(t, 5*time.Minute, func(ctx context.Context) error {
		items, err := incidentsIn(ctx, c, ns)
		if err != nil {
			return err
		}
		done := 0
		for _, inc := range items {
			if inc.Status.Phase == riposte.PhaseRemediated {
				done++
			}
		}
		if len(items) != alerts || done != alerts {
			return fmt.Errorf("%d incidents for %d alerts, %d Remediated", len(items), alerts, done)
		}
		return nil
	})
	drained = time.Since(started)
	readyAgain := readiness.firstReadySince(started)
	items, err := incidentsIn(ctx, c, ns)
	if err != nil {
		t.Fatal(err)
	}
	var lastStored time.Time
	for _, inc := range items {
		if inc.CreationTimestamp.After(lastStored) {
			lastStored = inc.CreationTimestamp.Time
		}
	}
	// One incident per alert: by pod, since Alertmanager names alerts by
	// fingerprint and Riposte incidents after it.
	perPod := map[string]int{}
	for _, inc := range items {
		perPod[inc.Spec.Labels["pod"]]++
	}
	duplicated, lost := 0, 0
	for i := 0; i < alerts; i++ {
		switch n := perPod[workloadName(i)+"-0"]; {
		case n == 0:
			lost++
		case n > 1:
			duplicated++
		}
	}
	// Remediated once: each pod isolated by one successful write.
	isolations, twice := podWrites(t, auditLog)

	// While the API server is down nothing can be stored: a 2xx is right
	// only for an alert stored before (a retry of a notification whose
	// answer was lost, answered from what intake saw stored).
	during := svc.between(stopped, down)
	storedBefore := map[string]bool{}
	for _, inc := range items {
		if inc.CreationTimestamp.Unix() <= stopped.Unix() {
			storedBefore[inc.Spec.Labels["pod"]] = true
		}
	}
	byCode := map[int]int{}
	acceptedUnstored, acceptedStored := 0, 0
	for _, a := range during {
		byCode[a.code]++
		if a.code == http.StatusInternalServerError {
			t.Logf("intake answered 500 during the outage: %s", a.body)
		}
		if a.code < 200 || a.code >= 300 {
			continue
		}
		for _, pod := range a.pods {
			if storedBefore[pod] {
				acceptedStored++
			} else {
				acceptedUnstored++
				t.Errorf("intake answered %d for the alert on %s while the API server was down, and it was stored only after", a.code, pod)
			}
		}
	}
	for code, n := range byCode {
		if code != http.StatusServiceUnavailable && code != http.StatusBadGateway && (code < 200 || code >= 300) {
			t.Errorf("intake answered %d %d times while the API server was down, want 503", code, n)
		}
	}
	if byCode[http.StatusServiceUnavailable] == 0 {
		t.Errorf("intake never answered 503 while the API server was down: %v", byCode)
	}
	if exitsDuring > 1 {
		t.Errorf("replicas exited %d times while the API server was down: want at most the leader's one (a crash loop?)", exitsDuring)
	}
	if len(isolations) != alerts {
		t.Errorf("the audit log shows %d pods isolated, want %d", len(isolations), alerts)
	}
	if lost > 0 || duplicated > 0 || twice > 0 {
		t.Errorf("%d alerts lost, %d with more than one incident, %d pods isolated twice", lost, duplicated, twice)
	}
	if notReadyAt < 0 {
		t.Errorf("a replica stayed ready while the API server was down: %s", readiness.summary(stopped, started))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## API-server outage\n\n")
	fmt.Fprintf(&b, "A real Alertmanager (one notification per alert, group_interval 5 s) sends to two replicas through a stand-in for the intake Service; %d alerts arrive in batches of %d every 250 ms, and kube-apiserver is stopped (SIGTERM) once half are in, for %s, then started again on the same etcd.\n\n", alerts, batch, outage)
	fmt.Fprintf(&b, "| figure | value | goal |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| alerts lost | %d | 0 |\n", lost)
	fmt.Fprintf(&b, "| alerts with more than one incident | %d | 0 |\n", duplicated)
	fmt.Fprintf(&b, "| pods isolated more than once (audit log) | %d | 0 |\n", twice)
	fmt.Fprintf(&b, "| intake answers while the API server was down | %s | 503 |\n", codes(byCode))
	fmt.Fprintf(&b, "| 2xx for an alert not stored before the outage | %d | 0 |\n", acceptedUnstored)
	fmt.Fprintf(&b, "| 2xx for an alert stored before (a retried notification, answered from the cache) | %d | reported |\n", acceptedStored)
	fmt.Fprintf(&b, "| both replicas not ready, after the stop | %s | before the API server is back |\n", since(notReadyAt))
	fmt.Fprintf(&b, "| a replica ready again, after the start | %s | |\n", since(readyAgain))
	fmt.Fprintf(&b, "| replica exits during the outage (a leader that cannot renew its lease stops) | %d | at most 1 |\n", exitsDuring)
	fmt.Fprintf(&b, "| replica exits after it | %d | 0 |\n", reps.unexpectedExits()-exitsDuring)
	fmt.Fprintf(&b, "| backlog stored (start to the last incident created, to the second; Alertmanager's retry schedule sets it) | %s | |\n", since(lastStored.Sub(started).Truncate(time.Second)))
	fmt.Fprintf(&b, "| backlog drained (start to every incident Remediated) | %s | |\n", round(drained))
	section(t, 2, b.String())
	if reps.unexpectedExits()-exitsDuring > 0 {
		t.Errorf("replicas exited %d times after the API server came back", reps.unexpectedExits()-exitsDuring)
	}
}

func codes(m map[int]int) string {
	var cs []int
	for c := range m {
		cs = append(cs, c)
	}
	sort.Ints(cs)
	var parts []string
	for _, c := range cs {
		name := fmt.Sprint(c)
		if c == http.StatusBadGateway {
			name = "502 (no replica listening: the stand-in Service's answer)"
		}
		parts = append(parts, fmt.Sprintf("%d × %s", m[c], name))
	}
	return strings.Join(parts, ", ")
}

func since(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return round(d).String()
}

// readinessLog samples every replica's /readyz.
type readinessLog struct {
	mu      sync.Mutex
	samples []readinessSample
	done    chan struct{}
	once    sync.Once
}

type readinessSample struct {
	at       time.Time
	anyReady bool
}

func (r *readinessLog) watch(reps *replicas, every time.Duration) {
	r.mu.Lock()
	r.done = make(chan struct{})
	done := r.done
	r.mu.Unlock()
	for {
		select {
		case <-done:
			return
		case <-time.After(every):
		}
		anyReady := false
		for i := range reps.slots {
			if ready(reps.manager(i)) == http.StatusOK {
				anyReady = true
			}
		}
		r.mu.Lock()
		r.samples = append(r.samples, readinessSample{at: time.Now(), anyReady: anyReady})
		r.mu.Unlock()
	}
}

func (r *readinessLog) stop() {
	r.once.Do(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.done != nil {
			close(r.done)
		}
	})
}

// allNotReadySince is how long after t no replica was ready any more (and
// stayed so to the last sample), or -1.
func (r *readinessLog) allNotReadySince(t time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	found := time.Duration(-1)
	for _, s := range r.samples {
		if s.at.Before(t) {
			continue
		}
		if s.anyReady {
			found = -1
		} else if found < 0 {
			found = s.at.Sub(t)
		}
	}
	return found
}

// firstReadySince is how long after t a replica was first ready, or -1.
func (r *readinessLog) firstReadySince(t time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.samples {
		if !s.at.Before(t) && s.anyReady {
			return s.at.Sub(t)
		}
	}
	return -1
}

func (r *readinessLog) summary(from, to time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ready := 0
	for _, s := range r.samples {
		if !s.at.Before(from) && !s.at.After(to) && s.anyReady {
			ready++
		}
	}
	return fmt.Sprintf("%d samples with a replica ready during the outage", ready)
}

// stopAPIServer stops kube-apiserver at once (SIGTERM, then SIGKILL a
// second later) and returns when it no longer accepts connections.
func stopAPIServer(t *testing.T, env *testenv.Env) {
	t.Helper()
	if err := env.ControlPlane.APIServer.Stop(); err != nil && !strings.Contains(err.Error(), "timeout waiting for process") {
		t.Fatal(err)
	}
	host := env.ControlPlane.APIServer.SecureServing.ListenAddr.HostPort()
	testenv.Eventually(t, 10*time.Second, func(context.Context) error {
		if conn, err := net.DialTimeout("tcp", host, 100*time.Millisecond); err == nil {
			_ = conn.Close()
			return fmt.Errorf("kube-apiserver still listens on %s", host)
		}
		return nil
	})
}
