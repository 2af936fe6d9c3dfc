// Package intake is Riposte's Alertmanager webhook receiver: it checks the
// caller and the payload, and stores one Incident per alert before it
// answers, so Alertmanager retries anything that was not stored.
package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/riposte-dev/riposte/internal/text"
)

// Limits mirror the Incident CRD's, so a payload the API server would refuse
// is refused here with a message that names the field.
const (
	maxLabels      = 64
	maxAnnotations = 64
)

var fingerprintPattern = regexp.MustCompile(`^[0-9a-zA-Z]{1,64}$`)

// Payload is Alertmanager's webhook body, version 4.
type Payload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []Alert           `json:"alerts"`
}

// Alert is one alert of a notification.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// ValidationError says which field of the payload is wrong.
type ValidationError struct {
	Field   string
	Problem string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Problem }

// Decode reads and validates a payload of at most DefaultMaxAlerts alerts;
// each alert is checked on its own by CheckAlert.
func Decode(r io.Reader) (*Payload, error) { return DecodeAtMost(r, DefaultMaxAlerts) }

// DecodeAtMost reads and validates a payload of at most maxAlerts alerts
// (DefaultMaxAlerts when maxAlerts is not positive). Unknown fields are
// allowed, since Alertmanager may add some; the fields Riposte relies on
// are checked, and a key given twice is refused rather than letting the
// last one win.
func DecodeAtMost(r io.Reader, maxAlerts int) (*Payload, error) {
	if maxAlerts <= 0 {
		maxAlerts = DefaultMaxAlerts
	}
	// Read whole so it can be scanned before it is decoded; the caller
	// bounds its size.
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if err := scan(body, maxAlerts); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var p Payload
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty body: want an Alertmanager webhook payload")
		}
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	switch _, err := dec.Token(); {
	case errors.Is(err, io.EOF):
	case err != nil:
		// Wrapped so that a body cut off by a size limit is still recognisable.
		return nil, fmt.Errorf("malformed JSON: data after the payload: %w", err)
	default:
		return nil, errors.New("malformed JSON: data after the payload")
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// validate checks what the whole notification needs; what one alert lacks
// is CheckAlert's, so it never costs the other alerts their notification.
func (p *Payload) validate() error {
	if p.Version != "4" {
		return &ValidationError{"version", fmt.Sprintf("must be \"4\", got %q", p.Version)}
	}
	if len(p.Alerts) == 0 {
		return &ValidationError{"alerts", "at least one alert is required"}
	}
	return nil
}

// Why an alert cannot be stored: the values of the reason label of
// riposte_intake_alerts_refused_total.
const (
	RefusedStatus      = "status"
	RefusedFingerprint = "fingerprint"
	RefusedLabels      = "labels"
	RefusedAnnotations = "annotations"
	// RefusedTimes: a resolved alert that ends before it starts, which
	// Alertmanager itself refuses and no episode can be ordered by.
	RefusedTimes = "times"
	// RefusedByAPIServer: the API server found the incident invalid.
	RefusedByAPIServer = "invalid"
)

// AlertError says why one alert of a notification cannot be stored, by any
// retry: intake stores the others and reports this one.
type AlertError struct {
	Index       int    `json:"index"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// Reason is one of the Refused constants.
	Reason  string `json:"reason"`
	Field   string `json:"field,omitempty"`
	Message string `json:"error"`
}

func (e *AlertError) Error() string { return e.Message }

// CheckAlert says why the alert at index i cannot be stored, or nil. A
// missing alertname is not a reason: the name is derived (AlertName).
func (p *Payload) CheckAlert(i int) *AlertError {
	a := p.Alerts[i]
	refuse := func(reason, field, problem string) *AlertError {
		field = fmt.Sprintf("alerts[%d].%s", i, field)
		return &AlertError{Index: i, Fingerprint: a.Fingerprint, Reason: reason, Field: field, Message: field + ": " + problem}
	}
	switch {
	case a.Status != "firing" && a.Status != "resolved":
		return refuse(RefusedStatus, "status", fmt.Sprintf("must be firing or resolved, got %q", a.Status))
	case !fingerprintPattern.MatchString(a.Fingerprint):
		// Not echoed back whole: it is not a fingerprint, and may be
		// anything, of any length.
		e := refuse(RefusedFingerprint, "fingerprint", fmt.Sprintf("must be 1 to 64 letters or digits, got %q", text.Elide(a.Fingerprint, 80)))
		e.Fingerprint = ""
		return e
	case len(a.Labels) > maxLabels:
		return refuse(RefusedLabels, "labels", fmt.Sprintf("%d labels, at most %d", len(a.Labels), maxLabels))
	case len(a.Annotations) > maxAnnotations:
		return refuse(RefusedAnnotations, "annotations", fmt.Sprintf("%d annotations, at most %d", len(a.Annotations), maxAnnotations))
	case a.Status == "resolved" && !a.EndsAt.IsZero() && !a.StartsAt.IsZero() && a.EndsAt.Before(a.StartsAt):
		return refuse(RefusedTimes, "endsAt", fmt.Sprintf("the alert ends (%s) before it starts (%s)", a.EndsAt.Format(time.RFC3339), a.StartsAt.Format(time.RFC3339)))
	}
	return nil
}
