package drift

import (
	"k8s.io/apimachinery/pkg/api/equality"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// SummaryOnly says whether a playbook changed in nothing but what the
// detector itself writes on it (status.drift, and with it the
// resourceVersion and managed fields). Reading the playbooks again after
// such a change would change nothing: the detector reads their spec, UID,
// deletion and conditions, never the summary. Without this, every incident
// opened cost a second pass over every playbook and every drift incident
// (its summary's write came back as a playbook event).
func SummaryOnly(before, after *riposte.Playbook) bool {
	strip := func(pb *riposte.Playbook) *riposte.Playbook {
		c := *pb // shallow: only the copy's own fields are replaced
		c.ResourceVersion, c.ManagedFields = "", nil
		c.Status.Drift = nil
		return &c
	}
	return equality.Semantic.DeepEqual(strip(before), strip(after))
}
