package actions

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// workloadPods are the pods a workload runs: those whose chain of controller
// references reaches it by UID (pod → ReplicaSet → Deployment, pod → Job →
// CronJob, or pod → the workload directly), each link read from the cache,
// and whose labels the selector of the workload (for a CronJob, of its Job)
// matches. A selector alone would take in any pod with those labels, and an
// owner reference alone is what the pod's creator chose to write.
func workloadPods(ctx context.Context, in *Input, ref *riposte.ObjectReference) ([]*corev1.Pod, error) {
	obj, err := read(ctx, in, ref)
	if err != nil {
		return nil, err
	}
	if ref.UID != "" && string(obj.GetUID()) != ref.UID {
		return nil, userErrorf("%s was replaced (uid %s, incident saw %s)", ref, obj.GetUID(), ref.UID)
	}
	// owners maps each controller whose pods count to the selector they
	// must match.
	owners := map[types.UID]*metav1.LabelSelector{}
	switch w := obj.(type) {
	case *appsv1.Deployment:
		var sets appsv1.ReplicaSetList
		if err := in.Reader.List(ctx, &sets, client.InNamespace(w.Namespace)); err != nil {
			return nil, fmt.Errorf("listing the ReplicaSets of %s: %w", ref, err)
		}
		for i := range sets.Items {
			if controlledBy(&sets.Items[i], w.UID) {
				owners[sets.Items[i].UID] = w.Spec.Selector
			}
		}
	case *batchv1.CronJob:
		var jobs batchv1.JobList
		if err := in.Reader.List(ctx, &jobs, client.InNamespace(w.Namespace)); err != nil {
			return nil, fmt.Errorf("listing the Jobs of %s: %w", ref, err)
		}
		for i := range jobs.Items {
			if controlledBy(&jobs.Items[i], w.UID) {
				owners[jobs.Items[i].UID] = jobs.Items[i].Spec.Selector
			}
		}
	case *appsv1.StatefulSet:
		owners[w.UID] = w.Spec.Selector
	case *appsv1.DaemonSet:
		owners[w.UID] = w.Spec.Selector
	case *appsv1.ReplicaSet:
		owners[w.UID] = w.Spec.Selector
	case *batchv1.Job:
		owners[w.UID] = w.Spec.Selector
	default:
		return nil, userErrorf("%s runs no pods Riposte can find", ref)
	}
	if len(owners) == 0 {
		return nil, nil
	}
	selectors := map[types.UID]labels.Selector{}
	for uid, ls := range owners {
		if ls == nil {
			continue // a controller without a selector claims no pod
		}
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return nil, userErrorf("%s has an invalid selector: %v", ref, err)
		}
		selectors[uid] = sel
	}
	var pods corev1.PodList
	if err := in.Reader.List(ctx, &pods, client.InNamespace(ref.Namespace)); err != nil {
		return nil, fmt.Errorf("listing pods of %s: %w", ref, err)
	}
	var out []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		owner := metav1.GetControllerOf(p)
		if owner == nil {
			continue
		}
		if sel, ok := selectors[owner.UID]; ok && !sel.Empty() && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// controlledBy reports whether obj's controller reference names uid.
func controlledBy(obj metav1.Object, uid types.UID) bool {
	o := metav1.GetControllerOf(obj)
	return o != nil && o.UID == uid
}
