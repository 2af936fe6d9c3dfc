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

// NewDriftOpenCollector reports the open drift findings by rule and
// namespace: an object breaking a rule, its incident not yet closed.
func NewDriftOpenCollector(r client.Reader) *metrics.Counted {
	return metrics.NewCounted("riposte_drift_open", "Open drift findings (objects breaking a rule whose incident is not closed), by rule and namespace.",
		[]string{"rule", "namespace"}, func(ctx context.Context) ([][]string, error) {
			var list riposte.IncidentList
			if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy, client.DisableReadYourWritesConsistency); err != nil {
				return nil, err
			}
			var out [][]string
			for _, inc := range list.Items {
				if d := inc.Spec.Drift; d != nil && inc.Spec.Status != riposte.AlertResolved && !inc.Status.Phase.Closed() {
					out = append(out, []string{d.Rule, inc.Namespace})
				}
			}
			return out, nil
		})
}
