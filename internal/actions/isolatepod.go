package actions

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const (
	// QuarantineLabel marks a pod as isolated; its value names the
	// NetworkPolicy variant that selects it.
	QuarantineLabel = "riposte.dev/quarantine"
	// QuarantinedByAnnotation names the incident that isolated the pod.
	QuarantinedByAnnotation = "riposte.dev/quarantined-by"

	quarantineDenyAll  = "deny-all"
	quarantineAllowDNS = "allow-dns"
)

// QuarantinePolicyName is the NetworkPolicy that isolates pods carrying the
// quarantine label with the given value, one per namespace and variant.
func QuarantinePolicyName(variant string) string { return "riposte-quarantine-" + variant }

// IsolatePod cuts a pod off the network: it labels the pod as quarantined and
// applies a NetworkPolicy in its namespace that selects that label and allows
// no ingress and no egress (or only DNS egress, when asked). Both writes are
// server-side applies under Riposte's field manager, so applying twice is a
// no-op and undo releases exactly the label.
type IsolatePod struct{}

// Plan implements Planner.
func (IsolatePod) Plan(ctx context.Context, in Input) ([]Change, error) {
	t := in.Target
	if t == nil || t.Kind != "Pod" {
		return nil, userErrorf("IsolatePod needs a Pod target; the incident's target is %s", describe(t))
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
	if pod.Spec.HostNetwork {
		return nil, userErrorf("pod %s/%s uses the host network; a NetworkPolicy cannot isolate it", t.Namespace, t.Name)
	}
	variant := quarantineDenyAll
	if in.Step.IsolatePod != nil && in.Step.IsolatePod.AllowDNS {
		variant = quarantineAllowDNS
	}

	label := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"name":        pod.Name,
			"namespace":   pod.Namespace,
			"labels":      map[string]any{QuarantineLabel: variant},
			"annotations": map[string]any{QuarantinedByAnnotation: in.Incident.Namespace + "/" + in.Incident.Name},
		},
	}}
	return []Change{
		{Object: quarantinePolicy(pod.Namespace, variant), Summary: fmt.Sprintf("NetworkPolicy %s selects pods labelled %s=%s and allows %s", QuarantinePolicyName(variant), QuarantineLabel, variant, allowed(variant))},
		{Object: label, Summary: fmt.Sprintf("label pod %s %s=%s", pod.Name, QuarantineLabel, variant)},
	}, nil
}

func allowed(variant string) string {
	if variant == quarantineAllowDNS {
		return "only DNS egress"
	}
	return "no ingress and no egress"
}

// quarantinePolicy is the deny policy. It is applied before the pod is
// labelled, so the moment the label lands the pod is already cut off.
func quarantinePolicy(namespace, variant string) *unstructured.Unstructured {
	spec := map[string]any{
		"podSelector": map[string]any{"matchLabels": map[string]any{QuarantineLabel: variant}},
		"policyTypes": []any{"Ingress", "Egress"},
	}
	if variant == quarantineAllowDNS {
		spec["egress"] = []any{map[string]any{"ports": []any{
			map[string]any{"protocol": "UDP", "port": int64(53)},
			map[string]any{"protocol": "TCP", "port": int64(53)},
		}}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.k8s.io/v1",
		"kind":       "NetworkPolicy",
		"metadata": map[string]any{
			"name":      QuarantinePolicyName(variant),
			"namespace": namespace,
			"labels":    map[string]any{"app.kubernetes.io/managed-by": "riposte"},
		},
		"spec": spec,
	}}
}

func describe(t *riposte.ObjectReference) string {
	if t == nil {
		return "not resolved"
	}
	return t.String()
}
