package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/alertlabels"
)

// ProposeInput is a proposal: an object, what is wrong with it, and why.
type ProposeInput struct {
	Namespace  string `json:"namespace" jsonschema:"the namespace of the object (and of the incident opened about it)"`
	Kind       string `json:"kind" jsonschema:"the object's kind: Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ServiceAccount, RoleBinding, Node, ..."`
	Name       string `json:"name" jsonschema:"the object's name"`
	APIVersion string `json:"apiVersion,omitempty" jsonschema:"the object's API version; needed only for kinds other than the built-in workloads, Pod, Node, Service, ServiceAccount and RBAC kinds"`
	Problem    string `json:"problem" jsonschema:"a short name of what is wrong, matched by playbooks like an alert name (list_playbooks shows the names each answers), for example ContainerShell"`
	Severity   string `json:"severity,omitempty" jsonschema:"critical, warning or info"`
	Summary    string `json:"summary" jsonschema:"one line a person reads first, at most 256 characters"`
	Reasoning  string `json:"reasoning" jsonschema:"why you propose it: the evidence and how you reached it, at most 4096 characters; people read it before they decide"`
}

// ProposeOutput is the incident opened.
type ProposeOutput struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	RequestedBy string `json:"requestedBy" jsonschema:"you, as the API server knows you: the incident's requester, who may not approve it"`
	Next        string `json:"next"`
}

func (s *Server) propose(ctx context.Context, _ *mcp.CallToolRequest, in ProposeInput) (*mcp.CallToolResult, ProposeOutput, error) {
	if err := in.check(); err != nil {
		return nil, ProposeOutput{}, err
	}
	me, err := s.whoami(ctx)
	if err != nil {
		return nil, ProposeOutput{}, err
	}
	target := &riposte.ObjectReference{APIVersion: in.APIVersion, Kind: in.Kind, Name: in.Name, Namespace: in.Namespace}
	if target.APIVersion == "" {
		if target.APIVersion = alertlabels.APIVersionOf(in.Kind); target.APIVersion == "" {
			return nil, ProposeOutput{}, fmt.Errorf("kind %s: give its apiVersion too", in.Kind)
		}
	}
	if in.Kind == "Node" {
		target.Namespace = ""
	}
	inc := &riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "agent-", Namespace: in.Namespace},
		Spec: riposte.IncidentSpec{
			Source: riposte.SourceManual, AlertName: in.Problem, Severity: in.Severity, Target: target, RequestedBy: me.Username,
			Annotations: map[string]string{"summary": in.Summary, "description": in.Reasoning, "proposedThrough": "riposte mcp"},
		},
	}
	// The groups let a playbook that acts only within the requester's
	// rights (RequireAccess) count the agent's own; the API server checks
	// the agent is in each.
	if len(me.Groups) <= 32 {
		inc.Spec.RequesterGroups = me.Groups
	}
	if err := s.Client.Create(ctx, inc); err != nil {
		return nil, ProposeOutput{}, fmt.Errorf("opening the incident in %s as %s: %w", in.Namespace, me.Username, err)
	}
	return nil, ProposeOutput{Namespace: inc.Namespace, Name: inc.Name, RequestedBy: me.Username,
		Next: "a playbook answering " + in.Problem + " plans the remediation and people decide; follow it with describe_incident, and the plan with show_gate_plan once it waits for approval"}, nil
}

func (in ProposeInput) check() error {
	var missing []string
	for name, v := range map[string]string{"namespace": in.Namespace, "kind": in.Kind, "name": in.Name, "problem": in.Problem, "summary": in.Summary, "reasoning": in.Reasoning} {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	switch {
	case len(missing) > 0:
		return fmt.Errorf("a proposal needs %s", strings.Join(missing, ", "))
	case hasControl(in.Problem + in.Summary):
		return errors.New("problem and summary are one line each, with no control characters")
	case hasControl(strings.NewReplacer("\n", "", "\t", "").Replace(in.Reasoning)):
		return errors.New("reasoning may hold line breaks and tabs, but no other control characters")
	case len(in.Summary) > 256:
		return fmt.Errorf("summary is %d characters: at most 256", len(in.Summary))
	case len(in.Reasoning) > maxReasoning:
		return fmt.Errorf("reasoning is %d characters: at most %d", len(in.Reasoning), maxReasoning)
	}
	return nil
}

// hasControl finds characters a terminal or a chat client would act on
// (escape sequences, carriage returns): what an agent writes is shown to
// the people who decide, and must not pass for anything else.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) })
}
