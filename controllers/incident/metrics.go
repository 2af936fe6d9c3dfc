package incident

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/metrics"
)

// NewIncidentCollector reports incidents by source, severity and phase.
func NewIncidentCollector(r client.Reader) *metrics.Counted {
	return metrics.NewCounted("riposte_incidents", "Incidents by source, severity and phase.",
		[]string{"source", "severity", "phase"}, func(ctx context.Context) ([][]string, error) {
			var list riposte.IncidentList
			if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy, client.DisableReadYourWritesConsistency); err != nil {
				return nil, err
			}
			out := make([][]string, 0, len(list.Items))
			for _, inc := range list.Items {
				out = append(out, []string{string(inc.Spec.Source), inc.Spec.Severity, string(inc.Status.Phase)})
			}
			return out, nil
		})
}
