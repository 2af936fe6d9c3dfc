package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const firing = `{"version":"4","status":"firing","receiver":"riposte","alerts":[
 {"status":"firing","labels":{"alertname":"Shell","severity":"critical","namespace":"shop","pod":"web-1"},
  "annotations":{"summary":"shell"},"startsAt":"2026-11-26T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
  "generatorURL":"http://prom/graph","fingerprint":"A1B2c3d4e5f60718"}]}`

func TestDecode(t *testing.T) {
	alert := func(fields string) string {
		return `{"version":"4","alerts":[{` + fields + `}]}`
	}
	cases := []struct {
		reason  string
		body    string
		wantErr string
	}{
		{reason: "a firing notification", body: firing},
		{reason: "a resolved alert", body: alert(`"status":"resolved","labels":{"alertname":"A"},"fingerprint":"ab12","endsAt":"2026-11-26T10:05:00Z"`)},
		{reason: "unknown fields are allowed", body: `{"version":"4","future":1,"alerts":[{"status":"firing","labels":{"alertname":"A"},"fingerprint":"ab","new":true}]}`},
		{reason: "wrong version", body: `{"version":"3","alerts":[]}`, wantErr: `version: must be "4", got "3"`},
		{reason: "no alerts", body: `{"version":"4","alerts":[]}`, wantErr: "alerts: at least one alert is required"},
		{reason: "missing alertname", body: alert(`"status":"firing","labels":{"x":"y"},"fingerprint":"ab"`), wantErr: "alerts[0].labels.alertname: required"},
		{reason: "bad status", body: alert(`"status":"pending","labels":{"alertname":"A"},"fingerprint":"ab"`), wantErr: "alerts[0].status: must be firing or resolved"},
		{reason: "missing fingerprint", body: alert(`"status":"firing","labels":{"alertname":"A"}`), wantErr: "alerts[0].fingerprint"},
		{reason: "a fingerprint that could not name an object", body: alert(`"status":"firing","labels":{"alertname":"A"},"fingerprint":"../x"`), wantErr: "alerts[0].fingerprint"},
		{reason: "too many labels", body: alert(`"status":"firing","fingerprint":"ab","labels":` + manyLabels(65)), wantErr: "alerts[0].labels: 65 labels, at most 64"},
		{reason: "malformed JSON", body: `{"version":"4","alerts":[`, wantErr: "malformed JSON"},
		{reason: "data after the payload", body: firing + `{}`, wantErr: "data after the payload"},
		{reason: "a label of the wrong type", body: alert(`"status":"firing","fingerprint":"ab","labels":{"alertname":3}`), wantErr: "malformed JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tc.body))
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Decode error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func manyLabels(n int) string {
	m := map[string]string{"alertname": "A"}
	for i := 0; len(m) < n; i++ {
		m[strings.Repeat("l", 1)+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = "v"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestIncidentFor(t *testing.T) {
	starts := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ends := starts.Add(5 * time.Minute)
	cases := []struct {
		reason     string
		alert      Alert
		wantName   string
		wantNS     string
		wantStatus riposte.AlertStatus
		wantEnds   bool
	}{
		{reason: "named from the lowercased fingerprint, in the alert's namespace",
			alert:    Alert{Status: "firing", Fingerprint: "AB12", Labels: map[string]string{"alertname": "A", "namespace": "shop"}, StartsAt: starts, EndsAt: ends},
			wantName: "am-ab12", wantNS: "shop", wantStatus: riposte.AlertFiring},
		{reason: "no namespace label: the default namespace",
			alert:    Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A"}},
			wantName: "am-ab", wantNS: "riposte-system", wantStatus: riposte.AlertFiring},
		{reason: "an invalid namespace label: the default namespace",
			alert:    Alert{Status: "firing", Fingerprint: "ab", Labels: map[string]string{"alertname": "A", "namespace": "Bad_NS"}},
			wantName: "am-ab", wantNS: "riposte-system", wantStatus: riposte.AlertFiring},
		{reason: "resolved carries endsAt",
			alert:    Alert{Status: "resolved", Fingerprint: "ab", Labels: map[string]string{"alertname": "A", "namespace": "shop"}, EndsAt: ends},
			wantName: "am-ab", wantNS: "shop", wantStatus: riposte.AlertResolved, wantEnds: true},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			inc := IncidentFor(tc.alert, "riposte-system")
			if inc.Name != tc.wantName || inc.Namespace != tc.wantNS || inc.Spec.Status != tc.wantStatus {
				t.Errorf("got %s/%s %s, want %s/%s %s", inc.Namespace, inc.Name, inc.Spec.Status, tc.wantNS, tc.wantName, tc.wantStatus)
			}
			if (inc.Spec.EndsAt != nil) != tc.wantEnds {
				t.Errorf("endsAt = %v, want set: %v", inc.Spec.EndsAt, tc.wantEnds)
			}
			if inc.Spec.Source != riposte.SourceAlertmanager || inc.Spec.AlertName != "A" || inc.Spec.Fingerprint != tc.alert.Fingerprint {
				t.Errorf("spec = %+v", inc.Spec)
			}
		})
	}
}

// memoryStore records upserts; block, when set, holds each upsert until closed.
type memoryStore struct {
	mu    sync.Mutex
	got   []string
	err   error
	block chan struct{}
}

func (m *memoryStore) Upsert(_ context.Context, inc *riposte.Incident) (client.ObjectKey, error) {
	if m.block != nil {
		<-m.block
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return client.ObjectKey{}, m.err
	}
	m.got = append(m.got, inc.Namespace+"/"+inc.Name)
	return client.ObjectKeyFromObject(inc), nil
}

type staticToken string

func (s staticToken) Token(context.Context) ([]byte, error) { return []byte(s), nil }

func post(h http.Handler, token, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/webhook/alertmanager", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	invalid := apierrors.NewInvalid(schema.GroupKind{Group: "riposte.dev", Kind: "Incident"}, "am-x", nil)
	cases := []struct {
		reason     string
		method     string
		token      string
		configured string
		body       string
		storeErr   error
		wantStatus int
		wantInBody string
		wantStored []string
	}{
		{reason: "a valid notification is stored, then answered 200", token: "s3cret", body: firing, wantStatus: 200,
			wantInBody: `"name":"am-a1b2c3d4e5f60718"`, wantStored: []string{"shop/am-a1b2c3d4e5f60718"}},
		{reason: "GET is not allowed", method: http.MethodGet, token: "s3cret", wantStatus: 405},
		{reason: "no token", body: firing, wantStatus: 401},
		{reason: "a wrong token", token: "guess", body: firing, wantStatus: 401},
		{reason: "an empty configured token authenticates nobody", configured: "-", token: "", body: firing, wantStatus: 401},
		{reason: "a body over the limit", token: "s3cret", body: `{"version":"4","alerts":[{"labels":{"alertname":"` + strings.Repeat("x", 2048) + `"}}]}`, wantStatus: 413},
		{reason: "a missing field names the field", token: "s3cret", body: `{"version":"4","alerts":[{"status":"firing","labels":{},"fingerprint":"ab"}]}`, wantStatus: 400, wantInBody: "alerts[0].labels.alertname: required"},
		{reason: "the API server refusing the incident is the sender's problem", token: "s3cret", body: firing, storeErr: invalid, wantStatus: 400},
		{reason: "a store failure is answered 500 so Alertmanager retries", token: "s3cret", body: firing, storeErr: errors.New("etcd is down"), wantStatus: 500},
		{reason: "API server overload is 503", token: "s3cret", body: firing, storeErr: apierrors.NewTooManyRequests("slow down", 1), wantStatus: 503},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			store := &memoryStore{err: tc.storeErr}
			configured := "s3cret"
			if tc.configured == "-" {
				configured = ""
			}
			h := &Handler{Store: store, Token: staticToken(configured), DefaultNamespace: "riposte-system", MaxBodyBytes: 1024}
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/webhook/alertmanager", strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), tc.wantInBody) {
				t.Errorf("body %s, want it to contain %s", rec.Body, tc.wantInBody)
			}
			if tc.wantStatus >= 400 && !strings.Contains(rec.Body.String(), `"error"`) {
				t.Errorf("an error answer should be JSON with an error field: %s", rec.Body)
			}
			if diff := cmp.Diff(tc.wantStored, store.got); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHandlerAnswersAfterEveryAlertIsStored(t *testing.T) {
	var alerts []string
	for _, fp := range []string{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "b1", "b2"} {
		alerts = append(alerts, `{"status":"firing","labels":{"alertname":"A","namespace":"shop"},"fingerprint":"`+fp+`"}`)
	}
	store := &memoryStore{}
	h := &Handler{Store: store, Token: staticToken("t"), DefaultNamespace: "riposte-system"}
	rec := post(h, "t", `{"version":"4","alerts":[`+strings.Join(alerts, ",")+`]}`)
	if rec.Code != 200 || len(store.got) != len(alerts) {
		t.Fatalf("status %d with %d of %d stored", rec.Code, len(store.got), len(alerts))
	}
}

func TestHandlerSheds503WhenSaturated(t *testing.T) {
	store := &memoryStore{block: make(chan struct{})}
	h := &Handler{Store: store, Token: staticToken("t"), MaxInFlight: 1}
	first := make(chan int)
	go func() { first <- post(h, "t", firing).Code }()
	// Wait until the first request holds the only slot.
	for h.inFlight == nil || len(h.inFlight) == 0 {
		time.Sleep(time.Millisecond)
	}
	rec := post(h, "t", firing)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("second request: %d Retry-After %q, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	close(store.block)
	if code := <-first; code != 200 {
		t.Errorf("first request: %d, want 200", code)
	}
}

func TestTokenNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	log := funcr.New(func(prefix, args string) { logs.WriteString(prefix + args + "\n") }, funcr.Options{Verbosity: 10})
	h := &Handler{Store: &memoryStore{err: errors.New("boom")}, Token: staticToken("top-secret-token"), Log: log}
	post(h, "top-secret-token", firing)
	post(h, "wrong-token-guess", firing)
	post(h, "top-secret-token", `{"version":"4"`)
	if logs.Len() == 0 {
		t.Fatal("expected the store failure to be logged")
	}
	for _, secret := range []string{"top-secret-token", "wrong-token-guess", "Bearer"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs.String())
		}
	}
}

func TestFileTokenFollowsRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	ft := &FileToken{Path: path}
	if _, err := ft.Token(context.Background()); err == nil {
		t.Fatal("a missing file must be an error")
	}
	write := func(s string, at time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	write("  first\n", now)
	if got, err := ft.Token(context.Background()); err != nil || string(got) != "first" {
		t.Fatalf("Token = %q, %v; want first, trimmed", got, err)
	}
	write("second-token\n", now.Add(time.Second))
	if got, _ := ft.Token(context.Background()); string(got) != "second-token" {
		t.Errorf("after rotation Token = %q, want second-token", got)
	}
	write("\n", now.Add(2*time.Second))
	if _, err := ft.Token(context.Background()); err == nil {
		t.Error("an empty token file must be an error")
	}
}
