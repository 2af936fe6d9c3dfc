package incident

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
)

// podHoldersIndex indexes isolated pods by the incidents holding them.
const podHoldersIndex = "riposte.dev/pod-holders"

func podHolders(obj client.Object) []string {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	holders := actions.Holders(pod.Labels, pod.Annotations)
	out := make([]string, 0, len(holders))
	for h := range holders {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// adoptOrphanHolds records the quarantine holds that name an incident with
// no committed plan. A hold is its own record only if the next pass reaches
// commit, which finds it in place; a pass cut off between the pod's write
// and its status write (a crash), followed by an end that plans nothing
// (the alert resolved, an undo, a deletion), would otherwise leave the pod
// isolated with no record to undo it. The holds are recorded as applied,
// undone by releasing them, as the playbook's account.
func (r *Reconciler) adoptOrphanHolds(ctx context.Context, p *pass) error {
	inc := p.inc
	if inc.Status.PlanHash != "" || len(inc.Status.Steps) > 0 || inc.Status.Playbook == nil {
		return nil
	}
	holder := inc.Namespace + "/" + inc.Name
	var pods corev1.PodList
	// Only the incident's own namespace: Riposte isolates pods where their
	// incident lives, and a hold written in another namespace's name by
	// whoever may edit pods there is none of this incident's business.
	if err := r.List(ctx, &pods, client.InNamespace(inc.Namespace), client.MatchingFields{podHoldersIndex: holder}, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("finding the pods this incident holds: %w", err)
	}
	if len(pods.Items) == 0 {
		return nil
	}
	pb := p.pb
	if pb == nil {
		pb = &riposte.Playbook{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: inc.Status.Playbook.Namespace, Name: inc.Status.Playbook.Name}, pb); err != nil {
			if apierrors.IsNotFound(err) {
				return nil // no account to undo them as: nothing Riposte could release either
			}
			return err
		}
	}
	runAs, err := RunsAs(pb, r.OperatorNamespace)
	if err != nil {
		return nil // the same: a playbook no account is known for wrote nothing
	}
	rec := riposte.StepRecord{Name: "recovered", Action: riposte.ActionIsolatePod, Phase: riposte.StepApplied,
		Message: "quarantine holds naming this incident were found with no record (written by a pass cut off before it stored them); recorded so that undo releases them"}
	for i := range pods.Items {
		pod := &pods.Items[i]
		ref := riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{actions.QuarantineLabel: actions.Holders(pod.Labels, pod.Annotations)[holder]}}})
		rec.Changes = append(rec.Changes, riposte.ChangeRecord{Object: ref, FieldManager: actions.FieldManager, Method: string(actions.MergePatch),
			Operation: riposte.OperationPatch, Undo: riposte.UndoRelease, Restore: holder, Done: true, Request: string(patch),
			Summary: "found in place: pod " + pod.Namespace + "/" + pod.Name + " isolated in this incident's name"})
		if rec.Target == nil {
			rec.Target = &ref
		}
	}
	inc.Status.Steps, inc.Status.RunAs = []riposte.StepRecord{rec}, runAs
	r.event(inc, corev1.EventTypeWarning, "HoldsRecovered", "Record", rec.Message)
	return nil
}
