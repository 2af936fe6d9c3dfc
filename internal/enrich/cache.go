package enrich

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/riposte-dev/riposte/internal/text"
)

// TrimEvent keeps of an Event what the timeline reads, before the cache
// stores it: Events are cached cluster-wide, and a busy cluster holds tens
// of thousands (every pod's scheduling, pulls and starts), each carrying a
// source, reporting controller, series and labels never read. Its message
// is clipped where the timeline clips it.
func TrimEvent(obj any) (any, error) {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil // a tombstone, or another kind: as it came
	}
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name: ev.Name, Namespace: ev.Namespace, UID: ev.UID, ResourceVersion: ev.ResourceVersion,
			CreationTimestamp: ev.CreationTimestamp, DeletionTimestamp: ev.DeletionTimestamp,
		},
		InvolvedObject: corev1.ObjectReference{Kind: ev.InvolvedObject.Kind, Namespace: ev.InvolvedObject.Namespace,
			Name: ev.InvolvedObject.Name, UID: ev.InvolvedObject.UID},
		Reason:         text.Clip(ev.Reason, maxReasonLength),
		Message:        text.Clip(ev.Message, maxMessageLength),
		FirstTimestamp: ev.FirstTimestamp,
		LastTimestamp:  ev.LastTimestamp,
		EventTime:      ev.EventTime,
	}, nil
}
