// Package silence talks to Alertmanager's v2 API: it creates a silence for
// the alert Riposte is handling, finds one it made before a crash by the
// marker in its comment, and expires it when the incident closes.
package silence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Matcher selects alerts by one label, as Alertmanager's matchers do.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual bool   `json:"isEqual"`
}

// Silence is what Riposte asks Alertmanager for.
type Silence struct {
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
}

// Client calls one Alertmanager.
type Client struct {
	URL  string
	HTTP *http.Client
}

func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, r)
	if err != nil {
		return fmt.Errorf("alertmanager URL: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &Error{Transient: true, Msg: fmt.Sprintf("calling Alertmanager %s %s: %v", method, path, err)}
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		return &Error{Transient: resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests, Status: resp.StatusCode,
			Msg: fmt.Sprintf("Alertmanager answered %s %s with %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("reading Alertmanager's answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Error is an answer from (or a failure to reach) Alertmanager.
type Error struct {
	Transient bool
	Status    int
	Msg       string
}

func (e *Error) Error() string { return e.Msg }

// Ready checks that Alertmanager answers.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/api/v2/status", nil, nil)
}

// Create makes the silence and returns its ID.
func (c *Client) Create(ctx context.Context, s Silence) (string, error) {
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v2/silences", s, &out); err != nil {
		return "", err
	}
	return out.SilenceID, nil
}

// Find returns the ID of an active or pending silence whose comment holds marker.
func (c *Client) Find(ctx context.Context, marker string) (string, bool, error) {
	var all []struct {
		ID      string `json:"id"`
		Comment string `json:"comment"`
		Status  struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v2/silences", nil, &all); err != nil {
		return "", false, err
	}
	for _, s := range all {
		if s.Status.State != "expired" && strings.Contains(s.Comment, marker) {
			return s.ID, true, nil
		}
	}
	return "", false, nil
}

// Expire ends the silence now; one already expired or gone is fine.
func (c *Client) Expire(ctx context.Context, id string) error {
	err := c.do(ctx, http.MethodDelete, "/api/v2/silence/"+url.PathEscape(id), nil, nil)
	var e *Error
	if errors.As(err, &e) && (e.Status == http.StatusNotFound || (e.Status == http.StatusBadRequest && strings.Contains(e.Msg, "expired"))) {
		return nil
	}
	return err
}

// AlertFiring reports whether Alertmanager still holds the alert with this
// fingerprint as firing (silenced or not). A silenced alert's resolution is
// not notified to any receiver, Riposte's included, so while Riposte holds a
// silence it asks. alertName is the alert's alertname label, which narrows
// the query; "" matches the alerts without one, as Alertmanager's matchers do.
func (c *Client) AlertFiring(ctx context.Context, alertName, fingerprint string) (bool, error) {
	q := url.Values{}
	q.Set("filter", fmt.Sprintf("alertname=%q", alertName))
	var alerts []struct {
		Fingerprint string `json:"fingerprint"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v2/alerts?"+q.Encode(), nil, &alerts); err != nil {
		return false, err
	}
	for _, a := range alerts {
		if a.Fingerprint == fingerprint {
			return true, nil
		}
	}
	return false, nil
}
