package enrich

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	if err := e.Reader.List(ctx, &services, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
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
	if err := e.Reader.List(ctx, &ingresses, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
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

	routes, err := e.routes(ctx, namespace, selecting)
	if err != nil {
		return err
	}
	ex.Routes = routes

	var policies networkingv1.NetworkPolicyList
	if err := e.Reader.List(ctx, &policies, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
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
	for _, l := range []*[]string{&ex.Services, &ex.Ingresses, &ex.Routes, &ex.NetworkPolicies} {
		sort.Strings(*l)
	}
	ex.Services, ic.Truncated = bound(ex.Services, maxExposure, "exposure.services", ic.Truncated)
	ex.Ingresses, ic.Truncated = bound(ex.Ingresses, maxExposure, "exposure.ingresses", ic.Truncated)
	ex.Routes, ic.Truncated = bound(ex.Routes, maxExposure, "exposure.routes", ic.Truncated)
	ex.NetworkPolicies, ic.Truncated = bound(ex.NetworkPolicies, maxExposure, "exposure.networkPolicies", ic.Truncated)
	ic.Exposure = ex
	return nil
}

var httpRouteList = schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRouteList"}

// routes finds the Gateway API HTTPRoutes whose backends are among services.
// A cluster without the Gateway API simply has none.
func (e *Enricher) routes(ctx context.Context, namespace string, services []string) ([]string, error) {
	if len(services) == 0 {
		return nil, nil
	}
	if e.routesAbsent() {
		return nil, nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(httpRouteList)
	if err := e.Reader.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			e.markRoutesAbsent()
			return nil, nil
		}
		return nil, fmt.Errorf("listing HTTPRoutes: %w", err)
	}
	var out []string
	for _, r := range list.Items {
		if !slices.ContainsFunc(routeBackends(&r), func(b string) bool {
			ns, name, _ := strings.Cut(b, "/")
			return ns == namespace && slices.Contains(services, name)
		}) {
			continue
		}
		desc := r.GetNamespace() + "/" + r.GetName()
		if hosts, _, _ := unstructured.NestedStringSlice(r.Object, "spec", "hostnames"); len(hosts) > 0 {
			desc += " (" + strings.Join(hosts, ",") + ")"
		}
		out = append(out, desc)
	}
	return out, nil
}

// routesAbsentFor is how long a missing Gateway API is remembered, so that a
// cluster without it costs no discovery call per incident.
const routesAbsentFor = time.Minute

func (e *Enricher) routesAbsent() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return time.Now().Before(e.noRoutesUntil)
}

func (e *Enricher) markRoutesAbsent() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.noRoutesUntil = time.Now().Add(routesAbsentFor)
}

// routeBackends lists a route's Service backends as namespace/name.
func routeBackends(r *unstructured.Unstructured) []string {
	var out []string
	rules, _, _ := unstructured.NestedSlice(r.Object, "spec", "rules")
	for _, rule := range rules {
		rm, _ := rule.(map[string]any)
		refs, _, _ := unstructured.NestedSlice(rm, "backendRefs")
		for _, ref := range refs {
			m, _ := ref.(map[string]any)
			kind, _, _ := unstructured.NestedString(m, "kind")
			group, _, _ := unstructured.NestedString(m, "group")
			if (kind != "" && kind != "Service") || group != "" {
				continue
			}
			name, _, _ := unstructured.NestedString(m, "name")
			ns, _, _ := unstructured.NestedString(m, "namespace")
			if ns == "" {
				ns = r.GetNamespace()
			}
			out = append(out, ns+"/"+name)
		}
	}
	return out
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
