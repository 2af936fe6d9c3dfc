package actions

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// mirrorPodAnnotation marks a static pod's mirror, which the API cannot evict.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// cordonNode marks the node unschedulable; undo puts back what it was.
func cordonNode(ctx context.Context, in *Input) ([]Change, error) {
	node, err := targetNode(ctx, in)
	if err != nil {
		return nil, err
	}
	return []Change{cordon(node)}, nil
}

func cordon(node *corev1.Node) Change {
	return Change{Op: MergePatch, Object: object("v1", "Node", "", node.Name),
		Patch:   map[string]any{"spec": map[string]any{"unschedulable": true}},
		Summary: "cordon node " + node.Name + ": no new pods are scheduled on it"}
}

// drainNode cordons the node and evicts its pods as kubectl drain does:
// DaemonSet pods (their controller ignores cordons) and static pods' mirrors
// (the API cannot evict them) stay, finished pods are left alone.
func drainNode(ctx context.Context, in *Input) ([]Change, error) {
	node, err := targetNode(ctx, in)
	if err != nil {
		return nil, err
	}
	var pods corev1.PodList
	if err := in.Reader.List(ctx, &pods); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	var on []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName != node.Name || p.DeletionTimestamp != nil || drainSkips(p) {
			continue
		}
		on = append(on, p)
	}
	sort.Slice(on, func(i, j int) bool {
		if on[i].Namespace != on[j].Namespace {
			return on[i].Namespace < on[j].Namespace
		}
		return on[i].Name < on[j].Name
	})
	if len(on)+1 > MaxChangesPerStep {
		return nil, tooMany("draining node "+node.Name, len(on)+1)
	}
	changes := []Change{cordon(node)}
	for _, p := range on {
		changes = append(changes, Change{Op: Evict, Object: object("v1", "Pod", p.Namespace, p.Name), UID: string(p.UID),
			Irreversible: true, TakesPodOut: true, Summary: fmt.Sprintf("evict pod %s/%s from node %s", p.Namespace, p.Name, node.Name)})
	}
	return changes, nil
}

func drainSkips(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[mirrorPodAnnotation]; mirror {
		return true
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return true
	}
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller && o.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}

// taint adds (or replaces, by key and effect) a taint on the node. Taints are
// one list, so the patch carries the whole new list and undo the old one.
func taint(ctx context.Context, in *Input) ([]Change, error) {
	node, err := targetNode(ctx, in)
	if err != nil {
		return nil, err
	}
	p := in.Step.Taint
	if p == nil {
		p = &riposte.TaintParams{}
	}
	key, effect := p.Key, corev1.TaintEffect(p.Effect)
	if key == "" {
		key = "riposte.dev/compromised"
	}
	if effect == "" {
		effect = corev1.TaintEffectNoSchedule
	}
	value, err := in.Render(p.Value)
	if err != nil {
		return nil, err
	}
	var taints []any
	for _, t := range node.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			continue
		}
		m, err := toMap(&t)
		if err != nil {
			return nil, err
		}
		taints = append(taints, m)
	}
	added := map[string]any{"key": key, "effect": string(effect)}
	if value != "" {
		added["value"] = value
	}
	taints = append(taints, added)
	return []Change{{Op: MergePatch, Object: object("v1", "Node", "", node.Name),
		Patch:   map[string]any{"spec": map[string]any{"taints": taints}},
		Summary: fmt.Sprintf("taint node %s %s=%s:%s", node.Name, key, value, effect)}}, nil
}
