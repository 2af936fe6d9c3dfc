package intake

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestPrometheusMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewPrometheusMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewPrometheusMetrics(reg); err == nil {
		t.Error("registering twice on one registry should fail")
	}

	h := &Handler{Store: &memoryStore{}, Token: staticToken(testToken), Metrics: m}
	post(h, "Bearer "+testToken, firingNotification)
	post(h, "Bearer "+testToken, notificationOf(validAlert("a1"), validAlert("a2")))
	post(h, "Bearer wrong", firingNotification)
	// A Falco alert without alertname, one that cannot be stored, and two
	// alerts Alertmanager left out.
	post(h, "Bearer "+testToken, strings.Replace(notificationOf(falcoAlert, `{"status":"pending","fingerprint":"x"}`),
		`"version":"4"`, `"version":"4","truncatedAlerts":2`, 1))

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// got maps "metric{code}" to a counter's value, or a histogram's count.
	got := map[string]float64{}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			name := f.GetName()
			for _, l := range metric.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case metric.GetCounter() != nil:
				got[name] = metric.GetCounter().GetValue()
			case metric.GetHistogram() != nil:
				got[name] = float64(metric.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"riposte_intake_requests_total{code=200}":              3,
		"riposte_intake_requests_total{code=401}":              1,
		"riposte_intake_alerts_total{code=200}":                5,
		"riposte_intake_alerts_total{code=401}":                0,
		"riposte_intake_request_duration_seconds":              4,
		"riposte_intake_alerts_deduplicated_total":             0, // counted by ApplyStore, not the handler
		"riposte_intake_alerts_refused_total{reason=status}":   1,
		"riposte_intake_alert_names_derived_total{label=rule}": 1,
		"riposte_intake_stale_notifications_total":             0,
		"riposte_intake_truncated_alerts_total":                2,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}
