package enrich

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	// timelineWindow is how far back Events are taken.
	timelineWindow = time.Hour
	// relatedWindow is how far back related incidents are looked for.
	relatedWindow = 24 * time.Hour
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
	seenNamespaces := map[string]bool{}
	for _, o := range objects {
		ns := o.namespace
		if ns == "" {
			ns = metav1.NamespaceDefault // node Events are recorded there
		}
		if seenNamespaces[ns] {
			continue
		}
		seenNamespaces[ns] = true
		var events corev1.EventList
		if err := e.Reader.List(ctx, &events, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
			return fmt.Errorf("listing events in %s: %w", ns, err)
		}
		for _, ev := range events.Items {
			if !slices.ContainsFunc(objects, func(o involved) bool { return about(&ev, o) }) {
				continue
			}
			at := eventTime(&ev)
			if at.Before(since) {
				continue
			}
			entries = append(entries, riposte.TimelineEntry{Time: metav1.NewTime(at), Source: "Event",
				Object: ev.InvolvedObject.Kind + "/" + ev.InvolvedObject.Name, Reason: text.Clip(ev.Reason, 128), Message: text.Clip(ev.Message, maxMessageLength)})
		}
	}
	if inc.Spec.StartsAt != nil {
		entries = append(entries, riposte.TimelineEntry{Time: *inc.Spec.StartsAt, Source: "Alert", Reason: text.Clip(inc.Spec.AlertName, 128),
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
	top := ""
	if n := len(ic.OwnerChain); n > 0 {
		top = ic.OwnerChain[n-1].Kind + "/" + ic.OwnerChain[n-1].Name
	} else if ic.Target != nil {
		top = ic.Target.Kind + "/" + ic.Target.Name
	}
	var incidents riposte.IncidentList
	if err := e.Reader.List(ctx, &incidents, client.InNamespace(inc.Namespace), client.UnsafeDisableDeepCopy,
		// Related incidents need not wait for in-flight writes of every incident.
		client.DisableReadYourWritesConsistency); err != nil {
		return fmt.Errorf("listing incidents: %w", err)
	}
	var names []string
	for _, other := range incidents.Items {
		c := other.Status.Context
		if other.Name == inc.Name || c == nil || other.CreationTimestamp.Time.Before(now.Add(-relatedWindow)) {
			continue
		}
		otherTop := ""
		if n := len(c.OwnerChain); n > 0 {
			otherTop = c.OwnerChain[n-1].Kind + "/" + c.OwnerChain[n-1].Name
		} else if c.Target != nil {
			otherTop = c.Target.Kind + "/" + c.Target.Name
		}
		if (top != "" && otherTop == top) || (ic.Node != "" && c.Node == ic.Node) {
			names = append(names, other.Name)
		}
	}
	sort.Strings(names)
	ic.RelatedIncidents, ic.Truncated = bound(names, maxRelated, "relatedIncidents", ic.Truncated)
	return nil
}
