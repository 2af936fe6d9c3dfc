package controllers_test

import (
	"context"
	"fmt"
	"io"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/intake"
)

type token string

// intakeServer serves the Alertmanager webhook as the manager does, storing
// as Riposte's own account, with the bearer token t0ken.
func intakeServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(&intake.Handler{
		Store:            &intake.ApplyStore{Client: intakeClient, FieldOwner: "riposte-intake", DefaultNamespace: operatorNamespace},
		Token:            token("t0ken"),
		DefaultNamespace: operatorNamespace,
		Log:              logr.Discard(),
	})
	t.Cleanup(srv.Close)
	return srv
}

func (t token) Token(context.Context) ([]byte, error) { return []byte(t), nil }

// Intake stores what Alertmanager sends on the real API server: one incident
// per alert, repeats change nothing, resolution is recorded, and what the API
// server refuses is answered 400 without touching what is stored.
func TestIntakeStoresIncidentsOnTheAPIServer(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	srv := intakeServer(t)
	send := func(body string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer t0ken")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	notification := func(status, namespace, fingerprint, extra string) string {
		return fmt.Sprintf(`{"version":"4","status":%q,"alerts":[{"status":%q,"fingerprint":%q,
			"labels":{"alertname":"ContainerShell","severity":"warning","namespace":%q%s},
			"startsAt":"2026-11-26T10:00:00Z","endsAt":"2026-11-26T10:05:00Z"}]}`, status, status, fingerprint, namespace, extra)
	}

	if code := send(notification("firing", ns, "c0ffee01", "")); code != 200 {
		t.Fatalf("first notification: %d", code)
	}
	inc, err := getIncident(ctx, ns, "am-c0ffee01")
	if err != nil {
		t.Fatalf("the incident is stored before the 200: %v", err)
	}
	if inc.Spec.Source != riposte.SourceAlertmanager || inc.Spec.Severity != "warning" || inc.Spec.Status != riposte.AlertFiring ||
		inc.Spec.StartsAt == nil || inc.Spec.EndsAt != nil || inc.Labels["riposte.dev/source"] != "alertmanager" {
		t.Errorf("stored incident = %+v %v", inc.Spec, inc.Labels)
	}

	if code := send(notification("firing", ns, "c0ffee01", "")); code != 200 {
		t.Fatalf("repeat: %d", code)
	}
	again, _ := getIncident(ctx, ns, "am-c0ffee01")
	if again.Generation != inc.Generation || again.UID != inc.UID {
		t.Errorf("a repeated notification changed the incident: generation %d -> %d", inc.Generation, again.Generation)
	}

	if code := send(notification("resolved", ns, "c0ffee01", "")); code != 200 {
		t.Fatalf("resolution: %d", code)
	}
	resolved, _ := getIncident(ctx, ns, "am-c0ffee01")
	if resolved.Spec.Status != riposte.AlertResolved || resolved.Spec.EndsAt == nil || resolved.UID != inc.UID {
		t.Errorf("after resolution: status %s endsAt %v", resolved.Spec.Status, resolved.Spec.EndsAt)
	}

	// A namespace that does not exist: stored in Riposte's namespace, not lost.
	if code := send(notification("firing", "no-such-namespace", "c0ffee02", "")); code != 200 {
		t.Fatalf("unknown namespace: %d", code)
	}
	if _, err := getIncident(ctx, operatorNamespace, "am-c0ffee02"); err != nil {
		t.Errorf("incident for an unknown namespace: %v", err)
	}

	// The API server refuses a 64+ character severity: 400, and the stored
	// incident keeps its spec.
	long := `,"severity2":"x"`
	bad := strings.Replace(notification("firing", ns, "c0ffee01", long), `"severity":"warning"`, `"severity":"`+strings.Repeat("s", 70)+`"`, 1)
	if code := send(bad); code != 400 {
		t.Errorf("an incident the API server refuses: %d, want 400", code)
	}
	kept, _ := getIncident(ctx, ns, "am-c0ffee01")
	if kept.Spec.Severity != "warning" || kept.Spec.Status != riposte.AlertResolved {
		t.Errorf("the refused notification changed the stored incident: %+v", kept.Spec)
	}
}

// An incident a person created under an alert's name is never taken over:
// that alert is answered 500 saying why, so Alertmanager retries rather than
// drops the notification, and the notification's other alerts are stored,
// fingerprints differing only in case as distinct incidents.
func TestIntakeNeverTakesOverAnIncidentItDidNotStore(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	srv := intakeServer(t)

	squatted := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-c0ffee10", Namespace: ns},
		Spec: riposte.IncidentSpec{Source: riposte.SourceManual, AlertName: "Decoy", RequestedBy: "dave"}}
	// The admission policy keeps am- names for Riposte (see
	// TestAttackSquattingAnAlertsName); dave's incident under that name is
	// what a cluster holds from before the policy, so it is stored here by
	// the one identity the policy lets through.
	if err := people["dave"].Create(ctx, squatted.DeepCopy()); !apierrors.IsForbidden(err) {
		t.Fatalf("dave pre-creating the alert's incident: %v, want Forbidden", err)
	}
	if err := intakeClient.Create(ctx, squatted); err != nil {
		t.Fatal(err)
	}

	alert := func(fingerprint string) string {
		return fmt.Sprintf(`{"status":"firing","fingerprint":%q,"labels":{"alertname":"ContainerShell","namespace":%q}}`, fingerprint, ns)
	}
	body := `{"version":"4","status":"firing","alerts":[` + alert("c0ffee10") + "," + alert("ABCDEF11") + "," + alert("abcdef11") + `]}`
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t0ken")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(answer), "am-c0ffee10 exists but is not this alert's (its source is Manual") {
		t.Errorf("answer = %d %s, want 500 naming the incident that holds the name", resp.StatusCode, answer)
	}

	kept, err := getIncident(ctx, ns, "am-c0ffee10")
	if err != nil || kept.Spec.Source != riposte.SourceManual || kept.Spec.AlertName != "Decoy" || kept.UID != squatted.UID {
		t.Errorf("the person's incident was changed: %v %+v", err, kept.Spec)
	}
	for _, fingerprint := range []string{"ABCDEF11", "abcdef11"} {
		inc, err := getIncident(ctx, ns, intake.IncidentName(fingerprint))
		if err != nil {
			t.Errorf("the alert %s beside the refused one was not stored: %v", fingerprint, err)
			continue
		}
		if inc.Spec.Fingerprint != fingerprint {
			t.Errorf("incident %s holds fingerprint %q, want %q verbatim", inc.Name, inc.Spec.Fingerprint, fingerprint)
		}
	}
	if intake.IncidentName("abcdef11") != "am-abcdef11" {
		t.Errorf("a lowercase fingerprint is named %s, want am-abcdef11", intake.IncidentName("abcdef11"))
	}
}
