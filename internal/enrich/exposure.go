package enrich

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const maxExposure = 16

// exposure finds the Services selecting pods with these labels, the Ingresses
// routing to them, and the NetworkPolicies selecting them.
func (e *Enricher) exposure(ctx context.Context, namespace string, podLabels map[string]string, ic *riposte.IncidentContext) error {
	ex := &riposte.ExposureContext{}
	set := labels.Set(podLabels)

	var services corev1.ServiceList
	if err := e.Reader.List(ctx, &services, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	var selecting []string
	for _, s := range services.Items {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(set) {
			continue
		}
		selecting = append(selecting, s.Name)
		var ports []string
		for _, p := range s.Spec.Ports {
			ports = append(ports, strconv.Itoa(int(p.Port)))
		}
		desc := s.Name + ":" + strings.Join(ports, ",")
		if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
			desc += " (" + string(s.Spec.Type) + ")"
		}
		ex.Services = append(ex.Services, desc)
	}

	var ingresses networkingv1.IngressList
	if err := e.Reader.List(ctx, &ingresses, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("listing ingresses: %w", err)
	}
	for _, ing := range ingresses.Items {
		if !slices.ContainsFunc(ingressServices(&ing), func(s string) bool { return slices.Contains(selecting, s) }) {
			continue
		}
		var hosts []string
		for _, r := range ing.Spec.Rules {
			if r.Host != "" {
				hosts = append(hosts, r.Host)
			}
		}
		desc := ing.Name
		if len(hosts) > 0 {
			desc += " (" + strings.Join(hosts, ",") + ")"
		}
		ex.Ingresses = append(ex.Ingresses, desc)
	}

	var policies networkingv1.NetworkPolicyList
	if err := e.Reader.List(ctx, &policies, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("listing network policies: %w", err)
	}
	for _, np := range policies.Items {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(set) {
			continue
		}
		ex.NetworkPolicies = append(ex.NetworkPolicies, np.Name)
		if DeniesAll(&np) {
			ex.Isolated = true
		}
	}
	for _, l := range []*[]string{&ex.Services, &ex.Ingresses, &ex.NetworkPolicies} {
		sort.Strings(*l)
	}
	ex.Services, ic.Truncated = bound(ex.Services, maxExposure, "exposure.services", ic.Truncated)
	ex.Ingresses, ic.Truncated = bound(ex.Ingresses, maxExposure, "exposure.ingresses", ic.Truncated)
	ex.NetworkPolicies, ic.Truncated = bound(ex.NetworkPolicies, maxExposure, "exposure.networkPolicies", ic.Truncated)
	ic.Exposure = ex
	return nil
}

func ingressServices(ing *networkingv1.Ingress) []string {
	var out []string
	if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil {
		out = append(out, b.Service.Name)
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			if p.Backend.Service != nil {
				out = append(out, p.Backend.Service.Name)
			}
		}
	}
	return out
}

// DeniesAll reports whether a policy cuts the pods it selects off entirely:
// both directions governed, no rule allowing anything.
func DeniesAll(np *networkingv1.NetworkPolicy) bool {
	return slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) &&
		slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) &&
		len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0
}
