// Package notify tells people that a remediation waits for them: a JSON
// POST whose `text` field Slack-compatible webhooks display as is.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Message is what the webhook receives.
type Message struct {
	// Text is a readable summary, shown by Slack-compatible receivers.
	Text      string   `json:"text"`
	Gate      string   `json:"gate"`
	Namespace string   `json:"namespace"`
	Incident  string   `json:"incident"`
	Playbook  string   `json:"playbook"`
	Plan      []string `json:"plan"`
	Required  int32    `json:"requiredApprovals"`
	ExpiresAt string   `json:"expiresAt,omitempty"`
	// Approve is the command an approver runs.
	Approve string `json:"approve"`
}

// GateWaiting builds the message for a pending gate.
func GateWaiting(gate *riposte.ApprovalGate) Message {
	var plan []string
	for _, s := range gate.Spec.Plan.Steps {
		for _, c := range s.Changes {
			line := fmt.Sprintf("%s: %s %s (%s)", s.Name, c.Operation, c.Object.String(), c.Summary)
			if c.Undo == riposte.UndoNone {
				line += " [cannot be undone]"
			}
			plan = append(plan, line)
		}
	}
	approve := fmt.Sprintf("kubectl riposte approve -n %s %s --reason '...'", gate.Namespace, gate.Name)
	m := Message{
		Gate: gate.Name, Namespace: gate.Namespace, Incident: gate.Spec.Incident,
		Playbook: gate.Spec.Playbook.String(), Plan: plan, Required: gate.Spec.Policy.RequiredApprovals,
		Approve: approve,
	}
	if gate.Spec.Policy.ExpiresAt != nil {
		m.ExpiresAt = gate.Spec.Policy.ExpiresAt.UTC().Format(time.RFC3339)
	}
	m.Text = fmt.Sprintf("Riposte: incident %s/%s waits for %d approval(s) of playbook %s.\n%s\nApprove: %s",
		gate.Namespace, gate.Spec.Incident, m.Required, m.Playbook, strings.Join(plan, "\n"), approve)
	return m
}

// Webhook posts messages to one URL.
type Webhook struct {
	URL    string
	Client *http.Client
	// Attempts is how many times a failed post is tried (default 3).
	Attempts int
}

// Send posts the message, retrying with backoff on errors and 5xx answers.
func (w *Webhook) Send(ctx context.Context, m Message) error { return w.Post(ctx, m, "") }

// Post posts any JSON document, retrying with backoff on errors and 5xx
// answers. A non-empty idempotencyKey is sent as the Idempotency-Key header,
// so a receiver can drop the repeat of a message sent before a crash.
// Errors never contain the URL: webhook URLs are credentials.
func (w *Webhook) Post(ctx context.Context, m any, idempotencyKey string) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	attempts := max(w.Attempts, 1)
	if w.Attempts == 0 {
		attempts = 3
	}
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(200<<i) * time.Millisecond):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
		if err != nil {
			return errors.New("the webhook URL is not a valid URL")
		}
		req.Header.Set("Content-Type", "application/json")
		if idempotencyKey != "" {
			req.Header.Set("Idempotency-Key", idempotencyKey)
		}
		resp, err := c.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			last = fmt.Errorf("posting to the webhook: %w", err)
			continue
		}
		_ = resp.Body.Close()
		switch {
		case resp.StatusCode < 300:
			return nil
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			last = fmt.Errorf("notification webhook answered %d", resp.StatusCode)
		default:
			return fmt.Errorf("notification webhook refused the message: %d", resp.StatusCode)
		}
	}
	return last
}
