package report

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// seconds prints a duration in seconds as people read it.
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func cell(p Percentiles) string {
	if p.N == 0 {
		return "-"
	}
	return seconds(p.P50) + " / " + seconds(p.P90)
}

// Table prints the report for a terminal.
func (r Report) Table(out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "%d incidents detected %s to %s (%d from records, %d live and not yet recorded)\n\n",
		r.Incidents, r.Since.Format(time.RFC3339), r.Until.Format(time.RFC3339), r.FromRecords, r.Live)
	fmt.Fprintln(w, "TIME TO REMEDIATE (p50 / p90)\tINCIDENTS\tDETECTED→ENRICHED\tENRICHED→DECIDED\tDECIDED→REMEDIATED\tDETECTED→REMEDIATED\tREMEDIATED→RESOLVED")
	for _, s := range r.Stages {
		name := s.Group
		if s.By != "all" {
			name = s.By + " " + s.Group
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", name, s.Count, cell(s.Percentiles["enriched"]), cell(s.Percentiles["decided"]),
			cell(s.Percentiles["remediated"]), cell(s.Percentiles["total"]), cell(s.Percentiles["resolved"]))
	}
	a := r.Approvals
	fmt.Fprintf(w, "\nAPPROVALS\tautomatic %d\tby people %d\trejected %d\texpired %d\n", a.Automatic, a.People, a.Rejected, a.Expired)
	if len(r.Deciders) > 0 {
		fmt.Fprintln(w, "\nDECIDER\tAPPROVED\tREJECTED\tTIME TO DECIDE p50 / p90")
		for _, d := range r.Deciders {
			fmt.Fprintf(w, "%s\t%d\t%d\t%s / %s\n", d.User, d.Approved, d.Rejected, seconds(d.P50), seconds(d.P90))
		}
	}
	for _, list := range []struct {
		title string
		refs  []Ref
	}{{"UNDONE", r.Undone}, {"FAILED", r.Failed}} {
		fmt.Fprintf(w, "\n%s: %d\n", list.title, len(list.refs))
		for _, ref := range list.refs {
			fmt.Fprintf(w, "  %s/%s\t%s\t%s\n", ref.Namespace, ref.Name, ref.Playbook, ref.Message)
		}
	}
	if len(r.Drift) > 0 {
		fmt.Fprintln(w, "\nDRIFT RULE\tNAMESPACE\tFOUND\tOPEN\tCOMPLIED\tMEAN TIME TO COMPLY")
		for _, d := range r.Drift {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\n", d.Rule, d.Namespace, d.Found, d.Open, d.Complied, seconds(d.MeanToComply))
		}
	}
	return w.Flush()
}

// CSV prints one row per figure: section, group, measure, value.
func (r Report) CSV(out io.Writer) error {
	w := csv.NewWriter(out)
	row := func(fields ...string) { _ = w.Write(fields) }
	row("section", "by", "group", "measure", "value")
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	for _, s := range r.Stages {
		row("stages", s.By, s.Group, "incidents", strconv.Itoa(s.Count))
		names := make([]string, 0, len(s.Percentiles))
		for n := range s.Percentiles {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p := s.Percentiles[n]
			row("stages", s.By, s.Group, n+"_p50_seconds", f(p.P50))
			row("stages", s.By, s.Group, n+"_p90_seconds", f(p.P90))
		}
	}
	for _, d := range r.MTTR {
		row("mttr", "day", d.Day, "p50_seconds", f(d.Value))
	}
	a := r.Approvals
	row("approvals", "", "", "automatic", strconv.Itoa(a.Automatic))
	row("approvals", "", "", "people", strconv.Itoa(a.People))
	row("approvals", "", "", "rejected", strconv.Itoa(a.Rejected))
	row("approvals", "", "", "expired", strconv.Itoa(a.Expired))
	for _, d := range r.Deciders {
		row("deciders", "user", d.User, "approved", strconv.Itoa(d.Approved))
		row("deciders", "user", d.User, "rejected", strconv.Itoa(d.Rejected))
		row("deciders", "user", d.User, "p50_seconds_to_decide", f(d.P50))
	}
	row("outcomes", "", "", "undone", strconv.Itoa(len(r.Undone)))
	row("outcomes", "", "", "failed", strconv.Itoa(len(r.Failed)))
	for _, d := range r.Drift {
		row("drift", d.Rule, d.Namespace, "open", strconv.Itoa(d.Open))
		row("drift", d.Rule, d.Namespace, "mean_seconds_to_comply", f(d.MeanToComply))
	}
	w.Flush()
	return w.Error()
}

// bar is one bar of an SVG chart, laid out.
type bar struct {
	X, Y, W, H float64
	Label      string
	Value      string
	Raw        string
}

// chart lays out values (already in display order) as bars in a
// width×height box.
func chart(labels []string, values []float64, show func(float64) string) []bar {
	const width, height = 640.0, 160.0
	peak := 0.0
	for _, v := range values {
		peak = max(peak, v)
	}
	if len(values) == 0 || peak == 0 {
		return nil
	}
	slot := width / float64(len(values))
	bars := make([]bar, len(values))
	for i, v := range values {
		h := v / peak * height
		bars[i] = bar{X: float64(i)*slot + slot*0.15, Y: height - h, W: slot * 0.7, H: h, Label: labels[i], Value: show(v), Raw: strconv.FormatFloat(v, 'f', 3, 64)}
	}
	return bars
}

// ruleChart is one drift rule's open violations by day.
type ruleChart struct {
	Rule string
	Bars []bar
}

// HTML writes one self-contained page: styles and charts inline (SVG), no
// script and nothing fetched, so it can be mailed around.
func (r Report) HTML(out io.Writer) error {
	var days []string
	var mttr []float64
	for _, d := range r.MTTR {
		days, mttr = append(days, d.Day), append(mttr, d.Value)
	}
	rules := map[string]bool{}
	for _, d := range r.DriftOpen {
		for rule := range d.Open {
			rules[rule] = true
		}
	}
	var driftCharts []ruleChart
	for _, rule := range sortedKeys(rules) {
		var labels []string
		var values []float64
		for _, d := range r.DriftOpen {
			labels, values = append(labels, d.Day), append(values, float64(d.Open[rule]))
		}
		driftCharts = append(driftCharts, ruleChart{Rule: rule, Bars: chart(labels, values, func(v float64) string { return strconv.Itoa(int(v)) })})
	}
	return page.Execute(out, struct {
		Report
		MTTRBars    []bar
		DriftCharts []ruleChart
	}{r, chart(days, mttr, seconds), driftCharts})
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"cell": cell, "seconds": seconds, "title": func(s StageRow) string {
		if s.By == "all" {
			return "all incidents"
		}
		return s.By + " " + s.Group
	},
	"date": func(t time.Time) string { return t.Format("2006-01-02 15:04 MST") },
	"join": strings.Join,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Riposte report</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1a202c;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:1.8em;border-bottom:1px solid #e2e8f0}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:4px 10px;border-bottom:1px solid #edf2f7;text-align:left}
th{background:#f7fafc}td.n{text-align:right;font-variant-numeric:tabular-nums}
svg{background:#f7fafc;margin:.5em 0}.mttr rect{fill:#2563eb}.drift rect{fill:#dc2626}
svg text{font-size:10px;fill:#4a5568}.note{color:#718096}
</style></head><body>
<h1>Riposte: remediation and drift report</h1>
<p id="summary"><span data-figure="incidents">{{.Incidents}}</span> incidents detected {{date .Since}} to {{date .Until}}
({{.FromRecords}} from records, {{.Live}} live and not yet recorded).</p>

<h2>Time to remediate over time</h2>
<p class="note">Median time from detection to remediation, by the day the remediation landed.</p>
{{if .MTTRBars}}<svg id="mttr-chart" class="mttr" width="660" height="200" viewBox="-10 -10 660 200" role="img" aria-label="median time to remediate by day">
{{range .MTTRBars}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" data-day="{{.Label}}" data-seconds="{{.Raw}}"><title>{{.Label}}: {{.Value}}</title></rect>
<text x="{{.X}}" y="175">{{.Label}}</text><text x="{{.X}}" y="{{.Y}}" dy="-2">{{.Value}}</text>
{{end}}</svg>{{else}}<p class="note">No remediation in this period.</p>{{end}}

<h2>Time to remediate, by stage</h2>
<table id="stages"><tr><th></th><th>incidents</th><th>detected → enriched</th><th>enriched → decided</th><th>decided → remediated</th><th>detected → remediated</th><th>remediated → resolved</th></tr>
{{range .Stages}}<tr data-by="{{.By}}" data-group="{{.Group}}"><td>{{title .}}</td><td class="n">{{.Count}}</td>
<td class="n">{{cell (index .Percentiles "enriched")}}</td><td class="n">{{cell (index .Percentiles "decided")}}</td><td class="n">{{cell (index .Percentiles "remediated")}}</td>
<td class="n" data-figure="total-p50" data-seconds="{{(index .Percentiles "total").P50}}">{{cell (index .Percentiles "total")}}</td><td class="n">{{cell (index .Percentiles "resolved")}}</td></tr>
{{end}}</table>
<p class="note">Each cell: p50 / p90.</p>

<h2>Decisions</h2>
<table id="approvals"><tr><th>approved by policy</th><th>approved by people</th><th>rejected</th><th>expired</th></tr>
<tr><td class="n" data-figure="automatic">{{.Approvals.Automatic}}</td><td class="n" data-figure="people">{{.Approvals.People}}</td><td class="n">{{.Approvals.Rejected}}</td><td class="n">{{.Approvals.Expired}}</td></tr></table>
{{if .Deciders}}<table id="deciders"><tr><th>who</th><th>approved</th><th>rejected</th><th>time to decide p50</th><th>p90</th></tr>
{{range .Deciders}}<tr><td>{{.User}}</td><td class="n">{{.Approved}}</td><td class="n">{{.Rejected}}</td><td class="n">{{seconds .P50}}</td><td class="n">{{seconds .P90}}</td></tr>
{{end}}</table>{{end}}

<h2>Undone and failed</h2>
<p><span data-figure="undone">{{len .Undone}}</span> undone, <span data-figure="failed">{{len .Failed}}</span> failed.</p>
{{if or .Undone .Failed}}<table><tr><th>incident</th><th>playbook</th><th>outcome</th><th>why</th></tr>
{{range .Undone}}<tr><td>{{.Namespace}}/{{.Name}}</td><td>{{.Playbook}}</td><td>Undone</td><td>{{.Message}}</td></tr>{{end}}
{{range .Failed}}<tr><td>{{.Namespace}}/{{.Name}}</td><td>{{.Playbook}}</td><td>Failed</td><td>{{.Message}}</td></tr>{{end}}
</table>{{end}}

<h2>Drift</h2>
{{range .DriftCharts}}<h3>{{.Rule}}: open violations by day</h3>
<svg class="drift" data-rule="{{.Rule}}" width="660" height="200" viewBox="-10 -10 660 200" role="img" aria-label="open violations of {{.Rule}} by day">
{{range .Bars}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" data-day="{{.Label}}" data-open="{{.Raw}}"><title>{{.Label}}: {{.Value}}</title></rect>
<text x="{{.X}}" y="175">{{.Label}}</text><text x="{{.X}}" y="{{.Y}}" dy="-2">{{.Value}}</text>
{{end}}</svg>
{{else}}<p class="note">No drift finding in this period.</p>{{end}}
{{if .Drift}}<table id="drift"><tr><th>rule</th><th>namespace</th><th>found</th><th>open</th><th>complied</th><th>mean time to comply</th></tr>
{{range .Drift}}<tr><td>{{.Rule}}</td><td>{{.Namespace}}</td><td class="n">{{.Found}}</td><td class="n" data-figure="drift-open">{{.Open}}</td><td class="n">{{.Complied}}</td><td class="n">{{seconds .MeanToComply}}</td></tr>
{{end}}</table>{{end}}
</body></html>
`))
