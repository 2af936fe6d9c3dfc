package drift

import (
	"context"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
)

// summarise writes each playbook's status.drift: how many of its drift
// incidents are open and which kinds its rules watch, so `kubectl get
// playbooks` shows them. It writes only what changed, and only that field.
func (d *Detector) summarise(ctx context.Context) error {
	reg := d.registry()
	var incidents riposte.IncidentList
	if err := d.Client.List(ctx, &incidents, client.MatchingLabels{drift.LabelSource: drift.SourceDrift}, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	open := map[types.NamespacedName]int32{}
	for i := range incidents.Items {
		if inc := &incidents.Items[i]; drift.Open(inc) {
			open[types.NamespacedName{Namespace: inc.Spec.Drift.Playbook.Namespace, Name: inc.Spec.Drift.Playbook.Name}]++
		}
	}
	var playbooks riposte.PlaybookList
	if err := d.Client.List(ctx, &playbooks); err != nil {
		return err
	}
	for i := range playbooks.Items {
		pb := &playbooks.Items[i]
		key := types.NamespacedName{Namespace: pb.Namespace, Name: pb.Name}
		var want *riposte.PlaybookDriftStatus
		if e := reg.playbooks[key]; e != nil || open[key] > 0 {
			want = &riposte.PlaybookDriftStatus{OpenIncidents: open[key], Watching: watching(e, reg)}
		}
		if equality.Semantic.DeepEqual(want, pb.Status.Drift) || !pb.DeletionTimestamp.IsZero() {
			continue
		}
		before := pb.DeepCopy()
		pb.Status.Drift = want
		if err := d.Client.Status().Patch(ctx, pb, client.MergeFrom(before)); err != nil {
			return client.IgnoreNotFound(err)
		}
	}
	return nil
}

// watching names the kinds a playbook's rules judge or look up, and the
// PolicyReport kinds when it reads reports.
func watching(e *entry, reg *registry) []string {
	if e == nil {
		return nil
	}
	kinds := map[string]bool{}
	add := func(gvk schema.GroupVersionKind) { kinds[gvk.GroupKind().String()] = true }
	for _, r := range e.rules {
		for _, gvk := range r.Kinds() {
			add(gvk)
		}
		for _, gvk := range r.Lookups {
			add(gvk)
		}
	}
	if len(e.playbook.Spec.Triggers.PolicyReports) > 0 {
		for gvk := range reg.reportKinds {
			add(gvk)
		}
	}
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
