package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Counted is a gauge computed at each scrape by counting objects (from the
// manager's cache) by label values, so it is never out of step with them.
type Counted struct {
	desc *prometheus.Desc
	// labelsOf lists, for every object counted, its label values; objects
	// not to be counted are left out.
	labelsOf func(ctx context.Context) ([][]string, error)
}

// NewCounted returns a gauge of objects counted by the given labels.
func NewCounted(name, help string, labels []string, labelsOf func(ctx context.Context) ([][]string, error)) *Counted {
	return &Counted{desc: prometheus.NewDesc(name, help, labels, nil), labelsOf: labelsOf}
}

// Describe implements prometheus.Collector.
func (c *Counted) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *Counted) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	objects, err := c.labelsOf(ctx)
	if err != nil {
		return
	}
	counts := map[string]int{}
	for _, values := range objects {
		counts[strings.Join(values, "\x00")]++
	}
	for key, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), strings.Split(key, "\x00")...)
	}
}
