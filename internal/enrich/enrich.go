package enrich

import (
	"context"
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Bounds keep an Incident's status small whatever the target looks like.
const (
	maxOwnerChain = 8
	maxImages     = 32
	maxLabels     = 64
)

// walkableOwners are the controller kinds whose own owners Riposte follows.
var walkableOwners = map[schema.GroupVersionKind]bool{
	{Group: "apps", Version: "v1", Kind: "ReplicaSet"}:  true,
	{Group: "apps", Version: "v1", Kind: "Deployment"}:  true,
	{Group: "apps", Version: "v1", Kind: "StatefulSet"}: true,
	{Group: "apps", Version: "v1", Kind: "DaemonSet"}:   true,
	{Group: "batch", Version: "v1", Kind: "Job"}:        true,
	{Group: "batch", Version: "v1", Kind: "CronJob"}:    true,
}

// Result is what enrichment learned, with the condition reason that says so.
type Result struct {
	Context *riposte.IncidentContext
	Reason  string
	Message string
}

// Enricher resolves incident context from a reader (the informer cache).
type Enricher struct {
	Reader client.Reader
}

// Enrich resolves the incident's target and its context. A target that does
// not exist or is not named is not an error: the result says so and the
// incident still proceeds to playbooks that need no target.
func (e *Enricher) Enrich(ctx context.Context, spec *riposte.IncidentSpec) (Result, error) {
	ref := TargetFromIncident(spec)
	if ref == nil {
		return Result{Context: &riposte.IncidentContext{}, Reason: riposte.ReasonNoTarget,
			Message: "the alert's labels name no target (namespace with pod, deployment, statefulset or daemonset; or node)"}, nil
	}
	ic := &riposte.IncidentContext{Target: ref}
	var err error
	switch ref.Kind {
	case "Pod":
		err = e.pod(ctx, ic)
	case "Deployment", "StatefulSet", "DaemonSet":
		err = e.workload(ctx, ic)
	case "Node":
		err = e.node(ctx, ic)
	default:
		return Result{Context: ic, Reason: riposte.ReasonTargetResolved, Message: "target " + ref.String() + " taken as given"}, nil
	}
	if apierrors.IsNotFound(err) {
		return Result{Context: ic, Reason: riposte.ReasonTargetNotFound,
			Message: fmt.Sprintf("target %s does not exist", ref)}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("reading target %s: %w", ref, err)
	}
	return Result{Context: ic, Reason: riposte.ReasonTargetResolved, Message: "target " + ref.String() + " resolved"}, nil
}

func (e *Enricher) pod(ctx context.Context, ic *riposte.IncidentContext) error {
	var pod corev1.Pod
	if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: ic.Target.Namespace, Name: ic.Target.Name}, &pod); err != nil {
		return err
	}
	ic.Target.UID = string(pod.UID)
	ic.Node = pod.Spec.NodeName
	ic.ServiceAccountName = pod.Spec.ServiceAccountName
	ic.TargetLabels = boundedLabels(pod.Labels)
	ic.Images = imagesOf(&pod.Spec)
	chain, err := e.ownerChain(ctx, pod.Namespace, pod.OwnerReferences)
	ic.OwnerChain = chain
	return err
}

func (e *Enricher) workload(ctx context.Context, ic *riposte.IncidentContext) error {
	var (
		obj  client.Object
		spec *corev1.PodSpec
	)
	switch ic.Target.Kind {
	case "Deployment":
		d := &appsv1.Deployment{}
		obj, spec = d, &d.Spec.Template.Spec
	case "StatefulSet":
		s := &appsv1.StatefulSet{}
		obj, spec = s, &s.Spec.Template.Spec
	default:
		d := &appsv1.DaemonSet{}
		obj, spec = d, &d.Spec.Template.Spec
	}
	if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: ic.Target.Namespace, Name: ic.Target.Name}, obj); err != nil {
		return err
	}
	ic.Target.UID = string(obj.GetUID())
	ic.ServiceAccountName = spec.ServiceAccountName
	ic.TargetLabels = boundedLabels(obj.GetLabels())
	ic.Images = imagesOf(spec)
	chain, err := e.ownerChain(ctx, obj.GetNamespace(), obj.GetOwnerReferences())
	ic.OwnerChain = chain
	return err
}

func (e *Enricher) node(ctx context.Context, ic *riposte.IncidentContext) error {
	var node corev1.Node
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: ic.Target.Name}, &node); err != nil {
		return err
	}
	ic.Target.UID = string(node.UID)
	ic.Node = node.Name
	ic.TargetLabels = boundedLabels(node.Labels)
	return nil
}

// ownerChain follows controller owner references upwards through the kinds
// Riposte knows, reading metadata only. An owner that is gone ends the chain.
func (e *Enricher) ownerChain(ctx context.Context, namespace string, refs []metav1.OwnerReference) ([]riposte.OwnerReference, error) {
	var chain []riposte.OwnerReference
	for len(chain) < maxOwnerChain {
		owner := controllerOf(refs)
		if owner == nil {
			return chain, nil
		}
		chain = append(chain, riposte.OwnerReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name})
		gvk := schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind)
		if !walkableOwners[gvk] {
			return chain, nil
		}
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(gvk)
		if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: owner.Name}, meta); err != nil {
			if apierrors.IsNotFound(err) {
				return chain, nil
			}
			return chain, fmt.Errorf("reading owner %s %s: %w", owner.Kind, owner.Name, err)
		}
		refs = meta.OwnerReferences
	}
	return chain, nil
}

func controllerOf(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	return nil
}

func imagesOf(spec *corev1.PodSpec) []string {
	var images []string
	seen := map[string]bool{}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			if !seen[c.Image] && len(images) < maxImages {
				seen[c.Image] = true
				images = append(images, c.Image)
			}
		}
	}
	return images
}

func boundedLabels(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	// Sorted, so a truncated set is the same on every pass and the status
	// does not churn.
	keys := slices.Sorted(maps.Keys(in))
	out := make(map[string]string, min(len(keys), maxLabels))
	for _, k := range keys[:min(len(keys), maxLabels)] {
		out[k] = in[k]
	}
	return out
}
