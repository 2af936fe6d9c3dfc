package v1alpha1

// ObjectReference names one Kubernetes object a step or an incident is about.
type ObjectReference struct {
	// apiVersion of the object, for example "v1" or "apps/v1".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	APIVersion string `json:"apiVersion,omitempty"`
	// kind of the object, for example "Pod".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// namespace of the object; empty for cluster-scoped objects.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// uid of the object when Riposte resolved it, so a recreated object with the
	// same name is told apart.
	// +optional
	// +kubebuilder:validation:MaxLength=36
	UID string `json:"uid,omitempty"`
}

// String renders the reference as kind/namespace/name for messages.
func (r ObjectReference) String() string {
	if r.Namespace == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// NamespacedName names an object of a known kind.
type NamespacedName struct {
	// namespace of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// String renders namespace/name.
func (n NamespacedName) String() string { return n.Namespace + "/" + n.Name }

// ActionType names an action from Riposte's catalogue.
// +kubebuilder:validation:Enum=IsolatePod;IsolateWorkload;DeletePod;EvictPod;ScaleWorkload;RolloutRestart;CordonNode;DrainNode;SuspendCronJob;SuspendJob;RevokeBinding;Label;Annotate;Taint;ApplyManifest;Patch;Notify;Silence
type ActionType string

// The catalogue. docs/actions.md says what each one writes and how it is undone.
const (
	ActionIsolatePod      ActionType = "IsolatePod"
	ActionIsolateWorkload ActionType = "IsolateWorkload"
	ActionDeletePod       ActionType = "DeletePod"
	ActionEvictPod        ActionType = "EvictPod"
	ActionScaleWorkload   ActionType = "ScaleWorkload"
	ActionRolloutRestart  ActionType = "RolloutRestart"
	ActionCordonNode      ActionType = "CordonNode"
	ActionDrainNode       ActionType = "DrainNode"
	ActionSuspendCronJob  ActionType = "SuspendCronJob"
	ActionSuspendJob      ActionType = "SuspendJob"
	ActionRevokeBinding   ActionType = "RevokeBinding"
	ActionLabel           ActionType = "Label"
	ActionAnnotate        ActionType = "Annotate"
	ActionTaint           ActionType = "Taint"
	ActionApplyManifest   ActionType = "ApplyManifest"
	ActionPatch           ActionType = "Patch"
	ActionNotify          ActionType = "Notify"
	ActionSilence         ActionType = "Silence"
)

// Condition types shared by Riposte's resources. They follow the
// Ready / Reconciling / Stalled convention that kstatus, Flux and Argo CD read.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
)

// PauseConfigMapName is the pause switch: while a ConfigMap of this name
// exists in Riposte's namespace, no remediation is applied (kubectl riposte
// pause / resume). Its data.reason says why.
const PauseConfigMapName = "riposte-pause"
