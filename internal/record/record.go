// Package record keeps the tamper-evident trail of what Riposte decided and
// changed: one signed entry per incident milestone, each naming the hash of
// the one before, written to a sink (a directory, an S3 bucket) where it
// outlives the Incident objects. Verify checks such a trail offline.
package record

import (
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Milestones an incident is recorded at: the phases a decision ends in,
// and its deletion.
const (
	// MilestoneDeleted is the last record of an incident, written before
	// its finalizer lets it go.
	MilestoneDeleted = "Deleted"
)

// MilestoneOf is the milestone the incident's state is recorded as, or ""
// when it is not recorded: only incidents that reached a decision (a plan
// approved by policy or put to people) are, once they reach a phase a
// decision ends in.
func MilestoneOf(inc *riposte.Incident) string {
	if !Decided(inc) {
		return ""
	}
	switch p := inc.Status.Phase; p {
	case riposte.PhaseRemediated, riposte.PhaseFailed, riposte.PhaseRejected, riposte.PhaseUndone,
		riposte.PhaseResolved, riposte.PhaseDryRun, riposte.PhaseCancelled:
		return string(p)
	}
	return ""
}

// Decided reports whether an incident reached a decision: a plan approved
// by policy, put to people, or applied. Only those are recorded; an
// incident no playbook answered leaves its Events and metrics.
func Decided(inc *riposte.Incident) bool {
	return inc.Status.AutoApproval != nil || inc.Status.ApprovalGate != "" || len(inc.Status.Steps) > 0 || len(inc.Status.WithdrawnGates) > 0
}

// Body is what one record says about an incident: enough for an auditor to
// answer what triggered it, which plan was approved by whom, what was
// changed as which identity, and how it ended, with no cluster at hand.
type Body struct {
	// Kind is "Incident".
	Kind string `json:"kind"`
	// Milestone is the phase this record was written at, or Deleted.
	Milestone string `json:"milestone"`
	// Incident names the object the record is about.
	Incident ObjectID `json:"incident"`
	// Trigger is what intake, the drift detector or a person reported.
	Trigger Trigger `json:"trigger"`
	// Target is the object the incident is about, as enrichment resolved it.
	Target *riposte.ObjectReference `json:"target,omitempty"`
	// Playbook is the policy that answered.
	Playbook *Playbook `json:"playbook,omitempty"`
	// Plan is what was put to the decision.
	Plan *Plan `json:"plan,omitempty"`
	// Decisions are the verdicts: the automatic one, or each gate's.
	Decisions Decisions `json:"decisions"`
	// RunAs is the identity every write of the remediation used.
	RunAs string `json:"runAs,omitempty"`
	// Steps is each step as it was applied, with what it wrote and the
	// prior state its undo restores.
	Steps []riposte.StepRecord `json:"steps,omitempty"`
	// Undo is the request that put the changes back, if one was made.
	Undo *riposte.UndoRequest `json:"undo,omitempty"`
	// Outcome is where the incident stood, with its stage times.
	Outcome Outcome `json:"outcome"`
}

// ObjectID names a Kubernetes object for all time: its UID tells apart two
// objects that had the same name.
type ObjectID struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// Trigger is the evidence the incident was opened on.
type Trigger struct {
	Source      riposte.IncidentSource `json:"source"`
	AlertName   string                 `json:"alertName"`
	Fingerprint string                 `json:"fingerprint,omitempty"`
	Severity    string                 `json:"severity,omitempty"`
	// AlertStatus is the source's last word: firing or resolved.
	AlertStatus riposte.AlertStatus `json:"alertStatus,omitempty"`
	StartsAt    *metav1.Time        `json:"startsAt,omitempty"`
	EndsAt      *metav1.Time        `json:"endsAt,omitempty"`
	Labels      map[string]string   `json:"labels,omitempty"`
	// Drift is the rule and object of a drift finding.
	Drift *riposte.DriftFinding `json:"drift,omitempty"`
	// RequestedBy is the user who opened a Manual incident.
	RequestedBy string `json:"requestedBy,omitempty"`
	// TargetSetBy is the user who chose the target, when a person did.
	TargetSetBy string `json:"targetSetBy,omitempty"`
}

// Playbook identifies the policy as it was when it decided.
type Playbook struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Generation is the playbook's generation: the one the automatic
	// verdict names, or, for a gate people decided, the one seen when the
	// record was written.
	Generation int64 `json:"generation,omitempty"`
	// GitOps holds the labels and annotations a GitOps tool (Flux, Argo
	// CD) put on the playbook, which name the source and revision it came
	// from.
	GitOps map[string]string `json:"gitops,omitempty"`
}

// Plan is what was approved, by its hash.
type Plan struct {
	Hash  string                `json:"hash"`
	Steps []riposte.PlannedStep `json:"steps,omitempty"`
}

// Decisions are every verdict given on the incident's plans, and the
// separation-of-duties facts they rest on.
type Decisions struct {
	// Automatic is the playbook rule that approved without a person.
	Automatic *riposte.AutoApproval `json:"automatic,omitempty"`
	// Gates are the gates people were asked at, each with its decisions.
	Gates []Gate `json:"gates,omitempty"`
	// Requester is who asked for the plan (a Manual incident's author, or
	// who set its target); empty when an alert or drift rule did.
	Requester string `json:"requester,omitempty"`
	// Approvers are the users whose approvals counted.
	Approvers []string `json:"approvers,omitempty"`
	// RequesterApproved is true only if the requester's own approval was
	// counted (a playbook that allows it); the auditor's check.
	RequesterApproved bool `json:"requesterApproved"`
}

// Gate is one ApprovalGate as it was decided.
type Gate struct {
	Name           string                 `json:"name"`
	UID            string                 `json:"uid"`
	PlanHash       string                 `json:"planHash"`
	Phase          riposte.GatePhase      `json:"phase,omitempty"`
	OpenedAt       metav1.Time            `json:"openedAt"`
	Required       int32                  `json:"requiredApprovals,omitempty"`
	AllowRequester bool                   `json:"allowRequester,omitempty"`
	DecidedAt      *metav1.Time           `json:"decidedAt,omitempty"`
	DecidedBy      []string               `json:"decidedBy,omitempty"`
	Decisions      []riposte.Decision     `json:"decisions,omitempty"`
	Ignored        []string               `json:"ignoredDecisions,omitempty"`
	Withdrawn      *riposte.WithdrawnGate `json:"withdrawn,omitempty"`
}

// Outcome is how the incident stood at the milestone.
type Outcome struct {
	Phase        riposte.IncidentPhase `json:"phase"`
	Message      string                `json:"message,omitempty"`
	DetectedAt   *metav1.Time          `json:"detectedAt,omitempty"`
	EnrichedAt   *metav1.Time          `json:"enrichedAt,omitempty"`
	ApprovedAt   *metav1.Time          `json:"approvedAt,omitempty"`
	RemediatedAt *metav1.Time          `json:"remediatedAt,omitempty"`
	ResolvedAt   *metav1.Time          `json:"resolvedAt,omitempty"`
	ClosedAt     *metav1.Time          `json:"closedAt,omitempty"`
	DeletedAt    *metav1.Time          `json:"deletedAt,omitempty"`
	// Stages are the stage times to the microsecond (the times above are
	// to the second).
	Stages *riposte.StageTimes `json:"stages,omitempty"`
}

// Facts are what a record is built from, all read before it is built.
type Facts struct {
	Incident  *riposte.Incident
	Milestone string
	// Gates are the incident's gates (those it owns), any order.
	Gates []riposte.ApprovalGate
	// Playbook is the playbook that answered, if it still exists.
	Playbook *riposte.Playbook
}

// Build turns what the cluster holds into one record body.
func Build(f Facts) Body {
	inc := f.Incident
	s := inc.Status
	b := Body{
		Kind:      "Incident",
		Milestone: f.Milestone,
		Incident:  ObjectID{Namespace: inc.Namespace, Name: inc.Name, UID: string(inc.UID)},
		Trigger: Trigger{
			Source: inc.Spec.Source, AlertName: inc.Spec.AlertName, Fingerprint: inc.Spec.Fingerprint,
			Severity: inc.Spec.Severity, AlertStatus: inc.Spec.Status, StartsAt: inc.Spec.StartsAt, EndsAt: inc.Spec.EndsAt,
			Labels: inc.Spec.Labels, Drift: inc.Spec.Drift, RequestedBy: inc.Spec.RequestedBy, TargetSetBy: inc.Spec.TargetSetBy,
		},
		RunAs: s.RunAs,
		Steps: s.Steps,
		Undo:  inc.Spec.Undo,
		Outcome: Outcome{
			Phase: s.Phase, DetectedAt: s.DetectedAt, EnrichedAt: s.EnrichedAt, ApprovedAt: s.ApprovedAt,
			RemediatedAt: s.RemediatedAt, ResolvedAt: s.ResolvedAt, ClosedAt: s.ClosedAt, Stages: s.Stages,
		},
	}
	if c := s.Context; c != nil {
		b.Target = c.Target
	}
	if ready := findCondition(s.Conditions, "Ready"); ready != nil {
		b.Outcome.Message = ready.Message
	}
	if f.Milestone == MilestoneDeleted && inc.DeletionTimestamp != nil {
		b.Outcome.DeletedAt = inc.DeletionTimestamp
	}
	if s.Playbook != nil {
		b.Playbook = &Playbook{Namespace: s.Playbook.Namespace, Name: s.Playbook.Name}
		if f.Playbook != nil && f.Playbook.Name == s.Playbook.Name && f.Playbook.Namespace == s.Playbook.Namespace {
			b.Playbook.Generation = f.Playbook.Generation
			b.Playbook.GitOps = gitOpsMarks(f.Playbook)
		}
		if s.AutoApproval != nil {
			b.Playbook.Generation = s.AutoApproval.PlaybookGeneration
		}
	}
	b.Decisions.Automatic = s.AutoApproval
	b.Decisions.Requester = requester(inc)
	withdrawn := map[string]riposte.WithdrawnGate{}
	for _, w := range s.WithdrawnGates {
		withdrawn[w.UID] = w
	}
	gates := slices.Clone(f.Gates)
	slices.SortFunc(gates, func(a, b riposte.ApprovalGate) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	approvers := map[string]bool{}
	for _, g := range gates {
		rec := Gate{
			Name: g.Name, UID: string(g.UID), PlanHash: g.Spec.Plan.Hash, Phase: g.Status.Phase, OpenedAt: g.CreationTimestamp,
			Required: g.Spec.Policy.RequiredApprovals, AllowRequester: g.Spec.Policy.AllowRequester,
			DecidedAt: g.Status.DecidedAt, DecidedBy: g.Status.DecidedBy, Decisions: g.Spec.Decisions, Ignored: g.Status.IgnoredDecisions,
		}
		if w, ok := withdrawn[string(g.UID)]; ok {
			rec.Withdrawn = &w
		}
		if g.Spec.Policy.Requester != "" && b.Decisions.Requester == "" {
			b.Decisions.Requester = g.Spec.Policy.Requester
		}
		if g.Status.Phase == riposte.GateApproved {
			for _, u := range g.Status.DecidedBy {
				approvers[u] = true
			}
		}
		// The plan that ran is the approved one: its gate holds its steps.
		if b.Plan == nil || g.Spec.Plan.Hash == s.PlanHash {
			b.Plan = &Plan{Hash: g.Spec.Plan.Hash, Steps: g.Spec.Plan.Steps}
		}
		b.Decisions.Gates = append(b.Decisions.Gates, rec)
	}
	if s.AutoApproval != nil && (b.Plan == nil || b.Plan.Hash != s.AutoApproval.PlanHash) {
		// No gate for a plan policy approved: its steps are the record's.
		b.Plan = &Plan{Hash: s.AutoApproval.PlanHash}
	}
	if b.Plan == nil && s.PlanHash != "" {
		b.Plan = &Plan{Hash: s.PlanHash}
	}
	b.Decisions.Approvers = slices.Sorted(maps.Keys(approvers))
	b.Decisions.RequesterApproved = b.Decisions.Requester != "" && approvers[b.Decisions.Requester]
	return b
}

// requester is the person who asked for what the incident does, if a
// person did.
func requester(inc *riposte.Incident) string {
	if inc.Spec.RequestedBy != "" {
		return inc.Spec.RequestedBy
	}
	return inc.Spec.TargetSetBy
}

// gitOpsMarks are the labels and annotations Flux and Argo CD put on what
// they sync (which Kustomization or Application, at which revision).
func gitOpsMarks(pb *riposte.Playbook) map[string]string {
	marks := map[string]string{}
	for _, m := range []map[string]string{pb.Labels, pb.Annotations} {
		for k, v := range m {
			if strings.Contains(k, "fluxcd.io/") || strings.Contains(k, "argoproj.io/") {
				marks[k] = v
			}
		}
	}
	if len(marks) == 0 {
		return nil
	}
	return marks
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// timeOf is a record's time as stored: RFC 3339 in UTC to the nanosecond.
func timeOf(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
