package chat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/notify"
	"github.com/riposte-dev/riposte/internal/text"
)

// maxBody bounds an interaction payload; Slack's are a few kilobytes.
const maxBody = 256 << 10

// replayWindow is how long a click is remembered: longer than the five
// minutes Slack's signed timestamps are accepted for.
const replayWindow = 10 * time.Minute

// Bridge serves Slack's interactivity requests.
type Bridge struct {
	// SigningSecret is the Slack app's signing secret.
	SigningSecret string
	// Users reads the mapping the cluster admin keeps: a ConfigMap whose
	// keys are TEAM.USER Slack IDs and values Kubernetes user names. It is
	// read with the bridge's own identity, at every click, so a removed
	// entry takes effect at once.
	Users    client.Reader
	UsersMap client.ObjectKey
	// As is a client acting as the Kubernetes user (impersonation, which
	// the bridge's RBAC allows only for the mapped users).
	As func(user string) (client.Client, error)
	// Respond posts to an interaction's response_url, when ResponseURL
	// (SlackResponseURL by default) says it is Slack's: never where a
	// payload alone says.
	Respond     *http.Client
	ResponseURL func(string) bool

	mu   sync.Mutex
	seen map[string]time.Time
}

// Reply is what the bridge tells the person, in Slack and in its answer.
type Reply struct {
	Status int
	Text   string
}

func (b *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := b.handle(r)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(reply.Status)
	_, _ = io.WriteString(w, reply.Text)
}

func (b *Bridge) handle(r *http.Request) Reply {
	if r.Method != http.MethodPost {
		return Reply{http.StatusMethodNotAllowed, "POST Slack interactions here"}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		return Reply{http.StatusRequestEntityTooLarge, "the request is not a Slack interaction"}
	}
	verifier, err := slack.NewSecretsVerifier(r.Header, b.SigningSecret)
	if err == nil {
		_, _ = verifier.Write(body)
		err = verifier.Ensure()
	}
	if err != nil {
		return Reply{http.StatusUnauthorized, "refused: the request is not signed with this app's signing secret within the last five minutes (" + err.Error() + ")"}
	}
	// A signed request seen before is a replay: Slack never sends one
	// click twice with the same timestamp and body. Keyed on what is
	// signed, not on the signature's spelling (hex in any case verifies).
	if !b.firstTime(r.Header.Get("X-Slack-Request-Timestamp"), body) {
		return Reply{http.StatusConflict, "refused: this click was already handled"}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return Reply{http.StatusBadRequest, "the request has no interaction payload"}
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil || cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) != 1 {
		return Reply{http.StatusBadRequest, "the request is not a click on one of Riposte's buttons"}
	}
	reply, gate := b.act(r.Context(), &cb, cb.ActionCallback.BlockActions[0])
	b.respond(r.Context(), cb.ResponseURL, reply, gate)
	return reply
}

// SlackResponseURL says whether a response_url is Slack's own.
func SlackResponseURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "https" && u.Host == "hooks.slack.com"
}

// act does what the click asks, as the person it maps to.
func (b *Bridge) act(ctx context.Context, cb *slack.InteractionCallback, action *slack.BlockAction) (Reply, *riposte.ApprovalGate) {
	ref, err := ParseGateRef(action.Value)
	if err != nil {
		return Reply{http.StatusBadRequest, err.Error()}, nil
	}
	user, err := b.userOf(ctx, cb.Team.ID, cb.User.ID)
	if err != nil {
		return Reply{http.StatusForbidden, err.Error()}, nil
	}
	as, err := b.As(user)
	if err != nil {
		return Reply{http.StatusInternalServerError, err.Error()}, nil
	}
	gate := &riposte.ApprovalGate{}
	if err := as.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, gate); err != nil {
		return refusal(user, "read gate "+ref.Namespace+"/"+ref.Name, err), nil
	}
	if reply, ok := sameGate(gate, ref); !ok {
		return reply, nil
	}
	if err := Shown(&cb.Message, gate, action.Value); err != nil {
		return Reply{http.StatusForbidden, err.Error()}, nil
	}
	if action.ActionID == ActionShow {
		return Reply{http.StatusOK, planText(gate)}, nil
	}
	verdict, reason := riposte.DecisionApprove, reasonOf(cb)
	switch action.ActionID {
	case ActionApprove:
		if reason == "" {
			reason = "approved in Slack"
		}
	case ActionReject:
		if reason == "" {
			return Reply{http.StatusBadRequest, "type a reason before you reject"}, nil
		}
		verdict = riposte.DecisionReject
	default:
		return Reply{http.StatusBadRequest, "unknown button " + action.ActionID}, nil
	}
	// The Slack IDs, not the display name a person can change, and after
	// the clipped reason, so no reason can forge or cut them.
	via := " (in Slack as " + cb.Team.ID + "." + cb.User.ID + ")"
	reason = text.Elide(reason, maxReason-len(via)) + via
	for attempt := 0; ; attempt++ {
		now := metav1.Now()
		decided := gate.DeepCopy()
		decided.Spec.Decisions = append(decided.Spec.Decisions, riposte.Decision{User: user, Decision: verdict, Reason: reason, At: &now})
		err := as.Update(ctx, decided)
		if err == nil {
			return Reply{http.StatusOK, verdictText(decided, user, verdict)}, decided
		}
		if !apierrors.IsConflict(err) || attempt == 4 {
			return refusal(user, strings.ToLower(string(verdict))+" gate "+ref.Namespace+"/"+ref.Name, err), nil
		}
		// Read into a new object: decoding into the old one would keep
		// fields the answer leaves out.
		gate = &riposte.ApprovalGate{}
		if err := as.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, gate); err != nil {
			return refusal(user, "read gate "+ref.Namespace+"/"+ref.Name, err), nil
		}
		if reply, ok := sameGate(gate, ref); !ok {
			return reply, nil
		}
	}
}

// maxReason is a decision's reason limit in the ApprovalGate schema.
const maxReason = 1024

// sameGate says whether the gate is the one the button named, with the
// plan it showed.
func sameGate(gate *riposte.ApprovalGate, ref GateRef) (Reply, bool) {
	if gate.UID != ref.UID {
		return Reply{http.StatusConflict, fmt.Sprintf("refused: gate %s/%s is not the gate this message was about (it was deleted and made again); act on its new notification", ref.Namespace, ref.Name)}, false
	}
	if gate.Spec.Plan.Hash != ref.PlanHash {
		return Reply{http.StatusConflict, fmt.Sprintf("refused: gate %s/%s now waits on plan %s, not the plan %s this message showed; read the new plan first", ref.Namespace, ref.Name, gate.Spec.Plan.Hash, ref.PlanHash)}, false
	}
	return Reply{}, true
}

// userOf maps a Slack user to the Kubernetes user the admin named.
func (b *Bridge) userOf(ctx context.Context, team, slackUser string) (string, error) {
	cm := &corev1.ConfigMap{}
	if err := b.Users.Get(ctx, b.UsersMap, cm); err != nil {
		return "", fmt.Errorf("refused: the user mapping %s cannot be read: %v", b.UsersMap, err)
	}
	if user := strings.TrimSpace(cm.Data[team+"."+slackUser]); user != "" {
		return user, nil
	}
	return "", fmt.Errorf("refused: your Slack user %s (workspace %s) is not mapped to a Kubernetes user; ask your cluster admin to add %s.%s to ConfigMap %s", slackUser, team, team, slackUser, b.UsersMap)
}

// refusal turns the API server's answer into what the person reads.
func refusal(user, what string, err error) Reply {
	status := http.StatusInternalServerError
	var api apierrors.APIStatus
	if errors.As(err, &api) {
		status = int(api.Status().Code)
	}
	return Reply{status, fmt.Sprintf("refused: %s may not %s: %s", user, what, api2msg(err))}
}

func api2msg(err error) string {
	var api apierrors.APIStatus
	if errors.As(err, &api) {
		st := api.Status()
		if st.Message != "" && st.Message != "unknown" {
			return st.Message
		}
		if st.Details != nil && len(st.Details.Causes) > 0 {
			return st.Details.Causes[0].Message
		}
		return fmt.Sprintf("%s (%d)", st.Reason, st.Code)
	}
	return err.Error()
}

func reasonOf(cb *slack.InteractionCallback) string {
	if cb.BlockActionState == nil {
		return ""
	}
	return strings.TrimSpace(cb.BlockActionState.Values[ReasonBlock][ReasonInput].Value)
}

// planText is the plan as the notification lists it (irreversible steps
// marked), escaped: summaries carry alert labels and template output.
func planText(gate *riposte.ApprovalGate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Plan %s of playbook %s for incident %s/%s:\n", gate.Spec.Plan.Hash, gate.Spec.Playbook, gate.Namespace, gate.Spec.Incident)
	for _, line := range notify.GateWaiting(gate).Plan {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	if r := gate.Spec.Policy.Requester; r != "" {
		fmt.Fprintf(&b, "Asked for by %s, who may not approve it.\n", r)
	}
	return escape(b.String())
}

func verdictText(gate *riposte.ApprovalGate, user string, verdict riposte.DecisionVerdict) string {
	approvals := 0
	var decided []string
	for _, d := range gate.Spec.Decisions {
		if d.Decision == riposte.DecisionApprove {
			approvals++
		}
		decided = append(decided, fmt.Sprintf("%s: %s", d.User, d.Decision))
	}
	return fmt.Sprintf("%s recorded for %s on gate %s/%s (%d of %d approvals so far; decisions: %s)",
		verdict, user, gate.Namespace, gate.Name, approvals, max(gate.Spec.Policy.RequiredApprovals, 1), strings.Join(decided, ", "))
}

// firstTime remembers a signed request, and says whether it is new.
func (b *Bridge) firstTime(timestamp string, body []byte) bool {
	h := sha256.New()
	h.Write([]byte(timestamp + ":"))
	h.Write(body)
	signed := string(h.Sum(nil))
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.seen == nil {
		b.seen = map[string]time.Time{}
	}
	for s, at := range b.seen {
		if now.Sub(at) > replayWindow {
			delete(b.seen, s)
		}
	}
	if _, ok := b.seen[signed]; ok {
		return false
	}
	b.seen[signed] = now
	return true
}

// respond answers in Slack. A decision recorded updates the message for
// everyone: the decisions so far and who gave them, with the buttons while
// the gate still needs approvals; a refusal is shown to the person alone.
func (b *Bridge) respond(ctx context.Context, responseURL string, reply Reply, decided *riposte.ApprovalGate) {
	valid := b.ResponseURL
	if valid == nil {
		valid = SlackResponseURL
	}
	if responseURL == "" || !valid(responseURL) || b.Respond == nil {
		return
	}
	msg := slack.WebhookMessage{Text: reply.Text, ResponseType: slack.ResponseTypeEphemeral}
	if decided != nil {
		msg = slack.WebhookMessage{Text: reply.Text, ReplaceOriginal: true}
		if open(decided) {
			msg.Blocks = &slack.Blocks{BlockSet: GateBlocks(decided)}
		}
	}
	body, _ := json.Marshal(msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, responseURL, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if resp, err := b.Respond.Do(req); err == nil {
		_ = resp.Body.Close()
	}
}

// open says whether the gate may still take approvals, by its decisions.
func open(gate *riposte.ApprovalGate) bool {
	approvals, rejections := 0, 0
	for _, d := range gate.Spec.Decisions {
		switch d.Decision {
		case riposte.DecisionApprove:
			approvals++
		case riposte.DecisionReject:
			rejections++
		}
	}
	return approvals < int(max(gate.Spec.Policy.RequiredApprovals, 1)) && rejections < int(max(gate.Spec.Policy.RequiredRejections, 1))
}
