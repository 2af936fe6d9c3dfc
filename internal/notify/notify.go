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

	"github.com/slack-go/slack"

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
	// Blocks, when the chat bridge is set up, are Slack Block Kit blocks
	// with approve, reject and show-the-plan buttons (internal/chat).
	Blocks []slack.Block `json:"blocks,omitempty"`
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
	URL string
	// Client, when set, sends the posts; redirects are never followed
	// whatever it says. By default a client for Destinations.
	Client *http.Client
	// Attempts is how many times a failed post is tried (default 3).
	Attempts int
	// Destinations, when set, is where the URL must lead: the check of a
	// URL someone other than the admin chose. Nil trusts the URL (the
	// admin's own --approval-notify-url) but still follows no redirect.
	Destinations *Destinations
}

// Error is a post that failed. Permanent means retrying cannot help: the
// URL is invalid or not allowed, or the receiver refused the message.
type Error struct {
	Msg       string
	Permanent bool
	Err       error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a post that retrying cannot fix.
func IsPermanent(err error) bool {
	var ne *Error
	return errors.As(err, &ne) && ne.Permanent
}

// retryDelay is the wait before attempt i (from 1): 400 ms, doubling.
func retryDelay(i int) time.Duration { return time.Duration(200<<i) * time.Millisecond }

// Send posts the message, retrying with backoff on errors and 5xx answers.
func (w *Webhook) Send(ctx context.Context, m Message) error { return w.Post(ctx, m, "") }

// Post posts any JSON document, retrying with backoff on network errors,
// 5xx, 408 and 429 answers, a few times: the caller decides what happens
// after (an *Error, Permanent or not). An invalid or disallowed URL, a
// redirect or another 4xx is not retried. A non-empty idempotencyKey is
// sent as the Idempotency-Key header, so a receiver can drop the repeat of
// a message sent before a crash. Errors never contain the URL: webhook URLs
// are credentials.
func (w *Webhook) Post(ctx context.Context, m any, idempotencyKey string) error {
	body, err := json.Marshal(m)
	if err != nil {
		return &Error{Msg: "encoding the message", Permanent: true, Err: err}
	}
	if w.Destinations != nil {
		if err := w.Destinations.Check(w.URL); err != nil {
			return err
		}
	}
	c := w.client()
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
			case <-time.After(retryDelay(i)):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
		if err != nil {
			return &Error{Msg: "the webhook URL is not a valid URL", Permanent: true}
		}
		req.Header.Set("Content-Type", "application/json")
		if idempotencyKey != "" {
			req.Header.Set("Idempotency-Key", idempotencyKey)
		}
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // its message holds the URL
			}
			if errors.Is(err, errAddressRefused) {
				return &Error{Msg: "posting to the webhook", Permanent: true, Err: err}
			}
			last = &Error{Msg: "posting to the webhook", Err: err}
			continue
		}
		_ = resp.Body.Close()
		switch code := resp.StatusCode; {
		case code < 300:
			return nil
		case code < 400:
			return &Error{Msg: fmt.Sprintf("notification webhook answered %d, a redirect, which Riposte does not follow; configure the URL it redirects to", code), Permanent: true}
		case code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
			last = &Error{Msg: fmt.Sprintf("notification webhook answered %d", code)}
		default:
			return &Error{Msg: fmt.Sprintf("notification webhook refused the message: %d", code), Permanent: true}
		}
	}
	return last
}

func (w *Webhook) client() *http.Client {
	switch {
	case w.Client == nil && w.Destinations == nil:
		return &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirects}
	case w.Client == nil:
		return w.Destinations.Client(10 * time.Second)
	}
	c := *w.Client
	c.CheckRedirect = noRedirects
	return &c
}
