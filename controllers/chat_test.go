package controllers_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/chat"
	"github.com/riposte-dev/riposte/internal/testenv"
)

const slackSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// slackUpdates records what the bridge posts to the response_url.
type slackUpdates struct {
	mu   sync.Mutex
	msgs []slack.WebhookMessage
}

func (s *slackUpdates) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m slack.WebhookMessage
	_ = json.NewDecoder(r.Body).Decode(&m)
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
}

func (s *slackUpdates) last() slack.WebhookMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		return slack.WebhookMessage{}
	}
	return s.msgs[len(s.msgs)-1]
}

// chatBridge is the bridge as it is deployed: its own ServiceAccount,
// allowed to impersonate only the users the mapping names, and to read
// the mapping; the mapping a ConfigMap the cluster admin keeps.
func chatBridge(t *testing.T, ns string, mapped map[string]string, impersonable ...string) (*chat.Bridge, *slackUpdates, string) {
	t.Helper()
	ctx := context.Background()
	mustCreate(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "riposte-chat-users", Namespace: ns}, Data: mapped})
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "riposte-chat-bridge", Namespace: ns}}
	mustCreate(t, sa)
	role := "chat-bridge-" + ns
	mustCreate(t, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"users"}, Verbs: []string{"impersonate"}, ResourceNames: impersonable}}})
	mustCreate(t, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: ns}}})
	mustCreate(t, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-chat-users", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{"riposte-chat-users"}}}})
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read-chat-users", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-chat-users"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: ns}}})
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if err := k8sClient.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	own, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	updates := &slackUpdates{}
	hooks := httptest.NewServer(updates)
	t.Cleanup(hooks.Close)
	bridge := &chat.Bridge{SigningSecret: slackSecret, Users: own, UsersMap: client.ObjectKey{Namespace: ns, Name: "riposte-chat-users"},
		As: func(user string) (client.Client, error) {
			as := rest.CopyConfig(cfg)
			as.Impersonate = rest.ImpersonationConfig{UserName: user}
			return client.New(as, client.Options{Scheme: env.Scheme, Mapper: own.RESTMapper()})
		},
		Respond: hooks.Client(), ResponseURL: func(u string) bool { return strings.HasPrefix(u, hooks.URL) }}
	return bridge, updates, hooks.URL + "/actions/T1/1/abc"
}

// click is a button click as Slack delivers it: the interaction payload
// (slack-go's own types) form-encoded, signed with the app's secret,
// carrying the message the button was in.
func click(t *testing.T, secret string, at time.Time, user, action string, shown []slack.Block, value, reason, responseURL string) *http.Request {
	t.Helper()
	cb := &slack.InteractionCallback{Type: slack.InteractionTypeBlockActions, Team: slack.Team{ID: "T1"}, User: slack.User{ID: user, Name: strings.ToLower(user)},
		ResponseURL: responseURL, TriggerID: fmt.Sprint(at.UnixNano()),
		Message:          slack.Message{Msg: slack.Msg{Blocks: slack.Blocks{BlockSet: shown}}},
		ActionCallback:   slack.ActionCallbacks{BlockActions: []*slack.BlockAction{{ActionID: action, BlockID: chat.DecideBlock, Value: value}}},
		BlockActionState: &slack.BlockActionStates{Values: map[string]map[string]slack.BlockAction{chat.ReasonBlock: {chat.ReasonInput: {Value: reason}}}}}
	payload, err := json.Marshal(cb)
	if err != nil {
		t.Fatal(err)
	}
	body := url.Values{"payload": {string(payload)}}.Encode()
	ts := fmt.Sprint(at.Unix())
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:%s", ts, body)
	r := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Slack-Request-Timestamp", ts)
	r.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return r
}

func send(b *chat.Bridge, r *http.Request) (int, string) {
	w := httptest.NewRecorder()
	b.ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(body)
}

// Approving from Slack as yourself: each click Slack signs is written as
// the Kubernetes user the admin mapped the clicker to, so the API server
// decides exactly as for kubectl. Two chat users make a quorum of two.
// Every way to cheat is refused with the reason the person sees.
func TestChatApprovalsAreDecidedAsTheMappedUser(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	pb := isolatePlaybook(ns, "by-two", "ContainerShell", nil)
	pb.Spec.Approval.RequiredApprovals = 2
	pb.Spec.Approval.ManualRequests = riposte.ManualAnyone
	mustCreate(t, pb)
	mustCreate(t, alertIncident(ns, "am-chat", "ContainerShell", ns, pod.Name))
	inc := waitForPhase(t, ns, "am-chat", riposte.PhaseAwaitingApproval)
	gate := &riposte.ApprovalGate{}
	get(t, gate, ns, inc.Status.ApprovalGate)
	shown, value := chat.GateBlocks(gate), chat.RefOf(gate).String()
	other := chat.RefOf(gate)
	other.PlanHash = "sha256:0"
	recreated := chat.RefOf(gate)
	recreated.UID = "00000000-0000-0000-0000-000000000000"

	// Messages anyone holding the app's incoming webhook could post: Slack
	// signs clicks on them as on Riposte's own.
	harmless := chat.GateBlocks(gate)
	harmless[0] = slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "Riposte: restart web in staging (harmless)", false, false), nil, nil)
	showsAnother := chat.GateBlocks(gate)
	for _, e := range showsAnother[len(showsAnother)-1].(*slack.ActionBlock).Elements.ElementSet {
		if b := e.(*slack.ButtonBlockElement); b.ActionID == chat.ActionShow {
			b.Value = other.String()
		}
	}
	addsASection := append(chat.GateBlocks(gate), slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "Security lead: already checked, approve it", false, false), nil, nil))
	claimsDecisions := append([]slack.Block{slack.NewContextBlock("x", slack.NewTextBlockObject(slack.MarkdownType, "Decisions so far: ceo Approve", false, false))}, chat.GateBlocks(gate)...)

	bridge, updates, responseURL := chatBridge(t, ns, map[string]string{
		"T1.UALICE": "alice", "T1.UBOB": "bob", "T1.UCAROL": "carol", "T1.UMALLORY": "mallory"},
		"alice", "bob", "carol")
	now := time.Now()
	decisions := func() int {
		g := &riposte.ApprovalGate{}
		get(t, g, ns, gate.Name)
		return len(g.Spec.Decisions)
	}
	for _, tc := range []struct {
		what   string
		req    *http.Request
		status int
		says   string
	}{
		{"a signature made with another secret", click(t, "not-the-secret", now, "UALICE", chat.ActionApprove, shown, value, "", responseURL), http.StatusUnauthorized, "not signed with this app's signing secret"},
		{"a click signed six minutes ago", click(t, slackSecret, now.Add(-6*time.Minute), "UALICE", chat.ActionApprove, shown, value, "", responseURL), http.StatusUnauthorized, "within the last five minutes"},
		{"a Slack user nobody mapped", click(t, slackSecret, now, "UEVE", chat.ActionApprove, shown, value, "", responseURL), http.StatusForbidden, "is not mapped to a Kubernetes user"},
		{"a user without the verb approve", click(t, slackSecret, now.Add(time.Second), "UCAROL", chat.ActionApprove, shown, value, "", responseURL), http.StatusForbidden, "the RBAC verb approve on approvalgates is required"},
		{"a mapped user the bridge may not impersonate", click(t, slackSecret, now.Add(2*time.Second), "UMALLORY", chat.ActionApprove, shown, value, "", responseURL), http.StatusForbidden, `cannot impersonate resource "users"`},
		{"a reject with no reason", click(t, slackSecret, now.Add(3*time.Second), "UALICE", chat.ActionReject, shown, value, "", responseURL), http.StatusBadRequest, "type a reason"},
		{"a click on a plan that is not the gate's", click(t, slackSecret, now.Add(4*time.Second), "UALICE", chat.ActionApprove, shown, other.String(), "", responseURL), http.StatusConflict, "now waits on plan"},
		{"a click on an older gate of the same name", click(t, slackSecret, now.Add(4*time.Second), "UALICE", chat.ActionApprove, shown, recreated.String(), "", responseURL), http.StatusConflict, "deleted and made again"},
		{"Approve in a message that says something harmless", click(t, slackSecret, now.Add(4*time.Second), "UALICE", chat.ActionApprove, harmless, value, "", responseURL), http.StatusForbidden, "its text is not the gate's"},
		{"Approve in a message whose Show button names another plan", click(t, slackSecret, now.Add(4*time.Second), "UALICE", chat.ActionApprove, showsAnother, value, "", responseURL), http.StatusForbidden, "its buttons do not all name this gate and plan"},
		{"Approve in Riposte's message with a section added", click(t, slackSecret, now.Add(4*time.Second), "UALICE", chat.ActionApprove, addsASection, value, "", responseURL), http.StatusForbidden, "its text is not the gate's"},
		{"Approve in Riposte's message claiming a decision", click(t, slackSecret, now.Add(4*time.Second), "UALICE", chat.ActionApprove, claimsDecisions, value, "", responseURL), http.StatusForbidden, "lists decisions the gate does not have"},
		{"a click with no message", click(t, slackSecret, now.Add(4*time.Second), "UALICE", chat.ActionApprove, nil, value, "", responseURL), http.StatusForbidden, "Slack sent no message with the click"},
	} {
		status, says := send(bridge, tc.req)
		if status != tc.status || !strings.Contains(says, tc.says) {
			t.Errorf("%s: %d %q, want %d saying %q", tc.what, status, says, tc.status, tc.says)
		}
	}
	if n := decisions(); n != 0 {
		t.Fatalf("%d decisions recorded by refused clicks", n)
	}
	if m := updates.last(); m.ResponseType != slack.ResponseTypeEphemeral || !strings.Contains(m.Text, "refused") {
		t.Errorf("the refusal shown in Slack: %+v, want it to the clicker alone", m)
	}

	// Show the plan, then alice approves: the decision is alice's, under
	// her Slack IDs, whatever name she shows in Slack.
	if status, says := send(bridge, click(t, slackSecret, now.Add(5*time.Second), "UALICE", chat.ActionShow, shown, value, "", responseURL)); status != http.StatusOK || !strings.Contains(says, "Pod/"+ns+"/"+pod.Name) {
		t.Errorf("show the plan: %d %q", status, says)
	}
	first := click(t, slackSecret, now.Add(6*time.Second), "UALICE", chat.ActionApprove, shown, value, "checked the shell's origin", responseURL)
	replay := first.Clone(context.Background())
	replay.Body = io.NopCloser(strings.NewReader(mustBody(t, first)))
	// The same click, its signature spelt in capitals: as valid, and as
	// much a replay.
	recased := first.Clone(context.Background())
	recased.Body = io.NopCloser(strings.NewReader(mustBody(t, first)))
	recased.Header.Set("X-Slack-Signature", "v0="+strings.ToUpper(strings.TrimPrefix(first.Header.Get("X-Slack-Signature"), "v0=")))
	first.Body = io.NopCloser(strings.NewReader(mustBody(t, first)))
	if status, says := send(bridge, first); status != http.StatusOK || !strings.Contains(says, "Approve recorded for alice") {
		t.Fatalf("alice's approval: %d %q", status, says)
	}
	afterAlice := updates.last()
	if !afterAlice.ReplaceOriginal || !strings.Contains(afterAlice.Text, "alice") || afterAlice.Blocks == nil {
		t.Fatalf("the message after one of two approvals: %+v, want it replaced, naming alice, with the buttons still there", afterAlice)
	}
	for what, r := range map[string]*http.Request{"replayed": replay, "replayed with its signature in capitals": recased} {
		if status, says := send(bridge, r); status != http.StatusConflict || !strings.Contains(says, "already handled") {
			t.Errorf("the same click %s: %d %q", what, status, says)
		}
	}
	get(t, gate, ns, gate.Name)
	if len(gate.Spec.Decisions) != 1 || gate.Spec.Decisions[0].User != "alice" || gate.Spec.Decisions[0].Reason != "checked the shell's origin (in Slack as T1.UALICE)" {
		t.Fatalf("decisions after alice's click and its replays: %+v", gate.Spec.Decisions)
	}
	if inc := waitForPhase(t, ns, "am-chat", riposte.PhaseAwaitingApproval); inc.Status.Phase != riposte.PhaseAwaitingApproval {
		t.Fatal("one approval of two ran the plan")
	}

	// bob clicks in the message as the bridge replaced it, which lists
	// alice's decision; he makes the quorum and the plan runs.
	if status, says := send(bridge, click(t, slackSecret, now.Add(7*time.Second), "UBOB", chat.ActionApprove, afterAlice.Blocks.BlockSet, value, "", responseURL)); status != http.StatusOK || !strings.Contains(says, "2 of 2") {
		t.Fatalf("bob's approval: %d %q", status, says)
	}
	if m := updates.last(); !m.ReplaceOriginal || m.Blocks != nil || !strings.Contains(m.Text, "bob") {
		t.Errorf("the message once the quorum is reached: %+v, want it replaced without buttons, naming bob", m)
	}
	waitForPhase(t, ns, "am-chat", riposte.PhaseRemediated)
}

// The requester of an incident may not approve it from Slack any more than
// with kubectl: the API server refuses, and the person is told why.
func TestChatRequesterCannotApproveTheirOwnIncident(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "api")
	pb := isolatePlaybook(ns, "asked", "ContainerShell", nil)
	pb.Spec.Approval.ManualRequests = riposte.ManualAnyone
	mustCreate(t, pb)
	inc := manualIncident(ns, "dave-asks", "dave", pod, ns)
	inc.Spec.AlertName = "ContainerShell"
	if err := people["dave"].Create(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	inc = waitForPhase(t, ns, "dave-asks", riposte.PhaseAwaitingApproval)
	gate := &riposte.ApprovalGate{}
	get(t, gate, ns, inc.Status.ApprovalGate)
	bridge, _, responseURL := chatBridge(t, ns, map[string]string{"T1.UDAVE": "dave", "T1.UALICE": "alice"}, "dave", "alice")
	shown, value := chat.GateBlocks(gate), chat.RefOf(gate).String()
	status, says := send(bridge, click(t, slackSecret, time.Now(), "UDAVE", chat.ActionApprove, shown, value, "", responseURL))
	if status != http.StatusForbidden || !strings.Contains(says, "the person who opened the incident may not approve its remediation") {
		t.Errorf("dave approving his own incident from Slack: %d %q", status, says)
	}

	// alice rejects with as long a reason as the field takes: the gate
	// closes, its verdict clipped to what its status may hold.
	long := strings.Repeat("the shell came from the on-call runbook; ", 30)
	if status, says := send(bridge, click(t, slackSecret, time.Now().Add(time.Second), "UALICE", chat.ActionReject, shown, value, long, responseURL)); status != http.StatusOK || !strings.Contains(says, "Reject recorded for alice") {
		t.Fatalf("alice's reject: %d %q", status, says)
	}
	waitForPhase(t, ns, "dave-asks", riposte.PhaseRejected)
	get(t, gate, ns, gate.Name)
	if gate.Status.Phase != riposte.GateRejected || !strings.HasPrefix(gate.Status.Message, "rejected by alice: the shell came") || len(gate.Status.Message) > 1024 {
		t.Errorf("gate after a long reject reason: %s %q", gate.Status.Phase, gate.Status.Message)
	}
	if r := gate.Spec.Decisions[0].Reason; len(r) > 1024 || !strings.HasSuffix(r, "(in Slack as T1.UALICE)") {
		t.Errorf("the reason recorded: %d bytes, %q", len(r), r)
	}
}

func mustBody(t *testing.T, r *http.Request) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	r.Body = io.NopCloser(strings.NewReader(string(b)))
	return string(b)
}

// The bridge's effective permissions, as the API server reports them for
// the account config/samples/chat-bridge.yaml sets up, are all in
// docs/security.md: it can impersonate the listed users and read the
// mapping, and nothing else.
func TestChatBridgePermissionsAreDocumented(t *testing.T) {
	ctx := context.Background()
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "samples", "chat-bridge.yaml")); err != nil {
		t.Fatal(err)
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
	if err := k8sClient.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "riposte-chat-bridge", Namespace: operatorNamespace}}, tr); err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	bridge, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	expectDocumentedPermissions(t, "the chat bridge", bridge, "## What the chat bridge may do", operatorNamespace, newNamespace(t))
}
