package enrich

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Index is a cache field index enrichment reads through, so that what it
// looks up costs the objects it finds, not every object of the namespace.
type Index struct {
	Object  client.Object
	Field   string
	Extract client.IndexerFunc
}

// Indexes are the field indexes the Enricher's reader must have.
func Indexes() []Index {
	return []Index{
		{&corev1.Node{}, NodeAddressIndex, NodeAddresses},
		{&corev1.Event{}, EventObjectIndex, eventObject},
		{&riposte.Incident{}, IncidentPlaceIndex, incidentPlaces},
	}
}

// EventObjectIndex indexes Events by the kind and name of the object they
// are about (within their own namespace): a timeline reads the Events of
// its few objects, not every Event of the namespace.
const EventObjectIndex = "riposte.dev/event-object"

func eventObject(obj client.Object) []string {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return nil
	}
	return []string{objectKey(ev.InvolvedObject.Kind, ev.InvolvedObject.Name)}
}

func objectKey(kind, name string) string { return kind + "/" + name }

// IncidentPlaceIndex indexes incidents by where they are about: the top
// owner of the target and the node, as enriched ("top:" and "node:"), or
// "unenriched" for one whose context is not learned yet.
const IncidentPlaceIndex = "riposte.dev/incident-place"

const unenrichedPlace = "unenriched"

func incidentPlaces(obj client.Object) []string {
	inc, ok := obj.(*riposte.Incident)
	if !ok {
		return nil
	}
	if inc.Status.Context == nil {
		return []string{unenrichedPlace}
	}
	return placeIn(inc.Status.Context).keys()
}

// keys are a place's values in IncidentPlaceIndex.
func (p place) keys() []string {
	var out []string
	if p.top != "" {
		out = append(out, "top:"+p.top)
	}
	if p.node != "" && !slices.Contains(out, "node:"+p.node) {
		out = append(out, "node:"+p.node)
	}
	return out
}
