// Package cli is the kubectl plugin `kubectl riposte`: list the gates that
// wait for people, show a plan, approve or reject it as yourself, undo a
// remediation, and pause or resume Riposte. Who you
// are comes from the API server (SelfSubjectReview), never from a flag, and
// the API server checks it again when the decision is written.
package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// CLI runs the commands against one cluster.
type CLI struct {
	Client client.Client
	// Namespace is the default from the kubeconfig context, or -n.
	Namespace string
	Out       io.Writer
	// Now is the clock (tests may fix it).
	Now func() time.Time
}

// WhoAmI asks the API server who the caller is.
func (c *CLI) WhoAmI(ctx context.Context) (string, error) {
	review, err := c.selfReview(ctx)
	if err != nil {
		return "", err
	}
	return review.Status.UserInfo.Username, nil
}

func (c *CLI) selfReview(ctx context.Context) (*authenticationv1.SelfSubjectReview, error) {
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Client.Create(ctx, review); err != nil {
		return nil, fmt.Errorf("asking the API server who you are: %w", err)
	}
	return review, nil
}

func pending(g *riposte.ApprovalGate) bool {
	return g.Status.Phase == "" || g.Status.Phase == riposte.GatePending
}

// pendingGates lists the gates that wait for a decision, oldest first.
func (c *CLI) pendingGates(ctx context.Context, all bool) (*riposte.ApprovalGateList, error) {
	var list riposte.ApprovalGateList
	opts := []client.ListOption{}
	if !all {
		opts = append(opts, client.InNamespace(c.Namespace))
	}
	if err := c.Client.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("listing gates: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[i].CreationTimestamp.Before(&list.Items[j].CreationTimestamp)
	})
	kept := list.Items[:0]
	for i := range list.Items {
		if pending(&list.Items[i]) {
			// Each item names its kind, as kubectl get -o prints them.
			list.Items[i].SetGroupVersionKind(riposte.GroupVersion.WithKind("ApprovalGate"))
			kept = append(kept, list.Items[i])
		}
	}
	list.Items = kept
	return &list, nil
}

func (c *CLI) gates(ctx context.Context, all bool) error {
	list, err := c.pendingGates(ctx, all)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tGATE\tINCIDENT\tPLAYBOOK\tAPPROVALS\tEXPIRES IN\tPLAN")
	for i := range list.Items {
		g := &list.Items[i]
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", g.Namespace, g.Name, g.Spec.Incident, g.Spec.Playbook.Name,
			g.Status.Approvals, max(g.Spec.Policy.RequiredApprovals, 1), c.expiresIn(g), planLine(g))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(list.Items) == 0 {
		fmt.Fprintln(c.Out, "no gate waits for a decision")
	}
	return nil
}

func (c *CLI) expiresIn(g *riposte.ApprovalGate) string {
	if g.Spec.Policy.ExpiresAt == nil {
		return "never"
	}
	left := g.Spec.Policy.ExpiresAt.Sub(c.now())
	if left <= 0 {
		return "expired"
	}
	return duration.HumanDuration(left)
}

func (c *CLI) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func planLine(g *riposte.ApprovalGate) string {
	var parts []string
	for _, s := range g.Spec.Plan.Steps {
		target := "no target"
		if s.Target != nil {
			target = s.Target.String()
		}
		parts = append(parts, fmt.Sprintf("%s %s", s.Action, target))
	}
	return strings.Join(parts, "; ")
}

func (c *CLI) get(ctx context.Context, name string) (*riposte.ApprovalGate, error) {
	g := &riposte.ApprovalGate{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, g); err != nil {
		return nil, fmt.Errorf("reading gate %s/%s: %w", c.Namespace, name, err)
	}
	return g, nil
}

func (c *CLI) show(ctx context.Context, name string) error {
	g, err := c.get(ctx, name)
	if err != nil {
		return err
	}
	phase := string(g.Status.Phase)
	if phase == "" {
		phase = string(riposte.GatePending)
	}
	fmt.Fprintf(c.Out, "Gate:      %s/%s (%s)\n", g.Namespace, g.Name, phase)
	fmt.Fprintf(c.Out, "Incident:  %s\n", g.Spec.Incident)
	fmt.Fprintf(c.Out, "Playbook:  %s\n", g.Spec.Playbook.String())
	fmt.Fprintf(c.Out, "Approvals: %d of %d required; expires in %s\n", g.Status.Approvals, max(g.Spec.Policy.RequiredApprovals, 1), c.expiresIn(g))
	if g.Status.Message != "" {
		fmt.Fprintf(c.Out, "Status:    %s\n", g.Status.Message)
	}
	if r := g.Spec.Policy.Requester; r != "" {
		fmt.Fprintf(c.Out, "Asked by:  %s (a person's request: people decide it, and %s may not approve it)\n", r, r)
	}
	inc := &riposte.Incident{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: g.Namespace, Name: g.Spec.Incident}, inc); err == nil {
		fmt.Fprintf(c.Out, "Alert:     %s, severity %s\n", inc.Spec.AlertName, orDash(inc.Spec.Severity))
		if d := inc.Spec.Drift; d != nil {
			fmt.Fprintf(c.Out, "Drift:     %s breaks rule %s: %s\n", inc.Spec.Target.String(), d.Rule, orDash(inc.Spec.Annotations["summary"]))
		}
		for _, line := range ContextLines(inc.Status.Context) {
			fmt.Fprintln(c.Out, line)
		}
	}
	fmt.Fprintf(c.Out, "Plan:      %s (each change accepted by the API server's dry run)\n", g.Spec.Plan.Hash)
	for i, s := range g.Spec.Plan.Steps {
		target := "no target"
		if s.Target != nil {
			target = s.Target.String()
		}
		fmt.Fprintf(c.Out, "  %d. %s: %s on %s\n", i+1, s.Name, s.Action, target)
		for _, ch := range s.Changes {
			undo := ""
			switch ch.Undo {
			case "":
			case riposte.UndoNone:
				undo = " (cannot be undone)"
			default:
				undo = " (undo: " + string(ch.Undo) + ")"
			}
			fmt.Fprintf(c.Out, "     %-9s %s%s\n", ch.Operation, ch.Object.String(), undo)
			if ch.Summary != "" {
				fmt.Fprintf(c.Out, "               %s\n", ch.Summary)
			}
		}
	}
	if len(g.Spec.Decisions) > 0 {
		fmt.Fprintln(c.Out, "Decisions:")
		for _, d := range g.Spec.Decisions {
			at := ""
			if d.At != nil {
				at = " at " + d.At.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(c.Out, "  %s %s%s: %s\n", d.User, d.Decision, at, d.Reason)
		}
	}
	for _, ignored := range g.Status.IgnoredDecisions {
		fmt.Fprintf(c.Out, "  not counted: %s\n", ignored)
	}
	return nil
}

// decide appends the caller's decision. The user recorded is the one the API
// server names; the admission policy checks it again on write.
func (c *CLI) decide(ctx context.Context, name string, verdict riposte.DecisionVerdict, reason string) error {
	user, err := c.WhoAmI(ctx)
	if err != nil {
		return err
	}
	for {
		g, err := c.get(ctx, name)
		if err != nil {
			return err
		}
		if !pending(g) {
			return fmt.Errorf("gate %s/%s is already %s: %s", g.Namespace, g.Name, g.Status.Phase, g.Status.Message)
		}
		now := metav1.NewTime(c.now().Truncate(time.Second))
		g.Spec.Decisions = append(g.Spec.Decisions, riposte.Decision{User: user, Decision: verdict, Reason: reason, At: &now})
		err = c.Client.Update(ctx, g)
		if apierrors.IsConflict(err) {
			continue // the gate's status moved on; decide on the fresh one
		}
		if err != nil {
			return fmt.Errorf("recording your decision on gate %s/%s: %w", c.Namespace, name, err)
		}
		fmt.Fprintf(c.Out, "%s: %s recorded on gate %s/%s\n", user, verdict, c.Namespace, name)
		return nil
	}
}
