package actions

import (
	"context"
	"fmt"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// RestartedForAnnotation, set on a pod template, names the incident that
// restarted the workload. A re-run for the same incident changes nothing, so
// a retry never restarts twice.
const RestartedForAnnotation = "riposte.dev/restarted-for"

// scaleWorkload sets the replicas of the target's Deployment, StatefulSet or
// ReplicaSet; undo puts the previous count back.
func scaleWorkload(ctx context.Context, in *Input) ([]Change, error) {
	ref, err := liveWorkload(ctx, in, "Deployment", "StatefulSet", "ReplicaSet")
	if err != nil {
		return nil, err
	}
	n := int64(in.Step.Scale.Replicas)
	return []Change{patchOf(ref, map[string]any{"spec": map[string]any{"replicas": n}},
		fmt.Sprintf("scale %s %s to %d replicas", ref.Kind, ref.Name, n))}, nil
}

// rolloutRestart restarts every pod of the target's Deployment, StatefulSet
// or DaemonSet the way kubectl rollout restart does: by changing the pod
// template, so the controller replaces pods under its own rollout rules.
func rolloutRestart(ctx context.Context, in *Input) ([]Change, error) {
	ref, err := liveWorkload(ctx, in, "Deployment", "StatefulSet", "DaemonSet")
	if err != nil {
		return nil, err
	}
	patch := map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{RestartedForAnnotation: in.Incident.Namespace + "/" + in.Incident.Name}}}}}
	restart := patchOf(ref, patch, fmt.Sprintf("restart the pods of %s %s", ref.Kind, ref.Name))
	restart.Irreversible = true
	return []Change{restart}, nil
}

// suspendCronJob stops the target's CronJob from starting new Jobs.
func suspendCronJob(ctx context.Context, in *Input) ([]Change, error) {
	return suspend(ctx, in, "CronJob", "no new Jobs start")
}

// suspendJob suspends the target's Job: its running pods are stopped and no
// new ones start until it is resumed (by undo).
func suspendJob(ctx context.Context, in *Input) ([]Change, error) {
	return suspend(ctx, in, "Job", "its pods are stopped")
}

func suspend(ctx context.Context, in *Input, kind, effect string) ([]Change, error) {
	ref, err := liveWorkload(ctx, in, kind)
	if err != nil {
		return nil, err
	}
	return []Change{patchOf(ref, map[string]any{"spec": map[string]any{"suspend": true}},
		fmt.Sprintf("suspend %s %s: %s", kind, ref.Name, effect))}, nil
}

// liveWorkload is the target's owning workload of one of kinds, checked to
// exist.
func liveWorkload(ctx context.Context, in *Input, kinds ...string) (*riposte.ObjectReference, error) {
	ref, err := owningWorkload(in, kinds...)
	if err != nil {
		return nil, err
	}
	if _, err := read(ctx, in, ref); err != nil {
		return nil, err
	}
	return ref, nil
}
