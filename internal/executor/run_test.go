package executor

import (
	"context"
	"strings"
	"testing"

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
