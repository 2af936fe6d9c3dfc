package intake

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzWebhook posts any body to the webhook. It must never panic, never
// answer 5xx for what it was sent (the store here never fails), answer 2xx
// only when every incident it names was stored, and answer a 4xx with a
// reason otherwise, having stored nothing when it refused the whole body.
// Every incident it stores has a name and a namespace the API server would
// take.
func FuzzWebhook(f *testing.F) {
	for _, seed := range []string{
		notificationOf(validAlert("a1")),
		notificationOf(falcoAlert),
		notificationOf(validAlert("a1"), validAlert("a1"), validAlert("b2")),
		notificationOf(`{"status":"resolved","labels":{"alertname":"A"},"fingerprint":"c3","startsAt":"2026-11-26T10:00:00Z","endsAt":"2026-11-26T11:00:00Z"}`),
		notificationOf(`{"status":"firing","labels":{"alertname":"A","namespace":"Not_A-Namespace","pod":"../etc"},"fingerprint":"d4"}`),
		`{"version":"4","version":"5","alerts":[]}`,
		`{"version":"4","alerts":[{"labels":{"alertname":"\xff\xfe"}}]}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		``,
		`{}`,
		`null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		store := &memoryStore{}
		h := &Handler{Store: store, Token: staticToken(testToken), DefaultNamespace: "riposte-system", MaxBodyBytes: 64 << 10, MaxAlerts: 64}
		req := httptest.NewRequest(http.MethodPost, "/webhook/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		stored := store.stored()
		for _, key := range stored {
			ns, name, _ := strings.Cut(key, "/")
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				t.Fatalf("stored in namespace %q: %v", ns, errs)
			}
			if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
				t.Fatalf("stored as %q: %v", name, errs)
			}
		}
		switch code := rec.Code; {
		case code == http.StatusOK:
			var answer struct {
				Incidents []StoredIncident `json:"incidents"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
				t.Fatalf("200 with an answer that is not JSON: %v: %q", err, rec.Body.String())
			}
			for _, inc := range answer.Incidents {
				found := false
				for _, key := range stored {
					found = found || key == inc.Namespace+"/"+inc.Name
				}
				if !found {
					t.Fatalf("200 names %s/%s, which was not stored (stored %v)", inc.Namespace, inc.Name, stored)
				}
			}
		case code >= 400 && code < 500:
			if strings.TrimSpace(rec.Body.String()) == "" {
				t.Fatalf("%d without a reason", code)
			}
			if len(stored) > 0 {
				t.Fatalf("%d, yet %v stored: Alertmanager would drop what it thinks was refused", code, stored)
			}
		default:
			t.Fatalf("answered %d: %q", code, rec.Body.String())
		}
	})
}
