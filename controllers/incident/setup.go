package incident

import (
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// +kubebuilder:rbac:groups=riposte.dev,resources=incidents,verbs=get;list;watch;create;patch;update
// +kubebuilder:rbac:groups=riposte.dev,resources=incidents/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=riposte.dev,resources=approvalgates,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=riposte.dev,resources=playbooks,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=nodes;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets;replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs;cronjobs,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler. It is driven by its Incidents
// and by the ApprovalGates it owns: a decided gate wakes its incident.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&riposte.Incident{}).
		Owns(&riposte.ApprovalGate{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(concurrency, 1)}).
		Named("incident").
		Complete(r)
}
