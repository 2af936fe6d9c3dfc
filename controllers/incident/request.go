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

// refusedRequest checks a person's request against the playbook before a
// gate is opened: Riposte never does for someone what neither their own
// rights nor the playbook allow. A refusal fails the incident and says why.
func (r *Reconciler) refusedRequest(ctx context.Context, inc *riposte.Incident, pb *riposte.Playbook, plan *executor.Plan, user string) (bool, error) {
	switch match.ManualRequestsOf(pb, r.OperatorNamespace) {
	case riposte.ManualRefuse:
		r.fail(inc, riposte.IncidentPlanned, riposte.ReasonRequestRefused, fmt.Sprintf(
			"playbook %s/%s acts on alerts and drift only (spec.approval.manualRequests: Refuse); %s asked for this plan", pb.Namespace, pb.Name, user))
		return true, nil
	case riposte.ManualAnyone:
		return false, nil
	}
	access, err := plan.Access(r.Impersonation.Mapper)
	if err != nil {
		return true, err
	}
	var denied []string
	for _, attrs := range access {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: inc.Spec.RequesterGroups, ResourceAttributes: &attrs}}
		if err := r.Create(ctx, review, client.DisableReadYourWritesConsistency); err != nil { // a review is answered, never stored or cached
			return true, fmt.Errorf("asking whether %s may %s %s: %w", user, attrs.Verb, attrs.Resource, err)
		}
		if !review.Status.Allowed {
			denied = append(denied, describeAccess(attrs))
		}
	}
	if len(denied) == 0 {
		return false, nil
	}
	r.fail(inc, riposte.IncidentPlanned, riposte.ReasonRequesterNoAccess, fmt.Sprintf(
		"%s asked for this plan but may not %s themselves; playbook %s/%s acts for people only within their own rights (spec.approval.manualRequests: RequireAccess)",
		user, strings.Join(denied, ", "), pb.Namespace, pb.Name))
	return true, nil
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
