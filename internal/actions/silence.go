package actions

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/riposte-dev/riposte/internal/text"
)

// SilenceRequest is the Alertmanager silence a Silence step asks for.
type SilenceRequest struct {
	// Labels the silenced alert carries; each becomes an equality matcher,
	// so the silence covers exactly this alert.
	Labels   map[string]string `json:"labels"`
	Duration time.Duration     `json:"duration"`
	Comment  string            `json:"comment"`
}

// silence asks Alertmanager to stop notifying people about the alert while
// Riposte handles it. Riposte expires the silence when the incident is
// resolved or undone, so nothing stays muted after the fact.
func silence(ctx context.Context, in *Input) ([]Change, error) {
	inc := in.Incident
	if len(inc.Spec.Labels) == 0 {
		return nil, userErrorf("Silence needs the alert's labels to match; incident %s/%s has none", inc.Namespace, inc.Name)
	}
	d := 4 * time.Hour
	comment := ""
	if p := in.Step.Silence; p != nil {
		if p.Duration != nil && p.Duration.Duration > 0 {
			d = p.Duration.Duration
		}
		var err error
		if comment, err = in.Render(p.Comment); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, len(inc.Spec.Labels))
	for k := range inc.Spec.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var matchers []string
	for _, k := range keys {
		matchers = append(matchers, k+"="+inc.Spec.Labels[k])
	}
	ref := object("alertmanager/v2", "Silence", "", inc.Name)
	return []Change{{Op: Silence, Object: ref,
		Silence: &SilenceRequest{Labels: inc.Spec.Labels, Duration: d, Comment: comment},
		Summary: fmt.Sprintf("silence alert {%s} in Alertmanager for up to %s, until the incident closes", text.Elide(strings.Join(matchers, ", "), 300), d)}}, nil
}
