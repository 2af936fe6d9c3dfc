package drift

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
)

// IndexOpenBySource indexes open drift incidents by the object they were
// read from, so judging an object finds its incidents without a scan.
func IndexOpenBySource(obj client.Object) []string {
	inc := obj.(*riposte.Incident)
	if !drift.Open(inc) {
		return nil
	}
	return []string{drift.SourceKey(inc.Spec.Drift.Source)}
}

// maxOccurrences bounds how many times one object may break one rule anew
// (each after the last was resolved) before Riposte stops opening incidents
// for it and says so.
const maxOccurrences = 100

// sync brings the incidents read from one source in line with its
// findings: each new finding opens an incident; each open incident no
// finding backs any more is resolved with the reason resolution gives,
// unless it gives none or the rule is gone (the sweep closes those with
// that reason).
func (d *Detector) sync(ctx context.Context, reg *registry, source riposte.ObjectReference, findings []drift.Finding, resolution func(*riposte.Incident) string) error {
	var open riposte.IncidentList
	// Not copied: an Incident carries its whole context and timeline, and
	// only the one resolved is changed (resolve copies it).
	if err := d.Client.List(ctx, &open, client.MatchingFields{drift.IndexSource: drift.SourceKey(source)}, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	want := map[string]drift.Finding{}
	for _, f := range findings {
		want[f.Key()] = f
	}
	for i := range open.Items {
		inc := &open.Items[i]
		if !drift.Open(inc) || inc.Spec.Target == nil {
			continue
		}
		key := drift.Finding{Playbook: types.NamespacedName{Namespace: inc.Spec.Drift.Playbook.Namespace, Name: inc.Spec.Drift.Playbook.Name},
			Rule: inc.Spec.Drift.Rule, Target: *inc.Spec.Target}.Key()
		if _, found := want[key]; found {
			delete(want, key)
			continue
		}
		why := resolution(inc)
		if !reg.covers(inc) || why == "" {
			continue
		}
		if err := d.resolve(ctx, inc, why); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := d.open(ctx, want[k]); err != nil {
			return err
		}
	}
	return nil
}

// open stores the incident for a finding under its deterministic name: the
// first occurrence's, or the next one's when earlier ones were resolved.
func (d *Detector) open(ctx context.Context, f drift.Finding) error {
	for occurrence := 1; occurrence <= maxOccurrences; occurrence++ {
		key := client.ObjectKey{Namespace: drift.IncidentNamespace(f), Name: drift.IncidentName(f, occurrence)}
		var existing riposte.Incident
		err := d.Client.Get(ctx, key, &existing)
		switch {
		case apierrors.IsNotFound(err):
			inc := drift.IncidentFor(f, occurrence, metav1.Now())
			if err := d.Client.Create(ctx, inc); err != nil {
				if apierrors.IsAlreadyExists(err) {
					// Stored by an earlier pass the cache has not shown yet.
					return fmt.Errorf("incident %s exists but is not cached yet: %w", key, err)
				}
				if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
					return nil // its namespace is being deleted: nothing to record there
				}
				return fmt.Errorf("opening drift incident %s: %w", key, err)
			}
			incidentsOpened.Inc()
			d.queue.AddAfter(item{summary: true}, summaryDelay)
			d.log.Info("drift incident opened", "incident", key.String(), "rule", f.Rule, "target", f.Target.String())
			return nil
		case err != nil:
			return err
		case drift.Open(&existing):
			return nil
		}
	}
	d.log.Info("an object broke a rule too many times; no further incident opened", "rule", f.Rule, "target", f.Target.String(), "limit", maxOccurrences)
	return nil
}

// resolve ends a drift incident by the detector's word, with why. inc may
// be the cache's own object: it is copied, never changed.
func (d *Detector) resolve(ctx context.Context, cached *riposte.Incident, resolution string) error {
	before := cached.DeepCopy()
	inc := before.DeepCopy()
	now := metav1.Now()
	inc.Spec.Status = riposte.AlertResolved
	inc.Spec.EndsAt = &now
	inc.Spec.Drift.Resolution = resolution
	if err := d.Client.Patch(ctx, inc, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(err)
	}
	incidentsResolved.WithLabelValues(resolution).Inc()
	d.queue.AddAfter(item{summary: true}, summaryDelay)
	d.log.Info("drift incident resolved", "incident", client.ObjectKeyFromObject(inc).String(), "resolution", resolution)
	return nil
}

// get reads one object from the cache as a map; nil when it does not exist
// or is being deleted.
func (d *Detector) get(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) (map[string]any, error) {
	obj, err := d.read(ctx, gvk, namespace, name)
	if err != nil || obj == nil {
		return nil, err
	}
	return toMap(obj, gvk)
}

// read reads one object from the cache, not copied: callers only read it.
// nil when it does not exist or is being deleted.
func (d *Detector) read(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) (client.Object, error) {
	obj := d.newObject(gvk)
	if err := d.Cache.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return nil, nil
	}
	return obj, nil
}

// list reads every object of a kind in a namespace ("" for all) from the
// cache, without copying them: callers only read.
func (d *Detector) list(ctx context.Context, gvk schema.GroupVersionKind, namespace string) ([]client.Object, error) {
	l := d.newList(gvk)
	if err := d.Cache.List(ctx, l, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(l)
	if err != nil {
		return nil, err
	}
	out := make([]client.Object, 0, len(items))
	for _, it := range items {
		if o, ok := it.(client.Object); ok && o.GetDeletionTimestamp().IsZero() {
			out = append(out, o)
		}
	}
	return out, nil
}

// toMap is the object as a rule sees it: as the API serves it, with its
// apiVersion and kind (cached typed objects carry neither).
func toMap(obj client.Object, gvk schema.GroupVersionKind) (map[string]any, error) {
	var m map[string]any
	if u, ok := obj.(*unstructured.Unstructured); ok {
		m = u.UnstructuredContent()
	} else {
		var err error
		if m, err = runtime.DefaultUnstructuredConverter.ToUnstructured(obj); err != nil {
			return nil, err
		}
	}
	out := make(map[string]any, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	out["apiVersion"], out["kind"] = gvk.GroupVersion().String(), gvk.Kind
	return out, nil
}
