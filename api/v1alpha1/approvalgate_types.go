package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ChangeOperation is what a planned change does to an object.
// +kubebuilder:validation:Enum=Create;Patch;Delete;Evict;Unchanged;Send;Silence
type ChangeOperation string

const (
	OperationCreate    ChangeOperation = "Create"
	OperationPatch     ChangeOperation = "Patch"
	OperationDelete    ChangeOperation = "Delete"
	OperationEvict     ChangeOperation = "Evict"
	OperationUnchanged ChangeOperation = "Unchanged"
	// OperationSend is a message sent outside the cluster (Notify).
	OperationSend ChangeOperation = "Send"
	// OperationSilence is an Alertmanager silence (Silence).
	OperationSilence ChangeOperation = "Silence"
)

// PlannedChange is one write a step would make, as the API server's dry run
// accepted it.
type PlannedChange struct {
	// operation the change would perform.
	// +required
	Operation ChangeOperation `json:"operation"`
	// object the change would write.
	// +required
	Object ObjectReference `json:"object"`
	// summary says in a line what would change, for the approver.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Summary string `json:"summary,omitempty"`
	// undo says how the change would be undone, so an approver knows before
	// deciding: None means it cannot be (an eviction, a deletion, a message).
	// +optional
	Undo UndoMethod `json:"undo,omitempty"`
}

// PlannedStep is one step of the plan with its resolved target.
type PlannedStep struct {
	// name of the playbook step.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// action the step runs.
	// +required
	Action ActionType `json:"action"`
	// target the step acts on.
	// +optional
	Target *ObjectReference `json:"target,omitempty"`
	// changes the step would make, each accepted by the API server's dry run.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Changes []PlannedChange `json:"changes,omitempty"`
}

// Plan is the exact set of changes awaiting approval.
type Plan struct {
	// steps in the order they would run.
	// +required
	// +kubebuilder:validation:MaxItems=16
	Steps []PlannedStep `json:"steps"`
	// hash of the plan's intent (action, target UID and the objects to apply);
	// the executor re-plans and refuses to run if it no longer matches.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Hash string `json:"hash"`
}

// GatePolicy is the playbook's approval policy, frozen when the gate was opened
// so that editing the playbook does not change a pending decision.
type GatePolicy struct {
	// automatic is true when the playbook's autoApprove expression held for
	// this incident: the gate is approved by policy, without a person.
	// +optional
	Automatic bool `json:"automatic,omitempty"`
	// autoApproveRule is the expression that decided an automatic approval.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	AutoApproveRule string `json:"autoApproveRule,omitempty"`
	// requiredApprovals is how many distinct people must approve.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	RequiredApprovals int32 `json:"requiredApprovals,omitempty"`
	// expiresAt is when the gate closes undecided.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// onExpiry is what expiry means.
	// +optional
	OnExpiry ExpiryAction `json:"onExpiry,omitempty"`
	// allowRequester lets the incident's requester approve.
	// +optional
	AllowRequester bool `json:"allowRequester,omitempty"`
	// requiredRejections is how many distinct people must reject to close the
	// gate (1: any reject vetoes).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	RequiredRejections int32 `json:"requiredRejections,omitempty"`
	// requester is the user who asked for this plan: who opened a Manual
	// incident, or who set the incident's target.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Requester string `json:"requester,omitempty"`
	// decisionPolicy identifies the admission policy that checked decisions
	// when the gate was opened (the policy's and its binding's UID and
	// generation); empty when none was provably in force. Decisions count
	// only while that same policy stays in force.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DecisionPolicy string `json:"decisionPolicy,omitempty"`
}

// DecisionVerdict is a person's answer to a gate.
// +kubebuilder:validation:Enum=Approve;Reject
type DecisionVerdict string

const (
	DecisionApprove DecisionVerdict = "Approve"
	DecisionReject  DecisionVerdict = "Reject"
)

// Decision is one person's recorded answer. Decisions are appended, never
// edited or removed, one per person.
type Decision struct {
	// user who decided, as the API server authenticated them.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	User string `json:"user"`
	// decision: Approve or Reject.
	// +required
	Decision DecisionVerdict `json:"decision"`
	// reason the person gave.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
	// at is when the decision was made.
	// +optional
	At *metav1.Time `json:"at,omitempty"`
}

// ApprovalGateSpec is the plan and the decisions about it. Riposte writes the
// plan and policy once; people append decisions.
// +kubebuilder:validation:XValidation:rule="has(self.decisions) || !has(oldSelf.decisions)",message="decisions can be appended, never edited or removed"
type ApprovalGateSpec struct {
	// incident is the name of the Incident, in the gate's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="incident is immutable"
	Incident string `json:"incident"`
	// playbook whose steps built the plan.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="playbook is immutable"
	Playbook NamespacedName `json:"playbook"`
	// plan awaiting approval.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="plan is immutable: a changed plan needs a new gate"
	Plan Plan `json:"plan"`
	// policy frozen from the playbook.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="policy is immutable"
	Policy GatePolicy `json:"policy"`
	// decisions people recorded, appended in order, one per user.
	// +optional
	// +listType=map
	// +listMapKey=user
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="oldSelf.all(d, self.exists(n, n == d))",message="decisions can be appended, never edited or removed"
	Decisions []Decision `json:"decisions,omitempty"`
}

// GatePhase is the gate's verdict.
// +kubebuilder:validation:Enum=Pending;Approved;Rejected;Expired;Superseded;Cancelled
type GatePhase string

const (
	GatePending    GatePhase = "Pending"
	GateApproved   GatePhase = "Approved"
	GateRejected   GatePhase = "Rejected"
	GateExpired    GatePhase = "Expired"
	GateSuperseded GatePhase = "Superseded"
	GateCancelled  GatePhase = "Cancelled"
)

// ApprovalGate condition type and reasons.
const (
	// GateDecided is True once the gate has a final verdict.
	GateDecided = "Decided"

	ReasonAutoApproved      = "AutoApproved"
	ReasonQuorumReached     = "QuorumReached"
	ReasonVetoed            = "Vetoed"
	ReasonWaitingForQuorum  = "WaitingForApprovals"
	ReasonRequesterApproval = "RequesterMayNotApprove"
)

// ApprovalGateStatus holds the verdict. It belongs to the controller.
type ApprovalGateStatus struct {
	// conditions: Decided, and Ready once the gate is approved.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// phase is the verdict.
	// +optional
	Phase GatePhase `json:"phase,omitempty"`
	// approvals counts distinct approving users so far.
	// +optional
	Approvals int32 `json:"approvals"`
	// decidedAt is when the verdict was reached.
	// +optional
	DecidedAt *metav1.Time `json:"decidedAt,omitempty"`
	// decidedBy names who reached the verdict: users, or "policy" for an
	// automatic approval or an expiry.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	DecidedBy []string `json:"decidedBy,omitempty"`
	// message explains the verdict.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// ignoredDecisions lists decisions Riposte did not count, and why (for
	// example, recorded while the admission policy that checks identities
	// was not installed).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	IgnoredDecisions []string `json:"ignoredDecisions,omitempty"`
	// decisionPolicy is the admission policy Riposte last saw checking this
	// gate's decisions, in the form of spec.policy.decisionPolicy.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DecisionPolicy string `json:"decisionPolicy,omitempty"`
	// verifiedDecisions are the users whose decisions Riposte saw appear
	// while the shipped decision policy was continuously in force; only
	// these are counted.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	VerifiedDecisions []string `json:"verifiedDecisions,omitempty"`
	// unverifiableDecisions are the users whose decisions appeared while
	// that could not be shown (the policy or its binding was missing,
	// changed or re-created): they are never counted.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	UnverifiableDecisions []string `json:"unverifiableDecisions,omitempty"`
	// notifiedAt is when people were told the gate waits for them.
	// +optional
	NotifiedAt *metav1.Time `json:"notifiedAt,omitempty"`
}

// ApprovalGate holds the exact plan a playbook would apply to an incident until
// policy or people allowed to approve decide.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=gate,categories=riposte
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Approvals",type=integer,JSONPath=`.status.approvals`
// +kubebuilder:printcolumn:name="Required",type=integer,JSONPath=`.spec.policy.requiredApprovals`
// +kubebuilder:printcolumn:name="Incident",type=string,JSONPath=`.spec.incident`
// +kubebuilder:printcolumn:name="Playbook",type=string,JSONPath=`.spec.playbook.name`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.spec.policy.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ApprovalGate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ApprovalGateSpec `json:"spec"`
	// +optional
	Status ApprovalGateStatus `json:"status,omitempty"`
}

// ApprovalGateList is a list of ApprovalGates.
// +kubebuilder:object:root=true
type ApprovalGateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApprovalGate `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ApprovalGate{}, &ApprovalGateList{})
}
