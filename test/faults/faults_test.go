// Package faults is Riposte's fault suite: real managers, a real control
// plane and a real Alertmanager, broken on purpose (leaders killed, the API
// server or etcd stopped, a soak through retention), with what must hold
// asserted and the figures written out. `make test` runs it at a small
// scale; `make test-faults` at full scale, writing test/faults/results.md
// (hack/faults.sh) with the machine it ran on.
package faults

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

const token = "faults-token"

// fullScale is set by `make test-faults`: the counts the results file
// reports. `make test` runs every fault at a smaller scale, so CI proves the
// same properties within its time budget.
var fullScale = os.Getenv("RIPOSTE_FAULTS_SCALE") == "full"

// scaled picks the full-scale count or the quick one.
func scaled(full, quick int) int {
	if fullScale {
		return full
	}
	return quick
}

func TestMain(m *testing.M) {
	// The control plane's helpers log through controller-runtime.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// section writes one fault's figures for hack/faults.sh to gather into
// results.md; without RIPOSTE_FAULTS_OUT (a plain go test) it only logs.
func section(t *testing.T, order int, body string) {
	t.Helper()
	t.Log("\n" + body)
	dir := os.Getenv("RIPOSTE_FAULTS_OUT")
	if dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d-%s.md", order, t.Name())), []byte(body), 0o644); err != nil {
		t.Error(err)
	}
}

// startFaults starts a control plane whose etcd and API server a test may
// stop and start again.
func startFaults(t *testing.T, f testenv.Faults) *testenv.Env {
	t.Helper()
	if f.Dir == "" {
		f.Dir = t.TempDir()
	}
	env, err := testenv.StartForFaults(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env
}

// lease is the short leader election the suite runs with, so a takeover
// takes seconds; results.md says what the production defaults mean.
var lease = struct{ duration, renew, retry time.Duration }{2 * time.Second, 1500 * time.Millisecond, 250 * time.Millisecond}

func leaseArgs() []string {
	return []string{"--leader-elect",
		"--leader-elect-lease-duration", lease.duration.String(),
		"--leader-elect-renew-deadline", lease.renew.String(),
		"--leader-elect-retry-period", lease.retry.String()}
}

// replicas supervises manager processes as a kubelet would: a replica that
// exits, killed or on its own, is started again in its slot.
type replicas struct {
	t    *testing.T
	env  *testenv.Env
	args []string

	mu    sync.Mutex
	slots []*testenv.Manager
	// exits counts the processes that ended without being killed by the
	// test (a leader that lost its lease exits, for example).
	exits   int
	killing map[int]bool
	done    chan struct{}
	wg      sync.WaitGroup
}

func startReplicas(t *testing.T, env *testenv.Env, n int, args ...string) *replicas {
	t.Helper()
	r := &replicas{t: t, env: env, args: append(leaseArgs(), args...), killing: map[int]bool{}, done: make(chan struct{})}
	for i := 0; i < n; i++ {
		r.slots = append(r.slots, nil)
		r.launch(i)
	}
	t.Cleanup(r.stop)
	for i := 0; i < n; i++ {
		testenv.WaitHTTP(t, "http://"+r.manager(i).IntakeAddr+"/healthz")
	}
	return r
}

func (r *replicas) launch(slot int) {
	m := r.env.LaunchManager(r.t, token, nil, r.args...)
	r.mu.Lock()
	r.slots[slot] = m
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		select {
		case <-r.done:
			return
		case <-m.Exited:
		}
		r.mu.Lock()
		if !r.killing[m.Pid] {
			r.exits++
		}
		r.mu.Unlock()
		select {
		case <-r.done:
		case <-time.After(500 * time.Millisecond): // a kubelet's first restart delay is longer; this keeps the test short
			r.launch(slot)
		}
	}()
}

func (r *replicas) stop() {
	close(r.done)
	r.wg.Wait()
}

func (r *replicas) manager(slot int) *testenv.Manager {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.slots[slot]
}

// kill sends SIGKILL to the replica in slot; the supervisor starts another.
func (r *replicas) kill(slot int) {
	r.mu.Lock()
	m := r.slots[slot]
	r.killing[m.Pid] = true
	r.mu.Unlock()
	_ = syscall.Kill(m.Pid, syscall.SIGKILL)
	<-m.Exited
}

func (r *replicas) unexpectedExits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exits
}

// intakes are the replicas' intake addresses, as a Service's endpoints.
func (r *replicas) intakes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.slots {
		out = append(out, m.IntakeAddr)
	}
	return out
}

// leader returns the slot whose process says it leads (the
// leader_election_master_status gauge), waiting up to timeout.
func (r *replicas) leader(timeout time.Duration) (int, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i := range r.slots {
			if leads(r.manager(i)) {
				return i, time.Now(), nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, time.Time{}, fmt.Errorf("no replica led within %s", timeout)
}

var metricsClient = &http.Client{Timeout: time.Second}

func leads(m *testenv.Manager) bool {
	resp, err := metricsClient.Get("http://" + m.MetricsAddr + "/metrics")
	if err != nil {
		return false
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `leader_election_master_status{name="riposte.riposte.dev"}`) {
			return strings.HasSuffix(sc.Text(), " 1")
		}
	}
	return false
}

// ready is the replica's /readyz answer code, 0 when it does not answer.
func ready(m *testenv.Manager) int {
	resp, err := metricsClient.Get("http://" + m.ProbesAddr + "/readyz")
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// sender posts alerts as Alertmanager does: a 5xx or a failed connection
// is retried, with backoff, at any of the endpoints.
type sender struct {
	endpoints func() []string
	client    *http.Client

	mu      sync.Mutex
	answers map[int]int
	// connErrors counts attempts no replica answered.
	connErrors int
}

func newSender(endpoints func() []string) *sender {
	return &sender{endpoints: endpoints, answers: map[int]int{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// send posts body until an answer below 500, and returns it.
func (s *sender) send(body []byte) int {
	for attempt := 0; ; attempt++ {
		eps := s.endpoints()
		addr := eps[rand.IntN(len(eps))]
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhook/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := s.client.Do(req)
		s.mu.Lock()
		if err != nil {
			s.connErrors++
		} else {
			s.answers[resp.StatusCode]++
		}
		s.mu.Unlock()
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode < 500 {
				return resp.StatusCode
			}
		}
		time.Sleep(min(time.Duration(50<<min(attempt, 5))*time.Millisecond, time.Second))
	}
}

func (s *sender) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var codes []int
	for c := range s.answers {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d × %d", s.answers[c], c))
	}
	if s.connErrors > 0 {
		parts = append(parts, fmt.Sprintf("%d connections refused or cut", s.connErrors))
	}
	return strings.Join(parts, ", ")
}

// alertBody is one Alertmanager notification for one alert on a pod.
func alertBody(alertname, fingerprint, ns, pod, status string) []byte {
	ends := "0001-01-01T00:00:00Z"
	if status == "resolved" {
		ends = time.Now().UTC().Format(time.RFC3339)
	}
	body, _ := json.Marshal(map[string]any{"version": "4", "status": status, "receiver": "riposte", "alerts": []map[string]any{{
		"status": status, "fingerprint": fingerprint,
		"labels":   map[string]string{"alertname": alertname, "severity": "critical", "namespace": ns, "pod": pod},
		"startsAt": "2026-12-01T00:00:00Z", "endsAt": ends,
	}}})
	return body
}

// workloads creates n Deployments of one replica, each with its one pod
// (no controllers run on the test control plane, so the test makes it).
func workloads(t *testing.T, c client.Client, ns string, n int) {
	t.Helper()
	ctx := context.Background()
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				labels := map[string]string{"app": workloadName(i)}
				dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: workloadName(i), Namespace: ns},
					Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
						Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
							Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}}}
				if err := c.Create(ctx, dep); err != nil {
					t.Error(err)
					continue
				}
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: workloadName(i) + "-0", Namespace: ns, Labels: labels,
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: ptr.To(true)}}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
				if err := c.Create(ctx, pod); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

func workloadName(i int) string { return fmt.Sprintf("web-%05d", i) }

// allowNotify lets the playbooks' account read the chat Secret in ns.
func allowNotify(t *testing.T, c client.Client, ns, url string) {
	t.Helper()
	ctx := context.Background()
	for _, o := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "notify", Namespace: ns},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"chat"}, Verbs: []string{"get"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "notify", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "notify"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: testenv.RemediatorAccount, Namespace: ns}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns}, StringData: map[string]string{"url": url}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

// incidentsIn lists ns's incidents straight from the API server.
func incidentsIn(ctx context.Context, c client.Client, ns string) ([]riposte.Incident, error) {
	var l riposte.IncidentList
	if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// readAudit calls each for every completed request in the audit log.
func readAudit(t *testing.T, path string, each func(e *testenv.AuditEvent)) {
	t.Helper()
	if err := testenv.ReadAudit(path, each); err != nil {
		t.Fatal(err)
	}
}

// podWrites counts, by pod, the writes Riposte made to pods that the API
// server took, and how many pods were written more than once.
func podWrites(t *testing.T, auditLog string) (byPod map[string]int, twice int) {
	t.Helper()
	byPod = map[string]int{}
	readAudit(t, auditLog, func(e *testenv.AuditEvent) {
		if e.ObjectRef != nil && e.ObjectRef.Resource == "pods" && e.User.Username == testenv.ManagerUser && e.SucceededWrite() {
			byPod[e.ObjectRef.Name]++
		}
	})
	for _, n := range byPod {
		if n > 1 {
			twice++
		}
	}
	return byPod, twice
}

// percentiles spells out p50, p90 and the maximum of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("p50 %s, p90 %s, max %s", round(at(0.5)), round(at(0.9)), round(s[len(s)-1]))
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

// metricValue reads one unlabelled sample (or the first labelled one
// whose line starts with name) from a Prometheus text endpoint.
func metricValue(url, name string) (float64, error) {
	resp, err := metricsClient.Get(url)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", url, name)
}
