// Package chat lets people decide approval gates from Slack as themselves:
// the approval notification carries Block Kit buttons, and the bridge
// verifies each click Slack signs, maps the Slack user to the Kubernetes
// user the cluster admin named for them, and writes the decision as that
// user by impersonation, so the API server's admission policy and the
// verb approve decide exactly as they do for kubectl.
package chat

import (
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Action IDs of the buttons, and the reason field.
const (
	ActionApprove = "riposte.approve"
	ActionReject  = "riposte.reject"
	ActionShow    = "riposte.show"
	ReasonBlock   = "riposte.reason"
	ReasonInput   = "reason"
)

// GateRef is what a button carries: the gate and the plan it was shown,
// so a click never decides a plan that replaced the one the person read.
type GateRef struct {
	Namespace, Name, PlanHash string
}

func (g GateRef) String() string { return g.Namespace + "/" + g.Name + "/" + g.PlanHash }

// ParseGateRef reads a button's value.
func ParseGateRef(v string) (GateRef, error) {
	parts := strings.Split(v, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return GateRef{}, fmt.Errorf("the button's value %q is not namespace/gate/plan", v)
	}
	return GateRef{Namespace: parts[0], Name: parts[1], PlanHash: parts[2]}, nil
}

// GateBlocks are the approval notification's blocks: what waits, the
// plan, a reason field, and the buttons.
func GateBlocks(gate *riposte.ApprovalGate, text string) []slack.Block {
	ref := GateRef{Namespace: gate.Namespace, Name: gate.Name, PlanHash: gate.Spec.Plan.Hash}.String()
	md := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
	}
	plain := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
	}
	approve := slack.NewButtonBlockElement(ActionApprove, ref, plain("Approve"))
	approve.Style = slack.StylePrimary
	reject := slack.NewButtonBlockElement(ActionReject, ref, plain("Reject"))
	reject.Style = slack.StyleDanger
	show := slack.NewButtonBlockElement(ActionShow, ref, plain("Show the plan"))
	reason := slack.NewInputBlock(ReasonBlock, plain("Reason (needed to reject)"), nil,
		slack.NewPlainTextInputBlockElement(plain("what you checked"), ReasonInput))
	reason.Optional = true
	return []slack.Block{
		slack.NewSectionBlock(md(escape(text)), nil, nil),
		reason,
		slack.NewActionBlock("riposte.decide", approve, reject, show),
	}
}

// escape keeps what people and alerts wrote from being read as Slack
// markup (links, mentions) in a message approvers trust.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
