// Package cli is the kubectl plugin `kubectl riposte`: list the gates that
// wait for people, show a plan, approve or reject it as yourself, undo a
// remediation, and pause or resume Riposte. Who you
// are comes from the API server (SelfSubjectReview), never from a flag, and
// the API server checks it again when the decision is written.
package cli

import (
	"context"
	"errors"
	"flag"
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

// Usage is printed for -h and for a wrong command.
const Usage = `kubectl riposte: decide Riposte's remediations.

  kubectl riposte gates [-A | -n NAMESPACE]      gates waiting for a decision
  kubectl riposte show GATE [-n NAMESPACE]        the plan, its dry-run result and the decisions
  kubectl riposte approve GATE --reason TEXT [-n NAMESPACE]
  kubectl riposte reject GATE --reason TEXT [-n NAMESPACE]
  kubectl riposte describe INCIDENT [-n NAMESPACE] what it touches, may do and reach, its timeline and steps
  kubectl riposte undo INCIDENT --reason TEXT [-n NAMESPACE]
                                                  put back what the remediation changed
  kubectl riposte escalate INCIDENT [-n NAMESPACE] keep temporary containment in place
  kubectl riposte pause --reason TEXT             hold every remediation (ConfigMap riposte-pause)
  kubectl riposte resume                          let held remediations run
  kubectl riposte whoami                          who the API server says you are
  kubectl riposte test -f PATH [--fail-on-violation]
                                                  judge manifests and Alertmanager payloads against
                                                  the playbooks in the files, without a cluster

Common flags: --kubeconfig, --context, -n/--namespace, --riposte-namespace (default riposte-system).
`

// CLI runs the commands against one cluster.
type CLI struct {
	Client client.Client
	// Namespace is the default from the kubeconfig context, or -n.
	Namespace string
	Out       io.Writer
	// Now is the clock (tests may fix it).
	Now func() time.Time
}

// Run executes one command line (without the program name).
func (c *CLI) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("no command given\n\n" + Usage)
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	all := fs.Bool("A", false, "all namespaces")
	reason := fs.String("reason", "", "why you decide so (required)")
	ns := fs.String("n", c.Namespace, "namespace")
	fs.StringVar(ns, "namespace", c.Namespace, "namespace")
	riposteNS := fs.String("riposte-namespace", "riposte-system", "Riposte's own namespace")
	if err := fs.Parse(interleave(rest)); err != nil {
		return fmt.Errorf("%s: %w\n\n%s", cmd, err, Usage)
	}
	c.Namespace = *ns
	var name string
	if namedCommands[cmd] {
		var err error
		if name, err = oneName(cmd, fs.Args()); err != nil {
			return err
		}
	}
	if why, ok := reasonRequired[cmd]; ok && strings.TrimSpace(*reason) == "" {
		return fmt.Errorf("%s: --reason is required: %s", cmd, why)
	}
	switch cmd {
	case "gates":
		return c.gates(ctx, *all)
	case "show":
		return c.show(ctx, name)
	case "approve":
		return c.decide(ctx, name, riposte.DecisionApprove, *reason)
	case "reject":
		return c.decide(ctx, name, riposte.DecisionReject, *reason)
	case "describe":
		return c.describe(ctx, name)
	case "undo":
		return c.undo(ctx, name, *reason)
	case "escalate":
		return c.escalate(ctx, name)
	case "pause":
		return c.pause(ctx, *riposteNS, *reason)
	case "resume":
		return c.resume(ctx, *riposteNS)
	case "whoami":
		user, err := c.WhoAmI(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(c.Out, user)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(c.Out, Usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n\n%s", cmd, Usage)
	}
}

// namedCommands take exactly one gate or incident name.
var namedCommands = map[string]bool{"show": true, "approve": true, "reject": true, "describe": true, "undo": true, "escalate": true}

// reasonRequired says, per command, why it needs --reason.
var reasonRequired = map[string]string{
	"approve": "it is recorded with your decision",
	"reject":  "it is recorded with your decision",
	"undo":    "it is recorded with your request",
	"pause":   "every held incident shows it",
}

// interleave moves flags before positional arguments, so that
// `approve GATE --reason x` parses as kubectl users expect.
func interleave(args []string) []string {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case !strings.HasPrefix(a, "-"):
			positional = append(positional, a)
		case strings.Contains(a, "=") || a == "-A":
			flags = append(flags, a)
		default:
			flags = append(flags, a)
			if i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return append(flags, positional...)
}

func oneName(cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("%s takes exactly one name, got %d", cmd, len(args))
	}
	return args[0], nil
}

// WhoAmI asks the API server who the caller is.
func (c *CLI) WhoAmI(ctx context.Context) (string, error) {
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Client.Create(ctx, review); err != nil {
		return "", fmt.Errorf("asking the API server who you are: %w", err)
	}
	return review.Status.UserInfo.Username, nil
}

func pending(g *riposte.ApprovalGate) bool {
	return g.Status.Phase == "" || g.Status.Phase == riposte.GatePending
}

func (c *CLI) gates(ctx context.Context, all bool) error {
	var list riposte.ApprovalGateList
	opts := []client.ListOption{}
	if !all {
		opts = append(opts, client.InNamespace(c.Namespace))
	}
	if err := c.Client.List(ctx, &list, opts...); err != nil {
		return fmt.Errorf("listing gates: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[i].CreationTimestamp.Before(&list.Items[j].CreationTimestamp)
	})
	w := tabwriter.NewWriter(c.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tGATE\tINCIDENT\tPLAYBOOK\tAPPROVALS\tEXPIRES IN\tPLAN")
	n := 0
	for i := range list.Items {
		g := &list.Items[i]
		if !pending(g) {
			continue
		}
		n++
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", g.Namespace, g.Name, g.Spec.Incident, g.Spec.Playbook.Name,
			g.Status.Approvals, max(g.Spec.Policy.RequiredApprovals, 1), c.expiresIn(g), planLine(g))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if n == 0 {
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
