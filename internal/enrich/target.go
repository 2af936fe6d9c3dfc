// Package enrich learns what an incident touches from the live cluster: the
// target object, its owner chain, images, risk flags, identity, exposure and a
// timeline. It reads through a client.Reader, which in the manager is the
// informer cache, never Secret data or environment values.
package enrich

import (
	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/alertlabels"
)

// subject is what the incident is about: its target and the container the
// alert names, and whether the target is a node named by one of its
// addresses. The spec's explicit target wins over the labels and names no
// container. A Manual incident's labels were written by the person who
// opened it and are not checked by the API server as its target is
// (config/policies), so only its target counts.
func subject(spec *riposte.IncidentSpec) alertlabels.Subject {
	if spec.Target != nil {
		t := *spec.Target
		if t.APIVersion == "" {
			// A target named by kind alone, as people write it: the plan and
			// every later read of it need the version.
			t.APIVersion = alertlabels.APIVersionOf(t.Kind)
		}
		return alertlabels.Subject{Target: &t}
	}
	if spec.Source == riposte.SourceManual {
		return alertlabels.Subject{}
	}
	// The same reading intake gave the labels when it chose the incident's
	// namespace, so the target lives where the incident does.
	return alertlabels.Of(spec.Labels)
}

// TargetFromIncident returns the object the incident is about, or nil when
// nothing names one (see subject).
func TargetFromIncident(spec *riposte.IncidentSpec) *riposte.ObjectReference {
	return subject(spec).Target
}

// ContainerFromIncident is the container of a Pod target the alert names,
// if any; enrichment keeps it only if the pod has it.
func ContainerFromIncident(spec *riposte.IncidentSpec) string {
	return subject(spec).Container
}
