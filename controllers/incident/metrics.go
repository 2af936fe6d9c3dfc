package incident

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

var (
	enrichSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "riposte_incident_enrich_seconds",
		Help:    "Time to learn an incident's context from the cache.",
		Buckets: []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1},
	})
	remediateSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "riposte_incident_remediation_seconds",
		Help:    "Time from an incident's creation to its remediation (the MTTR Riposte exists to shorten), by how its gate was decided. Creation times are kept to the second.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600},
	}, []string{"decider"})
	actionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "riposte_actions_total",
		Help: "Remediation steps run, by action and result (Applied, Failed, Skipped).",
	}, []string{"action", "result"})
	guardrailRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "riposte_guardrail_refusals_total",
		Help: "Remediations a guardrail refused, by reason.",
	}, []string{"reason"})
)

func init() {
	metrics.Registry.MustRegister(enrichSeconds, remediateSeconds, actionsTotal, guardrailRefusals)
}

func observeRemediated(inc *riposte.Incident, decidedByPolicy bool) {
	decider := "people"
	if decidedByPolicy {
		decider = "policy"
	}
	remediateSeconds.WithLabelValues(decider).Observe(time.Since(inc.CreationTimestamp.Time).Seconds())
}

// IncidentCollector reports incidents by source, severity and phase, counted
// from the manager's cache at each scrape.
type IncidentCollector struct {
	Reader client.Reader
	desc   *prometheus.Desc
}

// NewIncidentCollector returns a collector of incidents.
func NewIncidentCollector(r client.Reader) *IncidentCollector {
	return &IncidentCollector{Reader: r, desc: prometheus.NewDesc("riposte_incidents",
		"Incidents by source, severity and phase.", []string{"source", "severity", "phase"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *IncidentCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *IncidentCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list riposte.IncidentList
	if err := c.Reader.List(ctx, &list, client.UnsafeDisableDeepCopy, client.DisableReadYourWritesConsistency); err != nil {
		return
	}
	type key struct{ source, severity, phase string }
	counts := map[key]int{}
	for _, inc := range list.Items {
		counts[key{string(inc.Spec.Source), inc.Spec.Severity, string(inc.Status.Phase)}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.source, k.severity, k.phase)
	}
}
