package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// describe prints an incident for a person: what fired, what it touches,
// what that may do and reach, what happened around it, and what Riposte did.
func (c *CLI) describe(ctx context.Context, name string) error {
	inc := &riposte.Incident{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, inc); err != nil {
		return fmt.Errorf("reading incident %s/%s: %w", c.Namespace, name, err)
	}
	w := c.Out
	fmt.Fprintf(w, "Incident:  %s/%s (%s)\n", inc.Namespace, inc.Name, orDash(string(inc.Status.Phase)))
	fmt.Fprintf(w, "Alert:     %s, severity %s, %s, from %s\n", inc.Spec.AlertName, orDash(inc.Spec.Severity), orDash(string(inc.Spec.Status)), inc.Spec.Source)
	if s := inc.Spec.Annotations["summary"]; s != "" {
		fmt.Fprintf(w, "Summary:   %s\n", s)
	}
	if inc.Spec.RequestedBy != "" {
		fmt.Fprintf(w, "Opened by: %s\n", inc.Spec.RequestedBy)
	}
	if inc.Spec.TargetSetBy != "" {
		fmt.Fprintf(w, "Target by: %s\n", inc.Spec.TargetSetBy)
	}
	if c := meta.FindStatusCondition(inc.Status.Conditions, riposte.IncidentDeletionBlocked); inc.DeletionTimestamp != nil && c != nil && c.Status == metav1.ConditionTrue {
		fmt.Fprintf(w, "Deleting:  %s\n", c.Message)
	}
	if d := inc.Spec.Drift; d != nil {
		fmt.Fprintf(w, "Drift:     rule %s of playbook %s, found in %s\n", d.Rule, d.Playbook.String(), describeRef(d.Source))
		if d.Resolution != "" {
			fmt.Fprintf(w, "Ended:     %s\n", d.Resolution)
		}
	}
	if pb := inc.Status.Playbook; pb != nil {
		decided := "gate " + orDash(inc.Status.ApprovalGate)
		if a := inc.Status.AutoApproval; a != nil && inc.Status.ApprovalGate == "" {
			decided = "approved by policy"
			if a.Rule != "" {
				decided += " (" + a.Rule + ")"
			}
		}
		fmt.Fprintf(w, "Playbook:  %s, %s\n", pb.String(), decided)
	}
	for _, line := range ContextLines(inc.Status.Context) {
		fmt.Fprintln(w, line)
	}
	if timeline := mergedTimeline(inc); len(timeline) > 0 {
		fmt.Fprintln(w, "Timeline:")
		for _, e := range timeline {
			object := ""
			if e.Object != "" {
				object = " " + e.Object
			}
			fmt.Fprintf(w, "  %s  %-7s%s %s: %s\n", e.Time.UTC().Format(time.RFC3339), e.Source, object, e.Reason, oneLine(e.Message))
		}
	}
	if len(inc.Status.Steps) > 0 {
		fmt.Fprintf(w, "Steps:     as %s\n", orDash(inc.Status.RunAs))
		for _, s := range inc.Status.Steps {
			fmt.Fprintf(w, "  %s (%s): %s %s\n", s.Name, s.Action, s.Phase, s.Message)
			switch {
			case s.UndoneAt != nil:
				fmt.Fprintf(w, "    undone by %s at %s\n", s.UndoneBy, s.UndoneAt.UTC().Format(time.RFC3339))
			case s.UndoAt != nil:
				fmt.Fprintf(w, "    temporary: undone at %s unless escalated\n", s.UndoAt.UTC().Format(time.RFC3339))
			}
			for _, ch := range s.Changes {
				fmt.Fprintf(w, "    %-9s %s (undo: %s)\n", ch.Operation, ch.Object.String(), orDash(string(ch.Undo)))
			}
		}
	}
	if u := inc.Spec.Undo; u != nil {
		fmt.Fprintf(w, "Undo:      asked for by %s: %s\n", u.RequestedBy, orDash(u.Reason))
	}
	printTimes(w, inc)
	return nil
}

// ContextLines renders the enrichment an approver needs, a line each; the
// same lines head the gate's plan.
func ContextLines(c *riposte.IncidentContext) []string {
	if c == nil {
		return nil
	}
	var out []string
	add := func(label string, values ...string) {
		var kept []string
		for _, v := range values {
			if v != "" {
				kept = append(kept, v)
			}
		}
		if len(kept) > 0 {
			out = append(out, fmt.Sprintf("%-10s %s", label+":", strings.Join(kept, ", ")))
		}
	}
	if c.Target != nil {
		target := c.Target.String()
		if c.Container != "" {
			target += " (container " + c.Container + ")"
		}
		add("Target", target)
	}
	var owners []string
	for _, o := range c.OwnerChain {
		owners = append(owners, o.Kind+"/"+o.Name)
	}
	if len(owners) > 0 {
		chain := strings.Join(owners, " <- ")
		if c.Replicas != nil {
			chain += fmt.Sprintf(" (%d replicas)", *c.Replicas)
		}
		add("Owners", chain)
	}
	add("Node", c.Node)
	var images []string
	for _, ci := range c.Containers {
		img := ci.Image
		if ci.ImageID != "" {
			img += " @ " + ci.ImageID
		}
		images = append(images, img)
	}
	if len(images) == 0 {
		images = c.Images
	}
	add("Images", images...)
	add("Risks", c.RiskFlags...)
	if id := c.Identity; id != nil {
		add("Identity", id.ServiceAccount)
		add("Roles", id.Roles...)
		add("Dangerous", id.Dangerous...)
	}
	if ex := c.Exposure; ex != nil {
		add("Services", ex.Services...)
		add("Ingresses", ex.Ingresses...)
		add("Routes", ex.Routes...)
		add("Policies", ex.NetworkPolicies...)
		if ex.Isolated {
			add("Isolated", "yes: a policy denies all ingress and egress")
		}
	}
	add("Related", c.RelatedIncidents...)
	add("Truncated", c.Truncated...)
	return out
}

// printTimes prints the incident's milestones. They are absolute: the API
// server keeps them to the second, so differences below that mean nothing.
func printTimes(w io.Writer, inc *riposte.Incident) {
	s := inc.Status
	var parts []string
	for _, t := range []struct {
		label string
		at    *metav1.Time
	}{{"detected", s.DetectedAt}, {"enriched", s.EnrichedAt}, {"approved", s.ApprovedAt}, {"remediated", s.RemediatedAt}, {"resolved", s.ResolvedAt}} {
		if t.at != nil {
			parts = append(parts, t.label+" "+t.at.UTC().Format(time.RFC3339))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "Times:     %s\n", strings.Join(parts, ", "))
	}
}

// mergedTimeline adds Riposte's own steps, recorded after enrichment, to the
// timeline enrichment gathered.
func mergedTimeline(inc *riposte.Incident) []riposte.TimelineEntry {
	var out []riposte.TimelineEntry
	if inc.Status.Context != nil {
		out = append(out, inc.Status.Context.Timeline...)
	}
	for _, st := range inc.Status.Steps {
		if st.CompletedAt == nil || slices.ContainsFunc(out, func(e riposte.TimelineEntry) bool {
			return e.Source == "Riposte" && e.Time.Equal(st.CompletedAt)
		}) {
			continue
		}
		out = append(out, riposte.TimelineEntry{Time: *st.CompletedAt, Source: "Riposte", Reason: string(st.Phase),
			Message: fmt.Sprintf("step %s (%s) %s", st.Name, st.Action, describeTarget(st.Target))})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(&out[j].Time) })
	return out
}

func describeTarget(t *riposte.ObjectReference) string {
	if t == nil {
		return ""
	}
	return "on " + t.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		return s[:157] + "..."
	}
	return s
}
