package executor

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
	"github.com/riposte-dev/riposte/internal/notify"
)

// A transient error leaves the change not done and is not permanent, so the
// reconcile retries with backoff; the retry makes only what is left. A
// permanent refusal is reported as such. (What the API server answers is
// tested against a real one in controllers/ and test/e2e.)
func TestRunRetriesTransientErrorsFromWhereItStopped(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}}
	failures := map[string]error{"second": apierrors.NewServiceUnavailable("etcd is busy")}
	var patched []string
	w := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			b, _ := patch.Data(obj)
			key := string(b)
			for name, err := range failures {
				if strings.Contains(key, name) {
					delete(failures, name)
					return err
				}
			}
			patched = append(patched, key)
			return c.Patch(ctx, obj, patch, opts...)
		},
	}).Build()
	e := &Executor{Writer: w, Scheme: scheme}
	change := func(label string) riposte.ChangeRecord {
		return riposte.ChangeRecord{Method: "MergePatch", Object: riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web"},
			Request: `{"metadata":{"labels":{"step":"` + label + `"}}}`}
	}
	rec := &riposte.StepRecord{Name: "s", Changes: []riposte.ChangeRecord{change("first"), change("second"), change("third")}}
	persist := func(context.Context) error { return nil }

	err := e.Run(context.Background(), rec, "shop/am/s", persist)
	if err == nil || IsPermanent(err) {
		t.Fatalf("first run: %v, want a transient error", err)
	}
	if !rec.Changes[0].Done || rec.Changes[1].Done || rec.Changes[2].Done {
		t.Fatalf("after the transient error, done = %v %v %v; want only the first", rec.Changes[0].Done, rec.Changes[1].Done, rec.Changes[2].Done)
	}
	if err := e.Run(context.Background(), rec, "shop/am/s", persist); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if len(patched) != 3 {
		t.Errorf("patches made = %v, want each change once", patched)
	}
	for i, c := range rec.Changes {
		if !c.Done {
			t.Errorf("change %d not done after the retry", i)
		}
	}

	failures["forbidden"] = apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "web", nil)
	rec = &riposte.StepRecord{Name: "s", Changes: []riposte.ChangeRecord{change("forbidden")}}
	if err := e.Run(context.Background(), rec, "shop/am/s", persist); !IsPermanent(err) {
		t.Errorf("a forbidden answer: %v, want a permanent error", err)
	}
}

// A Notify step's failure is permanent when notify says so, or once the
// step has been retrying for longer than NotifyGiveUpAfter; a transient
// one before that is retried with the reconcile's backoff.
func TestNotifyFailuresEndTheStep(t *testing.T) {
	transient := &notify.Error{Msg: "notification webhook answered 503"}
	refused := &notify.Error{Msg: `host "x" is not an allowed notification destination`, Permanent: true}
	cases := []struct {
		reason        string
		postErr       error
		startedAgo    time.Duration
		wantPermanent bool
	}{
		{reason: "a disallowed host fails the step at once", postErr: refused, wantPermanent: true},
		{reason: "a 503 is retried", postErr: transient, startedAgo: time.Minute},
		{reason: "a 503 after the step tried for too long fails it", postErr: transient, startedAgo: NotifyGiveUpAfter + time.Second, wantPermanent: true},
		{reason: "any transient failure after too long fails it", postErr: errors.New("connection reset"), startedAgo: NotifyGiveUpAfter + time.Second, wantPermanent: true},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			scheme := runtime.NewScheme()
			_ = clientgoscheme.AddToScheme(scheme)
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: "shop"}, Data: map[string][]byte{"url": []byte("https://x/hook")}}
			e := &Executor{Writer: fake.NewClientBuilder().WithScheme(scheme).WithObjects(secret).Build(),
				Post: func(context.Context, string, any, string) error { return tc.postErr }}
			req, _ := json.Marshal(sendRequest{Namespace: "shop", Secret: riposte.SecretKeyRef{Name: "chat", Key: "url"}, Body: map[string]any{"text": "x"}})
			started := metav1.NewTime(time.Now().Add(-tc.startedAgo))
			rec := &riposte.StepRecord{Name: "tell", StartedAt: &started,
				Changes: []riposte.ChangeRecord{{Method: string(actions.Send), Request: string(req)}}}
			err := e.Run(context.Background(), rec, "shop/inc/tell", func(context.Context) error { return nil })
			if err == nil || IsPermanent(err) != tc.wantPermanent {
				t.Errorf("Run error = %v (permanent %v), want permanent %v", err, IsPermanent(err), tc.wantPermanent)
			}
			if rec.Changes[0].Done {
				t.Error("a failed message is marked done")
			}
		})
	}
}
