package enrich

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
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

// CachedKinds are the kinds enrichment reads for every pod incident; the
// manager starts their informers up front.
func CachedKinds() []client.Object {
	return []client.Object{
		&corev1.Pod{}, &corev1.Service{}, &corev1.Event{}, &networkingv1.Ingress{}, &networkingv1.NetworkPolicy{},
		&rbacv1.RoleBinding{}, &rbacv1.ClusterRoleBinding{}, &rbacv1.Role{}, &rbacv1.ClusterRole{},
		&appsv1.Deployment{}, &appsv1.ReplicaSet{}, &appsv1.StatefulSet{},
	}
}

// Result is what enrichment learned, with the condition reason that says so.
type Result struct {
	Context *riposte.IncidentContext
	Reason  string
	Message string
}

// Enricher resolves incident context from a reader (the informer cache). One
// Enricher serves every incident; it is safe for concurrent use.
type Enricher struct {
	Reader client.Reader
	// Now is the clock for the timeline window (tests may fix it).
	Now func() time.Time

	mu            sync.Mutex
	noRoutesUntil time.Time
}

// Enrich resolves the incident's target and its context. A target that does
// not exist or is not named is not an error: the result says so and the
// incident still proceeds to playbooks that need no target.
func (e *Enricher) Enrich(ctx context.Context, inc *riposte.Incident) (Result, error) {
	now := time.Now()
	if e.Now != nil {
		now = e.Now()
	}
	sub := subject(&inc.Spec)
	ref := sub.Target
	ic := &riposte.IncidentContext{Target: ref, Container: sub.Container}
	if ref == nil {
		return Result{Context: ic, Reason: riposte.ReasonNoTarget,
			Message: "the alert's labels name no target (namespace with pod, workload, service, ingress or claim; or node)"}, nil
	}
	if e.clusterScoped(ref) {
		// A namespace written on a cluster-scoped kind means nothing: the
		// guardrails must see it as what it is.
		ref.Namespace = ""
		if personChose(&inc.Spec) && ref.Kind != "Node" {
			ic.Target = nil
			return Result{Context: ic, Reason: riposte.ReasonNoTarget,
				Message: "a person may point an incident only at an object in its own namespace, or at a node; " + ref.String() + " is neither"}, nil
		}
	}
	var (
		spec     *corev1.PodSpec
		template map[string]string // labels the workload's pods carry
		objects  []involved
		err      error
	)
	switch ref.Kind {
	case "Pod":
		spec, template, objects, err = e.pod(ctx, ic)
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob":
		spec, template, objects, err = e.workload(ctx, ic)
	case "Node":
		objects, err = e.node(ctx, ic, sub.ByAddress)
	default:
		objects, err = e.other(ctx, ic)
	}
	if apierrors.IsNotFound(err) {
		msg := fmt.Sprintf("target %s does not exist", ref)
		if sub.ByAddress {
			msg = fmt.Sprintf("no node is named %s, and no single node has that address", ref.Name)
		}
		return Result{Context: ic, Reason: riposte.ReasonTargetNotFound, Message: msg}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("reading target %s: %w", ref, err)
	}
	if spec != nil {
		ic.RiskFlags = RiskFlags(spec)
		if err := e.identity(ctx, ref.Namespace, spec.ServiceAccountName, ic); err != nil {
			return Result{}, err
		}
		if err := e.exposure(ctx, ref.Namespace, template, ic); err != nil {
			return Result{}, err
		}
	}
	if ic.Node != "" && ref.Kind != "Node" {
		objects = append(objects, involved{kind: "Node", name: ic.Node})
	}
	if err := e.timeline(ctx, inc, objects, now, ic); err != nil {
		return Result{}, err
	}
	if err := e.related(ctx, inc, now, ic); err != nil {
		return Result{}, err
	}
	return Result{Context: ic, Reason: riposte.ReasonTargetResolved, Message: "target " + ref.String() + " resolved"}, nil
}

// clusterScoped reports whether the API server serves ref's kind without a
// namespace; unknown kinds are taken as written.
func (e *Enricher) clusterScoped(ref *riposte.ObjectReference) bool {
	mapped, ok := e.Reader.(interface{ RESTMapper() meta.RESTMapper })
	if !ok {
		return false
	}
	gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
	m, err := mapped.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	return err == nil && m.Scope.Name() == meta.RESTScopeNameRoot
}

// personChose reports whether a person, not intake or the drift detector,
// chose the incident's target.
func personChose(spec *riposte.IncidentSpec) bool {
	return spec.Source == riposte.SourceManual || spec.TargetSetBy != ""
}

func (e *Enricher) pod(ctx context.Context, ic *riposte.IncidentContext) (*corev1.PodSpec, map[string]string, []involved, error) {
	var pod corev1.Pod
	if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: ic.Target.Namespace, Name: ic.Target.Name}, &pod); err != nil {
		return nil, nil, nil, err
	}
	ic.Target.UID = string(pod.UID)
	ic.Node = pod.Spec.NodeName
	ic.ServiceAccountName = pod.Spec.ServiceAccountName
	ic.TargetLabels = boundedLabels(pod.Labels)
	ic.Images = imagesOf(&pod.Spec)
	ic.Containers = containersOf(&pod)
	if !hasContainer(&pod, ic.Container) {
		// A scrape's container left beside the pod (an exporter's), not
		// one of the pod's own.
		ic.Container = ""
	}
	objects := []involved{{namespace: pod.Namespace, kind: "Pod", name: pod.Name, uid: pod.UID}}
	chain, owners, fetched, err := e.ownerChain(ctx, pod.Namespace, pod.OwnerReferences)
	ic.OwnerChain = chain
	if err != nil {
		return nil, nil, nil, err
	}
	ic.Replicas = topReplicas(fetched)
	return &pod.Spec, pod.Labels, append(objects, owners...), nil
}

func (e *Enricher) workload(ctx context.Context, ic *riposte.IncidentContext) (*corev1.PodSpec, map[string]string, []involved, error) {
	obj := workloadObject(ic.Target.Kind)
	if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: ic.Target.Namespace, Name: ic.Target.Name}, obj); err != nil {
		return nil, nil, nil, err
	}
	template := podTemplateOf(obj)
	ic.Target.UID = string(obj.GetUID())
	ic.ServiceAccountName = template.Spec.ServiceAccountName
	ic.TargetLabels = boundedLabels(obj.GetLabels())
	ic.Images = imagesOf(&template.Spec)
	objects := []involved{{namespace: obj.GetNamespace(), kind: ic.Target.Kind, name: obj.GetName(), uid: obj.GetUID()}}
	chain, owners, fetched, err := e.ownerChain(ctx, obj.GetNamespace(), obj.GetOwnerReferences())
	ic.OwnerChain = chain
	if err != nil {
		return nil, nil, nil, err
	}
	ic.Replicas = topReplicas(append([]client.Object{obj}, fetched...))
	return &template.Spec, template.Labels, append(objects, owners...), nil
}

// node reads the target node; byAddress allows its name to be one of its
// addresses (a scrape's instance), looked up through NodeAddressIndex.
func (e *Enricher) node(ctx context.Context, ic *riposte.IncidentContext, byAddress bool) ([]involved, error) {
	var node corev1.Node
	err := e.Reader.Get(ctx, client.ObjectKey{Name: ic.Target.Name}, &node)
	if apierrors.IsNotFound(err) && byAddress {
		err = e.nodeAt(ctx, ic.Target.Name, &node)
	}
	if err != nil {
		return nil, err
	}
	ic.Target.Name = node.Name
	ic.Target.UID = string(node.UID)
	ic.Node = node.Name
	ic.TargetLabels = boundedLabels(node.Labels)
	return []involved{{kind: "Node", name: node.Name, uid: node.UID}}, nil
}

// NodeAddressIndex indexes nodes by their addresses, so that an alert
// naming a node by its scrape address (node-exporter's instance) finds it in
// the cache without listing every node.
const NodeAddressIndex = "riposte.dev/node-address"

// NodeAddresses are the values NodeAddressIndex holds for a node.
func NodeAddresses(obj client.Object) []string {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil
	}
	var out []string
	for _, a := range node.Status.Addresses {
		if a.Address != "" && !slices.Contains(out, a.Address) {
			out = append(out, a.Address)
		}
	}
	return out
}

// nodeAt finds the one node with the address; none, or more than one (an
// address two nodes report), is not found.
func (e *Enricher) nodeAt(ctx context.Context, address string, node *corev1.Node) error {
	var nodes corev1.NodeList
	if err := e.Reader.List(ctx, &nodes, client.MatchingFields{NodeAddressIndex: address}); err != nil {
		return fmt.Errorf("finding the node at %s: %w", address, err)
	}
	if len(nodes.Items) != 1 {
		return apierrors.NewNotFound(corev1.Resource("nodes"), address)
	}
	*node = nodes.Items[0]
	return nil
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// other resolves any other kind (Service, Ingress, PersistentVolumeClaim)
// by its metadata only.
func (e *Enricher) other(ctx context.Context, ic *riposte.IncidentContext) ([]involved, error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(schema.FromAPIVersionAndKind(ic.Target.APIVersion, ic.Target.Kind))
	if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: ic.Target.Namespace, Name: ic.Target.Name}, meta); err != nil {
		return nil, err
	}
	ic.Target.UID = string(meta.UID)
	ic.TargetLabels = boundedLabels(meta.Labels)
	return []involved{{namespace: meta.Namespace, kind: ic.Target.Kind, name: meta.Name, uid: meta.UID}}, nil
}

// ownerChain follows controller owner references upwards through the kinds
// Riposte knows, and returns the owners it read so that their replicas need
// no second read. An owner that is gone ends the chain.
func (e *Enricher) ownerChain(ctx context.Context, namespace string, refs []metav1.OwnerReference) ([]riposte.OwnerReference, []involved, []client.Object, error) {
	var chain []riposte.OwnerReference
	var owners []involved
	var fetched []client.Object
	for len(chain) < maxOwnerChain {
		owner := controllerOf(refs)
		if owner == nil {
			return chain, owners, fetched, nil
		}
		chain = append(chain, riposte.OwnerReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name})
		owners = append(owners, involved{namespace: namespace, kind: owner.Kind, name: owner.Name, uid: owner.UID})
		gvk := schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind)
		if !walkableOwners[gvk] {
			return chain, owners, fetched, nil
		}
		// Typed reads: the informers the rest of the manager uses, not a
		// second, metadata-only cache of each kind.
		obj := workloadObject(gvk.Kind)
		// Not copied: owners are only read (their references, their
		// replicas, copied out by topReplicas).
		if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: owner.Name}, obj, client.UnsafeDisableDeepCopy); err != nil {
			if apierrors.IsNotFound(err) {
				return chain, owners, fetched, nil
			}
			return chain, owners, fetched, fmt.Errorf("reading owner %s %s: %w", owner.Kind, owner.Name, err)
		}
		fetched = append(fetched, obj)
		refs = obj.GetOwnerReferences()
	}
	return chain, owners, fetched, nil
}

// workloadObject is an empty typed object of a workload kind Riposte knows.
func workloadObject(kind string) client.Object {
	switch kind {
	case "ReplicaSet":
		return &appsv1.ReplicaSet{}
	case "Deployment":
		return &appsv1.Deployment{}
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	case "Job":
		return &batchv1.Job{}
	default:
		return &batchv1.CronJob{}
	}
}

func podTemplateOf(obj client.Object) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *appsv1.ReplicaSet:
		return &o.Spec.Template
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	case *appsv1.DaemonSet:
		return &o.Spec.Template
	case *batchv1.Job:
		return &o.Spec.Template
	default:
		return &obj.(*batchv1.CronJob).Spec.JobTemplate.Spec.Template
	}
}

// topReplicas returns the replicas the top-most controller with replicas asks
// for, among objects ordered from the target upwards.
func topReplicas(objs []client.Object) *int32 {
	for i := len(objs) - 1; i >= 0; i-- {
		var replicas *int32
		switch o := objs[i].(type) {
		case *appsv1.Deployment:
			replicas = o.Spec.Replicas
		case *appsv1.StatefulSet:
			replicas = o.Spec.Replicas
		case *appsv1.ReplicaSet:
			replicas = o.Spec.Replicas
		default:
			continue
		}
		if replicas == nil {
			return nil
		}
		return ptr.To(*replicas) // a copy: the owners may be the cache's own
	}
	return nil
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
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			if !slices.Contains(images, c.Image) && len(images) < maxImages {
				images = append(images, c.Image)
			}
		}
	}
	return images
}

// containersOf pairs each container with the digest the kubelet resolved.
// Only names and images: never environment values.
func containersOf(pod *corev1.Pod) []riposte.ContainerInfo {
	ids := map[string]string{}
	for _, cs := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, s := range cs {
			ids[s.Name] = s.ImageID
		}
	}
	var out []riposte.ContainerInfo
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if len(out) < maxImages {
				out = append(out, riposte.ContainerInfo{Name: c.Name, Image: c.Image, ImageID: ids[c.Name]})
			}
		}
	}
	return out
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
