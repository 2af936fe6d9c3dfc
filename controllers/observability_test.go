package controllers_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/riposte-dev/riposte/controllers/approvalgate"
	"github.com/riposte-dev/riposte/controllers/drift"
	"github.com/riposte-dev/riposte/controllers/incident"
	"github.com/riposte-dev/riposte/internal/intake"
	"github.com/riposte-dev/riposte/internal/metrics"
	"github.com/riposte-dev/riposte/internal/testenv"
)

var riposteMetric = regexp.MustCompile(`riposte_[a-z_]+`)

// exported lists every metric name Riposte defines, with the series names
// histograms add, whether or not it has been observed yet.
func exported(t *testing.T) []string {
	t.Helper()
	im, err := intake.NewPrometheusMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	collectors := append(metrics.Collectors(), im.Collectors()...)
	collectors = append(collectors, approvalgate.NewPendingCollector(k8sClient), incident.NewIncidentCollector(k8sClient), incident.NewDriftOpenCollector(k8sClient))
	collectors = append(collectors, drift.Collectors()...)
	names := metrics.Names(collectors...)
	if len(names) < 20 {
		t.Fatalf("only %d metric names found", len(names))
	}
	return names
}

// The Grafana dashboard is valid and every query uses a metric Riposte exports.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "grafana", "riposte-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard lacks a title, uid or panels: %+v", dash)
	}
	names := exported(t)
	for _, p := range dash.Panels {
		if p.Title == "" || p.Type == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q has no title, type or query", p.Title)
		}
		for _, target := range p.Targets {
			for _, m := range riposteMetric.FindAllString(target.Expr, -1) {
				if !slices.Contains(names, m) {
					t.Errorf("panel %q queries %s, which Riposte does not export", p.Title, m)
				}
			}
		}
	}
}

// The PrometheusRule parses and alerts only on metrics Riposte exports.
func TestPrometheusRulesUseExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "prometheus", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &rule); err != nil || rule.Kind != "PrometheusRule" || len(rule.Spec.Groups) == 0 {
		t.Fatalf("rules.yaml: %v %+v", err, rule)
	}
	names := exported(t)
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("a rule without alert or expr: %+v", r)
			}
			for _, m := range riposteMetric.FindAllString(r.Expr, -1) {
				if !slices.Contains(names, m) {
					t.Errorf("alert %s uses %s, which Riposte does not export", r.Alert, m)
				}
			}
		}
	}
}
