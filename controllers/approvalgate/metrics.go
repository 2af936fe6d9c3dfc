package approvalgate

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/metrics"
)

// NewPendingCollector reports the gates waiting for a decision, by namespace.
func NewPendingCollector(r client.Reader) *metrics.Counted {
	return metrics.NewCounted("riposte_approvalgates_pending", "ApprovalGates waiting for a decision, by namespace.",
		[]string{"namespace"}, func(ctx context.Context) ([][]string, error) {
			var gates riposte.ApprovalGateList
			if err := r.List(ctx, &gates, client.UnsafeDisableDeepCopy, client.DisableReadYourWritesConsistency); err != nil {
				return nil, err
			}
			var out [][]string
			for _, g := range gates.Items {
				if g.Status.Phase == "" || g.Status.Phase == riposte.GatePending {
					out = append(out, []string{g.Namespace})
				}
			}
			return out, nil
		})
}
