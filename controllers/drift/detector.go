// Package drift runs drift detection: it watches exactly the kinds the
// playbooks' drift rules name (and PolicyReports, when installed), judges
// each object as it changes, and opens, keeps or resolves one Incident per
// (playbook, rule, object).
package drift

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=wgpolicyk8s.io,resources=policyreports;clusterpolicyreports,verbs=get;list;watch
// +kubebuilder:rbac:groups=openreports.io,resources=reports;clusterreports,verbs=get;list;watch

// Detector is the drift detector. It runs on the leader only, so replicas
// never race to open the same incident (names are deterministic anyway).
type Detector struct {
	Client   client.Client
	Cache    cache.Cache
	Scheme   *runtime.Scheme
	Resolver *drift.Resolver
	// Resync is how often every watched object is judged again, to catch
	// anything a watch missed.
	Resync time.Duration
	// Workers judge objects in parallel.
	Workers int
	// Keep are kinds the rest of the manager reads from the cache: their
	// informers are never stopped, only the detector's handler on them.
	Keep map[schema.GroupVersionKind]bool
	// Recorder records Events on playbooks (report results refused).
	Recorder recorder.EventRecorder

	queue   workqueue.TypedRateLimitingInterface[item]
	mu      sync.RWMutex
	current *registry
	watches map[schema.GroupVersionKind]*watch
	locks   [64]sync.Mutex
	// views are the Namespaces and looked-up lists, as rules read them.
	views drift.Views
	// judgments are the last judgment of each object, for the periodic
	// re-evaluation to reuse while nothing it was made on changed.
	judgments drift.Judgments
	log       logr.Logger
}

// item is one unit of work. Items are deduplicated by the queue: a storm of
// updates to one object costs one evaluation.
type item struct {
	gvk             schema.GroupVersionKind
	namespace, name string
	// all asks for every object of the kind in namespace ("" for all).
	all bool
	// playbooks asks to read the playbooks again.
	playbooks bool
	// summary asks to write the playbooks' status.drift.
	summary bool
}

// key names the object an item is about, as judgments are kept.
func (it item) key() drift.ObjectKey {
	return drift.ObjectKey{GVK: it.gvk, Namespace: it.namespace, Name: it.name}
}

// inputs are what judging an object of a kind at resourceVersion reads
// now, as a judgment remembers them.
func (d *Detector) inputs(reg *registry, gvk schema.GroupVersionKind, resourceVersion string) drift.Inputs {
	return drift.Inputs{ResourceVersion: resourceVersion, Rules: reg, Stamp: d.views.Stamp(reg.reads[gvk])}
}

type watch struct {
	informer     cache.Informer
	registration toolscache.ResourceEventHandlerRegistration
	object       client.Object
}

// Start runs the detector until ctx ends.
func (d *Detector) Start(ctx context.Context) error {
	d.log = ctrl.LoggerFrom(ctx).WithName("drift")
	d.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[item](),
		workqueue.TypedRateLimitingQueueConfig[item]{Name: "drift"})
	d.watches = map[schema.GroupVersionKind]*watch{}
	d.current = &registry{}
	defer d.queue.ShutDown()

	playbooks, err := d.Cache.GetInformer(ctx, &riposte.Playbook{})
	if err != nil {
		return err
	}
	if _, err := playbooks.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { d.queue.Add(item{playbooks: true}) },
		UpdateFunc: func(before, after any) {
			a, ok1 := before.(*riposte.Playbook)
			b, ok2 := after.(*riposte.Playbook)
			if !ok1 || !ok2 || !drift.SummaryOnly(a, b) {
				d.queue.Add(item{playbooks: true})
			}
		},
		DeleteFunc: func(any) { d.queue.Add(item{playbooks: true}) },
	}); err != nil {
		return err
	}
	d.queue.Add(item{playbooks: true})
	for range max(d.Workers, 1) {
		go func() {
			for d.processNext(ctx) {
			}
		}()
	}
	resync := d.Resync
	if resync <= 0 {
		resync = 10 * time.Minute
	}
	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			d.queue.Add(item{playbooks: true})
			d.resyncAll(ctx)
		}
	}
}

// summaryDelay gathers the status.drift writes of a burst of incidents
// into one per playbook: the counts are for people, and each write is one
// more request on the API server the next judgment's Create waits behind.
const summaryDelay = 500 * time.Millisecond

func (d *Detector) processNext(ctx context.Context) bool {
	it, shutdown := d.queue.Get()
	if shutdown {
		return false
	}
	defer d.queue.Done(it)
	var err error
	switch {
	case it.playbooks:
		err = d.refresh(ctx)
	case it.summary:
		err = d.summarise(ctx)
	case it.all:
		err = d.fanOut(ctx, it)
	default:
		err = d.judge(ctx, it)
	}
	if err != nil {
		d.log.Error(err, "drift work failed; retrying", "kind", it.gvk.Kind, "namespace", it.namespace, "name", it.name)
		d.queue.AddRateLimited(it)
		return true
	}
	d.queue.Forget(it)
	return true
}

func (d *Detector) registry() *registry {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.current
}

// lock serialises work on one object between the workers and the resync.
func (d *Detector) lock(it item) func() {
	h := fnv.New32a()
	for _, part := range []string{it.gvk.Group, it.gvk.Kind, it.namespace, it.name} {
		_, _ = h.Write([]byte(part))
		_, _ = h.Write([]byte{'/'})
	}
	m := &d.locks[h.Sum32()%uint32(len(d.locks))]
	m.Lock()
	return m.Unlock
}

// onEvent turns a change to any watched object into work: the object itself
// when a rule judges its kind, the objects whose rules look it up, and the
// objects in a namespace whose labels changed. initial marks the objects an
// informer replays when the detector's handler is added: those of a judged
// kind are judged by a pass over the kind (one item in the queue however
// many objects are replayed), not queued one by one: 10,000 replayed pods
// held 13 MB of queue and were judged by every worker at once.
func (d *Detector) onEvent(gvk schema.GroupVersionKind, obj any, initial bool) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	reg := d.registry()
	ns, name := m.GetNamespace(), m.GetName()
	// Before any judgment this event asks for reads around the object.
	d.views.Forget(gvk, ns, name)
	switch {
	case initial && reg.judges(gvk):
		d.queue.Add(item{gvk: gvk, all: true})
	case reg.judges(gvk):
		d.queue.Add(item{gvk: gvk, namespace: ns, name: name})
	}
	for _, r := range reg.lookedUpBy[gvk] {
		scope := ""
		if reg.namespaced[gvk] {
			scope = ns
		}
		for _, kind := range r.Kinds() {
			switch {
			case kind == namespaceKind && scope != "":
				d.queue.Add(item{gvk: namespaceKind, name: scope})
			default:
				d.queue.Add(item{gvk: kind, namespace: scope, all: true})
			}
		}
	}
	if gvk == namespaceKind {
		for kind := range reg.namespaceDependent {
			d.queue.Add(item{gvk: kind, namespace: name, all: true})
		}
	}
}

// fanOut judges every object of a kind in a namespace ("" for all), in
// this worker, one after another, named from the informer's store (a typed
// list copies every object). Queueing each instead held 13 MB of queue and
// queue metrics for 10,000 pods while a new rule was first applied, and let
// every worker allocate at once; the other workers stay free for the
// changes that come in meanwhile. An object that fails is queued to be
// retried.
func (d *Detector) fanOut(ctx context.Context, it item) error {
	if !d.registry().judges(it.gvk) {
		return nil
	}
	keys, err := d.keys(ctx, it.gvk, it.namespace)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if ctx.Err() != nil {
			return nil // shutting down
		}
		one := item{gvk: it.gvk, namespace: key.Namespace, name: key.Name}
		if err := d.judge(ctx, one); err != nil {
			d.log.Error(err, "drift work failed; retrying", "kind", one.gvk.Kind, "namespace", one.namespace, "name", one.name)
			d.queue.AddRateLimited(one)
		}
	}
	return nil
}

// resyncAll judges every watched object again, in this goroutine, and
// resolves incidents whose object is gone without the watch saying so.
func (d *Detector) resyncAll(ctx context.Context) {
	start := time.Now()
	reg := d.registry()
	// Listed before any object is read: an incident opened after this is
	// for an object judged since, with a finding, so never settled.
	open, err := d.openSources(ctx)
	if err != nil {
		d.log.Error(err, "resync: listing open incidents")
		return
	}
	count, settled := 0, 0
	for gvk := range reg.judgedKinds() {
		keys, err := d.keys(ctx, gvk, "")
		if err != nil {
			d.log.Error(err, "resync: listing", "kind", gvk.Kind)
			continue
		}
		for _, key := range keys {
			if ctx.Err() != nil {
				return // shutting down
			}
			count++
			it := item{gvk: gvk, namespace: key.Namespace, name: key.Name}
			if d.settled(reg, it.key(), key.resourceVersion, open) {
				judgmentsReused.Inc()
				settled++
				continue
			}
			if err := d.judge(ctx, it); err != nil {
				d.log.Error(err, "resync: judging", "kind", gvk.Kind, "namespace", it.namespace, "name", it.name)
				d.queue.AddRateLimited(it)
			}
		}
	}
	// An object gone without the watch saying so: its incidents' sources
	// are judged again, and found gone. Listed again: incidents opened
	// during the pass count too.
	if open, err = d.openSources(ctx); err != nil {
		d.log.Error(err, "resync: listing open incidents")
	}
	for src := range open {
		d.queue.Add(item{gvk: src.GVK, namespace: src.Namespace, name: src.Name})
	}
	resyncSeconds.Observe(time.Since(start).Seconds())
	resyncObjects.Set(float64(count))
	resyncSettled.Set(float64(settled))
}

// cachedKey names one cached object, with the resourceVersion the cache holds.
type cachedKey struct {
	types.NamespacedName
	resourceVersion string
}

// keys names every cached object of a kind in a namespace ("" for all),
// read from its informer's store without copying the objects: listing
// 10,000 pods into a PodList held a 12 MB copy of them for the whole pass,
// on top of what judging allocates. One namespace's are read through the
// store's namespace index, so a change in one namespace never walks every
// namespace's objects. Each object is read again when it is judged (one
// being deleted is judged as gone, as its own event has it judged).
func (d *Detector) keys(ctx context.Context, gvk schema.GroupVersionKind, namespace string) ([]cachedKey, error) {
	inf, err := d.Cache.GetInformer(ctx, d.newObject(gvk), cache.BlockUntilSynced(false))
	if err != nil {
		return nil, err
	}
	var objs []any
	switch store := inf.(type) {
	case interface{ GetIndexer() toolscache.Indexer }:
		if namespace == "" {
			objs = store.GetIndexer().List()
		} else if objs, err = store.GetIndexer().ByIndex(toolscache.NamespaceIndex, namespace); err != nil {
			return nil, err
		}
	default: // an informer that does not show its store
		listed, err := d.list(ctx, gvk, namespace)
		if err != nil {
			return nil, err
		}
		for _, o := range listed {
			objs = append(objs, o)
		}
	}
	out := make([]cachedKey, 0, len(objs))
	for _, o := range objs {
		if m, err := meta.Accessor(o); err == nil {
			out = append(out, cachedKey{types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}, m.GetResourceVersion()})
		}
	}
	return out, nil
}

// settled reports whether the periodic re-evaluation has nothing to do for
// an object: its last judgment, made on exactly what it reads now, found
// nothing, and no open incident names it. Reading the object and listing
// its incidents for each of 10,000 such pods was most of a pass.
func (d *Detector) settled(reg *registry, key drift.ObjectKey, resourceVersion string, open map[drift.ObjectKey]bool) bool {
	if open[key] || reg.reportKinds[key.GVK] {
		return false
	}
	judged, ok := d.judgments.Lookup(key, d.inputs(reg, key.GVK, resourceVersion))
	return ok && len(judged.Findings) == 0
}

// openSources names the objects open drift incidents were read from.
func (d *Detector) openSources(ctx context.Context) (map[drift.ObjectKey]bool, error) {
	var incidents riposte.IncidentList
	if err := d.Client.List(ctx, &incidents, client.MatchingLabels{drift.LabelSource: drift.SourceDrift}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := map[drift.ObjectKey]bool{}
	for i := range incidents.Items {
		if inc := &incidents.Items[i]; drift.Open(inc) {
			src := inc.Spec.Drift.Source
			out[drift.ObjectKey{GVK: schema.FromAPIVersionAndKind(src.APIVersion, src.Kind), Namespace: src.Namespace, Name: src.Name}] = true
		}
	}
	return out, nil
}

// judge evaluates one object (or one PolicyReport) and brings its incidents
// in line with what it breaks now. An object whose last judgment was made on
// exactly the inputs it has now is not evaluated again: the verdict would be
// the same. Only its incidents are brought in line with it (one deleted by
// hand is opened again, one left open is resolved).
func (d *Detector) judge(ctx context.Context, it item) error {
	defer d.lock(it)()
	reg := d.registry()
	if !reg.judges(it.gvk) {
		// Queued before its last rule went; reading it now would start a
		// watch nobody needs.
		return nil
	}
	source := riposte.ObjectReference{APIVersion: it.gvk.GroupVersion().String(), Kind: it.gvk.Kind, Namespace: it.namespace, Name: it.name}
	cached, err := d.read(ctx, it.gvk, it.namespace, it.name)
	if err != nil {
		return err
	}
	var findings []drift.Finding
	// resolution says why an open incident no finding backs any more ended;
	// "" leaves it open.
	resolution := func(*riposte.Incident) string { return riposte.DriftComplies }
	switch {
	case cached == nil && reg.reportKinds[it.gvk]:
		resolution = func(*riposte.Incident) string { return riposte.DriftReportRemoved }
	case cached == nil:
		d.judgments.Forget(it.key())
		resolution = func(*riposte.Incident) string { return riposte.DriftObjectDeleted }
	case reg.reportKinds[it.gvk]:
		obj, err := toMap(cached, it.gvk)
		if err != nil {
			return err
		}
		scope := drift.ReportScope{Namespace: it.namespace, Namespaced: d.namespaced}
		for _, pb := range reg.reportPlaybooks {
			found, refused := drift.ReportFindings(pb, d.Resolver.OperatorNamespace, source, scope, obj)
			findings = append(findings, found...)
			d.refused(pb, source, obj, refused)
		}
	default:
		// Stamped before anything around the object is read: an event
		// while judging makes the judgment stale, never the reverse.
		inputs := d.inputs(reg, it.gvk, cached.GetResourceVersion())
		judged, reused := d.judgments.Lookup(it.key(), inputs)
		if reused {
			judgmentsReused.Inc()
		} else {
			if judged, err = d.evaluate(ctx, reg, it, cached); err != nil {
				return err
			}
			if reg == d.registry() { // rules replaced meanwhile: nothing would match it
				d.judgments.Remember(it.key(), inputs, judged)
			}
		}
		findings = judged.Findings
		resolution = func(inc *riposte.Incident) string {
			key := drift.RuleKey(types.NamespacedName{Namespace: inc.Spec.Drift.Playbook.Namespace, Name: inc.Spec.Drift.Playbook.Name}, inc.Spec.Drift.Rule)
			switch {
			case judged.Failed[key]:
				return "" // unknown, not fixed: the incident stays open
			case judged.Unselected[key]:
				return riposte.DriftNotSelected
			}
			return riposte.DriftComplies
		}
	}
	return d.sync(ctx, reg, source, findings, resolution)
}

// evaluate judges an object against every rule of its kind.
func (d *Detector) evaluate(ctx context.Context, reg *registry, it item, cached client.Object) (drift.Judgement, error) {
	obj, err := toMap(cached, it.gvk)
	if err != nil {
		return drift.Judgement{}, err
	}
	var nsObj map[string]any
	if scope := drift.ScopeNamespace(obj); scope != "" {
		if it.gvk == namespaceKind {
			nsObj = obj
		} else {
			if nsObj, err = d.namespace(ctx, scope); err != nil {
				return drift.Judgement{}, err
			}
		}
	}
	judged := drift.Judge(reg.byKind[it.gvk], obj, nsObj, func(gvk schema.GroupVersionKind) bool { return reg.namespaced[gvk] },
		d.lookup(ctx), d.owner(ctx, reg))
	for _, e := range judged.Errors {
		d.log.V(1).Info("a drift rule could not be evaluated", "kind", it.gvk.Kind, "namespace", it.namespace, "name", it.name, "error", e.Error())
	}
	evaluations.WithLabelValues("error").Add(float64(len(judged.Errors)))
	evaluations.WithLabelValues("violation").Add(float64(len(judged.Findings)))
	evaluations.WithLabelValues("compliant").Add(float64(judged.Evaluated - len(judged.Findings)))
	return judged, nil
}

// namespaced says whether the API server serves a kind namespaced; a kind
// it does not serve (or that cannot be looked up now) is not known.
func (d *Detector) namespaced(gvk schema.GroupVersionKind) (namespaced, known bool) {
	m, err := d.Resolver.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return false, false
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, true
}

// refused counts the resources a report named out of its scope, and tells
// the playbook that would have answered them, with why.
func (d *Detector) refused(pb *riposte.Playbook, source riposte.ObjectReference, report map[string]any, refused []drift.Refusal) {
	if len(refused) == 0 {
		return
	}
	const shown = 3
	var named []string
	for i, r := range refused {
		reportRefused.WithLabelValues(r.Reason).Inc()
		if i < shown {
			named = append(named, fmt.Sprintf("%s (%s, %s)", r.Target.String(), r.Rule, r.Reason))
		}
	}
	if len(refused) > shown {
		named = append(named, fmt.Sprintf("and %d more", len(refused)-shown))
	}
	d.log.Info("report results refused: a namespaced report may name only namespaced objects in its own namespace",
		"report", source.String(), "playbook", klog.KObj(pb), "refused", len(refused))
	if d.Recorder != nil {
		// The report is the Event's related object: Events about one
		// playbook are a series per related object, so each report has its own.
		d.Recorder.Eventf(pb, &unstructured.Unstructured{Object: report}, corev1.EventTypeWarning, riposte.ReasonReportOutOfScope, "ReadReport",
			"%d result resource(s) of %s %s/%s refused: a namespaced report may name only namespaced objects in its own namespace %s: %s",
			len(refused), source.Kind, source.Namespace, source.Name, source.Namespace, strings.Join(named, "; "))
	}
}

// namespace reads an object's Namespace, through the views.
func (d *Detector) namespace(ctx context.Context, name string) (map[string]any, error) {
	return d.views.Object(namespaceKind, "", name, func() (map[string]any, error) {
		return d.get(ctx, namespaceKind, "", name)
	})
}

// owner reads the controller a workload names from the cache, only of the
// kinds the detector judges (a rule judges a workload through its owner
// only when it judges the owner's kind): reading another kind would start a
// watch nobody asked for. A workload whose owner is not there (or is of a
// kind not judged) is judged on its own; one whose owner cannot be read now
// is not judged until it can (the rule counts as failed).
func (d *Detector) owner(ctx context.Context, reg *registry) drift.Getter {
	return func(ref riposte.ObjectReference) (map[string]any, error) {
		gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
		if !reg.judges(gvk) {
			return nil, nil
		}
		obj, err := d.get(ctx, gvk, ref.Namespace, ref.Name)
		if err != nil || obj == nil {
			return nil, err
		}
		if ref.UID != "" && drift.RefOf(obj).UID != ref.UID {
			return nil, nil // a namesake, not the owner
		}
		return obj, nil
	}
}

// lookup lists the objects a rule looks up, through the views.
func (d *Detector) lookup(ctx context.Context) drift.Lister {
	return func(gvk schema.GroupVersionKind, namespace string) ([]any, error) {
		return d.views.List(gvk, namespace, func() ([]any, error) { return d.listMaps(ctx, gvk, namespace) })
	}
}

// listMaps lists objects as the maps rules read.
func (d *Detector) listMaps(ctx context.Context, gvk schema.GroupVersionKind, namespace string) ([]any, error) {
	objs, err := d.list(ctx, gvk, namespace)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(objs))
	for _, o := range objs {
		m, err := toMap(o, gvk)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
