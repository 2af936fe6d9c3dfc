package intake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/priority"
)

// DefaultFieldOwner is the server-side apply field manager used when
// ApplyStore.FieldOwner is empty; the API server refuses an apply without one.
const DefaultFieldOwner = "riposte-intake"

// Store keeps an alert's Incident.
type Store interface {
	// Upsert creates or updates the incident's spec. When the incident had to
	// be stored elsewhere than asked, Upsert sets inc.Namespace to where it
	// was stored, so the caller can report it.
	Upsert(ctx context.Context, inc *riposte.Incident) error
}

// ApplyStore stores incidents with one server-side apply each: create or
// update in a single request, owning only the fields intake sets, so the
// controllers' status and other managers' fields are left alone.
type ApplyStore struct {
	Client           client.Client
	FieldOwner       string
	DefaultNamespace string
	// Seen, when set with Deduplicated, is a cached reader used to count
	// notifications about alerts already stored, without a request.
	Seen         client.Reader
	Deduplicated prometheus.Counter
	// Lanes, when set, holds remediation back while an apply is in flight.
	Lanes *priority.Lanes

	// applied remembers what this process applied lately, for resends that
	// arrive before the cache shows the first one.
	mu      sync.Mutex
	applied map[client.ObjectKey]appliedAlert
	// applying holds, per incident, the apply under way: a resend waits for
	// it rather than applying the same alert beside it.
	applying map[client.ObjectKey]chan struct{}
}

// appliedAlert is an incident as intake applied it, and when.
type appliedAlert struct {
	inc *riposte.Incident
	at  time.Time
}

// recentlyApplied bounds how long an apply is remembered: long enough for
// the cache to catch up under load. Intake alone writes the fields it
// compares (an admission policy freezes them for everyone else), so what it
// applied is what is stored, unless the incident was deleted since; a
// resend in that window is then not stored again, as when the cache lags.
const recentlyApplied = 10 * time.Second

func (s *ApplyStore) remember(inc *riposte.Incident, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied == nil {
		s.applied = map[client.ObjectKey]appliedAlert{}
	}
	if len(s.applied) >= 1024 {
		for k, a := range s.applied {
			if now.Sub(a.at) > recentlyApplied {
				delete(s.applied, k)
			}
		}
		if len(s.applied) >= maxRemembered {
			clear(s.applied) // a storm of distinct alerts: the cache answers for them soon
		}
	}
	s.applied[client.ObjectKeyFromObject(inc)] = appliedAlert{inc: inc.DeepCopy(), at: now}
}

// turn waits until no other notification about the incident is being
// stored by this process, then takes its turn; done ends it.
func (s *ApplyStore) turn(ctx context.Context, key client.ObjectKey) (done func(), err error) {
	for {
		s.mu.Lock()
		busy, ok := s.applying[key]
		if !ok {
			if s.applying == nil {
				s.applying = map[client.ObjectKey]chan struct{}{}
			}
			mine := make(chan struct{})
			s.applying[key] = mine
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.applying, key)
				s.mu.Unlock()
				close(mine)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// maxRemembered bounds the applies remembered, whatever their age.
const maxRemembered = 4096

// Forget drops what intake remembers applying under key: the incident was
// deleted, so a resend must be stored again.
func (s *ApplyStore) Forget(key client.ObjectKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.applied, key)
}

// ForgetDeleted is an informer's delete handler: it forgets what intake
// applied under the deleted incident's name.
func (s *ApplyStore) ForgetDeleted(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if inc, ok := obj.(*riposte.Incident); ok {
		s.Forget(client.ObjectKeyFromObject(inc))
	}
}

// lastApplied is what this process applied under inc's name in the last
// recentlyApplied, or nil.
func (s *ApplyStore) lastApplied(inc *riposte.Incident, now time.Time) *riposte.Incident {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.applied[client.ObjectKeyFromObject(inc)]
	if !ok || now.Sub(a.at) > recentlyApplied {
		return nil
	}
	return a.inc
}

var _ Store = (*ApplyStore)(nil)

// Upsert implements Store. An alert naming a namespace that does not exist
// lands in DefaultNamespace rather than being lost.
//
// An alert that fires again after its incident was stored as resolved is a
// new episode: the API server refuses to reopen the incident (the CRD's
// rules on the alert's own times), whose record stays as it was, and the
// alert is stored under its episode's name (EpisodeName), so it is answered
// and remediated as a new incident. Inc.Name is set to the name it was
// stored under.
func (s *ApplyStore) Upsert(ctx context.Context, inc *riposte.Incident) error {
	if s.episodeStored(ctx, inc) {
		// The notification of a later episode goes straight to its own
		// incident: no refused write first, and no second incident for it
		// if the first episode's was deleted since.
		inc.Name = EpisodeName(inc.Spec.Fingerprint, inc.Spec.StartsAt.Time)
		return s.upsert(ctx, inc)
	}
	err := s.upsert(ctx, inc)
	var again *NewEpisodeError
	if errors.As(err, &again) && inc.Spec.StartsAt != nil {
		inc.Name = EpisodeName(inc.Spec.Fingerprint, inc.Spec.StartsAt.Time)
		err = s.upsert(ctx, inc)
		if errors.As(err, &again) {
			// Only the first episode's incident can refuse so.
			return fmt.Errorf("storing incident %s/%s: %w", inc.Namespace, inc.Name, err)
		}
	}
	return err
}

func (s *ApplyStore) upsert(ctx context.Context, inc *riposte.Incident) error {
	done, err := s.turn(ctx, client.ObjectKeyFromObject(inc))
	if err != nil {
		return err
	}
	defer done()
	now := time.Now()
	stored, mine := s.cached(ctx, inc), s.lastApplied(inc, now)
	if (stored != nil || mine != nil) && s.Deduplicated != nil {
		s.Deduplicated.Inc()
	}
	deleting := stored != nil && stored.DeletionTimestamp != nil
	if deleting {
		// An apply would merge the alert into an object about to go, and
		// answer 200 for it: Alertmanager is asked to send it again once
		// the incident is gone, and it is then stored anew.
		return fmt.Errorf("incident %s/%s is being deleted; the alert is stored once it is gone", inc.Namespace, inc.Name)
	}
	for _, known := range []*riposte.Incident{mine, stored} {
		if known != nil && !deleting && sameAlert(known, inc) {
			// A resend of what is stored (Alertmanager repeats every group
			// interval): nothing to write. A cache that lags can only hold
			// an older notification, which the API server would refuse to
			// go back to anyway (the CRD's rules on the alert's times).
			inc.UID = known.UID
			return nil
		}
	}
	err = s.apply(ctx, inc)
	if err == nil {
		s.remember(inc, now)
	}
	if err != nil && isMissingNamespace(err) && s.DefaultNamespace != "" && inc.Namespace != s.DefaultNamespace {
		missing := inc.Namespace
		inc.Namespace = s.DefaultNamespace
		if err = s.apply(ctx, inc); err != nil {
			if refusal := timeRefusal(inc, err); refusal != nil {
				return refusal
			}
			if taken := s.nameTaken(ctx, inc, err); taken != nil {
				return taken
			}
			return fmt.Errorf("storing incident %s/%s (namespace %s does not exist): %w", inc.Namespace, inc.Name, missing, err)
		}
		s.remember(inc, now)
		return nil
	}
	if err != nil {
		if refusal := timeRefusal(inc, err); refusal != nil {
			return refusal
		}
		if taken := s.nameTaken(ctx, inc, err); taken != nil {
			return taken
		}
		return fmt.Errorf("storing incident %s/%s: %w", inc.Namespace, inc.Name, err)
	}
	return nil
}

// StaleError says the API server kept the incident as it was because the
// notification is older than what it holds (the CRD's transition rules on
// the alert's own times). The alert is known and nothing is lost, so intake
// answers it as stored.
type StaleError struct {
	Namespace, Name string
	// Detail is the API server's reason.
	Detail string
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("incident %s/%s kept as it was: %s", e.Namespace, e.Name, e.Detail)
}

// NewEpisodeError says the API server kept the incident as it was because
// the alert fired again after the incident's stored resolution: a new
// episode, for a new incident.
type NewEpisodeError struct {
	Namespace, Name string
	// Detail is the API server's reason.
	Detail string
}

func (e *NewEpisodeError) Error() string {
	return fmt.Sprintf("incident %s/%s kept as it was: %s", e.Namespace, e.Name, e.Detail)
}

// timeRefusal recognises the rules on the alert's own times in the API
// server's refusal: a *StaleError or a *NewEpisodeError, or nil. It is read
// from the answer, not by asking again, so that the check and the write are
// one atomic step and cost one request.
func timeRefusal(inc *riposte.Incident, err error) error {
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) || status.Status().Details == nil {
		return nil
	}
	for _, c := range status.Status().Details.Causes {
		// Only the rules on spec as a whole, as the API server words them,
		// so that no value echoed in another field's refusal is taken for one.
		msg, onSpec := strings.CutPrefix(c.Message, specRuleRefusal)
		if c.Field != "spec" || !onSpec {
			continue
		}
		switch {
		case strings.HasPrefix(msg, riposte.StaleNotification):
			return &StaleError{Namespace: inc.Namespace, Name: inc.Name, Detail: msg}
		case strings.HasPrefix(msg, riposte.NewEpisode):
			return &NewEpisodeError{Namespace: inc.Namespace, Name: inc.Name, Detail: msg}
		}
	}
	return nil
}

// specRuleRefusal starts the API server's message for a failed rule on an
// object (x-kubernetes-validations on spec): the value is left out, so the
// rule's message follows; an echoed value would follow quoted.
const specRuleRefusal = "Invalid value: "

// NameTakenError says that the alert's incident name is held by an object
// that is not this alert's: another source, or another fingerprint. Intake
// never overwrites it, and the alert is not lost: the answer is a 5xx, so
// Alertmanager keeps retrying until someone removes the impostor.
type NameTakenError struct {
	Namespace, Name string
	// Source and Fingerprint are the existing incident's.
	Source      riposte.IncidentSource
	Fingerprint string
}

func (e *NameTakenError) Error() string {
	return fmt.Sprintf("incident %s/%s exists but is not this alert's (its source is %s, its fingerprint %q); "+
		"it was left as is and the alert is not stored until it is removed", e.Namespace, e.Name, e.Source, e.Fingerprint)
}

// nameTaken explains a refused apply: when the incident of that name exists
// and belongs to something else, the refusal (the immutable source or
// fingerprint, or an admission policy guarding what intake observed) is
// about that object, not about the alert, so it is not the alert's fault.
// Only a refusal is checked, so storing costs no extra read.
func (s *ApplyStore) nameTaken(ctx context.Context, inc *riposte.Incident, err error) *NameTakenError {
	if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) {
		return nil
	}
	existing := &riposte.Incident{}
	// Its own time: the write may have used the alert's, and a failed read
	// here would leave the refusal taken as the alert's own (a 400).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultStoreTimeout)
	defer cancel()
	if s.Client.Get(ctx, client.ObjectKeyFromObject(inc), existing) != nil {
		return nil
	}
	if existing.Spec.Source == riposte.SourceAlertmanager && existing.Spec.Fingerprint == inc.Spec.Fingerprint {
		return nil
	}
	return &NameTakenError{Namespace: inc.Namespace, Name: inc.Name, Source: existing.Spec.Source, Fingerprint: existing.Spec.Fingerprint}
}

// episodeStored reports whether the cache holds an incident for the
// alert's episode: it fired again after its first incident resolved.
func (s *ApplyStore) episodeStored(ctx context.Context, inc *riposte.Incident) bool {
	if s.Seen == nil || inc.Spec.StartsAt == nil {
		return false
	}
	key := client.ObjectKey{Namespace: inc.Namespace, Name: EpisodeName(inc.Spec.Fingerprint, inc.Spec.StartsAt.Time)}
	return s.Seen.Get(ctx, key, &riposte.Incident{}, client.DisableReadYourWritesConsistency) == nil
}

// cached is the incident as the cache holds it, nil when it holds none.
func (s *ApplyStore) cached(ctx context.Context, inc *riposte.Incident) *riposte.Incident {
	if s.Seen == nil {
		return nil
	}
	existing := &riposte.Incident{}
	if s.Seen.Get(ctx, client.ObjectKeyFromObject(inc), existing, client.DisableReadYourWritesConsistency) != nil {
		return nil
	}
	return existing
}

// sameAlert reports whether applying inc would change nothing intake owns
// in stored: the alert's fields, intake's labels and the record finalizer.
func sameAlert(stored, inc *riposte.Incident) bool {
	if stored.DeletionTimestamp != nil {
		return false // being deleted: not stored for this alert any more
	}
	a, b := &stored.Spec, &inc.Spec
	if a.Source != b.Source || a.AlertName != b.AlertName || a.Fingerprint != b.Fingerprint || a.Severity != b.Severity ||
		a.Status != b.Status || a.GeneratorURL != b.GeneratorURL ||
		!maps.Equal(a.Labels, b.Labels) || !maps.Equal(a.Annotations, b.Annotations) ||
		!sameTime(a.StartsAt, b.StartsAt) || !sameTime(a.EndsAt, b.EndsAt) {
		return false
	}
	for k, v := range inc.Labels {
		if stored.Labels[k] != v {
			return false
		}
	}
	for _, f := range inc.Finalizers {
		if !slices.Contains(stored.Finalizers, f) {
			return false
		}
	}
	return true
}

// sameTime compares times as they are stored: to the second.
func sameTime(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Truncate(time.Second).Equal(b.Truncate(time.Second))
}

func (s *ApplyStore) apply(ctx context.Context, inc *riposte.Incident) error {
	u, err := ApplyObject(inc)
	if err != nil {
		return err
	}
	owner := s.FieldOwner
	if owner == "" {
		owner = DefaultFieldOwner
	}
	defer s.Lanes.Storing()()
	if err := s.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(owner), client.ForceOwnership); err != nil {
		return err
	}
	// The answer names the stored object, which Events about it need.
	inc.UID = u.GetUID()
	return nil
}

// ApplyObject is intake's apply configuration of an incident: its metadata
// and spec, as the object the answer is decoded into.
func ApplyObject(inc *riposte.Incident) (*unstructured.Unstructured, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(inc)
	if err != nil {
		return nil, fmt.Errorf("converting to unstructured: %w", err)
	}
	u := &unstructured.Unstructured{Object: obj}
	// Status belongs to the controllers; a zero creationTimestamp would be
	// applied as null. Neither may be part of intake's apply configuration.
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}

// isMissingNamespace tells a missing namespace apart from any other NotFound.
func isMissingNamespace(err error) bool {
	if !apierrors.IsNotFound(err) {
		return false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	details := status.Status().Details
	return details != nil && details.Kind == "namespaces"
}
