package approval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/riposte-dev/riposte/config/policies"
)

// DecisionPolicyName names the shipped decision policy and its binding.
const DecisionPolicyName = "riposte-approvalgate-decisions"

// DefaultNamespace is the namespace the shipped files name; an install
// elsewhere (the Helm chart's release namespace) replaces it throughout.
const DefaultNamespace = "riposte-system"

// shipped holds, by Riposte's namespace, the decision policy and binding
// this build ships, normalised for comparison with what the API server
// serves.
var shipped sync.Map

func shippedIn(namespace string) shippedPolicy {
	if p, ok := shipped.Load(namespace); ok {
		return p.(shippedPolicy)
	}
	p := mustParseShipped([]byte(strings.ReplaceAll(string(policies.ApprovalGateDecisions), DefaultNamespace, namespace)))
	shipped.Store(namespace, p)
	return p
}

type shippedPolicy struct {
	policy  admissionv1.ValidatingAdmissionPolicySpec
	binding admissionv1.ValidatingAdmissionPolicyBindingSpec
}

func mustParseShipped(b []byte) shippedPolicy {
	var out shippedPolicy
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var doc struct {
			metav1.TypeMeta `json:",inline"`
		}
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			panic(fmt.Sprintf("config/policies/approvalgate-decisions.yaml: %v", err))
		}
		if raw == nil {
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &doc); err != nil {
			panic(err)
		}
		switch doc.Kind {
		case "ValidatingAdmissionPolicy":
			var p admissionv1.ValidatingAdmissionPolicy
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &p); err != nil {
				panic(err)
			}
			out.policy = normalisePolicy(p.Spec)
		case "ValidatingAdmissionPolicyBinding":
			var pb admissionv1.ValidatingAdmissionPolicyBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &pb); err != nil {
				panic(err)
			}
			out.binding = normaliseBinding(pb.Spec)
		}
	}
	if len(out.policy.Validations) == 0 || out.binding.PolicyName == "" {
		panic("config/policies/approvalgate-decisions.yaml holds no policy or no binding")
	}
	return out
}

// Enforcement identifies the decision policy the API server enforces now:
// the policy's and the binding's UID and generation, when both have the
// content Riposte ships for its namespace (with validationActions
// including Deny). It returns "" and why not otherwise. Both are read from
// the API server, not from a cache: Witness relies on the order of these
// reads and of the gate's.
func Enforcement(ctx context.Context, r client.Reader, operatorNamespace string) (id, why string, err error) {
	shipped := shippedIn(operatorNamespace)
	key := client.ObjectKey{Name: DecisionPolicyName}
	policy := &admissionv1.ValidatingAdmissionPolicy{}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{}
	for _, obj := range []client.Object{policy, binding} {
		if err := r.Get(ctx, key, obj); err != nil {
			// Absent, or a cluster without the API at all (before
			// Kubernetes 1.30): nothing checks decisions. Forbidden is
			// Riposte's own RBAC gone wrong, an error to retry, not a
			// reason to count a decision as unverifiable for good.
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				return "", fmt.Sprintf("the admission policy %s or its binding is not installed", DecisionPolicyName), nil
			}
			return "", "", fmt.Errorf("reading the decision policy: %w", err)
		}
	}
	if !equality.Semantic.DeepEqual(normalisePolicy(policy.Spec), shipped.policy) {
		return "", fmt.Sprintf("the admission policy %s is not the one Riposte ships", DecisionPolicyName), nil
	}
	if !equality.Semantic.DeepEqual(normaliseBinding(binding.Spec), shipped.binding) {
		return "", fmt.Sprintf("the binding %s is not the one Riposte ships (it must deny, for every namespace)", DecisionPolicyName), nil
	}
	return fmt.Sprintf("policy %s/%d binding %s/%d", policy.UID, policy.Generation, binding.UID, binding.Generation), "", nil
}

// normalisePolicy fills in what the API server defaults, so a served policy
// and the shipped file compare equal exactly when they mean the same.
func normalisePolicy(s admissionv1.ValidatingAdmissionPolicySpec) admissionv1.ValidatingAdmissionPolicySpec {
	s = *s.DeepCopy()
	if s.FailurePolicy == nil {
		fail := admissionv1.Fail
		s.FailurePolicy = &fail
	}
	if s.MatchConstraints == nil {
		s.MatchConstraints = &admissionv1.MatchResources{}
	}
	normaliseMatch(s.MatchConstraints)
	return s
}

func normaliseBinding(s admissionv1.ValidatingAdmissionPolicyBindingSpec) admissionv1.ValidatingAdmissionPolicyBindingSpec {
	s = *s.DeepCopy()
	if s.MatchResources == nil {
		s.MatchResources = &admissionv1.MatchResources{}
	}
	normaliseMatch(s.MatchResources)
	// Deny is what enforces; Audit or Warn beside it changes nothing.
	if slices.Contains(s.ValidationActions, admissionv1.Deny) {
		s.ValidationActions = []admissionv1.ValidationAction{admissionv1.Deny}
	}
	return s
}

func normaliseMatch(m *admissionv1.MatchResources) {
	if m.NamespaceSelector == nil {
		m.NamespaceSelector = &metav1.LabelSelector{}
	}
	if m.ObjectSelector == nil {
		m.ObjectSelector = &metav1.LabelSelector{}
	}
	if m.MatchPolicy == nil {
		equivalent := admissionv1.Equivalent
		m.MatchPolicy = &equivalent
	}
	for _, rules := range [][]admissionv1.NamedRuleWithOperations{m.ResourceRules, m.ExcludeResourceRules} {
		for i := range rules {
			if rules[i].Scope == nil {
				all := admissionv1.AllScopes
				rules[i].Scope = &all
			}
		}
	}
}
