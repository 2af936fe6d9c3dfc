package enrich

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// The timeline read from trimmed Events is the timeline read from the
// Events as the API server serves them: the trim keeps what it reads.
func TestTrimEventKeepsTheTimeline(t *testing.T) {
	scheme := testScheme()
	now := time.Now()
	at := func(ago time.Duration) metav1.Time { return metav1.NewTime(now.Add(-ago).Truncate(time.Second)) }
	kubelet := func(name, reason, msg string, ago time.Duration) *corev1.Event {
		return &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"team": "web"},
				Annotations: map[string]string{"note": strings.Repeat("x", 200)}, CreationTimestamp: at(ago)},
			InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-1", UID: "pod-uid",
				FieldPath: "spec.containers{app}", ResourceVersion: "42"},
			Reason: reason, Message: msg, Type: corev1.EventTypeNormal, Count: 3,
			Source:         corev1.EventSource{Component: "kubelet", Host: "node-a"},
			FirstTimestamp: at(ago + time.Minute), LastTimestamp: at(ago),
			ReportingController: "kubelet", ReportingInstance: "node-a", Action: "Pull",
		}
	}
	events := []*corev1.Event{
		kubelet("web-1.a", "Pulled", "Successfully pulled image nginx:1.27", 5*time.Minute),
		kubelet("web-1.b", "BackOff", strings.Repeat("Back-off restarting failed container ", 40), time.Minute),
		kubelet("web-1.c", strings.Repeat("LongReason", 20), "reason over the limit", 2*time.Minute),
		{ObjectMeta: metav1.ObjectMeta{Name: "web-1.d", Namespace: "shop", CreationTimestamp: at(3 * time.Minute)},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-1"}, Reason: "Scheduled",
			EventTime: metav1.NewMicroTime(now.Add(-3 * time.Minute))},
		kubelet("other.a", "Pulled", "another pod's", time.Minute),
	}
	events[4].InvolvedObject.Name, events[4].InvolvedObject.UID = "web-2", "other-uid"
	timelineOf := func(trim bool) []riposte.TimelineEntry {
		b := fake.NewClientBuilder().WithScheme(scheme).WithIndex(&corev1.Event{}, EventObjectIndex, eventObject)
		for _, ev := range events {
			var obj client.Object = ev.DeepCopy()
			if trim {
				trimmed, err := TrimEvent(obj)
				if err != nil {
					t.Fatal(err)
				}
				obj = trimmed.(*corev1.Event)
			}
			b = b.WithObjects(obj)
		}
		ic := &riposte.IncidentContext{}
		inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-1", Namespace: "shop"}}
		if err := (&Enricher{Reader: b.Build()}).timeline(context.Background(), inc, []involved{{namespace: "shop", kind: "Pod", name: "web-1", uid: "pod-uid"}}, now, ic); err != nil {
			t.Fatal(err)
		}
		return ic.Timeline
	}
	served, trimmed := timelineOf(false), timelineOf(true)
	if len(served) != 4 {
		t.Fatalf("timeline of the served Events: %d entries, want 4: %+v", len(served), served)
	}
	if diff := cmp.Diff(served, trimmed); diff != "" {
		t.Errorf("timeline from trimmed Events (-served +trimmed):\n%s", diff)
	}

	trimmedEvent, _ := TrimEvent(events[0].DeepCopy())
	if ev := trimmedEvent.(*corev1.Event); ev.Labels != nil || ev.Annotations != nil || ev.Source != (corev1.EventSource{}) || ev.ReportingController != "" || ev.InvolvedObject.FieldPath != "" {
		t.Errorf("trimmed Event keeps what is never read: %+v", ev)
	}
	tombstone := toolscache.DeletedFinalStateUnknown{Key: "shop/web-1.a"}
	if got, err := TrimEvent(tombstone); err != nil || got != tombstone {
		t.Errorf("a tombstone: %v, %v; want it as it came", got, err)
	}
}
