package intake

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PrometheusMetrics is a Metrics that counts requests by answer and times
// them. Register it on controller-runtime's metrics.Registry to have it
// served with the manager's metrics.
type PrometheusMetrics struct {
	requests     *prometheus.CounterVec
	alerts       *prometheus.CounterVec
	duration     prometheus.Histogram
	deduplicated prometheus.Counter
	refused      *prometheus.CounterVec
	derived      *prometheus.CounterVec
	stale        prometheus.Counter
	truncated    prometheus.Counter
}

var _ Metrics = (*PrometheusMetrics)(nil)

// NewPrometheusMetrics registers intake's metrics on reg.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	m := &PrometheusMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riposte_intake_requests_total",
			Help: "Alertmanager webhook requests, by HTTP status code answered.",
		}, []string{"code"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riposte_intake_alerts_total",
			Help: "Alerts received in decoded notifications, by HTTP status code answered.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "riposte_intake_request_duration_seconds",
			Help:    "Time to answer an Alertmanager webhook request, storing included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		deduplicated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riposte_intake_alerts_deduplicated_total",
			Help: "Notifications about alerts whose incident was already stored (Alertmanager's repeats and resolutions).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riposte_intake_alerts_refused_total",
			Help: "Alerts that can never be stored (the notification's others are), by reason: status, fingerprint, labels, annotations, times (a resolved alert ending before it starts), invalid (the API server's).",
		}, []string{"reason"}),
		derived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riposte_intake_alert_names_derived_total",
			Help: "Alerts without an alertname label, by the label their name was read from (none: named " + FallbackAlertName + ").",
		}, []string{"label"}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riposte_intake_stale_notifications_total",
			Help: "Alerts older than what their incident holds (out-of-order delivery), answered as stored and left unchanged.",
		}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "riposte_intake_truncated_alerts_total",
			Help: "Alerts Alertmanager left out of notifications (truncatedAlerts, from the receiver's max_alerts).",
		}),
	}
	for _, c := range m.Collectors() {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Collectors are the intake's metrics.
func (m *PrometheusMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.alerts, m.duration, m.deduplicated, m.refused, m.derived, m.stale, m.truncated}
}

// Deduplicated counts notifications about alerts already stored; give it to
// ApplyStore.
func (m *PrometheusMetrics) Deduplicated() prometheus.Counter { return m.deduplicated }

// ObserveRequest implements Metrics.
func (m *PrometheusMetrics) ObserveRequest(code, alerts int, elapsed time.Duration) {
	c := strconv.Itoa(code)
	m.requests.WithLabelValues(c).Inc()
	m.alerts.WithLabelValues(c).Add(float64(alerts))
	m.duration.Observe(elapsed.Seconds())
}

// ObserveOddities implements Metrics.
func (m *PrometheusMetrics) ObserveOddities(o Oddities) {
	for reason, n := range o.Refused {
		m.refused.WithLabelValues(reason).Add(float64(n))
	}
	for label, n := range o.Derived {
		if label == "" {
			label = "none"
		}
		m.derived.WithLabelValues(label).Add(float64(n))
	}
	m.stale.Add(float64(o.Stale))
	m.truncated.Add(float64(o.Truncated))
}
