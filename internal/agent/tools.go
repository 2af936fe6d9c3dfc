package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/text"
)

// ListIncidentsInput pages through incidents.
type ListIncidentsInput struct {
	Namespace string `json:"namespace,omitempty" jsonschema:"the namespace to list; empty lists every namespace, which needs the right to list incidents cluster-wide"`
	Phase     string `json:"phase,omitempty" jsonschema:"only incidents in this phase: Detected, AwaitingApproval, Remediated, Failed, Resolved, Rejected, Undone, Cancelled, DryRun, Unmatched or Held"`
	Limit     int    `json:"limit,omitempty" jsonschema:"how many to read in this page, 1 to 50 (default 20)"`
	Continue  string `json:"continue,omitempty" jsonschema:"the continue token the previous page returned"`
}

// IncidentSummary is one line of an incident.
type IncidentSummary struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Phase       string `json:"phase,omitempty"`
	Source      string `json:"source"`
	Problem     string `json:"problem" jsonschema:"the alert name, drift rule or problem the incident is about"`
	Severity    string `json:"severity,omitempty"`
	Target      string `json:"target,omitempty" jsonschema:"the object it is about, Kind/namespace/name"`
	RequestedBy string `json:"requestedBy,omitempty" jsonschema:"who opened it by hand (a person or an agent); empty for alerts and drift"`
	Gate        string `json:"gate,omitempty" jsonschema:"the approval gate waiting for people, if any"`
	Detected    string `json:"detected,omitempty"`
	Message     string `json:"message,omitempty" jsonschema:"what its Ready condition says"`
}

// ListIncidentsOutput is a page of incidents.
type ListIncidentsOutput struct {
	Incidents []IncidentSummary `json:"incidents"`
	Continue  string            `json:"continue,omitempty" jsonschema:"pass it to read the next page; empty on the last"`
}

func (s *Server) listIncidents(ctx context.Context, _ *mcp.CallToolRequest, in ListIncidentsInput) (*mcp.CallToolResult, ListIncidentsOutput, error) {
	list := &riposte.IncidentList{}
	if err := s.Client.List(ctx, list, listOptions(in.Namespace, in.Limit, in.Continue)...); err != nil {
		return nil, ListIncidentsOutput{}, fmt.Errorf("listing incidents: %w", err)
	}
	out := ListIncidentsOutput{Incidents: []IncidentSummary{}, Continue: list.Continue}
	for i := range list.Items {
		inc := &list.Items[i]
		if in.Phase != "" && !strings.EqualFold(string(inc.Status.Phase), in.Phase) {
			continue
		}
		out.Incidents = append(out.Incidents, summarize(inc))
	}
	return nil, out, nil
}

func listOptions(namespace string, limit int, cont string) []client.ListOption {
	if limit <= 0 {
		limit = defaultPage
	}
	opts := []client.ListOption{client.Limit(int64(min(limit, maxPage)))}
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if cont != "" {
		opts = append(opts, client.Continue(cont))
	}
	return opts
}

func summarize(inc *riposte.Incident) IncidentSummary {
	sum := IncidentSummary{Namespace: inc.Namespace, Name: inc.Name, Phase: string(inc.Status.Phase), Source: string(inc.Spec.Source),
		Problem: inc.Spec.AlertName, Severity: inc.Spec.Severity, RequestedBy: inc.Spec.RequestedBy, Detected: timeOf(inc.Status.DetectedAt)}
	if inc.Spec.Drift != nil && sum.Problem == "" {
		sum.Problem = inc.Spec.Drift.Rule
	}
	if t := targetOf(inc); t != nil {
		sum.Target = refString(*t)
	}
	if inc.Status.Phase == riposte.PhaseAwaitingApproval {
		sum.Gate = inc.Status.ApprovalGate
	}
	for _, c := range inc.Status.Conditions {
		if c.Type == riposte.ConditionReady {
			sum.Message = text.Elide(c.Message, maxText)
		}
	}
	return sum
}

func targetOf(inc *riposte.Incident) *riposte.ObjectReference {
	if inc.Status.Context != nil && inc.Status.Context.Target != nil {
		return inc.Status.Context.Target
	}
	return inc.Spec.Target
}

func refString(r riposte.ObjectReference) string {
	if r.Namespace == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

func timeOf(t *metav1.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// NamedInput names one object.
type NamedInput struct {
	Namespace string `json:"namespace" jsonschema:"the object's namespace"`
	Name      string `json:"name" jsonschema:"the object's name"`
}

// IncidentDetail is one incident, bounded.
type IncidentDetail struct {
	IncidentSummary
	Labels      map[string]string `json:"labels,omitempty" jsonschema:"the alert's labels (at most 64), each value cut to 1 KB"`
	Annotations map[string]string `json:"annotations,omitempty" jsonschema:"the alert's annotations (summary, description, a proposal's reasoning), each cut to 1 KB"`
	Context     string            `json:"context,omitempty" jsonschema:"the live cluster context Riposte resolved, as JSON, cut to 8 KB"`
	Playbook    string            `json:"playbook,omitempty" jsonschema:"the playbook that answered, namespace/name"`
	Conditions  []Condition       `json:"conditions,omitempty"`
	Timeline    []Moment          `json:"timeline,omitempty" jsonschema:"what happened, in order"`
	Steps       []AppliedStep     `json:"steps,omitempty" jsonschema:"the steps of the approved plan as applied"`
}

// Condition is one of the incident's conditions.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Since   string `json:"since,omitempty"`
}

// Moment is one point of the timeline.
type Moment struct {
	At   string `json:"at"`
	What string `json:"what"`
}

// AppliedStep is one step as applied.
type AppliedStep struct {
	Name      string `json:"name"`
	Action    string `json:"action"`
	Target    string `json:"target,omitempty"`
	Completed string `json:"completed,omitempty"`
	Undone    string `json:"undone,omitempty"`
}

func (s *Server) describeIncident(ctx context.Context, _ *mcp.CallToolRequest, in NamedInput) (*mcp.CallToolResult, IncidentDetail, error) {
	inc := &riposte.Incident{}
	if err := s.Client.Get(ctx, client.ObjectKey{Namespace: in.Namespace, Name: in.Name}, inc); err != nil {
		return nil, IncidentDetail{}, fmt.Errorf("reading incident %s/%s: %w", in.Namespace, in.Name, err)
	}
	d := IncidentDetail{IncidentSummary: summarize(inc)}
	if len(inc.Spec.Labels) > 0 {
		d.Labels = map[string]string{}
		for k, v := range inc.Spec.Labels {
			d.Labels[k] = text.Elide(v, maxText)
		}
	}
	if len(inc.Spec.Annotations) > 0 {
		d.Annotations = map[string]string{}
		for k, v := range inc.Spec.Annotations {
			d.Annotations[k] = text.Elide(v, maxText)
		}
	}
	if inc.Status.Context != nil {
		b, err := json.Marshal(inc.Status.Context)
		if err != nil {
			return nil, IncidentDetail{}, err
		}
		d.Context = text.Elide(string(b), maxContext)
	}
	if p := inc.Status.Playbook; p != nil {
		d.Playbook = p.Namespace + "/" + p.Name
	}
	for _, c := range inc.Status.Conditions[:min(len(inc.Status.Conditions), maxItems)] {
		d.Conditions = append(d.Conditions, Condition{Type: c.Type, Status: string(c.Status), Reason: c.Reason,
			Message: text.Elide(c.Message, maxText), Since: c.LastTransitionTime.UTC().Format(time.RFC3339)})
	}
	d.Timeline = timeline(inc)
	if len(d.Timeline) > maxItems {
		d.Timeline = d.Timeline[:maxItems]
	}
	for _, st := range inc.Status.Steps[:min(len(inc.Status.Steps), maxItems)] {
		a := AppliedStep{Name: st.Name, Action: string(st.Action), Completed: timeOf(st.CompletedAt), Undone: timeOf(st.UndoneAt)}
		if st.Target != nil {
			a.Target = refString(*st.Target)
		}
		d.Steps = append(d.Steps, a)
	}
	return nil, d, nil
}

// timeline orders what the status says happened.
func timeline(inc *riposte.Incident) []Moment {
	type point struct {
		at   *metav1.Time
		what string
	}
	s := inc.Status
	points := []point{
		{&inc.CreationTimestamp, "opened (" + string(inc.Spec.Source) + ")"},
		{s.DetectedAt, "taken up by Riposte"},
		{s.EnrichedAt, "live context resolved"},
		{s.ApprovedAt, "plan approved"},
		{s.RemediatedAt, "remediated"},
		{s.ResolvedAt, "alert resolved"},
		{s.ClosedAt, "closed as " + string(s.Phase)},
	}
	if a := s.AutoApproval; a != nil {
		points = append(points, point{&a.DecidedAt, "approved by the playbook's policy"})
	}
	for _, st := range s.Steps {
		points = append(points, point{st.CompletedAt, "step " + st.Name + " (" + string(st.Action) + ") applied"}, point{st.UndoneAt, "step " + st.Name + " undone"})
	}
	var out []Moment
	sort.SliceStable(points, func(i, j int) bool {
		if points[i].at == nil || points[j].at == nil {
			return points[j].at == nil && points[i].at != nil
		}
		return points[i].at.Before(points[j].at)
	})
	for _, p := range points {
		if p.at != nil && !p.at.IsZero() {
			out = append(out, Moment{At: p.at.UTC().Format(time.RFC3339), What: p.what})
		}
	}
	return out
}

// ListPlaybooksInput pages through playbooks.
type ListPlaybooksInput struct {
	Namespace string `json:"namespace,omitempty" jsonschema:"the namespace to list; empty lists every namespace you may read"`
	Limit     int    `json:"limit,omitempty" jsonschema:"how many in this page, 1 to 50 (default 20)"`
	Continue  string `json:"continue,omitempty" jsonschema:"the continue token the previous page returned"`
}

// PlaybookSummary is what one playbook can do.
type PlaybookSummary struct {
	Namespace      string        `json:"namespace"`
	Name           string        `json:"name"`
	Ready          bool          `json:"ready"`
	Message        string        `json:"message,omitempty"`
	AlertNames     []string      `json:"alertNames,omitempty" jsonschema:"the alert or problem names it answers; a proposal's problem must be one of these to be answered"`
	DriftRules     []string      `json:"driftRules,omitempty"`
	Steps          []PlannedStep `json:"steps"`
	Approval       string        `json:"approval" jsonschema:"how its plans are approved"`
	ManualRequests string        `json:"manualRequests" jsonschema:"whether it acts on requests from people and agents: RequireAccess (only within the requester's own rights), Anyone, or Refuse"`
}

// PlannedStep is one step of a playbook or a plan.
type PlannedStep struct {
	Name    string   `json:"name"`
	Action  string   `json:"action"`
	Target  string   `json:"target,omitempty"`
	Changes []string `json:"changes,omitempty" jsonschema:"each write the step makes, as the API server's dry run accepted it"`
}

// ListPlaybooksOutput is a page of playbooks.
type ListPlaybooksOutput struct {
	Playbooks []PlaybookSummary `json:"playbooks"`
	Continue  string            `json:"continue,omitempty"`
}

func (s *Server) listPlaybooks(ctx context.Context, _ *mcp.CallToolRequest, in ListPlaybooksInput) (*mcp.CallToolResult, ListPlaybooksOutput, error) {
	list := &riposte.PlaybookList{}
	if err := s.Client.List(ctx, list, listOptions(in.Namespace, in.Limit, in.Continue)...); err != nil {
		return nil, ListPlaybooksOutput{}, fmt.Errorf("listing playbooks: %w", err)
	}
	out := ListPlaybooksOutput{Playbooks: []PlaybookSummary{}, Continue: list.Continue}
	for i := range list.Items {
		pb := &list.Items[i]
		sum := PlaybookSummary{Namespace: pb.Namespace, Name: pb.Name, Steps: []PlannedStep{}, Approval: approvalOf(pb), ManualRequests: string(pb.Spec.Approval.ManualRequests)}
		if sum.ManualRequests == "" {
			sum.ManualRequests = "default (RequireAccess; Refuse for a playbook in Riposte's own namespace)"
		}
		for _, c := range pb.Status.Conditions {
			if c.Type == riposte.ConditionReady {
				sum.Ready, sum.Message = c.Status == metav1.ConditionTrue, text.Elide(c.Message, maxText)
			}
		}
		for _, a := range pb.Spec.Triggers.Alerts {
			sum.AlertNames = append(sum.AlertNames, a.AlertNames...)
		}
		for _, d := range pb.Spec.Triggers.Drift {
			sum.DriftRules = append(sum.DriftRules, d.Name)
		}
		for _, st := range pb.Spec.Steps {
			sum.Steps = append(sum.Steps, PlannedStep{Name: st.Name, Action: string(st.Action)})
		}
		out.Playbooks = append(out.Playbooks, sum)
	}
	return nil, out, nil
}

func approvalOf(pb *riposte.Playbook) string {
	a := pb.Spec.Approval
	people := fmt.Sprintf("%d approval(s) by people holding the verb approve", max(a.RequiredApprovals, 1))
	switch {
	case a.AutoApprove == nil:
		return people
	case a.AutoApprove.When == "":
		return "automatic for alerts and drift; " + people + " for requests by people and agents"
	}
	return "automatic for alerts and drift when " + text.Elide(a.AutoApprove.When, 256) + ", else " + people + "; " + people + " for requests by people and agents"
}

// GatePlan is an approval gate and the plan it waits on.
type GatePlan struct {
	Namespace         string        `json:"namespace"`
	Name              string        `json:"name"`
	Incident          string        `json:"incident"`
	Playbook          string        `json:"playbook"`
	Phase             string        `json:"phase,omitempty"`
	PlanHash          string        `json:"planHash"`
	Steps             []PlannedStep `json:"steps"`
	RequiredApprovals int32         `json:"requiredApprovals"`
	Requester         string        `json:"requester,omitempty" jsonschema:"who asked for the plan; they may not approve it"`
	ExpiresAt         string        `json:"expiresAt,omitempty"`
	Decisions         []string      `json:"decisions,omitempty" jsonschema:"each decision so far: who, what, when, why"`
	Message           string        `json:"message,omitempty"`
}

func (s *Server) showGatePlan(ctx context.Context, _ *mcp.CallToolRequest, in NamedInput) (*mcp.CallToolResult, GatePlan, error) {
	gate := &riposte.ApprovalGate{}
	if err := s.Client.Get(ctx, client.ObjectKey{Namespace: in.Namespace, Name: in.Name}, gate); err != nil {
		return nil, GatePlan{}, fmt.Errorf("reading approval gate %s/%s: %w", in.Namespace, in.Name, err)
	}
	out := GatePlan{Namespace: gate.Namespace, Name: gate.Name, Incident: gate.Spec.Incident,
		Playbook: gate.Spec.Playbook.Namespace + "/" + gate.Spec.Playbook.Name, Phase: string(gate.Status.Phase),
		PlanHash: gate.Spec.Plan.Hash, Steps: []PlannedStep{}, RequiredApprovals: max(gate.Spec.Policy.RequiredApprovals, 1),
		Requester: gate.Spec.Policy.Requester, ExpiresAt: timeOf(gate.Spec.Policy.ExpiresAt), Message: text.Elide(gate.Status.Message, maxText)}
	for _, st := range gate.Spec.Plan.Steps[:min(len(gate.Spec.Plan.Steps), maxItems)] {
		p := PlannedStep{Name: st.Name, Action: string(st.Action)}
		if st.Target != nil {
			p.Target = refString(*st.Target)
		}
		for _, c := range st.Changes[:min(len(st.Changes), maxItems)] {
			p.Changes = append(p.Changes, text.Elide(fmt.Sprintf("%s %s: %s", c.Operation, refString(c.Object), c.Summary), maxText))
		}
		out.Steps = append(out.Steps, p)
	}
	for _, d := range gate.Spec.Decisions[:min(len(gate.Spec.Decisions), maxItems)] {
		at := ""
		if d.At != nil {
			at = " at " + d.At.UTC().Format(time.RFC3339)
		}
		out.Decisions = append(out.Decisions, text.Elide(fmt.Sprintf("%s: %s%s (%s)", d.User, d.Decision, at, d.Reason), maxText))
	}
	return nil, out, nil
}
