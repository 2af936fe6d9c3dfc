package approvalgate

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// PendingCollector reports the gates waiting for a decision, counted from the
// manager's cache at each scrape.
type PendingCollector struct {
	Reader client.Reader
	desc   *prometheus.Desc
}

// NewPendingCollector returns a collector of pending gates.
func NewPendingCollector(r client.Reader) *PendingCollector {
	return &PendingCollector{Reader: r, desc: prometheus.NewDesc("riposte_approvalgates_pending",
		"ApprovalGates waiting for a decision, by namespace.", []string{"namespace"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *PendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *PendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var gates riposte.ApprovalGateList
	if err := c.Reader.List(ctx, &gates); err != nil {
		return
	}
	pending := map[string]int{}
	for _, g := range gates.Items {
		if g.Status.Phase == "" || g.Status.Phase == riposte.GatePending {
			pending[g.Namespace]++
		}
	}
	for ns, n := range pending {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), ns)
	}
}
