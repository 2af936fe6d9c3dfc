package actions

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// targetPod reads the incident's target pod, and refuses a pod that was
// replaced since the incident saw it.
func targetPod(ctx context.Context, in *Input) (*corev1.Pod, error) {
	t := in.Target
	if t == nil || t.Kind != "Pod" {
		return nil, userErrorf("%s needs a Pod target; the incident's target is %s", in.Step.Action, describe(t))
	}
	var pod corev1.Pod
	if err := in.Reader.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.Name}, &pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, userErrorf("pod %s/%s does not exist", t.Namespace, t.Name)
		}
		return nil, fmt.Errorf("reading pod %s/%s: %w", t.Namespace, t.Name, err)
	}
	if t.UID != "" && string(pod.UID) != t.UID {
		return nil, userErrorf("pod %s/%s was replaced (uid %s, incident saw %s)", t.Namespace, t.Name, pod.UID, t.UID)
	}
	return &pod, nil
}

// workloadKinds maps the workload kinds actions understand to their API group version.
var workloadKinds = map[string]string{
	"Deployment": "apps/v1", "StatefulSet": "apps/v1", "ReplicaSet": "apps/v1", "DaemonSet": "apps/v1",
	"Job": "batch/v1", "CronJob": "batch/v1",
}

// owningWorkload returns the target itself when it is one of kinds, else the
// topmost owner of the target that is: a pod of a Deployment's ReplicaSet
// resolves to the Deployment, so scaling it sticks.
func owningWorkload(in *Input, kinds ...string) (*riposte.ObjectReference, error) {
	t := in.Target
	if t == nil {
		return nil, userErrorf("%s needs a target; the incident has none", in.Step.Action)
	}
	if slices.Contains(kinds, t.Kind) {
		return t, nil
	}
	if c := in.Incident.Status.Context; c != nil {
		for i := len(c.OwnerChain) - 1; i >= 0; i-- {
			o := c.OwnerChain[i]
			if slices.Contains(kinds, o.Kind) {
				return &riposte.ObjectReference{APIVersion: workloadKinds[o.Kind], Kind: o.Kind, Namespace: t.Namespace, Name: o.Name}, nil
			}
		}
	}
	return nil, userErrorf("%s needs a %v or a pod owned by one; the target is %s", in.Step.Action, kinds, t)
}

// targetNode names the node the step acts on: the target when it is a Node,
// else the node the target pod runs on.
func targetNode(ctx context.Context, in *Input) (*corev1.Node, error) {
	t := in.Target
	name := ""
	switch {
	case t != nil && t.Kind == "Node":
		name = t.Name
	case in.Incident.Status.Context != nil:
		name = in.Incident.Status.Context.Node
	}
	if name == "" {
		return nil, userErrorf("%s needs a Node target or a pod scheduled on a node; the target is %s", in.Step.Action, describe(t))
	}
	var node corev1.Node
	if err := in.Reader.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, userErrorf("node %s does not exist", name)
		}
		return nil, fmt.Errorf("reading node %s: %w", name, err)
	}
	return &node, nil
}

// read fetches ref as its typed object, so the manager's typed informers serve it.
func read(ctx context.Context, in *Input, ref *riposte.ObjectReference) (client.Object, error) {
	gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
	obj, err := in.Scheme.New(gvk)
	if err != nil {
		return nil, userErrorf("%s cannot act on kind %s", in.Step.Action, gvk)
	}
	o := obj.(client.Object)
	if err := in.Reader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, o); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, userErrorf("%s does not exist", ref)
		}
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	return o, nil
}
