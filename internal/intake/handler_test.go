package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const testToken = "s3cret-t0ken"

// memoryStore records upserts. errFor, when set, fails the upsert of the
// incidents it names; moveTo, when set, stores incidents there instead, as
// ApplyStore does for a missing namespace.
type memoryStore struct {
	errFor map[string]error
	moveTo string

	mu  sync.Mutex
	got []string
}

func (m *memoryStore) Upsert(_ context.Context, inc *riposte.Incident) error {
	if err := m.errFor[inc.Name]; err != nil {
		return err
	}
	if m.moveTo != "" {
		inc.Namespace = m.moveTo
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, inc.Namespace+"/"+inc.Name)
	return nil
}

func (m *memoryStore) stored() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.got...)
}

// gatedStore holds every upsert until release is closed, reporting each
// arrival on entered, and tracks how many upserts run at once.
type gatedStore struct {
	entered chan string
	release chan struct{}

	running, maxRunning atomic.Int32
	count               atomic.Int32
}

func newGatedStore() *gatedStore {
	return &gatedStore{entered: make(chan string, 100), release: make(chan struct{})}
}

func (g *gatedStore) Upsert(ctx context.Context, inc *riposte.Incident) error {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.maxRunning.Load()
		if n <= m || g.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	g.entered <- inc.Name
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.count.Add(1)
	return nil
}

type staticToken string

func (s staticToken) Token(context.Context) ([]byte, error) { return []byte(s), nil }

type failingToken struct{}

func (failingToken) Token(context.Context) ([]byte, error) {
	return nil, errors.New("intake token file: open /etc/riposte/token: no such file or directory")
}

type recordingMetrics struct {
	mu       sync.Mutex
	observed []string
	oddities []Oddities
}

func (r *recordingMetrics) ObserveOddities(o Oddities) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.oddities = append(r.oddities, o)
}

func (r *recordingMetrics) ObserveRequest(code, alerts int, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observed = append(r.observed, fmt.Sprintf("%d/%d", code, alerts))
}

func post(h http.Handler, authorization, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(body))
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	gk := schema.GroupKind{Group: "riposte.dev", Kind: "Incident"}
	invalid := apierrors.NewInvalid(gk, "am-a1b2c3d4e5f60718", field.ErrorList{field.TooLong(field.NewPath("spec", "severity"), "", 63)})
	twoAlerts := notificationOf(validAlert("a1"), validAlert("a2"))
	cases := []struct {
		reason        string
		method        string
		authorization string
		// token replaces the configured token source unless nil; noToken
		// configures none at all.
		token         TokenSource
		noToken       bool
		maxBody       int64
		maxAlerts     int
		unknownLength bool
		body          string
		store         *memoryStore
		wantCode      int
		wantHeader    http.Header
		wantInBody    string
		wantIncidents []StoredIncident
		wantRefused   []*AlertError
		wantStored    []string
		// wantOddities, when set, is what the metrics must be told.
		wantOddities Oddities
	}{
		{
			reason: "a valid notification is stored, then answered 200 with where it was stored", body: firingNotification,
			wantCode:      200,
			wantIncidents: []StoredIncident{{Namespace: "shop", Name: "am-a1b2c3d4e5f60718", Status: "firing"}},
			wantStored:    []string{"shop/am-a1b2c3d4e5f60718"},
		},
		{
			reason: "an incident the store moved is reported where it landed", body: firingNotification,
			store:         &memoryStore{moveTo: "riposte-system"},
			wantCode:      200,
			wantIncidents: []StoredIncident{{Namespace: "riposte-system", Name: "am-a1b2c3d4e5f60718", Status: "firing"}},
			wantStored:    []string{"riposte-system/am-a1b2c3d4e5f60718"},
		},
		{
			reason: "the Bearer scheme is case-insensitive", authorization: "bearer " + testToken, body: firingNotification,
			wantCode: 200, wantStored: []string{"shop/am-a1b2c3d4e5f60718"},
			wantIncidents: []StoredIncident{{Namespace: "shop", Name: "am-a1b2c3d4e5f60718", Status: "firing"}},
		},
		{
			reason: "GET is not allowed", method: http.MethodGet,
			wantCode: 405, wantHeader: http.Header{"Allow": {"POST"}}, wantInBody: "use POST",
		},
		{
			reason: "no Authorization header", authorization: "-", body: firingNotification,
			wantCode: 401, wantHeader: http.Header{"Www-Authenticate": {"Bearer"}},
		},
		{reason: "a wrong token", authorization: "Bearer guess", body: firingNotification, wantCode: 401},
		{reason: "the right token under another scheme", authorization: "Basic " + testToken, body: firingNotification, wantCode: 401},
		{reason: "a prefix of the right token", authorization: "Bearer " + testToken[:4], body: firingNotification, wantCode: 401},
		{reason: "an empty bearer token", authorization: "Bearer ", body: firingNotification, wantCode: 401},
		{
			reason: "an empty configured token authenticates nobody, not even an empty bearer token",
			token:  staticToken(""), authorization: "Bearer ", body: firingNotification, wantCode: 401,
		},
		{reason: "an empty configured token refuses any token", token: staticToken(""), body: firingNotification, wantCode: 401},
		{reason: "no token source authenticates nobody", noToken: true, body: firingNotification, wantCode: 401},
		{
			reason: "an unreadable configured token is answered 503 so Alertmanager retries rather than drops",
			token:  failingToken{}, body: firingNotification,
			wantCode: 503, wantHeader: http.Header{"Retry-After": {"5"}}, wantInBody: "cannot read its configured token",
		},
		{
			reason: "a body over the limit, announced by Content-Length", maxBody: 64, body: firingNotification,
			wantCode: 413, wantInBody: "64-byte limit",
		},
		{
			reason: "a body over the limit, without Content-Length", maxBody: 64, unknownLength: true, body: firingNotification,
			wantCode: 413, wantInBody: "64-byte limit",
		},
		{
			reason:   "an alert without alertname is stored, named from its labels, beside a Prometheus alert",
			body:     notificationOf(falcoAlert, validAlert("a1")),
			wantCode: 200, wantStored: []string{"shop/am-" + falcoFingerprint, "shop/am-a1"},
			wantIncidents: []StoredIncident{{Namespace: "shop", Name: "am-" + falcoFingerprint, Status: "firing"}, {Namespace: "shop", Name: "am-a1", Status: "firing"}},
			wantOddities:  Oddities{Refused: map[string]int{}, Derived: map[string]int{"rule": 1}},
		},
		{
			reason:   "an alert without any label is stored under the fallback name",
			body:     notificationOf(`{"status":"firing","labels":{},"fingerprint":"ab"}`),
			wantCode: 200, wantStored: []string{"riposte-system/am-ab"},
			wantIncidents: []StoredIncident{{Namespace: "riposte-system", Name: "am-ab", Status: "firing"}},
			wantOddities:  Oddities{Refused: map[string]int{}, Derived: map[string]int{"": 1}},
		},
		{
			reason: "an alert that can never be stored is refused, and the others are stored and answered 200",
			body: notificationOf(validAlert("a1"), `{"status":"pending","labels":{"alertname":"A"},"fingerprint":"a2"}`,
				`{"status":"firing","labels":{"alertname":"A"},"fingerprint":"../x"}`),
			wantCode: 200, wantStored: []string{"shop/am-a1"},
			wantIncidents: []StoredIncident{{Namespace: "shop", Name: "am-a1", Status: "firing"}},
			wantRefused: []*AlertError{
				{Index: 1, Fingerprint: "a2", Reason: RefusedStatus, Field: "alerts[1].status", Message: `alerts[1].status: must be firing or resolved, got "pending"`},
				{Index: 2, Reason: RefusedFingerprint, Field: "alerts[2].fingerprint", Message: `alerts[2].fingerprint: must be 1 to 64 letters or digits, got "../x"`},
			},
			wantOddities: Oddities{Refused: map[string]int{RefusedStatus: 1, RefusedFingerprint: 1}, Derived: map[string]int{}},
		},
		{
			reason:   "when no alert can ever be stored: 400 saying why",
			body:     notificationOf(`{"status":"firing","labels":{"alertname":"A"}}`, `{"status":"firing","fingerprint":"ab","labels":`+jsonMap(65, "l", nil)+`}`),
			wantCode: 400, wantInBody: "2 of 2 alerts can never be stored: alerts[0].fingerprint: must be 1 to 64 letters or digits",
			wantOddities: Oddities{Refused: map[string]int{RefusedFingerprint: 1, RefusedLabels: 1}, Derived: map[string]int{}},
		},
		{
			reason: "a stale notification is answered as stored, marked stale",
			body:   firingNotification, store: &memoryStore{errFor: map[string]error{"am-a1b2c3d4e5f60718": &StaleError{Namespace: "shop", Name: "am-a1b2c3d4e5f60718"}}},
			wantCode:      200,
			wantIncidents: []StoredIncident{{Namespace: "shop", Name: "am-a1b2c3d4e5f60718", Status: "firing", Stale: true}},
			wantOddities:  Oddities{Refused: map[string]int{}, Derived: map[string]int{}, Stale: 1},
		},
		{
			reason:   "alerts Alertmanager left out are counted",
			body:     strings.Replace(firingNotification, `"truncatedAlerts":0`, `"truncatedAlerts":7`, 1),
			wantCode: 200, wantStored: []string{"shop/am-a1b2c3d4e5f60718"},
			wantIncidents: []StoredIncident{{Namespace: "shop", Name: "am-a1b2c3d4e5f60718", Status: "firing"}},
			wantOddities:  Oddities{Refused: map[string]int{}, Derived: map[string]int{}, Truncated: 7},
		},
		{reason: "malformed JSON", body: `{"version":`, wantCode: 400, wantInBody: "malformed JSON"},
		{
			reason: "more alerts than the limit: 413 naming the limit, nothing stored", body: twoAlerts, maxAlerts: 1,
			wantCode: 413, wantInBody: "more than 1 alerts in one notification",
		},
		{
			reason:   "a label given twice: 400 naming the key and where it is, nothing stored",
			body:     notificationOf(validAlert("a1"), `{"status":"firing","fingerprint":"a2","labels":{"alertname":"A","pod":"x","pod":"y"}}`),
			wantCode: 400, wantInBody: "alerts[1].labels.pod: the key is given twice",
		},
		{
			reason: "the API server refusing an incident is answered 400 with its reason, since a retry cannot help",
			body:   firingNotification, store: &memoryStore{errFor: map[string]error{"am-a1b2c3d4e5f60718": invalid}},
			wantCode: 400, wantInBody: "spec.severity: Too long",
		},
		{
			reason: "the API server refusing one incident: the other is stored, 200 listing the refused one",
			body:   twoAlerts, store: &memoryStore{errFor: map[string]error{"am-a2": invalid}},
			wantCode: 200, wantInBody: "spec.severity: Too long", wantStored: []string{"shop/am-a1"},
			wantIncidents: []StoredIncident{{Namespace: "shop", Name: "am-a1", Status: "firing"}},
			wantRefused:   []*AlertError{{Index: 1, Fingerprint: "a2", Reason: RefusedByAPIServer, Message: invalid.Error()}},
			wantOddities:  Oddities{Refused: map[string]int{RefusedByAPIServer: 1}, Derived: map[string]int{}},
		},
		{
			reason: "a bad request from the API server is answered 400",
			body:   firingNotification, store: &memoryStore{errFor: map[string]error{"am-a1b2c3d4e5f60718": apierrors.NewBadRequest("nope")}},
			wantCode: 400, wantInBody: "nope",
		},
		{
			reason: "a generic store failure is answered 500 so Alertmanager retries",
			body:   firingNotification, store: &memoryStore{errFor: map[string]error{"am-a1b2c3d4e5f60718": errors.New("etcd is down")}},
			wantCode: 500, wantInBody: "etcd is down",
		},
		{
			reason: "API server throttling is answered 503 with Retry-After",
			body:   firingNotification, store: &memoryStore{errFor: map[string]error{"am-a1b2c3d4e5f60718": apierrors.NewTooManyRequests("slow down", 1)}},
			wantCode: 503, wantHeader: http.Header{"Retry-After": {"1"}},
		},
		{
			reason: "an API server timeout is answered 503",
			body:   firingNotification, store: &memoryStore{errFor: map[string]error{"am-a1b2c3d4e5f60718": apierrors.NewServerTimeout(schema.GroupResource{Resource: "incidents"}, "patch", 1)}},
			wantCode: 503,
		},
		{
			reason: "one refused and one transient failure: 500, so the transient one is retried",
			body:   twoAlerts, store: &memoryStore{errFor: map[string]error{"am-a1": invalid, "am-a2": errors.New("connection reset")}},
			wantCode: 500, wantInBody: "1 of 2 alerts were not stored: connection reset",
		},
		{
			reason: "an alert whose name another incident holds: 500 saying so, and the other alert is stored",
			body:   twoAlerts, store: &memoryStore{errFor: map[string]error{"am-a2": &NameTakenError{Namespace: "shop", Name: "am-a2", Source: riposte.SourceManual}}},
			wantCode: 500, wantInBody: "exists but is not this alert's (its source is Manual", wantStored: []string{"shop/am-a1"},
		},
		{
			reason: "a Forbidden from the API server (RBAC, an admission policy) is retried, not dropped",
			body:   firingNotification, store: &memoryStore{errFor: map[string]error{"am-a1b2c3d4e5f60718": apierrors.NewForbidden(schema.GroupResource{Group: "riposte.dev", Resource: "incidents"}, "am-a1b2c3d4e5f60718", errors.New("denied"))}},
			wantCode: 500, wantInBody: "denied",
		},
		{
			reason: "one alert failing still stores the other and answers 500",
			body:   twoAlerts, store: &memoryStore{errFor: map[string]error{"am-a2": errors.New("connection reset")}},
			wantCode: 500, wantInBody: "1 of 2 alerts were not stored", wantStored: []string{"shop/am-a1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			store := tc.store
			if store == nil {
				store = &memoryStore{}
			}
			var token TokenSource = staticToken(testToken)
			switch {
			case tc.noToken:
				token = nil
			case tc.token != nil:
				token = tc.token
			}
			metrics := &recordingMetrics{}
			h := &Handler{Store: store, Token: token, DefaultNamespace: "riposte-system", MaxBodyBytes: tc.maxBody, MaxAlerts: tc.maxAlerts, Metrics: metrics}

			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, WebhookPath, strings.NewReader(tc.body))
			switch tc.authorization {
			case "":
				req.Header.Set("Authorization", "Bearer "+testToken)
			case "-":
			default:
				req.Header.Set("Authorization", tc.authorization)
			}
			if tc.unknownLength {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tc.wantCode {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.wantCode, rec.Body)
			}
			for k, v := range tc.wantHeader {
				if diff := cmp.Diff(v, rec.Header().Values(k)); diff != "" {
					t.Errorf("header %s (-want +got):\n%s", k, diff)
				}
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			var answer struct {
				Error     *string          `json:"error"`
				Incidents []StoredIncident `json:"incidents"`
				Refused   []*AlertError    `json:"refused"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
				t.Fatalf("the answer is not JSON: %v: %s", err, rec.Body)
			}
			if tc.wantCode >= 400 && (answer.Error == nil || *answer.Error == "") {
				t.Errorf("an error answer needs a non-empty error field: %s", rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tc.wantInBody) {
				t.Errorf("body %s, want it to contain %q", rec.Body, tc.wantInBody)
			}
			if diff := cmp.Diff(tc.wantIncidents, answer.Incidents); diff != "" {
				t.Errorf("incidents answered (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRefused, answer.Refused); diff != "" {
				t.Errorf("refused alerts answered (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantStored, store.stored(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
			if tc.wantOddities.Refused != nil {
				if diff := cmp.Diff([]Oddities{tc.wantOddities}, metrics.oddities); diff != "" {
					t.Errorf("oddities observed (-want +got):\n%s", diff)
				}
			}
			if len(metrics.observed) != 1 || !strings.HasPrefix(metrics.observed[0], fmt.Sprint(tc.wantCode)+"/") {
				t.Errorf("metrics observed %v, want one request answered %d", metrics.observed, tc.wantCode)
			}
		})
	}
}

// The answer must wait for every alert to be stored, and the stores must
// run a bounded number at a time.
func TestHandlerAnswersOnlyAfterEveryAlertIsStored(t *testing.T) {
	const n = 20
	var alerts []string
	for i := range n {
		alerts = append(alerts, validAlert(fmt.Sprintf("f%02d", i)))
	}
	store := newGatedStore()
	srv := httptest.NewServer(&Handler{Store: store, Token: staticToken(testToken), DefaultNamespace: "riposte-system"})
	defer srv.Close()

	answered := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(notificationOf(alerts...)))
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			close(answered)
			return
		}
		answered <- resp
	}()

	for range storeParallelism {
		<-store.entered
	}
	select {
	case <-answered:
		t.Fatal("answered while stores were still in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(store.release)
	resp := <-answered
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := store.count.Load(); got != n {
		t.Errorf("answered 200 with %d of %d alerts stored", got, n)
	}
	if got := store.maxRunning.Load(); got > storeParallelism {
		t.Errorf("%d stores ran at once, want at most %d", got, storeParallelism)
	}
	var answer struct{ Incidents []StoredIncident }
	if err := json.Unmarshal(body, &answer); err != nil || len(answer.Incidents) != n {
		t.Errorf("answer lists %d incidents (%v), want %d: %s", len(answer.Incidents), err, n, body)
	}
}

func TestHandlerSheds503WhenSaturated(t *testing.T) {
	store := newGatedStore()
	h := &Handler{Store: store, Token: staticToken(testToken), DefaultNamespace: "riposte-system", MaxInFlight: 1}
	first := make(chan int)
	go func() { first <- post(h, "Bearer "+testToken, firingNotification).Code }()
	<-store.entered // the first request holds the only slot

	rec := post(h, "Bearer "+testToken, firingNotification)
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("second request: %d Retry-After %q, want 503 with Retry-After 1; body %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	// Authentication comes first: an unauthenticated caller learns nothing of the load.
	if rec := post(h, "Bearer wrong", firingNotification); rec.Code != 401 {
		t.Errorf("unauthenticated request while saturated: %d, want 401", rec.Code)
	}

	close(store.release)
	if code := <-first; code != 200 {
		t.Errorf("first request: %d, want 200", code)
	}
	if rec := post(h, "Bearer "+testToken, firingNotification); rec.Code != 200 {
		t.Errorf("after the slot was freed: %d, want 200", rec.Code)
	}
}

func TestHandlerNeverLogsTheToken(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logs.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 10})

	failing := &memoryStore{errFor: map[string]error{"am-a1b2c3d4e5f60718": errors.New("boom")}}
	h := &Handler{Store: failing, Token: staticToken(testToken), Log: log}
	post(h, "Bearer "+testToken, firingNotification)        // store failure
	post(h, "Bearer wrong-token-guess", firingNotification) // wrong token
	post(h, "Bearer "+testToken, `{"version":"4"`)          // malformed
	post(h, "Bearer "+testToken, notificationOf(`{"x":1}`)) // invalid
	(&Handler{Store: failing, Token: failingToken{}, Log: log}).ServeHTTP(httptest.NewRecorder(),
		func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(firingNotification))
			r.Header.Set("Authorization", "Bearer "+testToken)
			return r
		}())
	ok := &Handler{Store: &memoryStore{}, Token: staticToken(testToken), Log: log}
	post(ok, "Bearer "+testToken, firingNotification) // success

	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"boom", "refused a request without a valid bearer token", "cannot read the intake token", "stored alerts"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
	for _, secret := range []string{testToken, "wrong-token-guess", "Bearer", "Authorization"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs.String())
		}
	}
}

func TestStoreFailure(t *testing.T) {
	many := make([]error, 10)
	for i := range many {
		many[i] = fmt.Errorf("failure %d", i)
	}
	cases := []struct {
		reason         string
		failed         []error
		wantCode       int
		wantRetryAfter bool
		wantMsg        string
	}{
		{reason: "nothing failed", wantCode: 0},
		{reason: "throttling only: retry after a second", failed: []error{apierrors.NewTooManyRequests("t", 1)}, wantCode: 503, wantRetryAfter: true},
		{reason: "the API server unreachable: retry", failed: []error{&url.Error{Op: "Patch", URL: "https://127.0.0.1:6443", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}}, wantCode: 503, wantRetryAfter: true},
		{reason: "the API server's storage down: retry", failed: []error{apierrors.NewServiceUnavailable("etcdserver: request timed out"), apierrors.NewTooManyRequests("t", 1)}, wantCode: 503, wantRetryAfter: true},
		{reason: "throttling and a generic failure: 500", failed: []error{apierrors.NewTimeoutError("t", 1), errors.New("x")}, wantCode: 500},
		{reason: "a taken name: 500, retried", failed: []error{&NameTakenError{Namespace: "ns", Name: "am-x", Source: riposte.SourceManual}}, wantCode: 500},
		{reason: "many failures are summarised", failed: many, wantCode: 500, wantMsg: "10 of 12 alerts were not stored: failure 0; failure 1; failure 2; and 7 more"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			code, retryAfter, msg := storeFailure(tc.failed, 12)
			if diff := cmp.Diff([]any{tc.wantCode, tc.wantRetryAfter}, []any{code, retryAfter}); diff != "" {
				t.Errorf("code, retryAfter (-want +got):\n%s", diff)
			}
			if !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message %q, want it to contain %q", msg, tc.wantMsg)
			}
		})
	}
}

// Only what the alert itself makes the API server refuse is permanent.
func TestPermanent(t *testing.T) {
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "Incident"}, "x", nil)
	gr := schema.GroupResource{Group: "riposte.dev", Resource: "incidents"}
	cases := []struct {
		reason string
		err    error
		want   bool
	}{
		{reason: "invalid", err: invalid, want: true},
		{reason: "a wrapped refusal is still a refusal", err: fmt.Errorf("storing incident ns/x: %w", invalid), want: true},
		{reason: "bad request", err: apierrors.NewBadRequest("b"), want: true},
		{reason: "a taken name can be freed", err: &NameTakenError{Namespace: "ns", Name: "am-x"}},
		{reason: "forbidden can be granted", err: apierrors.NewForbidden(gr, "x", errors.New("denied"))},
		{reason: "throttling passes", err: apierrors.NewTooManyRequests("t", 1)},
		{reason: "a connection failure passes", err: errors.New("connection reset")},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if got := permanent(tc.err); got != tc.want {
				t.Errorf("permanent(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// hangingStore never answers until its caller gives up, as an API server
// whose etcd is down.
type hangingStore struct{}

func (hangingStore) Upsert(ctx context.Context, _ *riposte.Incident) error {
	<-ctx.Done()
	return ctx.Err()
}

// An API server that hangs gets each alert's write a bounded time: the
// notification is answered 503 with Retry-After, for Alertmanager to retry,
// instead of waiting on the API server's own timeout.
func TestStoreThatHangsIsAnswered503(t *testing.T) {
	h := &Handler{Store: hangingStore{}, Token: staticToken(testToken), DefaultNamespace: "riposte-system", StoreTimeout: 50 * time.Millisecond}
	start := time.Now()
	rec := post(h, "Bearer "+testToken, firingNotification)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("answered %d Retry-After %q, want 503 with Retry-After 1; body %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if !strings.Contains(rec.Body.String(), "context deadline exceeded") {
		t.Errorf("body %s does not say the write timed out", rec.Body)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("answered after %s, want about the store timeout", took)
	}

	// A notification of many alerts waits one timeout, not one per round
	// of parallel writes: the first write the API server could not take
	// stops the others.
	var alerts []string
	for i := range 10 * storeParallelism {
		alerts = append(alerts, validAlert(fmt.Sprintf("h%d", i)))
	}
	h.StoreTimeout = 200 * time.Millisecond
	start = time.Now()
	rec = post(h, "Bearer "+testToken, notificationOf(alerts...))
	if took := time.Since(start); rec.Code != http.StatusServiceUnavailable || took > 2*time.Second {
		t.Errorf("%d alerts answered %d after %s, want 503 after about one 200ms timeout", len(alerts), rec.Code, took)
	}
}

// A throttled write (the API server answered) does not stop the
// notification's other writes: they are stored, and only the throttled
// alert is retried.
func TestThrottledWriteLetsTheOthersThrough(t *testing.T) {
	store := &memoryStore{errFor: map[string]error{"am-a1": apierrors.NewTooManyRequests("slow down", 1)}}
	h := &Handler{Store: store, Token: staticToken(testToken), DefaultNamespace: "riposte-system"}
	alerts := []string{validAlert("a1")}
	for i := range 4 * storeParallelism {
		alerts = append(alerts, validAlert(fmt.Sprintf("b%d", i)))
	}
	rec := post(h, "Bearer "+testToken, notificationOf(alerts...))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("answered %d, want 503 for the throttled alert", rec.Code)
	}
	if got := store.stored(); len(got) != len(alerts)-1 {
		t.Errorf("stored %d of the %d others", len(got), len(alerts)-1)
	}
}
