package incident

import (
	"context"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// +kubebuilder:rbac:groups=riposte.dev,resources=incidents,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=riposte.dev,resources=incidents/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=riposte.dev,resources=approvalgates,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=riposte.dev,resources=playbooks,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets;replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs;cronjobs,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch
// Remediation writes are made as each playbook's own service account, but no
// marker grants impersonate: a cluster-wide grant would let the manager (or
// its stolen token) become any account, kube-system's included. Riposte may
// impersonate only the accounts named in config/rbac/impersonation_role.yaml
// and those teams grant it by name in their own namespace.
// The global pause is a ConfigMap in Riposte's namespace.
// +kubebuilder:rbac:groups="",namespace=riposte-system,resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=services;events;persistentvolumeclaims,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings;clusterroles;clusterrolebindings,verbs=get;list;watch

// targetPodIndex indexes incidents by the pod they are about.
const targetPodIndex = "riposte.dev/target-pod"

// gateIncidentIndex indexes gates by spec.incident, which is immutable (the
// label saying the same may be edited by approvers).
const gateIncidentIndex = "riposte.dev/gate-incident"

// SetupWithManager registers the reconciler. It is driven by its Incidents,
// by the ApprovalGates it owns (a decided gate wakes its incident), and by
// the deletion of a target pod (a pending plan for it is withdrawn).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &riposte.Incident{}, targetPodIndex, func(obj client.Object) []string {
		t := targetOf(obj.(*riposte.Incident))
		if t == nil || t.Kind != "Pod" {
			return nil
		}
		return []string{t.Namespace + "/" + t.Name}
	}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, podHoldersIndex, podHolders); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &riposte.ApprovalGate{}, gateIncidentIndex, func(obj client.Object) []string {
		return []string{obj.(*riposte.ApprovalGate).Spec.Incident}
	}); err != nil {
		return err
	}
	onlyDeletes := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
	}
	b := ctrl.NewControllerManagedBy(mgr)
	if r.Records != nil {
		// The record writer wakes a deleted incident once its record is
		// stored (or the sink fails), so the deletion that waits for it
		// goes on, or says why not.
		stored := make(chan event.TypedGenericEvent[types.NamespacedName], 1024)
		r.Records.Notify = func(nn types.NamespacedName) {
			// Only a deletion waits on its record: any other incident
			// notes where its record landed with its next status write,
			// and a pass now would do nothing.
			cached := &riposte.Incident{}
			if err := r.Get(context.Background(), nn, cached, client.DisableReadYourWritesConsistency); err == nil && cached.DeletionTimestamp.IsZero() {
				return
			}
			// A full queue while stopping must not hold the writer: the
			// incident is looked at again after the restart anyway.
			select {
			case stored <- event.TypedGenericEvent[types.NamespacedName]{Object: nn}:
			case <-time.After(time.Second):
			}
		}
		b = b.WatchesRawSource(source.Channel(stored, handler.TypedFuncs[types.NamespacedName, reconcile.Request]{
			GenericFunc: func(_ context.Context, e event.TypedGenericEvent[types.NamespacedName], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				q.Add(reconcile.Request{NamespacedName: e.Object})
			},
		}))
	}
	return b.
		For(&riposte.Incident{}).
		Owns(&riposte.ApprovalGate{}).
		Watches(&riposte.Incident{}, handler.EnqueueRequestsFromMapFunc(r.unlistedRelated), builder.WithPredicates(justEnriched)).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.incidentsAboutPod), builder.WithPredicates(onlyDeletes)).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.heldIncidents), builder.WithPredicates(predicate.NewPredicateFuncs(r.isPauseSwitch))).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(concurrency, 1)}).
		Named("incident").
		Complete(r)
}

// justEnriched selects an incident's first enrichment.
var justEnriched = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, cur := e.ObjectOld.(*riposte.Incident), e.ObjectNew.(*riposte.Incident)
		return old.Status.EnrichedAt == nil && cur.Status.EnrichedAt != nil && cur.Status.Context != nil
	},
}

// unlistedRelated wakes the related incidents a just-enriched incident
// lists that do not list it, so each lists the other whichever was
// enriched first.
func (r *Reconciler) unlistedRelated(ctx context.Context, obj client.Object) []reconcile.Request {
	inc := obj.(*riposte.Incident)
	if inc.Status.Context == nil {
		return nil // the update's old side is mapped too
	}
	var reqs []reconcile.Request
	for _, name := range inc.Status.Context.RelatedIncidents {
		key := client.ObjectKey{Namespace: inc.Namespace, Name: name}
		other := &riposte.Incident{}
		if err := r.Get(ctx, key, other); err != nil {
			continue // gone: nothing to tell
		}
		if c := other.Status.Context; c != nil && slices.Contains(c.RelatedIncidents, inc.Name) {
			continue // already lists it
		}
		// Not listing it, or not enriched as the cache sees it: its
		// enrichment may have run before this one was cached, so it
		// lists its related ones again once it is enriched.
		r.relatedStale.Store(key, struct{}{})
		reqs = append(reqs, reconcile.Request{NamespacedName: key})
	}
	return reqs
}

func (r *Reconciler) incidentsAboutPod(ctx context.Context, pod client.Object) []reconcile.Request {
	var incidents riposte.IncidentList
	if err := r.List(ctx, &incidents, client.MatchingFields{targetPodIndex: pod.GetNamespace() + "/" + pod.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "finding incidents about a deleted pod")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(incidents.Items))
	for _, inc := range incidents.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&inc)})
	}
	return reqs
}

// isPauseSwitch selects the ConfigMap whose existence pauses Riposte.
func (r *Reconciler) isPauseSwitch(obj client.Object) bool {
	return obj.GetNamespace() == r.OperatorNamespace && obj.GetName() == riposte.PauseConfigMapName
}

// heldIncidents wakes every incident a guardrail holds when the pause
// switch changes, so lifting the pause resumes them at once.
func (r *Reconciler) heldIncidents(ctx context.Context, _ client.Object) []reconcile.Request {
	var incidents riposte.IncidentList
	if err := r.List(ctx, &incidents); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "finding held incidents")
		return nil
	}
	var reqs []reconcile.Request
	for i := range incidents.Items {
		if isHeld(&incidents.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&incidents.Items[i])})
		}
	}
	return reqs
}
