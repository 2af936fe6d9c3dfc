package intake

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/priority"
)

// These tests check what ApplyStore sends and how it reacts to answers;
// what the API server makes of an apply is tested against a real one
// elsewhere.

type applyCall struct {
	Namespace    string
	FieldManager string
	Force        bool
	// Neither may be sent: status belongs to the controllers, and a zero
	// creationTimestamp would be applied as null.
	HasStatus, HasCreationTimestamp bool
}

func TestApplyStore(t *testing.T) {
	missingNamespace := apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "shop")
	missingOther := apierrors.NewNotFound(schema.GroupResource{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"}, "incidents.riposte.dev")
	cases := []struct {
		reason        string
		fieldOwner    string
		defaultNS     string
		answers       map[string]error // by namespace applied to
		wantCalls     []applyCall
		wantNamespace string
		wantErr       string
	}{
		{
			reason:     "one forced apply under the field owner, without status or creationTimestamp",
			fieldOwner: "riposte-intake", defaultNS: "riposte-system",
			wantCalls:     []applyCall{{Namespace: "shop", FieldManager: "riposte-intake", Force: true}},
			wantNamespace: "shop",
		},
		{
			reason: "an empty field owner falls back to the default one", defaultNS: "riposte-system",
			wantCalls:     []applyCall{{Namespace: "shop", FieldManager: DefaultFieldOwner, Force: true}},
			wantNamespace: "shop",
		},
		{
			reason: "a missing namespace is retried once in the default namespace", fieldOwner: "o", defaultNS: "riposte-system",
			answers: map[string]error{"shop": missingNamespace},
			wantCalls: []applyCall{
				{Namespace: "shop", FieldManager: "o", Force: true},
				{Namespace: "riposte-system", FieldManager: "o", Force: true},
			},
			wantNamespace: "riposte-system",
		},
		{
			reason: "a failing retry reports both namespaces", fieldOwner: "o", defaultNS: "riposte-system",
			answers: map[string]error{"shop": missingNamespace, "riposte-system": errors.New("connection refused")},
			wantCalls: []applyCall{
				{Namespace: "shop", FieldManager: "o", Force: true},
				{Namespace: "riposte-system", FieldManager: "o", Force: true},
			},
			wantNamespace: "riposte-system",
			wantErr:       "storing incident riposte-system/am-ab12 (namespace shop does not exist): connection refused",
		},
		{
			reason: "any other NotFound is not retried", fieldOwner: "o", defaultNS: "riposte-system",
			answers:       map[string]error{"shop": missingOther},
			wantCalls:     []applyCall{{Namespace: "shop", FieldManager: "o", Force: true}},
			wantNamespace: "shop",
			wantErr:       "storing incident shop/am-ab12: customresourcedefinitions.apiextensions.k8s.io \"incidents.riposte.dev\" not found",
		},
		{
			reason: "without a default namespace nothing is retried", fieldOwner: "o",
			answers:       map[string]error{"shop": missingNamespace},
			wantCalls:     []applyCall{{Namespace: "shop", FieldManager: "o", Force: true}},
			wantNamespace: "shop",
			wantErr:       "storing incident shop/am-ab12: namespaces \"shop\" not found",
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			var calls []applyCall
			c := interceptor.NewClient(fake.NewClientBuilder().Build().(client.WithWatch), interceptor.Funcs{
				Apply: func(_ context.Context, _ client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
					b, err := json.Marshal(obj)
					if err != nil {
						return err
					}
					var sent struct {
						Metadata map[string]any `json:"metadata"`
						Status   any            `json:"status"`
					}
					if err := json.Unmarshal(b, &sent); err != nil {
						return err
					}
					o := (&client.ApplyOptions{}).ApplyOptions(opts)
					_, hasCreation := sent.Metadata["creationTimestamp"]
					ns, _ := sent.Metadata["namespace"].(string)
					calls = append(calls, applyCall{
						Namespace: ns, FieldManager: o.FieldManager, Force: o.Force != nil && *o.Force,
						HasStatus: sent.Status != nil, HasCreationTimestamp: hasCreation,
					})
					return tc.answers[ns]
				},
			})
			store := &ApplyStore{Client: c, FieldOwner: tc.fieldOwner, DefaultNamespace: tc.defaultNS}
			inc := IncidentFor(Alert{Status: "firing", Fingerprint: "ab12", Labels: map[string]string{"alertname": "A", "namespace": "shop"}}, "riposte-system")
			err := store.Upsert(context.Background(), inc)

			if tc.wantErr == "" && err != nil {
				t.Fatalf("Upsert: %v", err)
			}
			if tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr) {
				t.Fatalf("Upsert error = %v, want %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantCalls, calls); diff != "" {
				t.Errorf("applies sent (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantNamespace, inc.Namespace); diff != "" {
				t.Errorf("incident namespace after Upsert (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyStoreCountsRepeats(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := riposte.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	stored := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-ab", Namespace: "shop"}}
	seen := fake.NewClientBuilder().WithScheme(scheme).WithObjects(stored).Build()
	applier := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		Apply: func(context.Context, client.WithWatch, runtime.ApplyConfiguration, ...client.ApplyOption) error {
			return nil
		},
	}).Build()
	counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "dedup"})
	s := &ApplyStore{Client: applier, Seen: seen, Deduplicated: counter}
	for _, name := range []string{"am-ab", "am-cd", "am-ab"} {
		if err := s.Upsert(context.Background(), &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}}); err != nil {
			t.Fatal(err)
		}
	}
	m := &dto.Metric{}
	if err := counter.Write(m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 2 {
		t.Errorf("deduplicated = %v, want 2 (the two notifications about the stored am-ab)", got)
	}
}

// A refused apply onto an incident that is not this alert's is reported as
// a taken name, not as the alert's fault; any other refusal stays one.
func TestApplyStoreNamesAnImpostor(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := riposte.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	gr := schema.GroupResource{Group: "riposte.dev", Resource: "incidents"}
	immutable := apierrors.NewInvalid(schema.GroupKind{Group: "riposte.dev", Kind: "Incident"}, "am-ab12", nil)
	existing := func(source riposte.IncidentSource, fingerprint string) *riposte.Incident {
		return &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-ab12", Namespace: "shop"},
			Spec: riposte.IncidentSpec{Source: source, Fingerprint: fingerprint, AlertName: "x"}}
	}
	cases := []struct {
		reason    string
		existing  *riposte.Incident
		answer    error
		wantTaken *NameTakenError
	}{
		{
			reason: "a Manual incident under the alert's name", existing: existing(riposte.SourceManual, ""), answer: immutable,
			wantTaken: &NameTakenError{Namespace: "shop", Name: "am-ab12", Source: riposte.SourceManual},
		},
		{
			reason: "an admission policy forbids touching another alert's incident", existing: existing(riposte.SourceAlertmanager, "AB12"),
			answer:    apierrors.NewForbidden(gr, "am-ab12", errors.New("denied by policy")),
			wantTaken: &NameTakenError{Namespace: "shop", Name: "am-ab12", Source: riposte.SourceAlertmanager, Fingerprint: "AB12"},
		},
		{reason: "this alert's own incident refusing a bad value is the alert's fault", existing: existing(riposte.SourceAlertmanager, "ab12"), answer: immutable},
		{reason: "no incident of that name: the refusal is the alert's", answer: immutable},
		{reason: "a transient failure is not read into", existing: existing(riposte.SourceManual, ""), answer: errors.New("connection reset")},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(scheme)
			if tc.existing != nil {
				b = b.WithObjects(tc.existing)
			}
			c := b.WithInterceptorFuncs(interceptor.Funcs{
				Apply: func(context.Context, client.WithWatch, runtime.ApplyConfiguration, ...client.ApplyOption) error {
					return tc.answer
				},
			}).Build()
			inc := IncidentFor(Alert{Status: "firing", Fingerprint: "ab12", Labels: map[string]string{"alertname": "A", "namespace": "shop"}}, "riposte-system")
			err := (&ApplyStore{Client: c}).Upsert(context.Background(), inc)
			var taken *NameTakenError
			if !errors.As(err, &taken) {
				taken = nil
			}
			if diff := cmp.Diff(tc.wantTaken, taken); diff != "" {
				t.Errorf("name taken (-want +got):\n%s\nerror: %v", diff, err)
			}
			if tc.wantTaken == nil && !errors.Is(err, tc.answer) {
				t.Errorf("Upsert error = %v, want the API server's answer wrapped", err)
			}
		})
	}
}

// The API server's refusal by the CRD's rules on the alert's own times
// (stale, new episode) is told apart from any other refusal by its message,
// read from the answer alone.
func TestTimeRefusal(t *testing.T) {
	gk := schema.GroupKind{Group: "riposte.dev", Kind: "Incident"}
	inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-ab", Namespace: "shop"}}
	// As kube-apiserver words a failed x-kubernetes-validations rule on spec.
	staleMsg := riposte.StaleNotification + ": the alert fired at startsAt and was already stored as resolved at a later endsAt"
	stale := apierrors.NewInvalid(gk, "am-ab", field.ErrorList{field.Invalid(field.NewPath("spec"), field.OmitValueType{}, staleMsg)})
	both := apierrors.NewInvalid(gk, "am-ab", field.ErrorList{
		field.TooLong(field.NewPath("spec", "severity"), "", 63),
		field.Invalid(field.NewPath("spec"), field.OmitValueType{}, staleMsg),
	})
	episodeMsg := riposte.NewEpisode + ": the alert started again after its stored resolution"
	episode := apierrors.NewInvalid(gk, "am-ab", field.ErrorList{field.Invalid(field.NewPath("spec"), field.OmitValueType{}, episodeMsg)})
	other := apierrors.NewInvalid(gk, "am-ab", field.ErrorList{field.Invalid(field.NewPath("spec", "fingerprint"), "x", "fingerprint is immutable")})
	cases := []struct {
		reason string
		err    error
		want   error
	}{
		{reason: "the new-episode rule", err: episode, want: &NewEpisodeError{Namespace: "shop", Name: "am-ab", Detail: episodeMsg}},
		{reason: "the stale rule", err: stale, want: &StaleError{Namespace: "shop", Name: "am-ab", Detail: staleMsg}},
		{reason: "the stale rule beside another: kept as it was all the same", err: both, want: &StaleError{Namespace: "shop", Name: "am-ab", Detail: staleMsg}},
		{reason: "another rule", err: other},
		{reason: "the words echoed in another field's refusal", err: apierrors.NewInvalid(gk, "am-ab", field.ErrorList{
			field.Invalid(field.NewPath("spec", "labels", "x"), riposte.StaleNotification+": x", "must be no more than 63 characters")})},
		{reason: "the words echoed as a value of spec", err: apierrors.NewInvalid(gk, "am-ab", field.ErrorList{
			field.Invalid(field.NewPath("spec"), riposte.StaleNotification, "something else")})},
		{reason: "a refusal that is not Invalid", err: apierrors.NewForbidden(schema.GroupResource{Resource: "incidents"}, "am-ab", errors.New(staleMsg))},
		{reason: "no answer at all", err: errors.New("connection reset")},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, timeRefusal(inc, tc.err)); diff != "" {
				t.Errorf("timeRefusal (-want +got):\n%s", diff)
			}
		})
	}
}

// A resend of what the cache holds is not applied: Alertmanager repeats a
// group's alerts every group interval, and each would cost a write. Any
// difference in what intake owns is applied.
func TestApplyStoreSkipsIdenticalResends(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := riposte.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	startsAt := metav1.NewTime(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	alert := func(mutate func(*riposte.Incident)) *riposte.Incident {
		inc := IncidentFor(Alert{Status: "firing", Fingerprint: "ab", StartsAt: startsAt.Time,
			Labels: map[string]string{"alertname": "A", "namespace": "shop", "pod": "web"}, Annotations: map[string]string{"summary": "s"}}, "riposte-system")
		if mutate != nil {
			mutate(inc)
		}
		return inc
	}
	cases := []struct {
		reason    string
		stored    func(*riposte.Incident)
		sent      func(*riposte.Incident)
		wantApply bool
	}{
		{reason: "the same alert again", wantApply: false},
		{reason: "the same startsAt, sent with sub-second precision the API server does not keep",
			sent: func(i *riposte.Incident) {
				t := metav1.NewTime(startsAt.Add(400 * time.Millisecond))
				i.Spec.StartsAt = &t
			}, wantApply: false},
		{reason: "a person's own fields (spec.target, escalated) are not intake's",
			stored: func(i *riposte.Incident) { i.Spec.Escalated = true; i.Spec.TargetSetBy = "alice" }, wantApply: false},
		{reason: "a changed annotation", sent: func(i *riposte.Incident) { i.Spec.Annotations["summary"] = "t" }, wantApply: true},
		{reason: "a new label", sent: func(i *riposte.Incident) { i.Spec.Labels["container"] = "app" }, wantApply: true},
		{reason: "resolved", sent: func(i *riposte.Incident) {
			i.Spec.Status = riposte.AlertResolved
			end := metav1.NewTime(startsAt.Add(time.Hour))
			i.Spec.EndsAt = &end
		}, wantApply: true},
		{reason: "a stored incident without the record finalizer gets it",
			stored: func(i *riposte.Incident) { i.Finalizers = nil }, wantApply: true},
		{reason: "intake's labels differ", stored: func(i *riposte.Incident) { i.Labels[LabelAlertName] = "B" }, wantApply: true},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			seen := fake.NewClientBuilder().WithScheme(scheme).WithObjects(alert(tc.stored)).Build()
			applier, applies := countingApplier(scheme)
			s := &ApplyStore{Client: applier, Seen: seen}
			if err := s.Upsert(context.Background(), alert(tc.sent)); err != nil {
				t.Fatal(err)
			}
			if got := *applies == 1; got != tc.wantApply || *applies > 1 {
				t.Errorf("%d applies, want apply %v", *applies, tc.wantApply)
			}
		})
	}
}

// A resend that arrives before the cache shows the first apply is not
// applied again: intake remembers what it applied for a while.
func TestApplyStoreRemembersWhatItApplied(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := riposte.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	empty := fake.NewClientBuilder().WithScheme(scheme).Build() // a cache that has seen nothing yet
	applier, applies := countingApplier(scheme)
	s := &ApplyStore{Client: applier, Seen: empty}
	alert := func(status string) *riposte.Incident {
		a := Alert{Status: status, Fingerprint: "ab", StartsAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), Labels: map[string]string{"alertname": "A", "namespace": "shop"}}
		if status == "resolved" {
			a.EndsAt = a.StartsAt.Add(time.Hour)
		}
		return IncidentFor(a, "riposte-system")
	}
	for i, step := range []struct {
		status      string
		deleted     bool // the informer told of the incident's deletion first
		wantApplies int
	}{{"firing", false, 1}, {"firing", false, 1}, {"resolved", false, 2}, {"resolved", false, 2}, {"firing", false, 3},
		{"firing", true, 4}} {
		if step.deleted {
			s.ForgetDeleted(alert(step.status))
		}
		if err := s.Upsert(context.Background(), alert(step.status)); err != nil {
			t.Fatal(err)
		}
		if *applies != step.wantApplies {
			t.Errorf("after notification %d (%s): %d applies, want %d", i+1, step.status, *applies, step.wantApplies)
		}
	}
}

// An alert whose incident is being deleted is not merged into the object
// about to go (an apply would succeed and lose it): intake answers with an
// error, so Alertmanager sends it again and it is stored anew.
func TestApplyStoreRetriesAnIncidentBeingDeleted(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := riposte.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	alert := IncidentFor(Alert{Status: "firing", Fingerprint: "ab", StartsAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
		Labels: map[string]string{"alertname": "A", "namespace": "shop"}}, "riposte-system")
	deleting := alert.DeepCopy()
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	seen := fake.NewClientBuilder().WithScheme(scheme).WithObjects(deleting).Build()
	applier, applies := countingApplier(scheme)
	s := &ApplyStore{Client: applier, Seen: seen}
	err := s.Upsert(context.Background(), alert.DeepCopy())
	if err == nil || !strings.Contains(err.Error(), "is being deleted") || *applies != 0 {
		t.Errorf("Upsert = %v after %d applies, want an error saying the incident is being deleted, and no apply", err, *applies)
	}
}

// countingApplier is a client whose server-side applies succeed and are
// counted: what ApplyStore sends, not what an API server makes of it.
func countingApplier(scheme *runtime.Scheme) (client.Client, *int) {
	applies := new(int)
	c := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		Apply: func(context.Context, client.WithWatch, runtime.ApplyConfiguration, ...client.ApplyOption) error {
			*applies++
			return nil
		},
	}).Build()
	return c, applies
}

// While intake's apply is in flight, remediation passes beyond the first
// wait (internal/priority); once it is answered, they run again.
func TestApplyStoreGoesFirst(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := riposte.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	lanes := &priority.Lanes{}
	running, err := lanes.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer running()
	secondPass := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		done, err := lanes.Pass(ctx)
		if err == nil {
			done()
		}
		return err
	}
	var duringApply error
	applier := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		Apply: func(context.Context, client.WithWatch, runtime.ApplyConfiguration, ...client.ApplyOption) error {
			duringApply = secondPass()
			return nil
		},
	}).Build()
	s := &ApplyStore{Client: applier, Lanes: lanes}
	inc := IncidentFor(Alert{Status: "firing", Fingerprint: "ab", StartsAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
		Labels: map[string]string{"alertname": "A", "namespace": "shop", "pod": "web"}}, "riposte-system")
	if err := s.Upsert(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(duringApply, context.DeadlineExceeded) {
		t.Errorf("a second remediation pass during intake's apply: %v, want it held until the apply was answered", duringApply)
	}
	if err := secondPass(); err != nil {
		t.Errorf("a second remediation pass after intake's apply: %v, want it to run", err)
	}
}
