package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// MatchOperator compares an alert label with a value, as Alertmanager's own
// matchers do.
// +kubebuilder:validation:Enum="=";"!=";"=~";"!~"
type MatchOperator string

const (
	MatchEqual     MatchOperator = "="
	MatchNotEqual  MatchOperator = "!="
	MatchRegexp    MatchOperator = "=~"
	MatchNotRegexp MatchOperator = "!~"
)

// LabelMatcher selects alerts by one label.
type LabelMatcher struct {
	// name of the label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`
	// operator compares the label's value: =, !=, =~ or !~ (regular
	// expressions are anchored, as in Alertmanager).
	// +optional
	// +kubebuilder:default="="
	Operator MatchOperator `json:"operator,omitempty"`
	// value to compare with; a regular expression for =~ and !~.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value,omitempty"`
}

// AlertTrigger selects the alerts a playbook answers. Every field given must
// match; an empty list matches anything.
type AlertTrigger struct {
	// alertNames the trigger answers; empty means any alert name.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	AlertNames []string `json:"alertNames,omitempty"`
	// severities the trigger answers; empty means any severity.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=63
	Severities []string `json:"severities,omitempty"`
	// matchers on the alert's labels, all of which must hold.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Matchers []LabelMatcher `json:"matchers,omitempty"`
}

// Triggers say which incidents a playbook answers.
// +kubebuilder:validation:XValidation:rule="(has(self.alerts) && size(self.alerts) > 0) || (has(self.drift) && size(self.drift) > 0) || (has(self.policyReports) && size(self.policyReports) > 0)",message="a playbook needs at least one trigger"
type Triggers struct {
	// alerts answered by this playbook; any one trigger matching is enough.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Alerts []AlertTrigger `json:"alerts,omitempty"`
	// drift rules: conditions every selected object must meet. Riposte
	// watches the kinds they name and opens an Incident for each object that
	// breaks a rule, and resolves it when the object complies again.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Drift []DriftRule `json:"drift,omitempty"`
	// policyReports select failed results from PolicyReports
	// (wgpolicyk8s.io, written by Kyverno, Kubewarden and other policy
	// engines) and OpenReports (openreports.io) as drift, when those APIs
	// are installed.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	PolicyReports []PolicyReportTrigger `json:"policyReports,omitempty"`
}

// ResourceKind names a kind of object by its API version and kind.
type ResourceKind struct {
	// apiVersion of the kind, for example "v1" or "networking.k8s.io/v1".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	APIVersion string `json:"apiVersion"`
	// kind, for example "Pod".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
}

// DriftLookup declares other objects a rule may look at, so a rule can say
// that something must exist ("the namespace has a default-deny policy").
type DriftLookup struct {
	// name under which the rule sees the objects: lookups.<name> is a list.
	// +required
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]{0,62}$`
	Name string `json:"name"`
	// resource is the kind looked up. Namespaced kinds are listed in the
	// object's namespace (for a Namespace, in that namespace itself);
	// cluster-scoped kinds are listed whole.
	// +required
	Resource ResourceKind `json:"resource"`
}

// PodController is a kind of workload whose pod template a Pod rule judges.
// +kubebuilder:validation:Enum=Deployment;DaemonSet;StatefulSet;ReplicaSet;Job;CronJob;None
type PodController string

const (
	PodControllerDeployment  PodController = "Deployment"
	PodControllerDaemonSet   PodController = "DaemonSet"
	PodControllerStatefulSet PodController = "StatefulSet"
	PodControllerReplicaSet  PodController = "ReplicaSet"
	PodControllerJob         PodController = "Job"
	PodControllerCronJob     PodController = "CronJob"
	// PodControllerNone judges pods only.
	PodControllerNone PodController = "None"
)

// DriftRule is a condition that every selected object must meet.
// +kubebuilder:validation:XValidation:rule="!has(self.podControllers) || (self.resource.apiVersion == 'v1' && self.resource.kind == 'Pod')",message="podControllers is only for rules whose resource is v1 Pod"
// +kubebuilder:validation:XValidation:rule="!has(self.podControllers) || !('None' in self.podControllers) || size(self.podControllers) == 1",message="podControllers None stands alone"
type DriftRule struct {
	// name of the rule, unique in the playbook; incidents carry it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// resource is the kind of object the rule judges.
	// +required
	Resource ResourceKind `json:"resource"`
	// namespaceSelector limits the rule to objects in namespaces with these
	// labels (for a Namespace, its own labels); empty means every namespace
	// in the playbook's scope.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// objectSelector limits the rule to objects with these labels.
	// +optional
	ObjectSelector *metav1.LabelSelector `json:"objectSelector,omitempty"`
	// rule is a CEL expression that must be true for a compliant object, in
	// the conventions of ValidatingAdmissionPolicy: `object` is the object,
	// `namespaceObject` its Namespace (null for cluster-scoped objects), and
	// `lookups.<name>` the objects each lookup declares.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Rule string `json:"rule"`
	// lookups declare the other objects the rule reads.
	// +optional
	// +kubebuilder:validation:MaxItems=4
	// +listType=map
	// +listMapKey=name
	Lookups []DriftLookup `json:"lookups,omitempty"`
	// message says what is wrong, for the incident's summary.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`
	// messageExpression, when set, is a CEL expression returning a string
	// that replaces message, so it can name the offending container.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	MessageExpression string `json:"messageExpression,omitempty"`
	// severity of the incidents the rule opens.
	// +optional
	// +kubebuilder:default=warning
	// +kubebuilder:validation:MaxLength=63
	Severity string `json:"severity,omitempty"`
	// podControllers, for a rule whose resource is v1 Pod, are the workload
	// kinds whose pod templates the rule also judges, so a Deployment that
	// would create breaking pods is drift before they exist (as Kyverno's
	// autogen does). The rule sees the template as a Pod; objectSelector
	// matches the template's labels. Empty means all of them; [None] judges
	// pods only, for a rule that reads what only a running pod has (status,
	// nodeName).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=7
	PodControllers []PodController `json:"podControllers,omitempty"`
}

// PolicyReportResult is a PolicyReport result's verdict.
// +kubebuilder:validation:Enum=fail;error;warn
type PolicyReportResult string

// PolicyReportTrigger selects PolicyReport results a playbook answers. Every
// field given must match; an empty list matches anything.
type PolicyReportTrigger struct {
	// policies whose results are answered; empty means any policy.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	Policies []string `json:"policies,omitempty"`
	// rules whose results are answered; empty means any rule.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=253
	Rules []string `json:"rules,omitempty"`
	// results answered; by default only fail.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	Results []PolicyReportResult `json:"results,omitempty"`
	// severities answered (critical, high, medium, low, info); empty means any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5
	// +kubebuilder:validation:items:MaxLength=63
	Severities []string `json:"severities,omitempty"`
}

// IsolatePodParams tunes the IsolatePod and IsolateWorkload actions.
type IsolatePodParams struct {
	// allowDNS keeps egress to DNS (UDP and TCP port 53) open so the pod's
	// logs stay readable; by default the pod is cut off entirely.
	// +optional
	AllowDNS bool `json:"allowDNS,omitempty"`
}

// ScaleParams tunes ScaleWorkload.
type ScaleParams struct {
	// replicas to scale the target's workload to; 0 stops it. Undo puts the
	// previous count back.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Replicas int32 `json:"replicas"`
}

// SubjectKind is the kind of an RBAC subject.
// +kubebuilder:validation:Enum=ServiceAccount;User;Group
type SubjectKind string

// BindingSubject names the subject RevokeBinding removes. Each field is a
// template: text with {{ CEL }} parts evaluated over `incident`.
type BindingSubject struct {
	// kind of the subject.
	// +optional
	// +kubebuilder:default=ServiceAccount
	Kind SubjectKind `json:"kind,omitempty"`
	// name of the subject, for example
	// "{{ incident.status.context.serviceAccount }}".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Name string `json:"name"`
	// namespace of a ServiceAccount subject; the target's namespace when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Namespace string `json:"namespace,omitempty"`
}

// BindingKind is RoleBinding or ClusterRoleBinding.
// +kubebuilder:validation:Enum=RoleBinding;ClusterRoleBinding
type BindingKind string

// RevokeBindingParams tunes RevokeBinding.
// +kubebuilder:validation:XValidation:rule="has(self.subject) != (has(self.deleteBinding) && self.deleteBinding)",message="name a subject to remove, or set deleteBinding, not both"
type RevokeBindingParams struct {
	// kind of the binding.
	// +optional
	// +kubebuilder:default=RoleBinding
	Kind BindingKind `json:"kind,omitempty"`
	// name of the binding (a template); a RoleBinding is looked up in the
	// target's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Name string `json:"name"`
	// subject to remove from the binding.
	// +optional
	Subject *BindingSubject `json:"subject,omitempty"`
	// deleteBinding deletes the whole binding instead; undo re-creates it.
	// +optional
	DeleteBinding bool `json:"deleteBinding,omitempty"`
}

// MetadataParams tunes Label and Annotate.
type MetadataParams struct {
	// set maps keys to values; each value is a template (text with
	// {{ CEL }} parts over `incident`).
	// +required
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=16
	Set map[string]string `json:"set"`
}

// TaintEffect is a node taint's effect.
// +kubebuilder:validation:Enum=NoSchedule;PreferNoSchedule;NoExecute
type TaintEffect string

// TaintParams tunes Taint.
type TaintParams struct {
	// key of the taint.
	// +optional
	// +kubebuilder:default="riposte.dev/compromised"
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
	// value of the taint (a template).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Value string `json:"value,omitempty"`
	// effect of the taint.
	// +optional
	// +kubebuilder:default=NoSchedule
	Effect TaintEffect `json:"effect,omitempty"`
}

// SecretKeyRef names one key of a Secret in the playbook's namespace.
type SecretKeyRef struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// key in the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// NotifyParams tunes Notify.
type NotifyParams struct {
	// urlSecretRef names the Secret key that holds the webhook URL (chat and
	// ticketing URLs are credentials). It is read as the playbook's service
	// account, and never logged or recorded.
	// +required
	URLSecretRef SecretKeyRef `json:"urlSecretRef"`
	// text of the message (a template). The body is JSON with "text" (what
	// Slack-compatible webhooks read) and an "incident" summary.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Text string `json:"text"`
}

// SilenceParams tunes Silence.
type SilenceParams struct {
	// duration of the silence; Riposte expires it earlier when the incident
	// is resolved or undone.
	// +optional
	// +kubebuilder:default="4h"
	Duration *metav1.Duration `json:"duration,omitempty"`
	// comment added to the silence (a template); Riposte adds the incident's name.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Comment string `json:"comment,omitempty"`
}

// OnFailure says what a failed step means for the steps after it.
// +kubebuilder:validation:Enum=Stop;Continue
type OnFailure string

const (
	OnFailureStop     OnFailure = "Stop"
	OnFailureContinue OnFailure = "Continue"
)

// Step is one remediation step of a playbook. Its parameters sit in the field
// named after its action; a field for another action is refused at admission.
// +kubebuilder:validation:XValidation:rule="!has(self.isolatePod) || self.action in ['IsolatePod', 'IsolateWorkload']",message="isolatePod parameters are only for the IsolatePod and IsolateWorkload actions"
// +kubebuilder:validation:XValidation:rule="has(self.scale) == (self.action == 'ScaleWorkload')",message="ScaleWorkload needs scale parameters, and only it takes them"
// +kubebuilder:validation:XValidation:rule="has(self.revokeBinding) == (self.action == 'RevokeBinding')",message="RevokeBinding needs revokeBinding parameters, and only it takes them"
// +kubebuilder:validation:XValidation:rule="has(self.metadata) == (self.action in ['Label', 'Annotate'])",message="Label and Annotate need metadata parameters, and only they take them"
// +kubebuilder:validation:XValidation:rule="!has(self.taint) || self.action == 'Taint'",message="taint parameters are only for the Taint action"
// +kubebuilder:validation:XValidation:rule="has(self.manifest) == (self.action == 'ApplyManifest')",message="ApplyManifest needs a manifest, and only it takes one"
// +kubebuilder:validation:XValidation:rule="has(self.patch) == (self.action == 'Patch')",message="Patch needs a patch, and only it takes one"
// +kubebuilder:validation:XValidation:rule="has(self.notify) == (self.action == 'Notify')",message="Notify needs notify parameters, and only it takes them"
// +kubebuilder:validation:XValidation:rule="!has(self.silence) || self.action == 'Silence'",message="silence parameters are only for the Silence action"
// +kubebuilder:validation:XValidation:rule="!has(self.duration) || !(self.action in ['DeletePod', 'EvictPod', 'DrainNode', 'RolloutRestart', 'Notify', 'Silence'])",message="a duration is only for containment Riposte can undo; this action cannot be undone (a silence has its own duration)"
type Step struct {
	// name of the step, unique in the playbook; step records carry it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// action from the catalogue.
	// +required
	Action ActionType `json:"action"`
	// onFailure says whether later steps still run when this one fails.
	// +optional
	// +kubebuilder:default=Stop
	OnFailure OnFailure `json:"onFailure,omitempty"`
	// duration makes the step temporary containment: Riposte undoes it this
	// long after it was applied, unless the incident was escalated.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// isolatePod parameters, for IsolatePod and IsolateWorkload.
	// +optional
	IsolatePod *IsolatePodParams `json:"isolatePod,omitempty"`
	// scale parameters, for ScaleWorkload.
	// +optional
	Scale *ScaleParams `json:"scale,omitempty"`
	// revokeBinding parameters, for RevokeBinding.
	// +optional
	RevokeBinding *RevokeBindingParams `json:"revokeBinding,omitempty"`
	// metadata parameters, for Label and Annotate (on the target).
	// +optional
	Metadata *MetadataParams `json:"metadata,omitempty"`
	// taint parameters, for Taint (on the target's node).
	// +optional
	Taint *TaintParams `json:"taint,omitempty"`
	// manifest is the object ApplyManifest applies: string values may hold
	// {{ CEL }} parts over `incident`; the namespace defaults to the target's.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Manifest *runtime.RawExtension `json:"manifest,omitempty"`
	// patch is the JSON merge patch Patch applies to the target; string
	// values may hold {{ CEL }} parts over `incident`.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Patch *runtime.RawExtension `json:"patch,omitempty"`
	// notify parameters, for Notify.
	// +optional
	Notify *NotifyParams `json:"notify,omitempty"`
	// silence parameters, for Silence.
	// +optional
	Silence *SilenceParams `json:"silence,omitempty"`
}

// ExpiryAction is what a gate's expiry means.
// +kubebuilder:validation:Enum=Reject;Approve
type ExpiryAction string

const (
	ExpiryReject  ExpiryAction = "Reject"
	ExpiryApprove ExpiryAction = "Approve"
)

// AutoApprove approves a gate without a person.
type AutoApprove struct {
	// when is a CEL expression over `incident` (the Incident as an object) that
	// must be true for the gate to be approved automatically; empty means always.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	When string `json:"when,omitempty"`
}

// ManualRequests says whether people may ask a playbook to act: through a
// Manual incident, or by pointing an alert's incident at a target of their
// choosing.
// +kubebuilder:validation:Enum=RequireAccess;Anyone;Refuse
type ManualRequests string

const (
	// ManualRequireAccess answers a person's request only when that person
	// may make every write of the plan themselves (a SubjectAccessReview per
	// write): Riposte never does for them what they could not do.
	ManualRequireAccess ManualRequests = "RequireAccess"
	// ManualAnyone answers anyone who may open an incident in the namespace;
	// people holding the verb approve decide.
	ManualAnyone ManualRequests = "Anyone"
	// ManualRefuse answers alerts and drift only.
	ManualRefuse ManualRequests = "Refuse"
)

// NamespacedReports says whether a finding read from a namespaced report
// (a PolicyReport or an openreports.io Report) may be approved automatically.
// +kubebuilder:validation:Enum=RequirePerson;Automatic
type NamespacedReports string

const (
	// NamespacedReportsRequirePerson has people decide: whoever may create
	// reports in the namespace wrote the finding, so autoApprove does not
	// apply and an expiry rejects.
	NamespacedReportsRequirePerson NamespacedReports = "RequirePerson"
	// NamespacedReportsAutomatic lets autoApprove decide, as for a
	// cluster-scoped report or a drift rule: for when only the policy
	// engine may write reports in the namespaces the playbook answers.
	NamespacedReportsAutomatic NamespacedReports = "Automatic"
)

// ApprovalPolicy says who or what must approve a playbook's plan.
// +kubebuilder:validation:XValidation:rule="!has(self.onExpiry) || self.onExpiry != 'Approve' || has(self.timeout)",message="onExpiry Approve needs a timeout"
type ApprovalPolicy struct {
	// autoApprove, when set, approves the gate at once if its expression holds;
	// otherwise people decide.
	// +optional
	AutoApprove *AutoApprove `json:"autoApprove,omitempty"`
	// requiredApprovals is how many distinct people must approve.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	RequiredApprovals int32 `json:"requiredApprovals,omitempty"`
	// timeout is how long a gate stays open for people to decide.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// onExpiry is what happens when the timeout passes undecided.
	// +optional
	// +kubebuilder:default=Reject
	OnExpiry ExpiryAction `json:"onExpiry,omitempty"`
	// allowRequester lets the person who opened the incident approve it.
	// +optional
	AllowRequester bool `json:"allowRequester,omitempty"`
	// manualRequests says whether people may ask this playbook to act
	// (a Manual incident, or a target they set on an incident): RequireAccess
	// (the default in a team's namespace) answers only someone who may make
	// every write of the plan themselves; Anyone answers whoever may open an
	// incident here; Refuse (the default for cluster-wide playbooks, in
	// Riposte's namespace) answers alerts and drift only. A person's request
	// is never approved automatically: autoApprove does not apply to it.
	// +optional
	ManualRequests ManualRequests `json:"manualRequests,omitempty"`
	// namespacedReports says whether autoApprove may approve a finding read
	// from a namespaced report (PolicyReport, openreports.io Report), which
	// anyone who may create reports in its namespace could have written:
	// RequirePerson (the default for cluster-wide playbooks, in Riposte's
	// namespace) has people decide; Automatic (the default in a team's
	// namespace, where the report and the objects it names are the team's
	// own) lets autoApprove decide. Cluster-scoped reports and drift rules
	// are not concerned.
	// +optional
	NamespacedReports NamespacedReports `json:"namespacedReports,omitempty"`
	// requiredRejections is how many distinct people must reject to close the
	// gate; the default 1 means any reject vetoes.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	RequiredRejections int32 `json:"requiredRejections,omitempty"`
}

// PlaybookMode says whether a playbook's plans are applied.
// +kubebuilder:validation:Enum=Enforce;DryRun
type PlaybookMode string

const (
	ModeEnforce PlaybookMode = "Enforce"
	ModeDryRun  PlaybookMode = "DryRun"
)

// Limits bound how often a playbook acts.
type Limits struct {
	// maxPerHour is how many remediations the playbook may start in an hour.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxPerHour *int32 `json:"maxPerHour,omitempty"`
	// maxConcurrent is how many of its remediations may be in flight at once.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxConcurrent *int32 `json:"maxConcurrent,omitempty"`
}

// PlaybookSpec is policy as code, written by people or synced by GitOps.
// Riposte never writes it.
type PlaybookSpec struct {
	// triggers say which incidents this playbook answers.
	// +required
	Triggers Triggers `json:"triggers"`
	// when is an optional CEL expression over `incident` that must also hold.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	When string `json:"when,omitempty"`
	// steps are applied in order once the plan is approved.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Steps []Step `json:"steps"`
	// approval says who or what must approve the plan.
	// +required
	Approval ApprovalPolicy `json:"approval"`
	// serviceAccountName is the ServiceAccount, in the playbook's namespace,
	// whose identity every remediation write uses: Riposte impersonates it, so
	// its RBAC bounds what the playbook can change. A playbook in Riposte's
	// own namespace may leave it empty and runs as riposte-remediator. It must
	// be a ServiceAccount name (a DNS-1123 subdomain), and Riposte must be
	// granted impersonate on it by name (Ready=False, reason
	// ImpersonationNotGranted, gives the command that grants it).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// mode Enforce applies approved plans; DryRun plans and gates but never applies.
	// +optional
	// +kubebuilder:default=Enforce
	Mode PlaybookMode `json:"mode,omitempty"`
	// limits bound how often the playbook acts.
	// +optional
	Limits *Limits `json:"limits,omitempty"`
	// priority orders playbooks that match the same incident: the highest wins,
	// ties go to the first by namespace and name.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Priority int32 `json:"priority,omitempty"`
}

// Playbook condition reasons.
const (
	ReasonValid            = "Valid"
	ReasonInvalidCEL       = "InvalidExpression"
	ReasonInvalidMatcher   = "InvalidMatcher"
	ReasonNoServiceAccount = "NoServiceAccount"
	ReasonInvalidRule      = "InvalidRule"
	ReasonUnknownKind      = "UnknownKind"
	ReasonWatchForbidden   = "WatchForbidden"
	ReasonWatching         = "Watching"
	ReasonNotInstalled     = "NotInstalled"
	// ReasonImpersonationNotGranted: the API server does not let Riposte
	// impersonate the playbook's account; the message says how to grant it.
	ReasonImpersonationNotGranted = "ImpersonationNotGranted"
	// ReasonServiceAccountForbidden: the playbook names an account no
	// playbook may run as (Riposte's own).
	ReasonServiceAccountForbidden = "ServiceAccountForbidden"
	// ReasonReportOutOfScope (an Event on a playbook): results of a
	// namespaced report named objects outside its namespace, or
	// cluster-scoped ones, and were refused.
	ReasonReportOutOfScope = "ReportOutOfScope"
)

// ManagerServiceAccountName is the account Riposte's manager runs as, in
// Riposte's namespace. No playbook may run as it: its power is Riposte's own.
const ManagerServiceAccountName = "riposte-controller-manager"

// Playbook condition types besides Ready and Stalled.
const (
	// PlaybookPolicyReports says whether a report API the playbook's
	// policyReports triggers read (PolicyReport, OpenReports) is installed
	// and watched; its message names the formats read.
	PlaybookPolicyReports = "PolicyReportsWatched"
)

// PlaybookStatus is what Riposte observed about the playbook.
type PlaybookStatus struct {
	// conditions: Ready (the playbook compiled and is in use) or Stalled (it
	// has an error only its author can fix).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// scope says where the playbook may act: its own namespace, or the whole
	// cluster when it lives in Riposte's namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Scope string `json:"scope,omitempty"`
	// drift sums up the playbook's drift rules as the detector runs them.
	// +optional
	Drift *PlaybookDriftStatus `json:"drift,omitempty"`
}

// PlaybookDriftStatus is what the drift detector reports about a playbook.
type PlaybookDriftStatus struct {
	// openIncidents counts the playbook's drift incidents not yet resolved.
	// +optional
	OpenIncidents int32 `json:"openIncidents"`
	// watching lists the kinds its rules judge or look up (Kind.group).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Watching []string `json:"watching,omitempty"`
}

// Playbook says which incidents to answer, how to remediate them, who must
// approve, and its limits.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pb,categories=riposte
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Scope",type=string,JSONPath=`.status.scope`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Open Drift",type=integer,JSONPath=`.status.drift.openIncidents`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Playbook struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec PlaybookSpec `json:"spec"`
	// +optional
	Status PlaybookStatus `json:"status,omitempty"`
}

// PlaybookList is a list of Playbooks.
// +kubebuilder:object:root=true
type PlaybookList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Playbook `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Playbook{}, &PlaybookList{})
}
