package chat

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/slack-go/slack"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func testGate() *riposte.ApprovalGate {
	return &riposte.ApprovalGate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "am-1", UID: "5b1f"},
		Spec: riposte.ApprovalGateSpec{
			Incident: "am-1",
			Playbook: riposte.NamespacedName{Namespace: "prod", Name: "isolate"},
			Plan: riposte.Plan{Hash: "sha256:ab", Steps: []riposte.PlannedStep{{Name: "isolate", Changes: []riposte.PlannedChange{{
				Operation: riposte.OperationPatch, Summary: "label <@here> & isolate",
				Object: riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "prod", Name: "api"}}}}}},
			Policy:    riposte.GatePolicy{RequiredApprovals: 2},
			Decisions: []riposte.Decision{{User: "alice", Decision: riposte.DecisionApprove, Reason: "ok"}},
		},
	}
}

// roundTrip is the message as a click brings it back: Slack's JSON of the
// blocks Riposte posted.
func roundTrip(t *testing.T, blocks []slack.Block) *slack.Message {
	t.Helper()
	b, err := json.Marshal(slack.Msg{Blocks: slack.Blocks{BlockSet: blocks}})
	if err != nil {
		t.Fatal(err)
	}
	m := &slack.Message{}
	if err := json.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestShown(t *testing.T) {
	gate := testGate()
	value := RefOf(gate).String()
	md := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
	}
	with := func(edit func([]slack.Block) []slack.Block) []slack.Block { return edit(GateBlocks(gate)) }
	buttons := func(blocks []slack.Block) []slack.BlockElement {
		return blocks[len(blocks)-1].(*slack.ActionBlock).Elements.ElementSet
	}
	cases := []struct {
		name   string
		blocks []slack.Block
		value  string
		want   string
	}{
		{name: "Riposte's message, as posted", blocks: GateBlocks(gate), value: value},
		{name: "before any decision", blocks: GateBlocks(&riposte.ApprovalGate{ObjectMeta: gate.ObjectMeta, Spec: riposte.ApprovalGateSpec{Incident: "am-1", Plan: gate.Spec.Plan}}), value: value, want: "its text is not the gate's"},
		{name: "no message", value: value, want: "no message"},
		{name: "another text", value: value, want: "its text is not the gate's", blocks: with(func(b []slack.Block) []slack.Block {
			b[0] = slack.NewSectionBlock(md("Riposte: restart web (harmless)"), nil, nil)
			return b
		})},
		{name: "a button naming another gate", value: value, want: "do not all name this gate", blocks: with(func(b []slack.Block) []slack.Block {
			buttons(b)[2].(*slack.ButtonBlockElement).Value = "staging/x/1/sha256:cd"
			return b
		})},
		{name: "a button of its own", value: value, want: "do not all name this gate", blocks: with(func(b []slack.Block) []slack.Block {
			return append(b, slack.NewActionBlock("more", slack.NewButtonBlockElement("x", "staging/x/1/sha256:cd", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false))))
		})},
		{name: "the clicked value differs from the buttons'", value: "prod/am-1/5b1f/sha256:zz", want: "do not all name this gate", blocks: GateBlocks(gate)},
		{name: "a second section", value: value, want: "once", blocks: with(func(b []slack.Block) []slack.Block {
			return append(b, slack.NewSectionBlock(md(GateText(gate)), nil, nil))
		})},
		{name: "a section with a link accessory", value: value, want: "its text is not the gate's", blocks: with(func(b []slack.Block) []slack.Block {
			b[0].(*slack.SectionBlock).Accessory = slack.NewAccessory(slack.NewButtonBlockElement("x", value, md("see")))
			return b
		})},
		{name: "decisions the gate does not have", value: value, want: "lists decisions", blocks: with(func(b []slack.Block) []slack.Block {
			b[1] = slack.NewContextBlock("riposte.decisions", md("Decisions so far: ceo Approve"))
			return b
		})},
		{name: "a header of its own", value: value, want: "a block of its own", blocks: with(func(b []slack.Block) []slack.Block {
			return append([]slack.Block{slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, "Approved by security", false, false))}, b...)
		})},
		{name: "an input of its own", value: value, want: "a field of its own", blocks: with(func(b []slack.Block) []slack.Block {
			return append(b, slack.NewInputBlock("other", slack.NewTextBlockObject(slack.PlainTextType, "x", false, false), nil, slack.NewPlainTextInputBlockElement(nil, "x")))
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var msg *slack.Message
			if tc.blocks != nil {
				msg = roundTrip(t, tc.blocks)
			}
			err := Shown(msg, gate, tc.value)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
}

func TestDecisionsListedArePrefixes(t *testing.T) {
	ds := []riposte.Decision{{User: "alice", Decision: riposte.DecisionApprove}, {User: "bob", Decision: riposte.DecisionApprove}}
	for _, tc := range []struct {
		text string
		want bool
	}{
		{DecisionsText(ds[:1]), true},
		{DecisionsText(ds), true},
		{DecisionsText(ds[1:]), false},
		{DecisionsText(nil), false},
		{"Decisions so far: alice Approve, bob Approve, carol Approve", false},
	} {
		if got := decisionsOf(tc.text, ds); got != tc.want {
			t.Errorf("decisionsOf(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestGateRef(t *testing.T) {
	ref := RefOf(testGate())
	got, err := ParseGateRef(ref.String())
	if err != nil || got != ref {
		t.Fatalf("ParseGateRef(%q) = %+v, %v", ref.String(), got, err)
	}
	for _, bad := range []string{"prod/am-1/sha256:ab", "prod/am-1//sha256:ab", "prod/am-1/5b1f/sha256:ab/x", ""} {
		if _, err := ParseGateRef(bad); err == nil {
			t.Errorf("ParseGateRef(%q) accepted", bad)
		}
	}
}

// The plan shown is escaped, and marks what cannot be undone.
func TestPlanText(t *testing.T) {
	gate := testGate()
	gate.Spec.Plan.Steps[0].Changes[0].Undo = riposte.UndoNone
	got := planText(gate)
	if strings.Contains(got, "<@here>") || !strings.Contains(got, "&lt;@here&gt; &amp; isolate") || !strings.Contains(got, "[cannot be undone]") {
		t.Errorf("planText = %q", got)
	}
}
