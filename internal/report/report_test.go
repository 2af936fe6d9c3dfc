package report

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
)

// day0 is the first day the fixtures span.
var day0 = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func ts(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }

// remediation is a body for an incident remediated on day d, each stage
// taking the given seconds (enrich, decide, remediate, resolve; 0 skips).
func remediation(uid string, d int, playbook, severity string, people []riposte.Decision, stage ...float64) record.Body {
	at := day0.Add(time.Duration(d)*24*time.Hour + 10*time.Hour)
	detected := at
	b := record.Body{Kind: "Incident", Milestone: "Remediated", Incident: record.ObjectID{Namespace: "shop", Name: uid, UID: uid},
		Trigger:  record.Trigger{Source: riposte.SourceAlertmanager, AlertName: "Shell", Severity: severity},
		Playbook: &record.Playbook{Namespace: "shop", Name: playbook},
		Outcome:  record.Outcome{Phase: riposte.PhaseRemediated, DetectedAt: ts(detected)}}
	at = detected
	b.Outcome.EnrichedAt = ts(at.Add(time.Duration(stage[0] * float64(time.Second))))
	at = b.Outcome.EnrichedAt.Time
	decided := at.Add(time.Duration(stage[1] * float64(time.Second)))
	if people == nil {
		b.Decisions.Automatic = &riposte.AutoApproval{DecidedAt: metav1.NewTime(decided)}
	} else {
		people = append([]riposte.Decision(nil), people...)
		for i := range people {
			people[i].At = ts(decided)
		}
		b.Decisions.Gates = []record.Gate{{Name: uid, Phase: riposte.GateApproved, OpenedAt: metav1.NewTime(at), Decisions: people, DecidedBy: []string{people[0].User}}}
		b.Outcome.ApprovedAt = ts(decided)
	}
	b.Outcome.RemediatedAt = ts(decided.Add(time.Duration(stage[2] * float64(time.Second))))
	if len(stage) > 3 {
		b.Outcome.ResolvedAt = ts(b.Outcome.RemediatedAt.Add(time.Duration(stage[3] * float64(time.Second))))
	}
	return b
}

func TestBuild(t *testing.T) {
	alice := []riposte.Decision{{User: "alice", Decision: riposte.DecisionApprove}}
	bodies := []record.Body{
		remediation("a", 0, "isolate", "critical", nil, 0.01, 0.002, 0.008, 60),
		remediation("b", 0, "isolate", "critical", nil, 0.02, 0.002, 0.010),
		remediation("c", 1, "manual", "warning", alice, 0.03, 300, 0.02),
		remediation("d", 2, "manual", "warning", alice, 0.03, 900, 0.02),
	}
	// c's later record (Undone) replaces its Remediated one.
	undone := bodies[2]
	undone.Milestone, undone.Outcome.Phase = "Undone", riposte.PhaseUndone
	bodies = append(bodies, undone)
	// A drift finding open for a day and a half, then complying.
	drift := record.Body{Kind: "Incident", Milestone: "Resolved", Incident: record.ObjectID{Namespace: "shop", Name: "drift-1", UID: "e"},
		Trigger: record.Trigger{Source: riposte.SourceDrift, AlertStatus: riposte.AlertResolved, EndsAt: ts(day0.Add(36 * time.Hour)),
			Drift: &riposte.DriftFinding{Rule: "no-privileged"}},
		Outcome: record.Outcome{Phase: riposte.PhaseResolved, DetectedAt: ts(day0)}}
	open := drift
	open.Incident = record.ObjectID{Namespace: "shop", Name: "drift-2", UID: "f"}
	open.Milestone, open.Trigger.AlertStatus, open.Trigger.EndsAt = LiveMilestone, riposte.AlertFiring, nil
	open.Outcome = record.Outcome{Phase: riposte.PhaseAwaitingApproval, DetectedAt: ts(day0.Add(24 * time.Hour))}
	bodies = append(bodies, drift, open)
	// Detected before the period: left out.
	bodies = append(bodies, remediation("old", -30, "isolate", "critical", nil, 1, 1, 1))

	r := Build(bodies, day0.Add(-time.Hour), day0.Add(3*24*time.Hour))
	if r.Incidents != 6 || r.Live != 1 || r.FromRecords != 5 {
		t.Fatalf("incidents %d (live %d, records %d), want 6 (1, 5)", r.Incidents, r.Live, r.FromRecords)
	}
	stage := func(by, group, name string) Percentiles {
		for _, s := range r.Stages {
			if s.By == by && s.Group == group {
				return s.Percentiles[name]
			}
		}
		t.Fatalf("no stage row %s %s", by, group)
		return Percentiles{}
	}
	if p := stage("playbook", "shop/isolate", "total"); p.N != 2 || p.P50 != 0.02 || p.P90 != 0.032 {
		t.Errorf("isolate detected→remediated %+v, want 2 at p50 20ms, p90 32ms", p)
	}
	if p := stage("playbook", "shop/manual", "decided"); p.N != 2 || p.P50 != 300 || p.P90 != 900 {
		t.Errorf("manual enriched→decided %+v, want p50 300s, p90 900s", p)
	}
	if p := stage("all", "all", "resolved"); p.N != 1 || p.P50 != 60 {
		t.Errorf("remediated→resolved %+v", p)
	}
	if r.Approvals.Automatic != 2 || r.Approvals.People != 2 {
		t.Errorf("approvals %+v, want 2 automatic and 2 by people", r.Approvals)
	}
	if len(r.Deciders) != 1 || r.Deciders[0].User != "alice" || r.Deciders[0].Approved != 2 || r.Deciders[0].P50 != 300 {
		t.Errorf("deciders %+v", r.Deciders)
	}
	if len(r.Undone) != 1 || r.Undone[0].Name != "c" {
		t.Errorf("undone %+v", r.Undone)
	}
	if len(r.MTTR) != 3 || r.MTTR[0].Day != "2026-11-20" || r.MTTR[0].N != 2 {
		t.Errorf("MTTR by day %+v", r.MTTR)
	}
	if len(r.Drift) != 1 || r.Drift[0].Found != 2 || r.Drift[0].Open != 1 || r.Drift[0].MeanToComply != 36*3600 {
		t.Errorf("drift %+v", r.Drift)
	}
	var openByDay []int
	for _, d := range r.DriftOpen {
		openByDay = append(openByDay, d.Open["no-privileged"])
	}
	// At the end of day 0 the first is open; of day 1 only the second (the
	// first complied at noon); of day 2 the second.
	if len(openByDay) != 3 || openByDay[0] != 1 || openByDay[1] != 1 || openByDay[2] != 1 {
		t.Errorf("open drift by day %v (days %+v)", openByDay, r.DriftOpen)
	}
}

// The Incident stores its stage times to the second, and its stage times
// to the microsecond beside them: a stage is measured with the fine times
// where the record has both its ends, else with the coarse ones (records of
// incidents taken up before the fine times existed).
func TestStagesOfPrefersMicroseconds(t *testing.T) {
	sec := day0.Add(10 * time.Hour)
	micro := func(ms float64) *metav1.MicroTime {
		m := metav1.NewMicroTime(sec.Add(time.Duration(ms * float64(time.Millisecond))))
		return &m
	}
	body := func(st *riposte.StageTimes) record.Body {
		return record.Body{Outcome: record.Outcome{DetectedAt: ts(sec), EnrichedAt: ts(sec), ApprovedAt: ts(sec), RemediatedAt: ts(sec), Stages: st}}
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	cases := []struct {
		reason string
		b      record.Body
		want   map[string]time.Duration
	}{
		{reason: "to the second only: an automatic remediation reads 0",
			b:    body(nil),
			want: map[string]time.Duration{"enriched": 0, "decided": 0, "remediated": 0, "total": 0}},
		{reason: "to the microsecond",
			b:    body(&riposte.StageTimes{Detected: micro(0.5), Enriched: micro(3.5), Decided: micro(4), Remediated: micro(11.25)}),
			want: map[string]time.Duration{"enriched": ms(3), "decided": ms(0.5), "remediated": ms(7.25), "total": ms(10.75)}},
		{reason: "a decision by people within the second of enrichment, stored to the second: measured to the second, not dropped",
			b:    body(&riposte.StageTimes{Detected: micro(0.5), Enriched: micro(3.5), Decided: micro(0), Remediated: micro(11.25)}),
			want: map[string]time.Duration{"enriched": ms(3), "decided": 0, "remediated": ms(11.25), "total": ms(10.75)}},
		{reason: "detected before the fine times existed: the stages from it are coarse, the rest fine",
			b:    body(&riposte.StageTimes{Enriched: micro(3.5), Decided: micro(4), Remediated: micro(11.25)}),
			want: map[string]time.Duration{"enriched": 0, "decided": ms(0.5), "remediated": ms(7.25), "total": 0}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := stagesOf(tc.b)
			if len(got) != len(tc.want) {
				t.Fatalf("stages %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}
