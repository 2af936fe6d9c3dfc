// Package chat lets people decide approval gates from Slack as themselves:
// the approval notification carries Block Kit buttons, and the bridge
// verifies each click Slack signs, maps the Slack user to the Kubernetes
// user the cluster admin named for them, and writes the decision as that
// user by impersonation, so the API server's admission policy and the
// verb approve decide exactly as they do for kubectl.
package chat

import (
	"fmt"
	"slices"
	"strings"

	"github.com/slack-go/slack"
	"k8s.io/apimachinery/pkg/types"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/notify"
)

// Action IDs of the buttons, and the reason field.
const (
	ActionApprove = "riposte.approve"
	ActionReject  = "riposte.reject"
	ActionShow    = "riposte.show"
	ReasonBlock   = "riposte.reason"
	ReasonInput   = "reason"
)

// GateRef is what a button carries: the gate, by name and UID, and the
// plan it was shown, so a click never decides a plan that replaced the one
// the person read, nor a gate that took an older one's name.
type GateRef struct {
	Namespace, Name string
	UID             types.UID
	PlanHash        string
}

// RefOf is the reference to a gate as it is now.
func RefOf(gate *riposte.ApprovalGate) GateRef {
	return GateRef{Namespace: gate.Namespace, Name: gate.Name, UID: gate.UID, PlanHash: gate.Spec.Plan.Hash}
}

func (g GateRef) String() string {
	return g.Namespace + "/" + g.Name + "/" + string(g.UID) + "/" + g.PlanHash
}

// ParseGateRef reads a button's value.
func ParseGateRef(v string) (GateRef, error) {
	parts := strings.Split(v, "/")
	if len(parts) != 4 || slices.Contains(parts, "") {
		return GateRef{}, fmt.Errorf("the button's value %q is not namespace/gate/uid/plan", v)
	}
	return GateRef{Namespace: parts[0], Name: parts[1], UID: types.UID(parts[2]), PlanHash: parts[3]}, nil
}

// GateText is what the message says of the gate: the notification's text,
// escaped. The bridge renders it again from the gate a click names and
// acts only on a click in a message that says exactly this.
func GateText(gate *riposte.ApprovalGate) string {
	return escape(notify.GateWaiting(gate).Text)
}

// DecisionsText lists decisions in the order they were recorded.
func DecisionsText(decisions []riposte.Decision) string {
	var b strings.Builder
	b.WriteString("Decisions so far:")
	for i, d := range decisions {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %s", escape(d.User), d.Decision)
	}
	return b.String()
}

// GateBlocks are the approval notification's blocks: what waits, the
// plan, the decisions so far, a reason field, and the buttons.
func GateBlocks(gate *riposte.ApprovalGate) []slack.Block {
	ref := RefOf(gate).String()
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
	blocks := []slack.Block{slack.NewSectionBlock(md(GateText(gate)), nil, nil)}
	if len(gate.Spec.Decisions) > 0 {
		blocks = append(blocks, slack.NewContextBlock("riposte.decisions", md(DecisionsText(gate.Spec.Decisions))))
	}
	return append(blocks, reason, slack.NewActionBlock(DecideBlock, approve, reject, show))
}

// DecideBlock is the block of buttons.
const DecideBlock = "riposte.decide"

// Shown checks that a click came from a message Riposte would send for
// this gate: one section saying GateText, decisions the gate has, the
// reason field, and buttons that all name the clicked gate and plan. Any
// Slack user with the app's incoming webhook could post a message of
// their own, with a harmless text and an Approve button naming another
// gate; Slack signs clicks on it as it signs clicks on Riposte's.
func Shown(msg *slack.Message, gate *riposte.ApprovalGate, value string) error {
	refuse := func(why string) error {
		return fmt.Errorf("refused: the message you clicked is not the one Riposte sends for gate %s/%s (%s); act on Riposte's own notification, or use kubectl riposte", gate.Namespace, gate.Name, why)
	}
	if msg == nil || len(msg.Blocks.BlockSet) == 0 {
		return refuse("Slack sent no message with the click")
	}
	sections, buttons := 0, 0
	for _, blk := range msg.Blocks.BlockSet {
		switch b := blk.(type) {
		case *slack.SectionBlock:
			sections++
			if b.Text == nil || b.Text.Text != GateText(gate) || b.Fields != nil || b.Accessory != nil {
				return refuse("its text is not the gate's")
			}
		case *slack.ContextBlock:
			for _, e := range b.ContextElements.Elements {
				t, ok := e.(*slack.TextBlockObject)
				if !ok || !decisionsOf(t.Text, gate.Spec.Decisions) {
					return refuse("it lists decisions the gate does not have")
				}
			}
		case *slack.InputBlock:
			if b.BlockID != ReasonBlock {
				return refuse("it has a field of its own")
			}
		case *slack.ActionBlock:
			if b.Elements == nil {
				continue
			}
			for _, e := range b.Elements.ElementSet {
				btn, ok := e.(*slack.ButtonBlockElement)
				if !ok || btn.Value != value {
					return refuse("its buttons do not all name this gate and plan")
				}
				buttons++
			}
		default:
			return refuse("it has a block of its own")
		}
	}
	if sections != 1 || buttons == 0 {
		return refuse("it does not say what waits, once")
	}
	return nil
}

// decisionsOf says whether text lists the first decisions of the gate:
// they are only ever appended, so a message lists a prefix of them.
func decisionsOf(text string, decisions []riposte.Decision) bool {
	for k := 1; k <= len(decisions); k++ {
		if text == DecisionsText(decisions[:k]) {
			return true
		}
	}
	return false
}

// escape keeps what people and alerts wrote from being read as Slack
// markup (links, mentions) in a message approvers trust.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
