package alertlabels

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzOf reads what any label set says an alert is about. It must never
// panic; the namespace it gives is a valid one taken from a namespace label
// (never from a pod, a job or an instance), the target's own namespace when
// there is a target, and a container is given only for a pod. The labels
// are lines of name=value.
func FuzzOf(f *testing.F) {
	for _, seed := range []string{
		"namespace=shop\npod=web-1\ncontainer=app\njob=web",
		"namespace=monitoring\npod=pushgateway-0\nexported_job=backup\njob=pushgateway",
		"namespace=shop\ndeployment=web\npod=ksm-0\ncontainer=kube-state-metrics\njob=monitoring/ksm",
		"namespace=monitoring\npod=ksm-5f-x\ncontainer=kube-state-metrics\nnode=worker-1\nservice=ksm\njob=kube-state-metrics",
		"job=node-exporter\ninstance=10.0.0.7:9100\nnodename=worker-1",
		"k8s_ns_name=shop\nk8s_pod_name=web-1\ncontainer_name=web\nsource=falco",
		"namespace=Bad_Namespace\npod=../../etc\nexported_namespace=kube-system",
		"",
	} {
		f.Add(seed)
	}
	// A label Prometheus renamed (exported_namespace) is the subject's own.
	var namespaceLabels []string
	for _, l := range append([]string{"namespace"}, ownNamespaceLabels...) {
		namespaceLabels = append(namespaceLabels, l, exportedPrefix+l)
	}
	f.Fuzz(func(t *testing.T, text string) {
		set := map[string]string{}
		for _, line := range strings.Split(text, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				set[k] = v
			}
		}
		s := Of(set)
		if s.Namespace != "" {
			if errs := validation.IsDNS1123Label(s.Namespace); len(errs) > 0 {
				t.Fatalf("namespace %q: %v", s.Namespace, errs)
			}
			if !slices.ContainsFunc(namespaceLabels, func(l string) bool { return set[l] == s.Namespace }) {
				t.Fatalf("namespace %q from no namespace label of %v", s.Namespace, set)
			}
		}
		if s.Target != nil {
			if s.Target.Name == "" || s.Target.Kind == "" {
				t.Fatalf("target without a kind or name: %+v", s.Target)
			}
			if s.Target.Namespace != s.Namespace {
				t.Fatalf("target in %q, alert in %q", s.Target.Namespace, s.Namespace)
			}
		}
		if s.Container != "" && (s.Target == nil || s.Target.Kind != "Pod") {
			t.Fatalf("container %q for target %+v", s.Container, s.Target)
		}
	})
}
