package actions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const (
	// QuarantineLabel marks a pod as isolated; its value names the
	// NetworkPolicy variant that selects it.
	QuarantineLabel = "riposte.dev/quarantine"
	// QuarantinedByAnnotation lists the incidents that hold the pod isolated,
	// each with its variant: "ns/incident=deny-all,ns/other=allow-dns".
	QuarantinedByAnnotation = "riposte.dev/quarantined-by"

	quarantineDenyAll  = "deny-all"
	quarantineAllowDNS = "allow-dns"
)

// QuarantinePolicyName is the NetworkPolicy that isolates pods carrying the
// quarantine label with the given value, one per namespace and variant.
func QuarantinePolicyName(variant string) string { return "riposte-quarantine-" + variant }

// isolatePod cuts a pod off the network: it applies a NetworkPolicy in its
// namespace that selects the quarantine label and allows no ingress and no
// egress (or only DNS egress, when asked), then labels the pod. The policy is
// a server-side apply and the label a merge patch of just that key, so
// applying twice changes nothing and other labels are never touched; undo
// removes the label and leaves the policy, which other quarantined pods may
// rely on.
//
// A workload target (a drift finding about a Deployment's pod template, say)
// isolates the pods the workload runs now (see workloadPods), each counted
// by the workload budget as isolating one pod is.
func isolatePod(ctx context.Context, in *Input) ([]Change, error) {
	if t := in.Target; t != nil && slices.Contains(templateWorkloads, t.Kind) {
		changes, err := isolatePodsOf(ctx, in, t, true)
		if errors.Is(err, errNoPod) {
			return nil, userErrorf("%s runs no pod a NetworkPolicy can isolate (none it controls runs yet, or all use the host network); its pods are judged on their own as they run", t)
		}
		return changes, err
	}
	pod, err := targetPod(ctx, in)
	if err != nil {
		return nil, err
	}
	if pod.Spec.HostNetwork {
		return nil, userErrorf("pod %s/%s uses the host network; a NetworkPolicy cannot isolate it", pod.Namespace, pod.Name)
	}
	variant := isolationVariant(in.Step)
	label := quarantineLabel(in, pod, variant)
	label.TakesPodOut = true
	return []Change{quarantinePolicy(pod.Namespace, variant), label}, nil
}

// isolateWorkload isolates every pod of the target's owning workload, with
// the same policy and label as isolatePod. Taking the whole workload out is
// its purpose, so the workload budget does not apply to it.
func isolateWorkload(ctx context.Context, in *Input) ([]Change, error) {
	ref, err := owningWorkload(in, isolatableWorkloads...)
	if err != nil {
		return nil, err
	}
	changes, err := isolatePodsOf(ctx, in, ref, false)
	if errors.Is(err, errNoPod) {
		return nil, userErrorf("%s runs no pod a NetworkPolicy can isolate (none it controls runs, or all use the host network)", ref)
	}
	return changes, err
}

// errNoPod says a workload runs no pod to isolate; each caller says what
// that means for its action.
var errNoPod = errors.New("no pod to isolate")

// isolatePodsOf is the policy and one label per pod the workload runs;
// takesPodOut makes each label count against the workload budget.
func isolatePodsOf(ctx context.Context, in *Input, ref *riposte.ObjectReference, takesPodOut bool) ([]Change, error) {
	pods, err := workloadPods(ctx, in, ref)
	if err != nil {
		return nil, err
	}
	variant := isolationVariant(in.Step)
	changes := []Change{quarantinePolicy(ref.Namespace, variant)}
	for _, p := range pods {
		if p.Spec.HostNetwork || p.DeletionTimestamp != nil {
			continue
		}
		label := quarantineLabel(in, p, variant)
		label.TakesPodOut = takesPodOut
		changes = append(changes, label)
	}
	if len(changes) == 1 {
		return nil, errNoPod
	}
	if len(changes) > MaxChangesPerStep {
		return nil, tooMany("isolating every pod of "+ref.String(), len(changes))
	}
	return changes, nil
}

// isolatableWorkloads are the kinds IsolateWorkload finds above a pod.
var isolatableWorkloads = []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

// templateWorkloads are the workload kinds a drift finding about a pod
// template targets, whose pods IsolatePod isolates.
var templateWorkloads = append(slices.Clone(isolatableWorkloads), "CronJob")

func isolationVariant(step riposte.Step) string {
	if step.IsolatePod != nil && step.IsolatePod.AllowDNS {
		return quarantineAllowDNS
	}
	return quarantineDenyAll
}

// quarantineLabel adds the incident to the pod's quarantine holders. Several
// incidents may isolate one pod; the annotation lists each with its variant,
// the label is the strictest of them, and undoing one incident releases only
// its hold (see ReleaseQuarantine), whatever the order.
//
// The patch is computed from the pod as planned, for the gate and the dry
// run; the executor writes the hold by reading the pod again and patching
// with its resourceVersion (see Hold), so a hold added by another incident
// in between is never overwritten.
func quarantineLabel(in *Input, pod *corev1.Pod, variant string) Change {
	hold := &Hold{Holder: in.Incident.Namespace + "/" + in.Incident.Name, Variant: variant}
	patch, _ := HoldQuarantine(pod.Labels, pod.Annotations, *hold)
	return Change{Op: MergePatch, Object: object("v1", "Pod", pod.Namespace, pod.Name), Patch: patch, UID: string(pod.UID),
		Hold: hold, Summary: fmt.Sprintf("label pod %s %s=%s", pod.Name, QuarantineLabel, variant)}
}

// Hold is one incident's entry in a pod's quarantine hold set.
//
// The set is one annotation every holder rewrites, so it is written by
// optimistic concurrency: read the pod, compute the new set, merge-patch it
// with the resourceVersion read, and on a 409 Conflict read again and
// recompute. A server-side apply with one annotation per holder (each its
// own field manager) would need no retry for the annotations, but the label
// is derived from all holders (the strictest variant), which no per-holder
// field can express; and the one-annotation format stays readable by the
// versions already running.
type Hold struct {
	// Holder is the incident, "namespace/name".
	Holder string `json:"holder"`
	// Variant is the isolation the holder asked for (deny-all, allow-dns).
	Variant string `json:"variant"`
}

// HoldQuarantine is the merge patch that adds h to the hold set of a pod
// with these labels and annotations; inPlace when the pod already is so.
func HoldQuarantine(labels, annotations map[string]string, h Hold) (patch map[string]any, inPlace bool) {
	holders := quarantineHolders(annotations[QuarantinedByAnnotation])
	holders[h.Holder] = h.Variant
	return holdersPatch(labels, annotations, holders)
}

// ReleaseQuarantine is the merge patch that removes holder from a pod's
// quarantine: the label stays, at the strictest remaining variant, while
// another incident still holds the pod, and goes with the annotation when
// none does. inPlace when the pod already is so.
func ReleaseQuarantine(labels, annotations map[string]string, holder string) (patch map[string]any, inPlace bool) {
	holders := quarantineHolders(annotations[QuarantinedByAnnotation])
	delete(holders, holder)
	return holdersPatch(labels, annotations, holders)
}

// StillHeld reports whether a release patch leaves the pod isolated.
func StillHeld(patch map[string]any) bool {
	md, _ := patch["metadata"].(map[string]any)
	labels, _ := md["labels"].(map[string]any)
	return labels[QuarantineLabel] != nil
}

// HoldIn is holder's hold as a recorded patch wrote it; an entry it lacks
// counts as deny-all, the strictest.
func HoldIn(patch map[string]any, holder string) Hold {
	md, _ := patch["metadata"].(map[string]any)
	annotations, _ := md["annotations"].(map[string]any)
	written, _ := annotations[QuarantinedByAnnotation].(string)
	variant, ok := quarantineHolders(written)[holder]
	if !ok {
		variant = quarantineDenyAll
	}
	return Hold{Holder: holder, Variant: variant}
}

func holdersPatch(labels, annotations map[string]string, holders map[string]string) (map[string]any, bool) {
	if len(holders) == 0 {
		_, labelled := labels[QuarantineLabel]
		_, annotated := annotations[QuarantinedByAnnotation]
		return map[string]any{"metadata": map[string]any{
			"labels":      map[string]any{QuarantineLabel: nil},
			"annotations": map[string]any{QuarantinedByAnnotation: nil},
		}}, !labelled && !annotated
	}
	label, annotation := strictest(holders), formatHolders(holders)
	return map[string]any{"metadata": map[string]any{
		"labels":      map[string]any{QuarantineLabel: label},
		"annotations": map[string]any{QuarantinedByAnnotation: annotation},
	}}, labels[QuarantineLabel] == label && annotations[QuarantinedByAnnotation] == annotation
}

// Holders are the incidents (namespace/name) that hold a pod isolated, with
// the variant each asked for; none when the pod is not isolated.
func Holders(labels, annotations map[string]string) map[string]string {
	if labels[QuarantineLabel] == "" {
		return nil
	}
	return quarantineHolders(annotations[QuarantinedByAnnotation])
}

// quarantineHolders parses "ns/incident=variant,..."; an entry without a
// variant (written before variants were listed) counts as deny-all.
func quarantineHolders(annotation string) map[string]string {
	holders := map[string]string{}
	for _, entry := range strings.Split(annotation, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		name, variant, ok := strings.Cut(entry, "=")
		if !ok || (variant != quarantineAllowDNS && variant != quarantineDenyAll) {
			variant = quarantineDenyAll
		}
		holders[name] = variant
	}
	return holders
}

func formatHolders(holders map[string]string) string {
	entries := make([]string, 0, len(holders))
	for name, variant := range holders {
		entries = append(entries, name+"="+variant)
	}
	sort.Strings(entries)
	return strings.Join(entries, ",")
}

// strictest is deny-all if any holder asked for it.
func strictest(holders map[string]string) string {
	for _, v := range holders {
		if v == quarantineDenyAll {
			return quarantineDenyAll
		}
	}
	return quarantineAllowDNS
}

// quarantinePolicy is the deny policy. It is applied before any pod is
// labelled, so the moment a label lands the pod is already cut off.
func quarantinePolicy(namespace, variant string) Change {
	spec := map[string]any{
		"podSelector": map[string]any{"matchLabels": map[string]any{QuarantineLabel: variant}},
		"policyTypes": []any{"Ingress", "Egress"},
	}
	allows := "no ingress and no egress"
	if variant == quarantineAllowDNS {
		allows = "only DNS egress"
		spec["egress"] = []any{map[string]any{"ports": []any{
			map[string]any{"protocol": "UDP", "port": int64(53)},
			map[string]any{"protocol": "TCP", "port": int64(53)},
		}}}
	}
	np := object("networking.k8s.io/v1", "NetworkPolicy", namespace, QuarantinePolicyName(variant))
	np.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "riposte"})
	np.Object["spec"] = spec
	return Change{Op: Apply, Object: np, Shared: true,
		Summary: fmt.Sprintf("NetworkPolicy %s selects pods labelled %s=%s and allows %s", QuarantinePolicyName(variant), QuarantineLabel, variant, allows)}
}
