// Package report turns incident records (and live incidents not yet
// recorded) into the figures a team lead asks for: time to remediate by
// stage, who decides and how fast, what was undone or failed, and drift
// over time. It reads bodies only; it does no I/O.
package report

import (
	"slices"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/approval"
	"github.com/riposte-dev/riposte/internal/record"
)

// Stages of an incident, in order; each is the time from the stage before,
// to the microsecond (status.stages), or to the second for records of
// incidents taken up before those times were kept.
var Stages = []string{"enriched", "decided", "remediated", "resolved"}

// Report is every figure, ready to print.
type Report struct {
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	Incidents int       `json:"incidents"`
	// FromRecords and Live say where the incidents came from.
	FromRecords int `json:"fromRecords"`
	Live        int `json:"live"`
	// Stages splits time to remediate, overall and by playbook, severity
	// and source.
	Stages []StageRow `json:"stages"`
	// MTTR is the median time from detection to remediation, by day.
	MTTR []DayValue `json:"mttr"`
	// Approvals counts how plans were decided.
	Approvals Approvals `json:"approvals"`
	// Deciders is each person's decisions and how long they took.
	Deciders []Decider `json:"deciders"`
	// Undone and Failed list remediations that were put back or failed.
	Undone []Ref `json:"undone"`
	Failed []Ref `json:"failed"`
	// Drift is open violations by rule and namespace, and time to comply.
	Drift []DriftRow `json:"drift"`
	// DriftOpen is the open violations by day, per rule.
	DriftOpen []DriftDay `json:"driftOpen"`
}

// StageRow is one group's stage times.
type StageRow struct {
	// By is "all", "playbook", "severity" or "source"; Group its value.
	By    string `json:"by"`
	Group string `json:"group"`
	Count int    `json:"count"`
	// Stage times, each from the stage before (enriched from detected),
	// then Total, detected to remediated.
	Percentiles map[string]Percentiles `json:"percentiles"`
}

// Percentiles of one duration, in seconds; N is how many had it.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
}

// DayValue is one day's figure, in seconds.
type DayValue struct {
	Day   string  `json:"day"`
	N     int     `json:"n"`
	Value float64 `json:"p50Seconds"`
}

// Approvals counts decided plans by who decided.
type Approvals struct {
	Automatic int `json:"automatic"`
	People    int `json:"people"`
	Rejected  int `json:"rejected"`
	Expired   int `json:"expired"`
}

// Decider is one person's decisions.
type Decider struct {
	User     string  `json:"user"`
	Approved int     `json:"approved"`
	Rejected int     `json:"rejected"`
	P50      float64 `json:"p50SecondsToDecide"`
	P90      float64 `json:"p90SecondsToDecide"`
}

// Ref names an incident in a list.
type Ref struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Playbook  string `json:"playbook,omitempty"`
	Message   string `json:"message,omitempty"`
}

// DriftRow is one rule's violations in one namespace.
type DriftRow struct {
	Rule      string `json:"rule"`
	Namespace string `json:"namespace"`
	Found     int    `json:"found"`
	Open      int    `json:"open"`
	// MeanToComply is the mean time, in seconds, from a violation's
	// detection to its object complying again, over those that did.
	MeanToComply float64 `json:"meanSecondsToComply"`
	Complied     int     `json:"complied"`
}

// DriftDay is the violations open at the end of a day, by rule.
type DriftDay struct {
	Day  string         `json:"day"`
	Open map[string]int `json:"open"`
}

// Build makes the report over bodies (each incident once: the latest body
// per incident UID, live ones first) detected in [since, until].
func Build(bodies []record.Body, since, until time.Time) Report {
	latest := map[string]record.Body{}
	var order []string
	for _, b := range bodies {
		if _, seen := latest[b.Incident.UID]; !seen {
			order = append(order, b.Incident.UID)
			latest[b.Incident.UID] = b
			continue
		}
		if rank(b) >= rank(latest[b.Incident.UID]) {
			latest[b.Incident.UID] = b
		}
	}
	r := Report{Since: since.UTC(), Until: until.UTC()}
	groups := map[[2]string]*group{}
	days := map[string][]time.Duration{}
	people := map[string]*person{}
	drift := map[[2]string]*driftAcc{}
	var driftIncidents []record.Body
	for _, uid := range order {
		b := latest[uid]
		detected := at(b.Outcome.DetectedAt)
		if detected.IsZero() || detected.Before(since) || detected.After(until) {
			continue
		}
		r.Incidents++
		if b.Milestone == LiveMilestone {
			r.Live++
		} else {
			r.FromRecords++
		}
		st := stagesOf(b)
		keys := [][2]string{{"all", "all"}, {"source", string(b.Trigger.Source)}, {"severity", orNone(b.Trigger.Severity)}}
		if b.Playbook != nil {
			keys = append(keys, [2]string{"playbook", b.Playbook.Namespace + "/" + b.Playbook.Name})
		}
		for _, k := range keys {
			g := groups[k]
			if g == nil {
				g = &group{times: map[string][]time.Duration{}}
				groups[k] = g
			}
			g.count++
			for name, d := range st {
				g.times[name] = append(g.times[name], d)
			}
		}
		if d, ok := st["total"]; ok {
			day := at(b.Outcome.RemediatedAt).UTC().Format(time.DateOnly)
			days[day] = append(days[day], d)
		}
		countApprovals(&r.Approvals, b, people)
		ref := Ref{Namespace: b.Incident.Namespace, Name: b.Incident.Name, Message: b.Outcome.Message}
		if b.Playbook != nil {
			ref.Playbook = b.Playbook.Namespace + "/" + b.Playbook.Name
		}
		switch b.Outcome.Phase {
		case riposte.PhaseUndone:
			r.Undone = append(r.Undone, ref)
		case riposte.PhaseFailed:
			r.Failed = append(r.Failed, ref)
		}
		if b.Trigger.Drift != nil {
			driftIncidents = append(driftIncidents, b)
			k := [2]string{b.Trigger.Drift.Rule, b.Incident.Namespace}
			acc := drift[k]
			if acc == nil {
				acc = &driftAcc{}
				drift[k] = acc
			}
			acc.found++
			if end := complied(b); !end.IsZero() {
				acc.complied++
				acc.toComply += end.Sub(detected)
			} else {
				acc.open++
			}
		}
	}
	for k, g := range groups {
		row := StageRow{By: k[0], Group: k[1], Count: g.count, Percentiles: map[string]Percentiles{}}
		for name, ds := range g.times {
			row.Percentiles[name] = percentiles(ds)
		}
		r.Stages = append(r.Stages, row)
	}
	byOrder := map[string]int{"all": 0, "playbook": 1, "severity": 2, "source": 3}
	sort.Slice(r.Stages, func(i, j int) bool {
		a, b := r.Stages[i], r.Stages[j]
		if a.By != b.By {
			return byOrder[a.By] < byOrder[b.By]
		}
		return a.Group < b.Group
	})
	for day, ds := range days {
		r.MTTR = append(r.MTTR, DayValue{Day: day, N: len(ds), Value: percentiles(ds).P50})
	}
	sort.Slice(r.MTTR, func(i, j int) bool { return r.MTTR[i].Day < r.MTTR[j].Day })
	for user, p := range people {
		pc := percentiles(p.times)
		r.Deciders = append(r.Deciders, Decider{User: user, Approved: p.approved, Rejected: p.rejected, P50: pc.P50, P90: pc.P90})
	}
	sort.Slice(r.Deciders, func(i, j int) bool { return r.Deciders[i].User < r.Deciders[j].User })
	for k, acc := range drift {
		row := DriftRow{Rule: k[0], Namespace: k[1], Found: acc.found, Open: acc.open, Complied: acc.complied}
		if acc.complied > 0 {
			row.MeanToComply = (acc.toComply / time.Duration(acc.complied)).Seconds()
		}
		r.Drift = append(r.Drift, row)
	}
	sort.Slice(r.Drift, func(i, j int) bool {
		if r.Drift[i].Rule != r.Drift[j].Rule {
			return r.Drift[i].Rule < r.Drift[j].Rule
		}
		return r.Drift[i].Namespace < r.Drift[j].Namespace
	})
	r.DriftOpen = driftByDay(driftIncidents, since, until)
	sortRefs(r.Undone)
	sortRefs(r.Failed)
	return r
}

// LiveMilestone marks a body built from a live incident, not a record.
const LiveMilestone = "Live"

// rank orders two bodies of one incident: a live one is the freshest,
// then the Deleted record, then any other, later records after earlier.
func rank(b record.Body) int {
	switch b.Milestone {
	case LiveMilestone:
		return 2
	case record.MilestoneDeleted:
		return 1
	}
	return 0
}

type group struct {
	count int
	times map[string][]time.Duration
}

type person struct {
	approved, rejected int
	times              []time.Duration
}

type driftAcc struct {
	found, open, complied int
	toComply              time.Duration
}

// stagesOf is each stage's time from the one before, and the total from
// detection to remediation, for the stages the incident reached: from the
// times to the microsecond where the record has both ends of a stage, else
// from those to the second.
func stagesOf(b record.Body) map[string]time.Duration {
	o := b.Outcome
	coarse := []time.Time{at(o.DetectedAt), at(o.EnrichedAt), decidedAt(b), at(o.RemediatedAt), at(o.ResolvedAt)}
	fine := make([]time.Time, len(coarse))
	if st := o.Stages; st != nil {
		fine = []time.Time{microAt(st.Detected), microAt(st.Enriched), microAt(st.Decided), microAt(st.Remediated), {}}
	}
	span := func(i, j int) (time.Duration, bool) {
		from, to := fine[i], fine[j]
		if from.IsZero() || to.IsZero() || to.Before(from) {
			// A stage time only to the second (people's decision) can
			// come before the microsecond one before it.
			from, to = coarse[i], coarse[j]
		}
		if from.IsZero() || to.IsZero() || to.Before(from) {
			return 0, false
		}
		return to.Sub(from), true
	}
	out := map[string]time.Duration{}
	for i, name := range Stages {
		if d, ok := span(i, i+1); ok {
			out[name] = d
		}
	}
	if d, ok := span(0, 3); ok {
		out["total"] = d
	}
	return out
}

// decidedAt is when the plan that ran was approved.
func decidedAt(b record.Body) time.Time {
	if a := b.Decisions.Automatic; a != nil {
		return a.DecidedAt.Time
	}
	return at(b.Outcome.ApprovedAt)
}

func countApprovals(a *Approvals, b record.Body, people map[string]*person) {
	if b.Decisions.Automatic != nil {
		a.Automatic++
	}
	for _, g := range b.Decisions.Gates {
		switch g.Phase {
		case riposte.GateApproved:
			if slices.Equal(g.DecidedBy, []string{approval.PolicyActor}) {
				a.Automatic++
			} else {
				a.People++
			}
		case riposte.GateRejected:
			a.Rejected++
		case riposte.GateExpired:
			a.Expired++
		}
		for _, d := range g.Decisions {
			p := people[d.User]
			if p == nil {
				p = &person{}
				people[d.User] = p
			}
			if d.Decision == riposte.DecisionApprove {
				p.approved++
			} else {
				p.rejected++
			}
			if d.At != nil && !g.OpenedAt.IsZero() && !d.At.Before(&g.OpenedAt) {
				p.times = append(p.times, d.At.Sub(g.OpenedAt.Time))
			}
		}
	}
}

// complied is when a drift finding's object complied again, or zero.
func complied(b record.Body) time.Time {
	if b.Trigger.AlertStatus != riposte.AlertResolved {
		return time.Time{}
	}
	for _, t := range []time.Time{at(b.Trigger.EndsAt), at(b.Outcome.ResolvedAt), at(b.Outcome.ClosedAt)} {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// driftByDay counts, at the end of each day, the findings open then.
func driftByDay(bodies []record.Body, since, until time.Time) []DriftDay {
	if len(bodies) == 0 {
		return nil
	}
	first := until
	for _, b := range bodies {
		if d := at(b.Outcome.DetectedAt); d.Before(first) {
			first = d
		}
	}
	if first.Before(since) {
		first = since
	}
	var out []DriftDay
	for day := first.UTC().Truncate(24 * time.Hour); day.Before(until); day = day.Add(24 * time.Hour) {
		end := day.Add(24 * time.Hour)
		if end.After(until) {
			end = until
		}
		dd := DriftDay{Day: day.Format(time.DateOnly), Open: map[string]int{}}
		for _, b := range bodies {
			detected, done := at(b.Outcome.DetectedAt), complied(b)
			if detected.Before(end) && (done.IsZero() || done.After(end)) {
				dd.Open[b.Trigger.Drift.Rule]++
			}
		}
		out = append(out, dd)
	}
	return out
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	pick := func(q float64) float64 {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))].Seconds()
	}
	return Percentiles{N: len(s), P50: pick(0.5), P90: pick(0.9)}
}

func sortRefs(rs []Ref) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Namespace != rs[j].Namespace {
			return rs[i].Namespace < rs[j].Namespace
		}
		return rs[i].Name < rs[j].Name
	})
}

func microAt(t *metav1.MicroTime) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

func at(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
