package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/prometheus/common/model"

	"github.com/riposte-dev/riposte/internal/intake"
)

// postableAlert is one alert as Alertmanager's POST /api/v2/alerts takes it
// (postableAlert in Alertmanager's api/v2/openapi.yaml): what Prometheus,
// amtool and Falcosidekick's Alertmanager output send, and so a natural file
// to test playbooks with.
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
}

// alertListPayload reads a list of postable alerts as the webhook
// notification Alertmanager would send for them at now, and checks it by
// intake's own rules, so an alert the webhook would refuse is refused here.
func alertListPayload(list []any, now time.Time) (*intake.Payload, error) {
	raw, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	var alerts []postableAlert
	if err := json.Unmarshal(raw, &alerts); err != nil {
		return nil, fmt.Errorf("not a list of alerts as Alertmanager's /api/v2/alerts takes them: %w", err)
	}
	p := &intake.Payload{Version: "4", Status: string(model.AlertResolved)}
	for i, a := range alerts {
		if len(a.Labels) == 0 {
			return nil, fmt.Errorf("alerts[%d]: no labels: Alertmanager refuses an alert without labels", i)
		}
		p.Alerts = append(p.Alerts, asNotified(a, now))
		if p.Alerts[i].Status == string(model.AlertFiring) {
			p.Status = string(model.AlertFiring)
		}
	}
	js, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	checked, err := intake.Decode(bytes.NewReader(js))
	if err != nil {
		return nil, fmt.Errorf("a list of alerts Riposte would not accept from Alertmanager: %w", err)
	}
	return checked, nil
}

// asNotified is the alert as Alertmanager would notify it at now: empty
// labels dropped and a missing startsAt filled in, as its POST handler does;
// resolved once endsAt has passed (a missing endsAt means firing until the
// resolve timeout); the fingerprint computed from the labels with
// Alertmanager's own function; endsAt zero while firing, as its
// notifications send it.
func asNotified(a postableAlert, now time.Time) intake.Alert {
	labels := model.LabelSet{}
	for k, v := range a.Labels {
		if v != "" {
			labels[model.LabelName(k)] = model.LabelValue(v)
		}
	}
	startsAt, endsAt := a.StartsAt, a.EndsAt
	if startsAt.IsZero() {
		startsAt = now
		if !endsAt.IsZero() {
			startsAt = endsAt
		}
	}
	status := model.AlertFiring
	if !endsAt.IsZero() && !endsAt.After(now) {
		status = model.AlertResolved
	} else {
		endsAt = time.Time{}
	}
	out := intake.Alert{
		Status:       string(status),
		Labels:       map[string]string{},
		Annotations:  a.Annotations,
		StartsAt:     startsAt,
		EndsAt:       endsAt,
		GeneratorURL: a.GeneratorURL,
		Fingerprint:  labels.Fingerprint().String(),
	}
	for k, v := range labels {
		out.Labels[string(k)] = string(v)
	}
	return out
}
