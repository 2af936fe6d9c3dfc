package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func gate() *riposte.ApprovalGate {
	return &riposte.ApprovalGate{
		ObjectMeta: metav1.ObjectMeta{Name: "am-1", Namespace: "shop"},
		Spec: riposte.ApprovalGateSpec{
			Incident: "am-1", Playbook: riposte.NamespacedName{Namespace: "shop", Name: "isolate"},
			Plan: riposte.Plan{Hash: "sha256:x", Steps: []riposte.PlannedStep{{Name: "isolate", Action: riposte.ActionIsolatePod,
				Changes: []riposte.PlannedChange{{Operation: riposte.OperationPatch, Object: riposte.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web"}, Summary: "label pod web"}}}}},
			Policy: riposte.GatePolicy{RequiredApprovals: 2},
		},
	}
}

func TestSendRetriesServerErrorsThenDelivers(t *testing.T) {
	var calls atomic.Int32
	var got Message
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&got)
	}))
	defer srv.Close()
	if err := (&Webhook{URL: srv.URL}).Send(context.Background(), GateWaiting(gate())); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Errorf("calls = %d, want a retry after the 502", calls.Load())
	}
	for _, want := range []string{"shop/am-1 waits for 2 approval(s)", "isolate: Patch Pod/shop/web", "kubectl riposte approve -n shop am-1"} {
		if !strings.Contains(got.Text, want) {
			t.Errorf("text %q lacks %q", got.Text, want)
		}
	}
}

func TestSendDoesNotRetryARefusal(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	if err := (&Webhook{URL: srv.URL}).Send(context.Background(), GateWaiting(gate())); err == nil || calls.Load() != 1 {
		t.Errorf("err = %v after %d calls, want one refused call", err, calls.Load())
	}
}
