package incident

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

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
