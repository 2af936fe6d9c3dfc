package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

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
	if pb := inc.Status.Playbook; pb != nil {
		fmt.Fprintf(w, "Playbook:  %s, gate %s\n", pb.String(), orDash(inc.Status.ApprovalGate))
	}
	for _, line := range ContextLines(inc.Status.Context) {
		fmt.Fprintln(w, line)
	}
	if ctx := inc.Status.Context; ctx != nil && len(ctx.Timeline) > 0 {
		fmt.Fprintln(w, "Timeline:")
		for _, e := range ctx.Timeline {
			object := ""
			if e.Object != "" {
				object = " " + e.Object
			}
			fmt.Fprintf(w, "  %s  %-7s%s %s: %s\n", e.Time.UTC().Format(time.RFC3339), e.Source, object, e.Reason, oneLine(e.Message))
		}
	}
	if len(inc.Status.Steps) > 0 {
		fmt.Fprintln(w, "Steps:")
		for _, s := range inc.Status.Steps {
			fmt.Fprintf(w, "  %s (%s): %s %s\n", s.Name, s.Action, s.Phase, s.Message)
			for _, ch := range s.Changes {
				fmt.Fprintf(w, "    %-9s %s\n", ch.Operation, ch.Object.String())
			}
		}
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
		add("Policies", ex.NetworkPolicies...)
		if ex.Isolated {
			add("Isolated", "yes: a policy denies all ingress and egress")
		}
	}
	add("Related", c.RelatedIncidents...)
	add("Truncated", c.Truncated...)
	return out
}

func printTimes(w io.Writer, inc *riposte.Incident) {
	s := inc.Status
	var parts []string
	if s.DetectedAt != nil {
		parts = append(parts, "detected "+s.DetectedAt.UTC().Format(time.RFC3339))
		since := func(label string, at *time.Time) {
			if at != nil {
				parts = append(parts, fmt.Sprintf("%s +%s", label, at.Sub(s.DetectedAt.Time).Round(time.Millisecond)))
			}
		}
		for _, t := range []struct {
			label string
			at    *time.Time
		}{{"enriched", timeOf(s.EnrichedAt)}, {"approved", timeOf(s.ApprovedAt)}, {"remediated", timeOf(s.RemediatedAt)}, {"resolved", timeOf(s.ResolvedAt)}} {
			since(t.label, t.at)
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "Times:     %s\n", strings.Join(parts, ", "))
	}
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

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}
