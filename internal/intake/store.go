package intake

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Store keeps an alert's Incident.
type Store interface {
	// Upsert creates or updates the incident's spec and returns where it was
	// stored.
	Upsert(ctx context.Context, inc *riposte.Incident) (client.ObjectKey, error)
}

// ApplyStore stores incidents with one server-side apply each: create or
// update in a single request, owning only the fields intake sets.
type ApplyStore struct {
	Client           client.Client
	FieldOwner       string
	DefaultNamespace string
}

// Upsert implements Store. An alert naming a namespace that does not exist
// lands in the default namespace rather than being lost.
func (s *ApplyStore) Upsert(ctx context.Context, inc *riposte.Incident) (client.ObjectKey, error) {
	err := s.apply(ctx, inc)
	if isMissingNamespace(err) && inc.Namespace != s.DefaultNamespace {
		inc = inc.DeepCopy()
		inc.Namespace = s.DefaultNamespace
		err = s.apply(ctx, inc)
	}
	if err != nil {
		return client.ObjectKey{}, fmt.Errorf("storing incident %s/%s: %w", inc.Namespace, inc.Name, err)
	}
	return client.ObjectKeyFromObject(inc), nil
}

func (s *ApplyStore) apply(ctx context.Context, inc *riposte.Incident) error {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(inc)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: obj}
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return s.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(s.FieldOwner), client.ForceOwnership,
		// Intake never reads incidents back; don't start an unstructured cache for it.
		client.DisableReadYourWritesConsistency)
}

func isMissingNamespace(err error) bool {
	if !apierrors.IsNotFound(err) {
		return false
	}
	status, ok := err.(apierrors.APIStatus)
	return ok && status.Status().Details != nil && status.Status().Details.Kind == "namespaces"
}
