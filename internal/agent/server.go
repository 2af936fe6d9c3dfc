// Package agent is Riposte's MCP server for AI agents: tools that read
// incidents, playbooks and gates, and propose a remediation by opening a
// Manual incident, all as the agent's own Kubernetes identity. It holds no
// credentials of Riposte's and has no tool that approves, rejects, undoes or
// pauses: an agent proposes, people decide, and the API server (RBAC and
// the admission policies) bounds what the agent may even read.
package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Bounds on what one call returns, so a large cluster never floods a
// model's context.
const (
	defaultPage = 20
	maxPage     = 50
	// maxText bounds a message or annotation; maxContext the enrichment
	// context of one incident.
	maxText    = 1024
	maxContext = 8192
	// maxReasoning bounds the reasoning an agent gives with a proposal.
	maxReasoning = 4096
	// maxItems bounds every list in one answer (conditions, steps,
	// changes, decisions, the timeline).
	maxItems = 32
)

// Server serves the tools with one client: the agent's identity.
type Server struct {
	// Client acts as the agent (its kubeconfig, or the bearer token of
	// the HTTP request), never as Riposte.
	Client client.Client
}

// MCP is the MCP server with Riposte's tools.
func (s *Server) MCP() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "riposte", Title: "Riposte", Version: buildVersion()}, &mcp.ServerOptions{
		Instructions: "Riposte remediates security incidents on Kubernetes through playbooks people approve. " +
			"Read incidents, playbooks and approval gates, and propose a remediation with propose_remediation: " +
			"it opens a Manual incident in your name that playbooks answer as they answer any incident, and people decide. " +
			"You cannot approve, reject, undo or pause anything, and you see only what your Kubernetes identity may read.",
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "list_incidents", Title: "List incidents",
		Description: "Lists Riposte incidents, newest API order, a page at a time (at most 50): each one's phase, source, alert or problem name, severity, target, who asked for it and its approval gate. Pass continue to get the next page.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)}}, s.listIncidents)
	mcp.AddTool(srv, &mcp.Tool{Name: "describe_incident", Title: "Describe an incident",
		Description: "Shows one incident: its labels and annotations, the live cluster context Riposte resolved (the target, its owners, exposure and related incidents, cut to 8 KB), its conditions, its timeline and the steps applied.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)}}, s.describeIncident)
	mcp.AddTool(srv, &mcp.Tool{Name: "list_playbooks", Title: "List playbooks",
		Description: "Lists playbooks and what each can do: the alert names and drift rules it answers, its steps (actions), how it is approved, whether it acts on people's and agents' requests (manualRequests), and whether it is ready.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)}}, s.listPlaybooks)
	mcp.AddTool(srv, &mcp.Tool{Name: "show_gate_plan", Title: "Show an approval gate's plan",
		Description: "Shows the exact plan an approval gate waits on: each step and each write it would make (checked by the API server's dry run), who must approve, who asked, and the decisions so far.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)}}, s.showGatePlan)
	mcp.AddTool(srv, &mcp.Tool{Name: "propose_remediation", Title: "Propose a remediation",
		Description: "Opens a Manual incident in your name about one object (a Pod, Deployment, Node, ...) in a namespace, with what is wrong (problem, which playbooks match like an alert name), a summary and your reasoning. " +
			"Playbooks answer it as any incident; people approve or reject the plan (you never can: you are its requester). Returns the incident's name, to follow with describe_incident.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: false, DestructiveHint: ptr(false), IdempotentHint: false, OpenWorldHint: ptr(false)}}, s.propose)
	return srv
}

// whoami is the agent's identity as the API server knows it: the name a
// proposal is made in, which the admission policy checks.
func (s *Server) whoami(ctx context.Context) (authenticationv1.UserInfo, error) {
	review := &authenticationv1.SelfSubjectReview{}
	if err := s.Client.Create(ctx, review); err != nil {
		return authenticationv1.UserInfo{}, fmt.Errorf("asking the API server who you are: %w", err)
	}
	if review.Status.UserInfo.Username == "" {
		return authenticationv1.UserInfo{}, errors.New("the API server did not say who you are")
	}
	return review.Status.UserInfo, nil
}

func ptr[T any](v T) *T { return &v }

func buildVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "devel"
}
