// Package metrics holds the Prometheus metrics of Riposte's controllers,
// registered on controller-runtime's registry so the manager's metrics
// endpoint serves them.
package metrics

import (
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

var (
	// EnrichSeconds times learning an incident's context.
	EnrichSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "riposte_incident_enrich_seconds",
		Help:    "Time to learn an incident's context from the cache.",
		Buckets: []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1},
	})
	// RemediateSeconds is the MTTR Riposte exists to shorten.
	RemediateSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "riposte_incident_remediation_seconds",
		Help:    "Time from an incident's creation to its remediation, by who decided its gate (policy or people). Creation times are kept to the second.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600},
	}, []string{"decider"})
	// ActionsTotal counts remediation steps by action and result.
	ActionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "riposte_actions_total",
		Help: "Remediation steps run, by action and result (Applied, Failed, Skipped).",
	}, []string{"action", "result"})
	// ActionSeconds times each step's writes, by action.
	ActionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "riposte_action_seconds",
		Help:    "Time a remediation step took to write its changes, by action.",
		Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30},
	}, []string{"action"})
	// UndoneTotal counts steps undone, by action and by who asked (a person, or expiry).
	UndoneTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "riposte_actions_undone_total",
		Help: "Remediation steps undone, by action and trigger (Request or Expiry).",
	}, []string{"action", "trigger"})
	// GuardrailRefusals counts remediations a guardrail stopped.
	GuardrailRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "riposte_guardrail_refusals_total",
		Help: "Remediations a guardrail refused or held back, by reason.",
	}, []string{"reason"})
	// DecisionSeconds times gates from creation to verdict.
	DecisionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "riposte_approvalgate_decision_seconds",
		Help:    "Time from a gate's creation to its verdict, by verdict and by who decided (policy or people).",
		Buckets: []float64{0.01, 0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
	}, []string{"phase", "decider"})
	// RetentionDeleted counts closed incidents retention deleted.
	RetentionDeleted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "riposte_retention_deleted_total",
		Help: "Closed incidents deleted because they were closed longer than the retention period.",
	})
	// RetentionKept counts the times retention left an expired incident
	// because a change of its remediation is still in place.
	RetentionKept = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "riposte_retention_kept_in_place_total",
		Help: "Times retention kept an expired incident because its remediation is still in place (the incident is undo's only record).",
	})
	// StageSeconds splits time to remediate into its stages.
	StageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "riposte_incident_stage_seconds",
		Help:    "Time each stage of an incident took, from the stage before: enriched (from detection), decided (from enriched: the plan approved, by policy or people), remediated (from decided), resolved (from remediated: the alert resolved or the object complied). Detection is the incident's creation, to the second.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
	}, []string{"stage"})
	// RecordsPending is how many records wait to be stored in the sink.
	RecordsPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "riposte_records_pending",
		Help: "Records of incident milestones waiting to be stored in the record sink; above 0 for long, the sink is behind (the incidents keep them until it is not).",
	})
	// RecordsOldestPending is the age of the oldest record waiting.
	RecordsOldestPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "riposte_records_oldest_pending_seconds",
		Help: "Age of the oldest record waiting to be stored in the record sink; 0 when none waits.",
	})
	// RecordsStored counts records stored in the sink.
	RecordsStored = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "riposte_records_stored_total",
		Help: "Records stored in the record sink.",
	})
	// RecordSinkErrors counts failed writes to the sink.
	RecordSinkErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "riposte_record_sink_errors_total",
		Help: "Writes to the record sink that failed (each is tried again; nothing is dropped).",
	})
	// RecordsUntrusted counts records found in the sink that the writer
	// cannot build on.
	RecordsUntrusted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "riposte_records_untrusted_total",
		Help: "Records found in the sink that this manager cannot trust (not signed with its key or an earlier key it is given, edited, unreadable, or another cluster's): put there by someone else. The chain goes on after them, linked to the last record it trusts; kubectl riposte verify reports each.",
	})
	// PassWaitSeconds times how long incident passes waited for intake's
	// writes to go first (internal/priority): what a storm costs remediation.
	PassWaitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "riposte_incident_pass_wait_seconds",
		Help:    "Time an incident pass waited to start while intake stored alerts (at most 1 s a pass).",
		Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2},
	})
	// RecordHeadSequence is the sequence of the last record stored.
	RecordHeadSequence = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "riposte_record_head_sequence",
		Help: "Sequence of the last record in the chain: what kubectl riposte verify --expect-head checks the sink reaches.",
	})
)

// Collectors are the metrics this package defines.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{EnrichSeconds, RemediateSeconds, ActionsTotal, ActionSeconds, UndoneTotal, GuardrailRefusals, DecisionSeconds, RetentionDeleted, RetentionKept,
		StageSeconds, RecordsPending, RecordsOldestPending, RecordsStored, RecordSinkErrors, RecordsUntrusted, RecordHeadSequence, PassWaitSeconds}
}

func init() {
	crmetrics.Registry.MustRegister(Collectors()...)
}

// ObserveDecision records how long a gate took to be decided.
func ObserveDecision(gate *riposte.ApprovalGate) {
	if gate.Status.DecidedAt == nil {
		return
	}
	DecisionSeconds.WithLabelValues(string(gate.Status.Phase), decider(gate.Status.DecidedBy)).
		Observe(gate.Status.DecidedAt.Sub(gate.CreationTimestamp.Time).Seconds())
}

// ObserveStages records the stages an incident reached since before: each
// from the stage before it, to the microsecond where the status has both
// ends' stage times, else as its times to the second say.
func ObserveStages(before, after *riposte.IncidentStatus) {
	coarse := func(s *riposte.IncidentStatus) []time.Time {
		return []time.Time{at(s.DetectedAt), at(s.EnrichedAt), at(s.ApprovedAt), at(s.RemediatedAt), at(s.ResolvedAt)}
	}
	was, is := coarse(before), coarse(after)
	fine := make([]time.Time, len(is))
	if st := after.Stages; st != nil {
		fine = []time.Time{microAt(st.Detected), microAt(st.Enriched), microAt(st.Decided), microAt(st.Remediated), {}}
	}
	for i, stage := range []string{"enriched", "decided", "remediated", "resolved"} {
		if !was[i+1].IsZero() || is[i].IsZero() || is[i+1].IsZero() {
			continue // not reached in this pass, or counted before
		}
		from, to := fine[i], fine[i+1]
		if from.IsZero() || to.IsZero() || to.Before(from) {
			from, to = is[i], is[i+1]
		}
		if !to.Before(from) {
			StageSeconds.WithLabelValues(stage).Observe(to.Sub(from).Seconds())
		}
	}
}

func at(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

func microAt(t *metav1.MicroTime) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// ObserveRemediated records an incident's time to remediation.
func ObserveRemediated(inc *riposte.Incident, decidedByPolicy bool) {
	d := "people"
	if decidedByPolicy {
		d = "policy"
	}
	RemediateSeconds.WithLabelValues(d).Observe(time.Since(inc.CreationTimestamp.Time).Seconds())
}

func decider(by []string) string {
	if len(by) == 1 && (by[0] == "policy" || by[0] == "riposte") {
		return by[0]
	}
	return "people"
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists the metric names the collectors describe, with the series
// histograms add, for checking dashboards and alerts against them.
func Names(collectors ...prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	var names []string
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			n := m[1]
			names = append(names, n, n+"_bucket", n+"_count", n+"_sum")
		}
	}
	return names
}
