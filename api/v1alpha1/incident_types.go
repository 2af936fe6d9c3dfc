package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IncidentSource says who opened an Incident.
// +kubebuilder:validation:Enum=Alertmanager;Drift;Manual
type IncidentSource string

const (
	SourceAlertmanager IncidentSource = "Alertmanager"
	SourceDrift        IncidentSource = "Drift"
	SourceManual       IncidentSource = "Manual"
)

// StaleNotification starts the API server's refusal of an alert's
// notification older than what its incident holds (the rules on
// IncidentSpec): Alertmanager's HA peers and retries deliver out of order,
// and an alert is ordered by its own times, as Alertmanager merges it.
const StaleNotification = "stale notification"

// NewEpisode starts the API server's refusal to reopen a resolved alert's
// incident for a notification that started after the stored end: the alert
// fired again, and intake stores that episode as a new incident, leaving
// the record of the first as it was.
const NewEpisode = "new episode"

// AlertStatus is the alert's own state as its source last reported it.
// +kubebuilder:validation:Enum=firing;resolved
type AlertStatus string

const (
	AlertFiring   AlertStatus = "firing"
	AlertResolved AlertStatus = "resolved"
)

// IncidentSpec is what intake saw. It belongs to whoever opened the incident
// (the Alertmanager receiver, the drift detector or a person); Riposte's
// controllers never change it.
// +kubebuilder:validation:XValidation:rule="self.source != 'Alertmanager' || size(self.fingerprint) > 0",message="an Alertmanager incident needs the alert's fingerprint"
// +kubebuilder:validation:XValidation:rule="self.source != 'Manual' || has(self.requestedBy)",message="a Manual incident names who opened it in requestedBy"
// +kubebuilder:validation:XValidation:rule="has(self.requestedBy) == has(oldSelf.requestedBy) && (!has(self.requestedBy) || self.requestedBy == oldSelf.requestedBy)",message="requestedBy is immutable"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.undo) || has(self.undo)",message="an undo request cannot be withdrawn"
// +kubebuilder:validation:XValidation:rule="self.source != 'Drift' || has(self.drift)",message="a Drift incident names its playbook and rule in spec.drift"
// +kubebuilder:validation:XValidation:rule="has(self.drift) == has(oldSelf.drift)",message="spec.drift cannot be added or removed"
// +kubebuilder:validation:XValidation:rule="oldSelf.source != 'Alertmanager' || !(has(oldSelf.status) && oldSelf.status == 'resolved' && has(self.status) && self.status == 'firing' && has(oldSelf.endsAt) && (!has(self.startsAt) || self.startsAt <= oldSelf.endsAt))",message="stale notification: the alert fired at startsAt (or gave none) and was already stored as resolved at a later endsAt; a new firing needs a startsAt after the stored endsAt"
// +kubebuilder:validation:XValidation:rule="oldSelf.source != 'Alertmanager' || !(has(oldSelf.status) && oldSelf.status == 'resolved' && has(oldSelf.endsAt) && has(self.startsAt) && self.startsAt > oldSelf.endsAt && (!has(oldSelf.startsAt) || self.startsAt != oldSelf.startsAt))",message="new episode: the alert started again after its stored resolution; it is stored as a new incident and this one is kept as it was"
// +kubebuilder:validation:XValidation:rule="oldSelf.source != 'Alertmanager' || !(has(oldSelf.status) && oldSelf.status == 'firing' && has(self.status) && self.status == 'resolved' && has(oldSelf.startsAt) && has(self.endsAt) && self.endsAt < oldSelf.startsAt)",message="stale notification: the resolution ends before the stored firing started, so it is an earlier episode's"
type IncidentSpec struct {
	// source says who opened the incident.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="source is immutable"
	Source IncidentSource `json:"source"`
	// alertName is the alert's name: its alertname label, else the label its
	// source names it by (Falco's rule, KubeArmor's PolicyName), else
	// UnnamedAlert; or a short title for a manual or drift incident.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	AlertName string `json:"alertName"`
	// fingerprint identifies the alert at its source; the incident's name is
	// derived from it, so repeated notifications update one incident.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="fingerprint is immutable"
	Fingerprint string `json:"fingerprint,omitempty"`
	// severity as the source labelled it, for example critical, warning or info.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Severity string `json:"severity,omitempty"`
	// status is the alert's own state: firing, or resolved once its source says so.
	// +optional
	// +kubebuilder:default=firing
	Status AlertStatus `json:"status,omitempty"`
	// labels of the alert.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Labels map[string]string `json:"labels,omitempty"`
	// annotations of the alert (summary, description, runbook).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Annotations map[string]string `json:"annotations,omitempty"`
	// startsAt is when the source saw the alert begin.
	// +optional
	StartsAt *metav1.Time `json:"startsAt,omitempty"`
	// endsAt is when the source saw the alert end, once resolved.
	// +optional
	EndsAt *metav1.Time `json:"endsAt,omitempty"`
	// generatorURL links back to the rule that fired.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	GeneratorURL string `json:"generatorURL,omitempty"`
	// target names the affected object explicitly; when set it wins over what
	// the labels say. It is a person's request: in the incident's own
	// namespace only, set by the user named in targetSetBy (or requestedBy),
	// checked by the API server (config/policies), and never approved
	// automatically.
	// +optional
	Target *ObjectReference `json:"target,omitempty"`
	// targetSetBy is the user who pointed an existing incident at target; the
	// API server checks it is the caller. That person counts as the
	// requester: they may not approve the plan they asked for.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	TargetSetBy string `json:"targetSetBy,omitempty"`
	// requesterGroups are groups of the requester (requestedBy or
	// targetSetBy) that Riposte may count when it checks the requester could
	// make the plan's writes themselves; the API server checks the caller is
	// in each (kubectl auth whoami lists yours).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	RequesterGroups []string `json:"requesterGroups,omitempty"`
	// requestedBy is the user who opened a Manual incident. The API server
	// checks it is the caller (config/policies), and by default that person
	// may not approve the incident's remediation.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RequestedBy string `json:"requestedBy,omitempty"`
	// undo asks Riposte to put back what the remediation changed, in reverse
	// order. The API server checks requestedBy is the caller and that the
	// caller holds the verb "undo" on incidents (config/policies).
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="an undo request cannot be changed once made"
	Undo *UndoRequest `json:"undo,omitempty"`
	// escalated keeps temporary containment in place: steps with a duration
	// are not undone when it runs out.
	// +optional
	Escalated bool `json:"escalated,omitempty"`
	// drift says which playbook rule a Drift incident breaks; only that
	// playbook answers it.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self.playbook == oldSelf.playbook && self.rule == oldSelf.rule",message="the playbook and rule of a drift incident are immutable"
	Drift *DriftFinding `json:"drift,omitempty"`
}

// DriftFinding is what the drift detector found.
type DriftFinding struct {
	// playbook whose rule the object breaks.
	// +required
	Playbook NamespacedName `json:"playbook"`
	// rule broken: a drift rule's name, or policy/rule of a PolicyReport result.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=507
	Rule string `json:"rule"`
	// source is the object the finding was read from: the object itself, or
	// the PolicyReport that reported it.
	// +required
	Source ObjectReference `json:"source"`
	// resolution says why the finding ended: Complies, NotSelected,
	// ObjectDeleted, ReportRemoved, RuleRemoved or PlaybookRemoved.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Resolution string `json:"resolution,omitempty"`
}

// Drift resolutions.
const (
	DriftComplies        = "Complies"
	DriftNotSelected     = "NotSelected"
	DriftObjectDeleted   = "ObjectDeleted"
	DriftReportRemoved   = "ReportRemoved"
	DriftRuleRemoved     = "RuleRemoved"
	DriftPlaybookRemoved = "PlaybookRemoved"
)

// UndoRequest is a person's request to undo an incident's remediation.
type UndoRequest struct {
	// requestedBy is the user asking; it must be the caller.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	RequestedBy string `json:"requestedBy"`
	// reason, for the record.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
}

// IncidentPhase is where an incident stands, for people reading kubectl get.
// +kubebuilder:validation:Enum=Detected;Unmatched;AwaitingApproval;Held;Remediating;Remediated;Rejected;Failed;Resolved;DryRun;Cancelled;Undone
type IncidentPhase string

const (
	// PhaseDetected: stored, not yet matched to a playbook.
	PhaseDetected IncidentPhase = "Detected"
	// PhaseUnmatched: no playbook answers this incident.
	PhaseUnmatched IncidentPhase = "Unmatched"
	// PhaseAwaitingApproval: a plan waits behind its ApprovalGate.
	PhaseAwaitingApproval IncidentPhase = "AwaitingApproval"
	// PhaseHeld: the plan is approved, and a guardrail that says "not now"
	// (the pause switch, a playbook's limits, the cluster's budget) holds it
	// back; the Held condition says which. It runs once the hold lifts.
	PhaseHeld IncidentPhase = "Held"
	// PhaseRemediating: the approved plan is being applied.
	PhaseRemediating IncidentPhase = "Remediating"
	// PhaseRemediated: every step of the approved plan was applied.
	PhaseRemediated IncidentPhase = "Remediated"
	// PhaseRejected: the gate was rejected or expired; nothing was applied.
	PhaseRejected IncidentPhase = "Rejected"
	// PhaseFailed: a step failed or the plan could not be built; see conditions.
	PhaseFailed IncidentPhase = "Failed"
	// PhaseResolved: the alert resolved after the incident was handled.
	PhaseResolved IncidentPhase = "Resolved"
	// PhaseCancelled: the pending plan was withdrawn because its target is gone.
	PhaseCancelled IncidentPhase = "Cancelled"
	// PhaseDryRun: the plan was approved, but the playbook is in DryRun mode and nothing was applied.
	PhaseDryRun IncidentPhase = "DryRun"
	// PhaseUndone: what the remediation changed was put back, on request.
	PhaseUndone IncidentPhase = "Undone"
)

// Closed reports whether an incident in this phase is over: nothing waits
// on a person or on Riposte. Remediated is not (its changes are in place
// until the alert resolves), nor is Failed (a person must look).
func (p IncidentPhase) Closed() bool {
	switch p {
	case PhaseResolved, PhaseUndone, PhaseRejected, PhaseCancelled, PhaseDryRun, PhaseUnmatched:
		return true
	}
	return false
}

// Incident condition types and reasons.
const (
	// IncidentEnriched: the target and its context were resolved.
	IncidentEnriched = "Enriched"
	// IncidentMatched: a playbook answers this incident.
	IncidentMatched = "Matched"
	// IncidentPlanned: a plan was built and dry-run by the API server.
	IncidentPlanned = "Planned"
	// IncidentApproved: the plan's gate was approved.
	IncidentApproved = "Approved"
	// IncidentRemediated: the approved plan was applied.
	IncidentRemediated = "Remediated"
	// IncidentContextTruncated: some context lists were cut to keep the
	// incident small; the message says which and how much.
	IncidentContextTruncated = "ContextTruncated"
	// IncidentHeld: a guardrail holds the approved plan back for now (a pause,
	// a rate limit, a cap or the cluster's budget); it runs when the guardrail
	// allows.
	IncidentHeld = "Held"
	// IncidentUndone: the remediation's changes were put back.
	IncidentUndone = "Undone"
	// IncidentDeletionBlocked: the incident was deleted while changes it
	// applied are still in place; it stays until they are undone.
	IncidentDeletionBlocked = "DeletionBlocked"
	// IncidentRecorded: the record of the incident's latest milestone is
	// stored in the record sink (True), or waits for it (False, reason
	// RecordPending): a deleted incident stays until its record is stored.
	IncidentRecorded = "Recorded"
	// ReasonRecordStored: the record is in the sink.
	ReasonRecordStored = "RecordStored"
	// ReasonRecordPending: the record waits for the sink.
	ReasonRecordPending = "RecordPending"

	// RecordFinalizer keeps an incident whose remediation is applied until
	// its changes are undone and its record is written out.
	RecordFinalizer = "riposte.dev/remediation-record"

	ReasonTargetResolved     = "TargetResolved"
	ReasonTargetNotFound     = "TargetNotFound"
	ReasonNoTarget           = "NoTarget"
	ReasonPlaybookMatched    = "PlaybookMatched"
	ReasonNoPlaybook         = "NoPlaybookMatched"
	ReasonPlanReady          = "PlanReady"
	ReasonPlanFailed         = "PlanFailed"
	ReasonGuardrail          = "GuardrailRefused"
	ReasonAwaitingApproval   = "AwaitingApproval"
	ReasonApproved           = "Approved"
	ReasonRejected           = "Rejected"
	ReasonExpired            = "Expired"
	ReasonPlanChanged        = "PlanChanged"
	ReasonStepsApplied       = "StepsApplied"
	ReasonStepFailed         = "StepFailed"
	ReasonDryRun             = "DryRunOnly"
	ReasonAlertResolved      = "AlertResolved"
	ReasonTargetGone         = "TargetGone"
	ReasonTruncated          = "Truncated"
	ReasonSuperseded         = "Superseded"
	ReasonProgressing        = "Progressing"
	ReasonWaitingOnApproval  = "WaitingOnApproval"
	ReasonPaused             = "Paused"
	ReasonRateLimited        = "RateLimited"
	ReasonConcurrencyLimit   = "ConcurrencyLimit"
	ReasonBudgetExhausted    = "BudgetExhausted"
	ReasonNotHeld            = "NotHeld"
	ReasonUndone             = "Undone"
	ReasonUndoFailed         = "UndoFailed"
	ReasonContainmentExpired = "ContainmentExpired"
	ReasonRemediationApplied = "RemediationInPlace"
	ReasonRequestRefused     = "RequestRefused"
	ReasonRequesterNoAccess  = "RequesterLacksAccess"
	ReasonGateMissing        = "GateMissing"
	// ReasonDecisionsUnverifiable: a gate holds decisions recorded while the
	// decision policy was not provably in force.
	ReasonDecisionsUnverifiable = "DecisionsUnverifiable"
)

// OwnerReference is one link of a workload's owner chain.
type OwnerReference struct {
	// apiVersion of the owner.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	APIVersion string `json:"apiVersion,omitempty"`
	// kind of the owner.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// name of the owner.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// IncidentContext is what Riposte learned about the incident from the live
// cluster. It is bounded: lists are truncated, and never holds Secret data or
// environment values.
type IncidentContext struct {
	// target is the object the incident is about, as resolved.
	// +optional
	Target *ObjectReference `json:"target,omitempty"`
	// ownerChain lists the target's owners from the nearest to the top controller.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	OwnerChain []OwnerReference `json:"ownerChain,omitempty"`
	// images the target's containers run.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Images []string `json:"images,omitempty"`
	// node the target pod is scheduled on.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node,omitempty"`
	// serviceAccountName the target pod runs as.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// targetLabels are the target's own labels.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	TargetLabels map[string]string `json:"targetLabels,omitempty"`
	// container the alert named, when it named one.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Container string `json:"container,omitempty"`
	// replicas the top controller asks for, when it has replicas.
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// containers of the target pod with the image digests the kubelet reported.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Containers []ContainerInfo `json:"containers,omitempty"`
	// riskFlags are what the pod spec allows that an attacker would want:
	// Privileged, HostNetwork, HostPID, HostIPC, HostPath:<path>, RunsAsRoot,
	// AddedCapability:<cap>, PrivilegeEscalation, ServiceAccountToken.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=512
	RiskFlags []string `json:"riskFlags,omitempty"`
	// identity is what the target's service account may do.
	// +optional
	Identity *IdentityContext `json:"identity,omitempty"`
	// exposure is how the target can be reached, and whether it is isolated.
	// +optional
	Exposure *ExposureContext `json:"exposure,omitempty"`
	// timeline is what happened around the target, oldest first: Kubernetes
	// Events of the target, its owners and its node, the alert's start, and
	// Riposte's own steps.
	// +optional
	// +kubebuilder:validation:MaxItems=40
	Timeline []TimelineEntry `json:"timeline,omitempty"`
	// relatedIncidents are other incidents about the same workload or node in
	// the last day, by name in this namespace.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	RelatedIncidents []string `json:"relatedIncidents,omitempty"`
	// truncated names the lists that were cut to keep the status small, with
	// how many entries there were.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=128
	Truncated []string `json:"truncated,omitempty"`
}

// ContainerInfo is one container of the target pod.
type ContainerInfo struct {
	// name of the container.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// image as the pod spec names it.
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Image string `json:"image"`
	// imageID is the resolved image with its digest, as the kubelet reported it.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	ImageID string `json:"imageID,omitempty"`
}

// IdentityContext is what the target's service account is bound to.
type IdentityContext struct {
	// serviceAccount as namespace/name.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// roles bound to the service account, as Kind/[namespace/]name via binding.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	Roles []string `json:"roles,omitempty"`
	// permissions summarises the effective rules, one "verbs resources" line each.
	// +optional
	// +kubebuilder:validation:MaxItems=40
	// +kubebuilder:validation:items:MaxLength=1024
	Permissions []string `json:"permissions,omitempty"`
	// dangerous calls out what an attacker would use: reading Secrets,
	// creating pods, pods/exec, wildcards, escalate, bind, impersonate.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=512
	Dangerous []string `json:"dangerous,omitempty"`
}

// ExposureContext is how the target can be reached.
type ExposureContext struct {
	// services that select the target, as name:port,port.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=512
	Services []string `json:"services,omitempty"`
	// ingresses that route to those services, as name (hosts).
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=1024
	Ingresses []string `json:"ingresses,omitempty"`
	// routes are Gateway API HTTPRoutes sending traffic to those services,
	// as name (hostnames), when that API is installed.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=1024
	Routes []string `json:"routes,omitempty"`
	// networkPolicies that select the target.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	NetworkPolicies []string `json:"networkPolicies,omitempty"`
	// isolated is true when a policy selecting the target denies all ingress
	// and egress (Riposte's quarantine or the user's own).
	// +optional
	Isolated bool `json:"isolated,omitempty"`
}

// TimelineEntry is one thing that happened around the incident.
type TimelineEntry struct {
	// time it happened.
	// +required
	Time metav1.Time `json:"time"`
	// source: Event, Alert or Riposte.
	// +required
	// +kubebuilder:validation:MaxLength=32
	Source string `json:"source"`
	// object it happened to, as Kind/name.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Object string `json:"object,omitempty"`
	// reason, as the Event or step gave it.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Reason string `json:"reason,omitempty"`
	// message, truncated.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// StepPhase is the outcome of one applied step.
// +kubebuilder:validation:Enum=Pending;Applying;Applied;Failed;Skipped;Undone
type StepPhase string

const (
	// StepPending: the step is part of the committed plan; its prior state
	// is recorded and it has not started.
	StepPending StepPhase = "Pending"
	// StepApplying: the step's prior state is recorded and its writes are
	// under way; after a crash they are completed, not repeated blindly.
	StepApplying StepPhase = "Applying"
	StepApplied  StepPhase = "Applied"
	StepFailed   StepPhase = "Failed"
	StepSkipped  StepPhase = "Skipped"
	StepUndone   StepPhase = "Undone"
)

// ChangeRecord is one write a step made, with what is needed to undo it.
type ChangeRecord struct {
	// operation is what was done to the object.
	// +required
	Operation ChangeOperation `json:"operation"`
	// object that was written.
	// +required
	Object ObjectReference `json:"object"`
	// fieldManager under which Riposte applied the change; undoing it releases
	// exactly these fields.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	FieldManager string `json:"fieldManager,omitempty"`
	// existedBefore is true when the object was there before the step, so an
	// undo patches it back rather than deleting it.
	// +optional
	ExistedBefore bool `json:"existedBefore,omitempty"`
	// undo says how this change is undone: Restore (merge the prior values in
	// restore back), Delete (Riposte created the object), Recreate (restore
	// holds the deleted object), Expire (the silence whose ID is in restore),
	// Release (drop this incident's hold on a quarantined pod), Keep (shared
	// with other incidents, left in place) or None (cannot be undone: an
	// eviction, a message).
	// +optional
	Undo UndoMethod `json:"undo,omitempty"`
	// restore is the prior state undo needs: a JSON merge patch that puts back
	// the fields the change set, or the object to re-create. Captured before
	// the write.
	// +optional
	// +kubebuilder:validation:MaxLength=32768
	Restore string `json:"restore,omitempty"`
	// method is how the change is written: Apply (server-side apply),
	// MergePatch, Delete, Evict, Send or Silence.
	// +optional
	// +kubebuilder:validation:Enum=Apply;MergePatch;Delete;Evict;Send;Silence
	Method string `json:"method,omitempty"`
	// request is exactly what is written: the apply body, the merge patch, or
	// the message posted (never the webhook URL). Recorded before the write, so
	// a restart completes the step from the record rather than planning again.
	// A quarantine hold (undo Release) is written against the pod as it then
	// is, so other incidents' holds are kept, and request becomes the patch
	// written.
	// +optional
	// +kubebuilder:validation:MaxLength=32768
	Request string `json:"request,omitempty"`
	// done is true once the write happened (or was found already in place).
	// +optional
	Done bool `json:"done,omitempty"`
	// summary says in a line what changed, for people.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Summary string `json:"summary,omitempty"`
}

// UndoMethod is how a recorded change is undone.
// +kubebuilder:validation:Enum=Restore;Delete;Recreate;Expire;Release;Keep;None
type UndoMethod string

const (
	UndoRestore  UndoMethod = "Restore"
	UndoDelete   UndoMethod = "Delete"
	UndoRecreate UndoMethod = "Recreate"
	// UndoExpire expires the Alertmanager silence whose ID is in restore.
	UndoExpire UndoMethod = "Expire"
	// UndoRelease removes the incident named in restore from a pod's
	// quarantine holders; the pod stays isolated while another holds it.
	UndoRelease UndoMethod = "Release"
	UndoKeep    UndoMethod = "Keep"
	UndoNone    UndoMethod = "None"
)

// StepRecord is the audit record of one step of the approved plan.
type StepRecord struct {
	// name of the step in the playbook.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// action the step ran.
	// +required
	Action ActionType `json:"action"`
	// phase is the step's outcome.
	// +required
	Phase StepPhase `json:"phase"`
	// target the step acted on.
	// +optional
	Target *ObjectReference `json:"target,omitempty"`
	// changes the step made, in order.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Changes []ChangeRecord `json:"changes,omitempty"`
	// startedAt is when the step began.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// completedAt is when the step finished.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// undoAt is when Riposte undoes this temporary containment by itself.
	// +optional
	UndoAt *metav1.Time `json:"undoAt,omitempty"`
	// undoneAt is when the step was undone.
	// +optional
	UndoneAt *metav1.Time `json:"undoneAt,omitempty"`
	// undoneBy is who asked for the undo, or "riposte" when its duration ran out.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	UndoneBy string `json:"undoneBy,omitempty"`
	// message explains a failure or a skip.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// IncidentStatus is everything Riposte learned and did. It belongs to the
// controller.
type IncidentStatus struct {
	// conditions: Enriched, Matched, Planned, Approved, Remediated, and Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// phase summarises where the incident stands.
	// +optional
	Phase IncidentPhase `json:"phase,omitempty"`
	// context is what Riposte learned from the live cluster.
	// +optional
	Context *IncidentContext `json:"context,omitempty"`
	// playbook that answers the incident.
	// +optional
	Playbook *NamespacedName `json:"playbook,omitempty"`
	// gateRevision counts the gates opened for this incident: a plan that
	// changed after approval supersedes its gate with a new one.
	// +optional
	GateRevision int32 `json:"gateRevision,omitempty"`
	// approvalGate is the name of the gate holding the plan, in the incident's namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ApprovalGate string `json:"approvalGate,omitempty"`
	// approvalGateUID is the UID of the gate Riposte created: a gate of the
	// same name with any other UID (deleted and re-created) is not this
	// incident's and decides nothing.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ApprovalGateUID string `json:"approvalGateUID,omitempty"`
	// autoApproval is the automatic verdict of a plan no person had to
	// decide, recorded with the plan it approved instead of in an
	// ApprovalGate: plans people decide always have a gate.
	// +optional
	AutoApproval *AutoApproval `json:"autoApproval,omitempty"`
	// withdrawnGates are the gates this incident no longer waits on, and
	// why: its alert resolved or its target went before a decision, an undo,
	// a plan that changed after approval, decisions that could not be
	// verified. The ApprovalGate controller, the only writer of a gate's
	// status, closes each so.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	WithdrawnGates []WithdrawnGate `json:"withdrawnGates,omitempty"`
	// planHash is the hash of the plan that was approved and applied.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	PlanHash string `json:"planHash,omitempty"`
	// runAs is the identity every write of the remediation (and its undo)
	// used: the playbook's service account, impersonated.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	RunAs string `json:"runAs,omitempty"`
	// steps records each step of the plan as it was applied.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Steps []StepRecord `json:"steps,omitempty"`
	// detectedAt is when Riposte first stored the incident.
	// +optional
	DetectedAt *metav1.Time `json:"detectedAt,omitempty"`
	// enrichedAt is when the context was resolved.
	// +optional
	EnrichedAt *metav1.Time `json:"enrichedAt,omitempty"`
	// approvedAt is when the gate was approved.
	// +optional
	ApprovedAt *metav1.Time `json:"approvedAt,omitempty"`
	// remediatedAt is when the last step was applied.
	// +optional
	RemediatedAt *metav1.Time `json:"remediatedAt,omitempty"`
	// resolvedAt is when the alert resolved after remediation.
	// +optional
	ResolvedAt *metav1.Time `json:"resolvedAt,omitempty"`
	// closedAt is when the incident reached the phase it ends in (Resolved,
	// Undone, Rejected, Cancelled, DryRun or Unmatched); it is cleared if
	// the incident opens again. Retention counts an incident's age from here.
	// +optional
	ClosedAt *metav1.Time `json:"closedAt,omitempty"`
	// stages are when the incident reached each stage of time to
	// remediate, to the microsecond: the times above are stored to the
	// second, and an automatic remediation takes milliseconds. Reports and
	// the stage metric split time to remediate by these.
	// +optional
	Stages *StageTimes `json:"stages,omitempty"`
	// record is the last record of this incident stored in the record sink
	// (the tamper-evident trail that outlives the object): the milestone it
	// was written at, and its place in the chain, which kubectl riposte
	// verify --expect-head checks the sink still holds.
	// +optional
	Record *RecordReference `json:"record,omitempty"`
}

// StageTimes are the times an incident reached the stages of time to
// remediate, each set by the status write that reaches it (and cleared with
// it when a superseded plan is decided again).
type StageTimes struct {
	// detected is when the incident was stored: when Riposte first took it
	// up, if within a second of its creation (which is stored to the
	// second), else its creation time.
	// +optional
	Detected *metav1.MicroTime `json:"detected,omitempty"`
	// enriched is when its context was last resolved.
	// +optional
	Enriched *metav1.MicroTime `json:"enriched,omitempty"`
	// decided is when its plan was approved: by policy, or the gate's
	// decision (which people make to the second).
	// +optional
	Decided *metav1.MicroTime `json:"decided,omitempty"`
	// remediated is when the plan's last step was applied.
	// +optional
	Remediated *metav1.MicroTime `json:"remediated,omitempty"`
}

// RecordReference is where an incident's record stands in the chain.
type RecordReference struct {
	// milestone is the phase the record was written at, or Deleted.
	// +required
	// +kubebuilder:validation:MaxLength=32
	Milestone string `json:"milestone"`
	// sequence is the record's place in the cluster's chain, from 1.
	// +required
	// +kubebuilder:validation:Minimum=1
	Sequence int64 `json:"sequence"`
	// hash is the record's SHA-256 ("sha256:" and hex), which the next
	// record names.
	// +required
	// +kubebuilder:validation:MaxLength=80
	Hash string `json:"hash"`
	// storedAt is when the sink stored it.
	// +required
	StoredAt metav1.Time `json:"storedAt"`
}

// WithdrawnGate is a gate an incident no longer waits on.
type WithdrawnGate struct {
	// name of the gate, in the incident's namespace.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// uid of the gate: only that gate is closed.
	// +required
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid"`
	// phase the gate is closed with.
	// +required
	// +kubebuilder:validation:Enum=Cancelled;Superseded
	Phase GatePhase `json:"phase"`
	// reason, a CamelCase word, and message say why.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Reason string `json:"reason"`
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
}

// AutoApproval is the playbook rule that approved a plan without a person.
type AutoApproval struct {
	// playbookGeneration is the generation of the playbook whose
	// approval.autoApprove decided.
	// +required
	PlaybookGeneration int64 `json:"playbookGeneration"`
	// rule is the autoApprove.when expression that held; empty when the
	// playbook approves every plan it makes.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Rule string `json:"rule,omitempty"`
	// planHash is the hash of the plan the rule approved.
	// +required
	// +kubebuilder:validation:MaxLength=128
	PlanHash string `json:"planHash"`
	// decidedAt is when the rule was evaluated.
	// +required
	DecidedAt metav1.Time `json:"decidedAt"`
}

// Incident is one security alert, drift finding or reported problem, and
// everything Riposte learned and did about it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=inc,categories=riposte
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Severity",type=string,JSONPath=`.spec.severity`
// +kubebuilder:printcolumn:name="Alert",type=string,JSONPath=`.spec.alertName`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.context.target.name`
// +kubebuilder:printcolumn:name="Playbook",type=string,JSONPath=`.status.playbook.name`
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Incident struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec IncidentSpec `json:"spec"`
	// +optional
	Status IncidentStatus `json:"status,omitempty"`
}

// IncidentList is a list of Incidents.
// +kubebuilder:object:root=true
type IncidentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Incident `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Incident{}, &IncidentList{})
}
