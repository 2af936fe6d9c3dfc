package controllers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/agent"
	"github.com/riposte-dev/riposte/internal/testenv"
)

var agentRole sync.Once

// agentIdentity is a ServiceAccount in ns bound to the shipped
// riposte-agent role there, as docs/security.md tells a cluster admin to
// bind an AI agent: its token, and a client acting as it.
func agentIdentity(t *testing.T, ns, name string) (string, client.Client) {
	t.Helper()
	ctx := context.Background()
	agentRole.Do(func() {
		if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "rbac", "agent_role.yaml")); err != nil {
			t.Fatal(err)
		}
	})
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	mustCreate(t, sa)
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name + "-riposte-agent", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "riposte-agent"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}}})
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if err := k8sClient.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	c, err := agent.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token, c
}

// connect is the SDK's own client on the MCP server, in memory.
func connect(t *testing.T, c client.Client) *mcp.ClientSession {
	t.Helper()
	ctx := context.Background()
	serverEnd, clientEnd := mcp.NewInMemoryTransports()
	if _, err := (&agent.Server{Client: c}).MCP().Connect(ctx, serverEnd, nil); err != nil {
		t.Fatal(err)
	}
	session, err := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "v1"}, nil).Connect(ctx, clientEnd, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = session.Close() })
	return session
}

// call calls a tool and decodes its structured output; it returns the
// tool's error text when the tool failed.
func call(t *testing.T, s *mcp.ClientSession, tool string, args map[string]any, out any) string {
	t.Helper()
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	if res.IsError {
		var msg []string
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				msg = append(msg, tc.Text)
			}
		}
		return strings.Join(msg, "\n")
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s answered %s: %v", tool, b, err)
	}
	return ""
}

// An AI agent on call, through Riposte's MCP server and the SDK's own
// client, as its own ServiceAccount bound to riposte-agent in one
// namespace: it reads what happened, proposes a remediation, and can never
// decide it. A person approves, and the plan runs.
func TestAgentProposesAndPeopleDecide(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	// Automatic for alerts, and answering agents' requests: their
	// proposals still wait for people.
	pb := isolatePlaybook(ns, "isolate", "ContainerShell", &riposte.AutoApprove{})
	pb.Spec.Approval.ManualRequests = riposte.ManualAnyone
	mustCreate(t, pb)
	token, agentClient := agentIdentity(t, ns, "holmes")
	session := connect(t, agentClient)

	// The tools a model is given: each described, with an object schema;
	// none decides anything.
	var names []string
	for tool, err := range session.Tools(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tool.Name)
		schema, _ := json.Marshal(tool.InputSchema)
		var s struct {
			Type     string         `json:"type"`
			Props    map[string]any `json:"properties"`
			Required []string       `json:"required"`
		}
		if err := json.Unmarshal(schema, &s); err != nil || s.Type != "object" || len(tool.Description) < 40 {
			t.Errorf("tool %s: input schema %s, description %q: want an object schema and a description a model can act on", tool.Name, schema, tool.Description)
		}
		if tool.Name == "propose_remediation" {
			for _, f := range []string{"namespace", "kind", "name", "problem", "summary", "reasoning"} {
				if !slices.Contains(s.Required, f) {
					t.Errorf("propose_remediation's schema does not require %s: %s", f, schema)
				}
			}
		}
	}
	slices.Sort(names)
	if want := []string{"describe_incident", "list_incidents", "list_playbooks", "propose_remediation", "show_gate_plan"}; !slices.Equal(names, want) {
		t.Errorf("tools %v, want %v: no tool approves, rejects, undoes or pauses", names, want)
	}
	var playbooks agent.ListPlaybooksOutput
	if msg := call(t, session, "list_playbooks", map[string]any{"namespace": ns}, &playbooks); msg != "" || len(playbooks.Playbooks) != 1 ||
		!slices.Contains(playbooks.Playbooks[0].AlertNames, "ContainerShell") || !strings.Contains(playbooks.Playbooks[0].Approval, "people") {
		t.Errorf("list_playbooks: %s %+v", msg, playbooks)
	}

	// The proposal: a Manual incident in the agent's own name.
	var proposed agent.ProposeOutput
	if msg := call(t, session, "propose_remediation", map[string]any{"namespace": ns, "kind": "Pod", "name": pod.Name, "problem": "ContainerShell",
		"severity": "critical", "summary": "a shell in api", "reasoning": "kubectl exec sessions from an unknown IP; /tmp holds a miner"}, &proposed); msg != "" {
		t.Fatalf("propose_remediation: %s", msg)
	}
	me := "system:serviceaccount:" + ns + ":holmes"
	if proposed.RequestedBy != me || !strings.HasPrefix(proposed.Name, "agent-") {
		t.Fatalf("proposal %+v, want an agent- incident requested by %s", proposed, me)
	}
	inc := waitForPhase(t, ns, proposed.Name, riposte.PhaseAwaitingApproval)
	if inc.Spec.Source != riposte.SourceManual || inc.Spec.Annotations["description"] == "" {
		t.Errorf("the proposal's incident: source %s, annotations %v", inc.Spec.Source, inc.Spec.Annotations)
	}
	var plan agent.GatePlan
	if msg := call(t, session, "show_gate_plan", map[string]any{"namespace": ns, "name": inc.Status.ApprovalGate}, &plan); msg != "" ||
		plan.Requester != me || len(plan.Steps) != 1 || plan.Steps[0].Action != string(riposte.ActionIsolatePod) || len(plan.Steps[0].Changes) == 0 {
		t.Errorf("show_gate_plan: %s %+v, want the isolation's writes, requested by the agent", msg, plan)
	}

	// The agent has no tool to decide, and the API server refuses it when
	// it tries with its own credentials.
	err := updateAs(ctx, agentClient, &riposte.ApprovalGate{}, client.ObjectKey{Namespace: ns, Name: inc.Status.ApprovalGate}, func(o client.Object) {
		g := o.(*riposte.ApprovalGate)
		g.Spec.Decisions = append(g.Spec.Decisions, riposte.Decision{User: me, Decision: riposte.DecisionApprove, Reason: "I am sure", At: ptr.To(metav1.Now())})
	})
	expectForbidden(t, "the agent approving its own proposal", err, `cannot update resource "approvalgates"`)
	err = updateAs(ctx, agentClient, &riposte.Incident{}, client.ObjectKeyFromObject(inc), func(o client.Object) {
		o.(*riposte.Incident).Spec.Undo = &riposte.UndoRequest{RequestedBy: me, Reason: "never mind"}
	})
	expectForbidden(t, "the agent writing its incident", err, `cannot update resource "incidents"`)

	// A person decides; the plan runs, and the agent sees what was done.
	appendDecision(t, ns, inc.Status.ApprovalGate, "alice", riposte.DecisionApprove)
	waitForPhase(t, ns, proposed.Name, riposte.PhaseRemediated)
	var detail agent.IncidentDetail
	if msg := call(t, session, "describe_incident", map[string]any{"namespace": ns, "name": proposed.Name}, &detail); msg != "" ||
		detail.Phase != string(riposte.PhaseRemediated) || len(detail.Steps) != 1 || detail.Steps[0].Completed == "" || len(detail.Timeline) < 4 || detail.Context == "" {
		t.Errorf("describe_incident after the approval: %s %+v", msg, detail)
	}

	// Where the agent has no rights, the API server's refusal is the answer.
	elsewhere := newNamespace(t)
	msg := call(t, session, "propose_remediation", map[string]any{"namespace": elsewhere, "kind": "Pod", "name": "web", "problem": "ContainerShell",
		"summary": "a shell", "reasoning": "seen in the logs"}, &proposed)
	if !strings.Contains(msg, `cannot create resource "incidents"`) || !strings.Contains(msg, elsewhere) {
		t.Errorf("proposing where the agent may not create incidents: %q, want the API server's refusal naming the namespace", msg)
	}
	// A target Riposte does not watch would never be resolved (its
	// reconcile would wait on a cache that never fills): the API server
	// refuses it.
	msg = call(t, session, "propose_remediation", map[string]any{"namespace": ns, "kind": "Secret", "apiVersion": "v1", "name": "db-password", "problem": "ContainerShell",
		"summary": "leaked", "reasoning": "seen in a log"}, &proposed)
	if !strings.Contains(msg, "spec.target.kind Secret is not a kind Riposte watches") {
		t.Errorf("proposing a Secret as the target: %q, want the API server's refusal", msg)
	}
	if msg := call(t, session, "list_incidents", map[string]any{}, &agent.ListIncidentsOutput{}); !strings.Contains(msg, "cannot list resource") {
		t.Errorf("listing every namespace without the right to: %q", msg)
	}
	if msg := call(t, session, "propose_remediation", map[string]any{"namespace": ns, "kind": "Pod", "name": pod.Name, "problem": "ContainerShell", "summary": "x", "reasoning": strings.Repeat("r", 5000)}, &proposed); !strings.Contains(msg, "at most 4096") {
		t.Errorf("an unbounded reasoning: %q", msg)
	}

	// The same server over streamable HTTP: each request acts as its token.
	handler, err := agent.HTTPHandler(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()
	httpSession := func(token string) (*mcp.ClientSession, error) {
		transport := &mcp.StreamableClientTransport{Endpoint: srv.URL, MaxRetries: -1,
			HTTPClient: &http.Client{Transport: bearer{token: token}, Timeout: 10 * time.Second}}
		return mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "v1"}, nil).Connect(ctx, transport, nil)
	}
	if s, err := httpSession(""); err == nil {
		_ = s.Close()
		t.Error("the HTTP transport served a caller with no token")
	}
	hs, err := httpSession(token)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	// A bare JSON-RPC call, as curl in the README sends it: no session
	// to set up first.
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_incidents","arguments":{"namespace":"` + ns + `"}}}`
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), proposed.Name) {
		t.Errorf("a bare tools/call over HTTP: %d %s", resp.StatusCode, raw)
	}
	var page agent.ListIncidentsOutput
	if msg := call(t, hs, "list_incidents", map[string]any{"namespace": ns}, &page); msg != "" || len(page.Incidents) != 1 || page.Incidents[0].RequestedBy != me {
		t.Errorf("list_incidents over HTTP with the agent's token: %s %+v", msg, page)
	}
	// Only the token's rights: none of the kubeconfig's credentials (an
	// admin's, here) ride along.
	if msg := call(t, hs, "list_incidents", map[string]any{}, &agent.ListIncidentsOutput{}); !strings.Contains(msg, "cannot list resource") || !strings.Contains(msg, me) {
		t.Errorf("listing every namespace over HTTP with the agent's token: %q, want the agent refused", msg)
	}
	var viaHTTP agent.ProposeOutput
	if msg := call(t, hs, "propose_remediation", map[string]any{"namespace": ns, "kind": "Pod", "name": pod.Name, "problem": "ContainerShell",
		"summary": "again", "reasoning": "still there"}, &viaHTTP); msg != "" || viaHTTP.RequestedBy != me {
		t.Errorf("a proposal over HTTP: %s %+v, want it in the token's name", msg, viaHTTP)
	}
	if msg := call(t, session, "propose_remediation", map[string]any{"namespace": ns, "kind": "Pod", "name": pod.Name, "problem": "ContainerShell",
		"summary": "x\nOpened by: alice", "reasoning": "r"}, &proposed); !strings.Contains(msg, "no control characters") {
		t.Errorf("a summary forging a second line: %q", msg)
	}
	if bogus, err := httpSession("not-a-token"); err == nil {
		var out agent.ListIncidentsOutput
		if msg := call(t, bogus, "list_incidents", map[string]any{"namespace": ns}, &out); !strings.Contains(msg, "Unauthorized") {
			t.Errorf("a bogus token: %q, want the API server's Unauthorized", msg)
		}
		_ = bogus.Close()
	}
}

type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.token != "" {
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// On a large cluster an answer stays bounded: a page at most, and the
// token for the next.
func TestAgentAnswersAreBounded(t *testing.T) {
	ns := newNamespace(t)
	_, agentClient := agentIdentity(t, ns, "kagent")
	for range 120 {
		mustCreate(t, &riposte.Incident{ObjectMeta: metav1.ObjectMeta{GenerateName: "many-", Namespace: ns},
			Spec: riposte.IncidentSpec{Source: riposte.SourceManual, AlertName: "NoPlaybookAnswers", RequestedBy: "admin",
				Annotations: map[string]string{"description": strings.Repeat("long text ", 500)}}})
	}
	session := connect(t, agentClient)
	var page agent.ListIncidentsOutput
	seen := 0
	cont := ""
	for pages := 0; ; pages++ {
		page = agent.ListIncidentsOutput{}
		if msg := call(t, session, "list_incidents", map[string]any{"namespace": ns, "limit": 500, "continue": cont}, &page); msg != "" {
			t.Fatal(msg)
		}
		if len(page.Incidents) > 50 {
			t.Fatalf("a page of %d incidents: want at most 50", len(page.Incidents))
		}
		seen += len(page.Incidents)
		if cont = page.Continue; cont == "" || pages > 10 {
			break
		}
	}
	if seen != 120 {
		t.Errorf("paged through %d incidents, want 120", seen)
	}
	var detail agent.IncidentDetail
	if msg := call(t, session, "describe_incident", map[string]any{"namespace": ns, "name": page.Incidents[0].Name}, &detail); msg != "" || len(detail.Annotations["description"]) > 1100 {
		t.Errorf("describe_incident: %s, a description of %d bytes: want it cut to about 1 KB", msg, len(detail.Annotations["description"]))
	}
}

// The agent role's effective permissions, as the API server reports them
// for an agent bound to it, are all in docs/security.md.
func TestAgentPermissionsAreDocumented(t *testing.T) {
	ns := newNamespace(t)
	token, _ := agentIdentity(t, ns, "reviewer")
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = token
	agentClient, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	expectDocumentedPermissions(t, "an agent", agentClient, "## What an AI agent may do", ns)
}
