package drift

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	evaluations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "riposte_drift_evaluations_total",
		Help: "Drift rules evaluated against objects, by outcome (compliant, violation, error: the rule could not be evaluated).",
	}, []string{"outcome"})
	incidentsOpened = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "riposte_drift_incidents_opened_total",
		Help: "Incidents opened for objects that broke a drift rule or failed a PolicyReport policy.",
	})
	incidentsResolved = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "riposte_drift_incidents_resolved_total",
		Help: "Drift incidents resolved by the detector, by resolution (Complies, ObjectDeleted, RuleRemoved, PlaybookRemoved).",
	}, []string{"resolution"})
	reportRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "riposte_drift_report_resources_refused_total",
		Help: "Resources of answered report results refused because a namespaced report may name only namespaced objects in its own namespace, by reason (OtherNamespace, ClusterScoped, UnknownKind); counted each time the report is read.",
	}, []string{"reason"})
	watchedKinds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "riposte_drift_watched_kinds",
		Help: "Kinds the drift detector watches (1 per kind, by group/version/kind).",
	}, []string{"kind"})
	resyncSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "riposte_drift_resync_seconds",
		Help:    "Time to judge every watched object again (the periodic full re-evaluation).",
		Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	})
	resyncObjects = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "riposte_drift_resync_objects",
		Help: "Objects judged by the last full re-evaluation.",
	})
	judgmentsReused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "riposte_drift_judgments_reused_total",
		Help: "Objects judged again but not evaluated again, because nothing their last judgment was made on had changed (the object, its namespace, its lookups, its owner, the rules).",
	})
	resyncSettled = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "riposte_drift_resync_settled_objects",
		Help: "Objects the last full re-evaluation left alone: their last judgment still stood, found nothing, and no open incident names them.",
	})
)

// Collectors are the detector's metrics.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{evaluations, incidentsOpened, reportRefused, incidentsResolved, watchedKinds, resyncSeconds, resyncObjects, judgmentsReused, resyncSettled}
}
