package drift

import (
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Views remembers the maps rules read of the objects judging reads around
// the judged one: each Namespace, and each list a rule looks up (every
// ClusterRole, for the binding rules). Converting a typed object to the map
// CEL reads is most of what judging allocates, and these were converted
// again for every object judged: a change to one ClusterRole re-judges every
// binding, and each read and converted every ClusterRole afresh.
//
// A view is dropped as soon as the watch says its object (or any object of
// its list) changed, so it is never older than the cache it was read from;
// Forget must be called for every event of a kind whose views are used. A
// load that overlaps an event of its kind is returned but not remembered,
// as it may hold the object from before the event. The judged objects
// themselves are never remembered: they are as many as the cluster has,
// and each is converted once per judgment.
//
// Views are shared by every worker: callers must only read what they get.
type Views struct {
	mu sync.Mutex
	// gen counts the events of each kind, to tell a load that overlapped
	// one from one that did not.
	gen     map[schema.GroupVersionKind]uint64
	objects map[objectKey]map[string]any
	lists   map[listKey][]any
}

type objectKey struct {
	gvk             schema.GroupVersionKind
	namespace, name string
}

type listKey struct {
	gvk       schema.GroupVersionKind
	namespace string
}

// Object returns the view of one object, loading it when none is
// remembered. A nil map (the object does not exist) is a view too.
func (v *Views) Object(gvk schema.GroupVersionKind, namespace, name string, load func() (map[string]any, error)) (map[string]any, error) {
	key := objectKey{gvk, namespace, name}
	v.mu.Lock()
	if obj, ok := v.objects[key]; ok {
		v.mu.Unlock()
		return obj, nil
	}
	gen := v.gen[gvk]
	v.mu.Unlock()
	obj, err := load()
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gen[gvk] == gen {
		if v.objects == nil {
			v.objects = map[objectKey]map[string]any{}
		}
		v.objects[key] = obj
	}
	return obj, nil
}

// List returns the view of the objects of a kind in a namespace ("" for
// all, or for a cluster-scoped kind), loading it when none is remembered.
func (v *Views) List(gvk schema.GroupVersionKind, namespace string, load func() ([]any, error)) ([]any, error) {
	key := listKey{gvk, namespace}
	v.mu.Lock()
	if items, ok := v.lists[key]; ok {
		v.mu.Unlock()
		return items, nil
	}
	gen := v.gen[gvk]
	v.mu.Unlock()
	items, err := load()
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gen[gvk] == gen {
		if v.lists == nil {
			v.lists = map[listKey][]any{}
		}
		v.lists[key] = items
	}
	return items, nil
}

// Forget drops what a change to one object makes stale: its own view, and
// the lists it is in (its namespace's and the cluster-wide one).
func (v *Views) Forget(gvk schema.GroupVersionKind, namespace, name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gen == nil {
		v.gen = map[schema.GroupVersionKind]uint64{}
	}
	v.gen[gvk]++
	delete(v.objects, objectKey{gvk, namespace, name})
	delete(v.lists, listKey{gvk, namespace})
	delete(v.lists, listKey{gvk, ""})
}

// ForgetKind drops every view of a kind, for a watch started or stopped:
// no event says what changed while none was watched.
func (v *Views) ForgetKind(gvk schema.GroupVersionKind) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gen == nil {
		v.gen = map[schema.GroupVersionKind]uint64{}
	}
	v.gen[gvk]++
	for k := range v.objects {
		if k.gvk == gvk {
			delete(v.objects, k)
		}
	}
	for k := range v.lists {
		if k.gvk == gvk {
			delete(v.lists, k)
		}
	}
}

// Stamp sums the event counts of the kinds given. Each count only grows,
// so the stamp of the same kinds is unchanged exactly when no event of any
// of them came in between: a judgment stamped before it read its inputs is
// still good while the stamp is.
func (v *Views) Stamp(kinds map[schema.GroupVersionKind]bool) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	var sum uint64
	for gvk := range kinds {
		sum += v.gen[gvk]
	}
	return sum
}
