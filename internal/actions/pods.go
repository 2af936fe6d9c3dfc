package actions

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
)

// deletePod deletes the target pod; its controller, if any, makes a new one.
// Undo cannot bring the deleted pod back.
func deletePod(ctx context.Context, in *Input) ([]Change, error) {
	pod, err := targetPod(ctx, in)
	if err != nil {
		return nil, err
	}
	return []Change{{Op: Delete, Object: object("v1", "Pod", pod.Namespace, pod.Name), UID: string(pod.UID),
		Irreversible: true, TakesPodOut: true, Summary: "delete pod " + pod.Name}}, nil
}

// evictPod evicts the target pod through the eviction API, so a
// PodDisruptionBudget that forbids it stops the step.
func evictPod(ctx context.Context, in *Input) ([]Change, error) {
	pod, err := targetPod(ctx, in)
	if err != nil {
		return nil, err
	}
	return []Change{{Op: Evict, Object: object("v1", "Pod", pod.Namespace, pod.Name), UID: string(pod.UID),
		Irreversible: true, TakesPodOut: true, Summary: fmt.Sprintf("evict pod %s (respecting its PodDisruptionBudgets)", pod.Name)}}, nil
}

func toMap(obj any) (map[string]any, error) {
	return runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
}

func fromMap(m map[string]any, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(m, into)
}
