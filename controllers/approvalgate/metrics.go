package approvalgate

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

var decisionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "riposte_approvalgate_decision_seconds",
	Help:    "Time from a gate's creation to its verdict, by verdict and by who decided (policy or people).",
	Buckets: []float64{0.01, 0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
}, []string{"phase", "decider"})

func init() {
	metrics.Registry.MustRegister(decisionSeconds)
}

// ObserveDecision records how long a gate took to be decided.
func ObserveDecision(gate *riposte.ApprovalGate) {
	if gate.Status.DecidedAt == nil {
		return
	}
	decider := "people"
	if len(gate.Status.DecidedBy) == 1 && gate.Status.DecidedBy[0] == "policy" {
		decider = "policy"
	}
	decisionSeconds.WithLabelValues(string(gate.Status.Phase), decider).
		Observe(gate.Status.DecidedAt.Sub(gate.CreationTimestamp.Time).Seconds())
}

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
