// Package v1alpha1 contains the Riposte API: Incident, Playbook and ApprovalGate.
// +kubebuilder:object:generate=true
// +groupName=riposte.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every Riposte resource.
	GroupVersion = schema.GroupVersion{Group: "riposte.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Riposte types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Riposte types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
