package drift

import (
	"context"
	"maps"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
)

var namespaceKind = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}

// registry is the rules in force, indexed the ways events need them. It is
// replaced whole when playbooks change, never edited in place.
type registry struct {
	// playbooks in use, by name, with their rules.
	playbooks map[types.NamespacedName]*entry
	byKind    map[schema.GroupVersionKind][]*drift.Rule
	// lookedUpBy lists the rules that read a kind through a lookup.
	lookedUpBy map[schema.GroupVersionKind][]*drift.Rule
	namespaced map[schema.GroupVersionKind]bool
	// namespaceDependent are the namespaced kinds whose rules read their
	// namespace: a namespace's change re-judges its objects of these kinds.
	namespaceDependent map[schema.GroupVersionKind]bool
	reportKinds        map[schema.GroupVersionKind]bool
	reportPlaybooks    []*riposte.Playbook
	// reads are, for each judged kind, the kinds judging one of its objects
	// may read besides the object: its Namespace, the rules' lookups, and a
	// workload's owner.
	reads map[schema.GroupVersionKind]map[schema.GroupVersionKind]bool
}

type entry struct {
	playbook *riposte.Playbook
	rules    map[string]*drift.Rule
	// namespaced says, for every kind the rules name, whether it is namespaced.
	namespaced map[schema.GroupVersionKind]bool
}

func newRegistry() *registry {
	return &registry{
		playbooks:          map[types.NamespacedName]*entry{},
		byKind:             map[schema.GroupVersionKind][]*drift.Rule{},
		lookedUpBy:         map[schema.GroupVersionKind][]*drift.Rule{},
		namespaced:         map[schema.GroupVersionKind]bool{},
		namespaceDependent: map[schema.GroupVersionKind]bool{},
		reportKinds:        map[schema.GroupVersionKind]bool{},
		reads:              map[schema.GroupVersionKind]map[schema.GroupVersionKind]bool{},
	}
}

func (r *registry) add(e *entry) {
	r.playbooks[types.NamespacedName{Namespace: e.playbook.Namespace, Name: e.playbook.Name}] = e
	for gvk, ns := range e.namespaced {
		r.namespaced[gvk] = ns
	}
	for _, rule := range e.rules {
		readsNamespace := rule.UsesNamespaces() || strings.Contains(rule.Spec.Rule, "namespaceObject") ||
			strings.Contains(rule.Spec.MessageExpression, "namespaceObject")
		for _, gvk := range rule.Kinds() {
			r.byKind[gvk] = append(r.byKind[gvk], rule)
			if r.namespaced[gvk] && readsNamespace {
				r.namespaceDependent[gvk] = true
			}
			reads := r.reads[gvk]
			if reads == nil {
				reads = map[schema.GroupVersionKind]bool{namespaceKind: true}
				r.reads[gvk] = reads
			}
			for _, lookup := range rule.Lookups {
				reads[lookup] = true
			}
			if gvk != rule.GVK {
				for owner := range drift.PodControllers {
					reads[owner] = true
				}
			}
		}
		for _, gvk := range rule.Lookups {
			r.lookedUpBy[gvk] = append(r.lookedUpBy[gvk], rule)
		}
	}
	if len(e.playbook.Spec.Triggers.PolicyReports) > 0 {
		r.reportPlaybooks = append(r.reportPlaybooks, e.playbook)
	}
}

// sameRules reports whether next holds exactly the rules of r: the same
// playbook entries (an unchanged playbook's entry is carried over, never
// rebuilt) and the same report kinds.
func (r *registry) sameRules(next *registry) bool {
	if len(r.playbooks) != len(next.playbooks) || !maps.Equal(r.reportKinds, next.reportKinds) {
		return false
	}
	for key, e := range next.playbooks {
		if r.playbooks[key] != e {
			return false
		}
	}
	return true
}

// judges reports whether objects of a kind are judged.
func (r *registry) judges(gvk schema.GroupVersionKind) bool {
	return len(r.byKind[gvk]) > 0 || r.reportKinds[gvk]
}

// judgedKinds are the kinds whose objects are judged: rule kinds and reports.
func (r *registry) judgedKinds() map[schema.GroupVersionKind]bool {
	out := map[schema.GroupVersionKind]bool{}
	for gvk := range r.byKind {
		out[gvk] = true
	}
	for gvk := range r.reportKinds {
		out[gvk] = true
	}
	return out
}

// watchedKinds are the judged kinds, the kinds rules look up, and
// Namespaces whenever a rule reads one.
func (r *registry) watchedKinds() map[schema.GroupVersionKind]bool {
	out := r.judgedKinds()
	for gvk := range r.lookedUpBy {
		out[gvk] = true
	}
	for gvk := range r.byKind {
		if r.namespaced[gvk] {
			out[namespaceKind] = true
		}
	}
	return out
}

// covers reports whether an open incident's rule is still in force; an
// incident whose rule is not is closed by the sweep with that reason, never
// as if its object complied.
func (r *registry) covers(inc *riposte.Incident) bool {
	e := r.playbooks[types.NamespacedName{Namespace: inc.Spec.Drift.Playbook.Namespace, Name: inc.Spec.Drift.Playbook.Name}]
	if e == nil {
		return false
	}
	if fromReport(inc) {
		return len(e.playbook.Spec.Triggers.PolicyReports) > 0
	}
	return e.rules[inc.Spec.Drift.Rule] != nil
}

func fromReport(inc *riposte.Incident) bool {
	gk := schema.FromAPIVersionAndKind(inc.Spec.Drift.Source.APIVersion, inc.Spec.Drift.Source.Kind).GroupKind()
	return drift.IsReportKind(gk)
}

// refresh reads the playbooks again: compiles and resolves their rules,
// closes incidents of rules that are gone, re-judges objects under rules
// that are new or changed, and starts or stops watches to match.
func (d *Detector) refresh(ctx context.Context) error {
	var list riposte.PlaybookList
	if err := d.Client.List(ctx, &list); err != nil {
		return err
	}
	old := d.registry()
	next := newRegistry()
	exists := map[types.NamespacedName]bool{}
	for i := range list.Items {
		pb := &list.Items[i]
		key := types.NamespacedName{Namespace: pb.Namespace, Name: pb.Name}
		if !pb.DeletionTimestamp.IsZero() {
			continue
		}
		exists[key] = true
		if len(pb.Spec.Triggers.Drift) == 0 && len(pb.Spec.Triggers.PolicyReports) == 0 {
			continue
		}
		if e := old.playbooks[key]; e != nil && e.playbook.UID == pb.UID && e.playbook.Generation == pb.Generation {
			next.add(e) // unchanged since it was resolved
			continue
		}
		e, usable := d.usable(ctx, pb)
		if !usable {
			// An edit that breaks a playbook is reported on it (by the
			// playbook controller) and changes nothing here: the rules last
			// known good stay in force.
			if e := old.playbooks[key]; e != nil {
				next.add(e)
			}
			continue
		}
		next.add(e)
	}
	if len(next.reportPlaybooks) > 0 && len(old.reportKinds) == 2*len(drift.ReportAPIs) {
		for gvk := range old.reportKinds {
			next.reportKinds[gvk], next.namespaced[gvk] = true, old.namespaced[gvk]
		}
	} else if len(next.reportPlaybooks) > 0 {
		// Asked again on every refresh until every report API is installed
		// (the periodic re-evaluation refreshes too).
		if kinds, _, problem := d.Resolver.ReportKinds(ctx); problem == nil {
			for gvk, namespaced := range kinds {
				next.reportKinds[gvk] = true
				next.namespaced[gvk] = namespaced
			}
		}
	}

	if old.sameRules(next) {
		// The periodic refresh finds the same rules: keep the registry, so
		// the judgments made under it are still good.
		next = old
	}
	d.mu.Lock()
	d.current = next
	d.mu.Unlock()
	if next != old {
		// After the swap: a judgment made under the old rules and
		// remembered meanwhile is dropped too (none would match again).
		d.judgments.Reset()
	}

	if err := d.sweep(ctx, next, exists); err != nil {
		return err
	}
	d.rejudgeChanged(old, next)
	d.queue.AddAfter(item{summary: true}, summaryDelay)
	return d.reconcileWatches(ctx, next)
}

// usable returns a playbook's rules when its status says, for its current
// generation, that it passed every check (the playbook controller makes
// them, including whether Riposte may watch each kind). A playbook not
// judged yet is looked at again when its status is written.
func (d *Detector) usable(ctx context.Context, pb *riposte.Playbook) (*entry, bool) {
	ready := meta.FindStatusCondition(pb.Status.Conditions, riposte.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != pb.Generation {
		return nil, false
	}
	// Compiling and mapping kinds again is cheap and local; the access
	// checks the status already vouches for are not repeated.
	local := *d.Resolver
	local.CanWatch = nil
	resolved, problem := local.Resolve(ctx, pb)
	if problem != nil {
		return nil, false
	}
	e := &entry{playbook: pb, rules: map[string]*drift.Rule{}, namespaced: resolved.Namespaced}
	for _, rule := range resolved.Rules {
		e.rules[rule.Name] = rule
	}
	return e, true
}

// rejudgeChanged queues every object under a rule that is new or changed,
// and every report when the playbooks reading reports changed.
func (d *Detector) rejudgeChanged(old, next *registry) {
	for key, e := range next.playbooks {
		before := old.playbooks[key]
		for name, rule := range e.rules {
			if before != nil && before.rules[name] != nil && reflect.DeepEqual(before.rules[name].Spec, rule.Spec) {
				continue
			}
			for _, gvk := range rule.Kinds() {
				scope := ""
				if !rule.ClusterWide && next.namespaced[gvk] {
					scope = rule.Playbook.Namespace
				}
				d.queue.Add(item{gvk: gvk, namespace: scope, all: true})
			}
		}
		if before == nil || !reflect.DeepEqual(before.playbook.Spec.Triggers.PolicyReports, e.playbook.Spec.Triggers.PolicyReports) {
			for gvk := range next.reportKinds {
				d.queue.Add(item{gvk: gvk, all: true})
			}
		}
	}
	for gvk := range next.reportKinds {
		if !old.reportKinds[gvk] {
			d.queue.Add(item{gvk: gvk, all: true})
		}
	}
}

// sweep closes open drift incidents whose playbook or rule is gone, with
// that reason. It also covers what was removed while Riposte was down.
func (d *Detector) sweep(ctx context.Context, next *registry, exists map[types.NamespacedName]bool) error {
	var incidents riposte.IncidentList
	// Not copied: only those resolved are changed, and resolve copies them.
	if err := d.Client.List(ctx, &incidents, client.MatchingLabels{drift.LabelSource: drift.SourceDrift}, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range incidents.Items {
		inc := &incidents.Items[i]
		if !drift.Open(inc) || next.covers(inc) {
			continue
		}
		key := types.NamespacedName{Namespace: inc.Spec.Drift.Playbook.Namespace, Name: inc.Spec.Drift.Playbook.Name}
		switch {
		case !exists[key]:
			if err := d.resolve(ctx, inc, riposte.DriftPlaybookRemoved); err != nil {
				return err
			}
		case next.playbooks[key] != nil:
			if err := d.resolve(ctx, inc, riposte.DriftRuleRemoved); err != nil {
				return err
			}
		}
		// A playbook that exists but was never usable since Riposte started
		// keeps its incidents open until it is fixed or removed.
	}
	return nil
}

// reconcileWatches starts a watch for each kind the rules need and stops
// the others.
func (d *Detector) reconcileWatches(ctx context.Context, reg *registry) error {
	want := reg.watchedKinds()
	for gvk := range want {
		if d.watches[gvk] != nil {
			continue
		}
		obj := d.newObject(gvk)
		// Not blocking: a kind that cannot be listed must not stall the
		// detector; the playbook's status says why.
		inf, err := d.Cache.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return err
		}
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerDetailedFuncs{
			AddFunc:    func(o any, initial bool) { d.onEvent(gvk, o, initial) },
			UpdateFunc: func(_, o any) { d.onEvent(gvk, o, false) },
			DeleteFunc: func(o any) { d.onEvent(gvk, o, false) },
		})
		if err != nil {
			return err
		}
		// Only now do events keep the kind's views fresh.
		d.views.ForgetKind(gvk)
		d.watches[gvk] = &watch{informer: inf, registration: reg, object: obj}
		watchedKinds.WithLabelValues(gvk.String()).Set(1)
		d.log.Info("watching for drift", "kind", gvk.String())
	}
	for gvk, w := range d.watches {
		if want[gvk] {
			continue
		}
		if err := w.informer.RemoveEventHandler(w.registration); err != nil {
			return err
		}
		if !d.Keep[gvk] {
			if err := d.Cache.RemoveInformer(ctx, w.object); err != nil {
				return err
			}
		}
		delete(d.watches, gvk)
		d.views.ForgetKind(gvk) // no event will keep them fresh any more
		watchedKinds.DeleteLabelValues(gvk.String())
		d.log.Info("stopped watching for drift", "kind", gvk.String())
	}
	return nil
}

// newObject is a typed object for kinds Riposte knows, so the detector
// shares the informers the rest of the manager uses; an unstructured one
// otherwise.
func (d *Detector) newObject(gvk schema.GroupVersionKind) client.Object {
	if o, err := d.Scheme.New(gvk); err == nil {
		if co, ok := o.(client.Object); ok {
			return co
		}
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

func (d *Detector) newList(gvk schema.GroupVersionKind) client.ObjectList {
	listKind := gvk.GroupVersion().WithKind(gvk.Kind + "List")
	if o, err := d.Scheme.New(listKind); err == nil {
		if l, ok := o.(client.ObjectList); ok {
			return l
		}
	}
	u := &unstructured.UnstructuredList{}
	u.SetGroupVersionKind(listKind)
	return u
}
