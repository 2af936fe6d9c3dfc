package enrich

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/text"
)

const (
	maxTimeline      = 40
	maxRelated       = 16
	maxMessageLength = 512
	maxReasonLength  = 128
	// timelineWindow is how far back Events are taken.
	timelineWindow = time.Hour
	// relatedWindow is how far back related incidents are looked for.
	relatedWindow = 24 * time.Hour
	// maxUnenrichedPlaced bounds the incidents not yet enriched whose
	// targets one enrichment reads to find related ones.
	maxUnenrichedPlaced = 32
)

// Enrichment only reads what it lists, so lists come straight from the cache
// without deep copies (client.UnsafeDisableDeepCopy): at thousands of objects
// per namespace that is most of the cost. Nothing listed is ever modified.

// involved is an object whose Events belong in the timeline.
type involved struct {
	namespace, kind, name string
	uid                   types.UID
}

// timeline merges the Events of the target, its owners and its node with the
// alert's start and Riposte's own steps, oldest first, most recent kept.
func (e *Enricher) timeline(ctx context.Context, inc *riposte.Incident, objects []involved, now time.Time, ic *riposte.IncidentContext) error {
	var entries []riposte.TimelineEntry
	since := now.Add(-timelineWindow)
	seen := map[string]bool{}
	for _, o := range objects {
		ns := o.namespace
		if ns == "" {
			ns = metav1.NamespaceDefault // node Events are recorded there
		}
		key := objectKey(o.kind, o.name)
		if seen[ns+"/"+key] {
			continue
		}
		seen[ns+"/"+key] = true
		var events corev1.EventList
		if err := e.Reader.List(ctx, &events, client.InNamespace(ns), client.MatchingFields{EventObjectIndex: key}, client.UnsafeDisableDeepCopy); err != nil {
			return fmt.Errorf("listing events in %s: %w", ns, err)
		}
		for _, ev := range events.Items {
			if !about(&ev, o) {
				continue
			}
			at := eventTime(&ev)
			if at.Before(since) {
				continue
			}
			entries = append(entries, riposte.TimelineEntry{Time: metav1.NewTime(at), Source: "Event",
				Object: ev.InvolvedObject.Kind + "/" + ev.InvolvedObject.Name, Reason: text.Clip(ev.Reason, maxReasonLength), Message: text.Clip(ev.Message, maxMessageLength)})
		}
	}
	if inc.Spec.StartsAt != nil {
		entries = append(entries, riposte.TimelineEntry{Time: *inc.Spec.StartsAt, Source: "Alert", Reason: text.Clip(inc.Spec.AlertName, maxReasonLength),
			Message: text.Clip(inc.Spec.Annotations["summary"], maxMessageLength)})
	}
	for _, s := range inc.Status.Steps {
		if s.CompletedAt != nil {
			entries = append(entries, riposte.TimelineEntry{Time: *s.CompletedAt, Source: "Riposte", Reason: string(s.Phase),
				Message: text.Clip(fmt.Sprintf("step %s (%s)", s.Name, s.Action), maxMessageLength)})
		}
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Time.Before(&entries[j].Time) })
	if len(entries) > maxTimeline {
		ic.Truncated = append(ic.Truncated, fmt.Sprintf("timeline: %d of %d kept, the most recent", maxTimeline, len(entries)))
		entries = entries[len(entries)-maxTimeline:]
	}
	ic.Timeline = entries
	return nil
}

func about(ev *corev1.Event, o involved) bool {
	io := ev.InvolvedObject
	if o.uid != "" && io.UID != "" {
		return io.UID == o.uid
	}
	return io.Kind == o.kind && io.Name == o.name && (o.namespace == "" || io.Namespace == o.namespace)
}

func eventTime(ev *corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	default:
		return ev.CreationTimestamp.Time
	}
}

// related finds other incidents in the namespace about the same top owner or
// the same node, recently.
func (e *Enricher) related(ctx context.Context, inc *riposte.Incident, now time.Time, ic *riposte.IncidentContext) error {
	names, err := e.relatedNames(ctx, inc, now, ic)
	if err != nil {
		return err
	}
	ic.RelatedIncidents, ic.Truncated = bound(names, maxRelated, relatedField, ic.Truncated)
	return nil
}

const relatedField = "relatedIncidents"

// RefreshRelated lists again the related incidents of an enriched incident:
// one that arrived after it was enriched lists it, and it should list that
// one. Only relatedIncidents (and what it says was cut) changes.
func (e *Enricher) RefreshRelated(ctx context.Context, inc *riposte.Incident) error {
	ic := inc.Status.Context
	if ic == nil {
		return nil
	}
	now := time.Now()
	if e.Now != nil {
		now = e.Now()
	}
	names, err := e.relatedNames(ctx, inc, now, ic)
	if err != nil {
		return err
	}
	truncated := slices.DeleteFunc(slices.Clone(ic.Truncated), func(s string) bool { return strings.HasPrefix(s, relatedField+":") })
	ic.RelatedIncidents, ic.Truncated = bound(names, maxRelated, relatedField, truncated)
	if len(ic.Truncated) == 0 {
		ic.Truncated = nil
	}
	return nil
}

// place is what makes two incidents related: the top owner of their target
// (or the target itself) and its node.
type place struct{ top, node string }

func placeIn(ic *riposte.IncidentContext) place {
	p := place{node: ic.Node}
	if n := len(ic.OwnerChain); n > 0 {
		p.top = ic.OwnerChain[n-1].Kind + "/" + ic.OwnerChain[n-1].Name
	} else if ic.Target != nil {
		p.top = ic.Target.Kind + "/" + ic.Target.Name
	}
	return p
}

func (p place) near(o place) bool {
	return (p.top != "" && o.top == p.top) || (p.node != "" && o.node == p.node)
}

func (e *Enricher) relatedNames(ctx context.Context, inc *riposte.Incident, now time.Time, ic *riposte.IncidentContext) ([]string, error) {
	here := placeIn(ic)
	// Through the place index: the incidents about the same top owner or
	// node, and those not placed yet, rather than every incident of the
	// namespace.
	var names []string
	var unenriched []*riposte.Incident
	for _, key := range append(here.keys(), unenrichedPlace) {
		var incidents riposte.IncidentList
		if err := e.Reader.List(ctx, &incidents, client.InNamespace(inc.Namespace), client.MatchingFields{IncidentPlaceIndex: key},
			client.UnsafeDisableDeepCopy,
			// Related incidents need not wait for in-flight writes of every incident.
			client.DisableReadYourWritesConsistency); err != nil {
			return nil, fmt.Errorf("listing incidents: %w", err)
		}
		for i := range incidents.Items {
			other := &incidents.Items[i]
			if other.Name == inc.Name || other.CreationTimestamp.Time.Before(now.Add(-relatedWindow)) || slices.Contains(names, other.Name) {
				continue
			}
			if other.Status.Context == nil {
				unenriched = append(unenriched, other)
				continue
			}
			if here.near(placeIn(other.Status.Context)) {
				names = append(names, other.Name)
			}
		}
	}
	// Incidents not enriched yet are placed by reading their targets, a few
	// cache reads each: only the ones that arrived nearest in time, so a
	// storm of thousands does not cost millions of reads. Those left out
	// list this one, and wake it to list them, once they are enriched.
	born := inc.CreationTimestamp.Time
	sort.Slice(unenriched, func(i, j int) bool {
		return absDuration(unenriched[i].CreationTimestamp.Sub(born)) < absDuration(unenriched[j].CreationTimestamp.Sub(born))
	})
	for _, other := range unenriched[:min(len(unenriched), maxUnenrichedPlaced)] {
		there, err := e.placeOf(ctx, other)
		if err != nil {
			return nil, err
		}
		if here.near(there) {
			names = append(names, other.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// placeOf is where another incident is about. One not enriched yet (alerts
// that arrive together are enriched at the same time) is placed by the
// target it names, its owners and node read as enrichment would.
func (e *Enricher) placeOf(ctx context.Context, other *riposte.Incident) (place, error) {
	if c := other.Status.Context; c != nil {
		return placeIn(c), nil
	}
	ref := TargetFromIncident(&other.Spec)
	if ref == nil {
		return place{}, nil
	}
	ic := &riposte.IncidentContext{Target: ref}
	var err error
	// Not copied: only a node name and owner references are read, for up
	// to maxUnenrichedPlaced other incidents on each enrichment.
	switch ref.Kind {
	case "Pod":
		var pod corev1.Pod
		if err = e.Reader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &pod, client.UnsafeDisableDeepCopy); err == nil {
			ic.Node = pod.Spec.NodeName
			ic.OwnerChain, _, _, err = e.ownerChain(ctx, pod.Namespace, pod.OwnerReferences)
		}
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob":
		obj := workloadObject(ref.Kind)
		if err = e.Reader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, obj, client.UnsafeDisableDeepCopy); err == nil {
			ic.OwnerChain, _, _, err = e.ownerChain(ctx, obj.GetNamespace(), obj.GetOwnerReferences())
		}
	case "Node":
		ic.Node = ref.Name
		if subject(&other.Spec).ByAddress {
			// node-exporter's instance: a node's name, or one of its addresses.
			var node corev1.Node
			if e.Reader.Get(ctx, client.ObjectKey{Name: ref.Name}, &node) != nil && e.nodeAt(ctx, ref.Name, &node) == nil {
				ic.Node = node.Name
			}
		}
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return place{}, fmt.Errorf("reading the target of incident %s: %w", other.Name, err)
	}
	return placeIn(ic), nil
}
