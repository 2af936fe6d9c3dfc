package incident

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/match"
)

// requester is the person who asked for the incident's plan: whoever
// pointed it at its target, else whoever opened it by hand; "" when the plan
// answers an alert or a drift finding as Riposte stored it. The API server
// vouched for both names (config/policies).
func requester(inc *riposte.Incident) string {
	if inc.Spec.TargetSetBy != "" {
		return inc.Spec.TargetSetBy
	}
	return inc.Spec.RequestedBy
}

// refusedAsker checks, before anything is planned, that the playbook acts
// at people's request at all. A refusal stalls the incident, saying why.
func (r *Reconciler) refusedAsker(pb *riposte.Playbook, user string) error {
	if match.ManualRequestsOf(pb, r.OperatorNamespace) == riposte.ManualRefuse {
		return stalled(riposte.IncidentPlanned, riposte.ReasonRequestRefused, fmt.Sprintf(
			"playbook %s/%s acts on alerts and drift only (spec.approval.manualRequests: Refuse); %s asked for this plan", pb.Namespace, pb.Name, user))
	}
	for _, s := range pb.Spec.Steps {
		if s.Action == riposte.ActionSilence {
			// A silence's matchers come from the incident's labels, which
			// the requester wrote: it could mute any alert in the cluster.
			return stalled(riposte.IncidentPlanned, riposte.ReasonRequestRefused, fmt.Sprintf(
				"playbook %s/%s silences alerts (step %s), which is never done at a person's request (%s asked for this plan)", pb.Namespace, pb.Name, s.Name, user))
		}
	}
	return nil
}

// lacksAccess checks a person's request against their own rights once the
// plan is built: Riposte never does for someone what neither their rights
// nor the playbook allow (manualRequests: Anyone). A refusal stalls the
// incident and names every write they may not make.
func (r *Reconciler) lacksAccess(ctx context.Context, inc *riposte.Incident, pb *riposte.Playbook, plan *executor.Plan, user string) error {
	if match.ManualRequestsOf(pb, r.OperatorNamespace) == riposte.ManualAnyone {
		return nil
	}
	access, err := plan.Access(r.Impersonation.Mapper)
	if err != nil {
		return err
	}
	var denied []string
	for _, attrs := range access {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: inc.Spec.RequesterGroups, ResourceAttributes: &attrs}}
		if err := r.Create(ctx, review, client.DisableReadYourWritesConsistency); err != nil { // a review is answered, never stored or cached
			return fmt.Errorf("asking whether %s may %s %s: %w", user, attrs.Verb, attrs.Resource, err)
		}
		if !review.Status.Allowed {
			denied = append(denied, describeAccess(attrs))
		}
	}
	if len(denied) == 0 {
		return nil
	}
	return stalled(riposte.IncidentPlanned, riposte.ReasonRequesterNoAccess, fmt.Sprintf(
		"%s asked for this plan but may not %s themselves; playbook %s/%s acts for people only within their own rights (spec.approval.manualRequests: RequireAccess)",
		user, strings.Join(denied, ", "), pb.Namespace, pb.Name))
}

func describeAccess(a authorizationv1.ResourceAttributes) string {
	resource := a.Resource
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	if a.Group != "" {
		resource += "." + a.Group
	}
	where := a.Name
	if a.Namespace != "" {
		where = a.Namespace + "/" + a.Name
	}
	return a.Verb + " " + resource + " " + where
}
