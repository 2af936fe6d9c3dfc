package actions

import (
	"context"
	"fmt"

	"github.com/riposte-dev/riposte/internal/text"
)

// notify posts a message to a chat or ticketing webhook. Nothing in the
// cluster changes; the URL stays in its Secret until the moment of sending.
func notify(ctx context.Context, in *Input) ([]Change, error) {
	p := in.Step.Notify
	message, err := in.Render(p.Text)
	if err != nil {
		return nil, err
	}
	inc := in.Incident
	summary := map[string]any{
		"namespace": inc.Namespace, "name": inc.Name,
		"alertName": inc.Spec.AlertName, "severity": inc.Spec.Severity, "source": string(inc.Spec.Source),
	}
	if in.Target != nil {
		summary["target"] = in.Target.String()
	}
	if in.Incident.Status.Playbook != nil {
		summary["playbook"] = in.Incident.Status.Playbook.String()
	}
	ref := object("v1", "Secret", in.PlaybookNamespace, p.URLSecretRef.Name)
	return []Change{{Op: Send, Object: ref, Irreversible: true,
		Message: &Message{URLSecret: p.URLSecretRef, SecretNamespace: in.PlaybookNamespace,
			Body: map[string]any{"text": message, "incident": summary}},
		Summary: fmt.Sprintf("post to the webhook in Secret %s (key %s): %s", p.URLSecretRef.Name, p.URLSecretRef.Key, text.Elide(message, 200))}}, nil
}
