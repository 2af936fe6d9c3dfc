package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/expr"
	"github.com/riposte-dev/riposte/internal/intake"
	"github.com/riposte-dev/riposte/internal/match"
)

// OfflineUsage documents `kubectl riposte test`, which needs no cluster.
const OfflineUsage = `kubectl riposte test -f PATH [-f PATH ...] [-n NAMESPACE] [--riposte-namespace NS] [--fail-on-violation]

Judges manifests and saved Alertmanager payloads against the playbooks in
the same files, without a cluster, as a GitOps pipeline would before it
syncs them. PATH is a file or a folder (its .yaml, .yml and .json files).

  - Playbooks are checked as Riposte would (CEL, regular expressions,
    templates, drift rules).
  - Every other object is judged by the drift rules; a Namespace in the
    files is its namespaceObject, and lookups see the objects in the files.
  - Alertmanager's alerts say which playbook answers each alert: a webhook
    notification as Riposte receives it (an object with "alerts"), or a
    list of alerts as Alertmanager's POST /api/v2/alerts takes them
    (labels, annotations, startsAt, endsAt, generatorURL), each read as
    Alertmanager would notify it now: resolved once its endsAt has passed,
    else firing, its fingerprint computed from its labels as Alertmanager
    computes it. PolicyReports in the files are read as drift.
  - An object annotated riposte.dev/expect-violations: "rule-a,rule-b" (or
    "none") must break exactly those rules.

Objects without a namespace are judged in -n (default "default"). Without a
cluster, kinds are not checked against the API server's (a rule naming a
kind the cluster does not serve passes here and is refused there).
Exit status: 0 when all is well; 1 when a playbook is invalid, a rule
cannot be evaluated or an expectation fails; 2 with --fail-on-violation
when anything breaks a rule.
`

// ExpectAnnotation on a test manifest lists the rules it must break.
const ExpectAnnotation = "riposte.dev/expect-violations"

// Offline is the outcome of a check.
type Offline struct {
	Playbooks int
	Objects   int
	// Judged counts the objects at least one rule looked at (ran on, or
	// failed to), and the PolicyReports a playbook reads; Unjudged are the
	// others, so a summary never counts an object no rule selected.
	Judged     int
	Unjudged   []riposte.ObjectReference
	Problems   []string // invalid playbooks, rules that cannot be evaluated, failed expectations
	Findings   []drift.Finding
	AlertLines [][]string
}

// Failed reports the exit status the check asks for.
func (o *Offline) Failed(failOnViolation bool) int {
	switch {
	case len(o.Problems) > 0:
		return 1
	case failOnViolation && len(o.Findings) > 0:
		return 2
	}
	return 0
}

// clusterScoped are the built-in kinds that have no namespace; CRDs in the
// files add theirs.
var clusterScoped = map[string]bool{
	"Namespace": true, "Node": true, "PersistentVolume": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"StorageClass": true, "CustomResourceDefinition": true, "PriorityClass": true, "IngressClass": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true, "ValidatingWebhookConfiguration": true,
	"MutatingWebhookConfiguration": true, "ClusterPolicyReport": true, "ClusterReport": true, "RuntimeClass": true, "CSIDriver": true,
}

// RunOffline checks the files.
func RunOffline(paths []string, defaultNamespace, operatorNamespace string) (*Offline, error) {
	docs, payloads, err := readDocuments(paths)
	if err != nil {
		return nil, err
	}
	out := &Offline{}
	scoped := map[string]bool{}
	for k, v := range clusterScoped {
		scoped[k] = v
	}
	var playbooks []riposte.Playbook
	var objects []map[string]any
	for _, d := range docs {
		ref := drift.RefOf(d.object)
		switch {
		case ref.Kind == "Playbook" && strings.HasPrefix(ref.APIVersion, riposte.GroupVersion.Group+"/"):
			pb := riposte.Playbook{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(d.object, &pb, true); err != nil {
				out.Problems = append(out.Problems, fmt.Sprintf("%s: playbook %s: %v", d.file, ref.Name, err))
				continue
			}
			if pb.Namespace == "" {
				pb.Namespace = defaultNamespace
			}
			playbooks = append(playbooks, pb)
		case ref.Kind == "CustomResourceDefinition":
			if spec, ok := d.object["spec"].(map[string]any); ok && spec["scope"] == "Cluster" {
				if names, ok := spec["names"].(map[string]any); ok {
					if k, ok := names["kind"].(string); ok {
						scoped[k] = true
					}
				}
			}
			objects = append(objects, d.object)
		case ref.Kind == "" || ref.Name == "":
			out.Problems = append(out.Problems, fmt.Sprintf("%s: a document without kind or metadata.name", d.file))
		default:
			objects = append(objects, d.object)
		}
	}
	for _, o := range objects {
		if md, ok := o["metadata"].(map[string]any); ok && !scoped[drift.RefOf(o).Kind] && drift.RefOf(o).Namespace == "" {
			md["namespace"] = defaultNamespace
		}
	}
	out.Playbooks, out.Objects = len(playbooks), len(objects)

	exprs := &expr.Cache{}
	var rules []*drift.Rule
	for i := range playbooks {
		pb := &playbooks[i]
		if reason, msg := match.Validate(pb, exprs); reason != "" {
			out.Problems = append(out.Problems, fmt.Sprintf("playbook %s/%s: %s: %s", pb.Namespace, pb.Name, reason, msg))
			continue
		}
		compiled, err := drift.Compile(pb, operatorNamespace)
		if err == nil && pb.Namespace != operatorNamespace {
			err = clusterScopedKind(compiled, scoped, operatorNamespace)
		}
		if err != nil {
			out.Problems = append(out.Problems, fmt.Sprintf("playbook %s/%s: %s: %v", pb.Namespace, pb.Name, riposte.ReasonInvalidRule, err))
			continue
		}
		rules = append(rules, compiled...)
	}

	namespaces := map[string]map[string]any{}
	for _, o := range objects {
		if ref := drift.RefOf(o); ref.Kind == "Namespace" && ref.APIVersion == "v1" {
			namespaces[ref.Name] = o
		}
	}
	isNamespaced := func(gvk schema.GroupVersionKind) bool { return !scoped[gvk.Kind] }
	list := func(gvk schema.GroupVersionKind, ns string) ([]any, error) {
		var items []any
		for _, o := range objects {
			ref := drift.RefOf(o)
			if ref.Kind == gvk.Kind && schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind).Group == gvk.Group && (ns == "" || ref.Namespace == ns) {
				items = append(items, o)
			}
		}
		return items, nil
	}
	// A ReplicaSet or Job in the files is judged through its controller
	// when that is in the files too, with the UID its reference names.
	get := func(owner riposte.ObjectReference) (map[string]any, error) {
		gk := schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind).GroupKind()
		for _, o := range objects {
			ref := drift.RefOf(o)
			if schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind).GroupKind() == gk && ref.Namespace == owner.Namespace && ref.Name == owner.Name {
				return o, nil
			}
		}
		return nil, nil
	}
	readsReports := slices.ContainsFunc(playbooks, func(pb riposte.Playbook) bool { return len(pb.Spec.Triggers.PolicyReports) > 0 })
	for _, o := range objects {
		ref := drift.RefOf(o)
		var found []drift.Finding
		judged := false
		if gk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind).GroupKind(); drift.IsReportKind(gk) {
			// What the cluster would refuse is refused here too: a
			// namespaced report names only its own namespace's objects.
			scope := drift.ReportScope{Namespace: ref.Namespace, Namespaced: func(gvk schema.GroupVersionKind) (bool, bool) {
				return isNamespaced(gvk), true
			}}
			if !isNamespaced(schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)) {
				scope.Namespace = "" // a cluster-scoped report, whatever namespace a file wrote on it
			}
			for i := range playbooks {
				f, refused := drift.ReportFindings(&playbooks[i], operatorNamespace, ref, scope, o)
				found = append(found, f...)
				for _, r := range refused {
					out.Problems = append(out.Problems, fmt.Sprintf("%s: result %s names %s, refused (%s): a namespaced report may name only namespaced objects in its own namespace",
						describeRef(ref), r.Rule, r.Target.String(), r.Reason))
				}
			}
			judged = readsReports
		} else {
			var nsObj map[string]any
			if scope := drift.ScopeNamespace(o); scope != "" {
				nsObj = namespaces[scope]
				if ref.Kind == "Namespace" {
					nsObj = o
				}
				if nsObj == nil {
					// The API server labels every namespace with its name.
					nsObj = map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{
						"name": scope, "labels": map[string]any{"kubernetes.io/metadata.name": scope}}}
				}
			}
			j := drift.Judge(rules, o, nsObj, isNamespaced, list, get)
			found = j.Findings
			for _, e := range j.Errors {
				out.Problems = append(out.Problems, fmt.Sprintf("%s: %v", describeRef(ref), e))
			}
			judged = j.Evaluated > 0 || len(j.Errors) > 0
		}
		if judged {
			out.Judged++
		} else {
			out.Unjudged = append(out.Unjudged, ref)
		}
		out.Findings = append(out.Findings, found...)
		checkExpectation(out, o, ref, found)
	}

	for _, p := range payloads {
		for i, a := range p.payload.Alerts {
			if refused := p.payload.CheckAlert(i); refused != nil {
				// The webhook stores the others and refuses this one, so says so here.
				out.Problems = append(out.Problems, fmt.Sprintf("%s: an alert Riposte cannot store: %v", p.file, refused))
				continue
			}
			inc := intake.IncidentFor(a, defaultNamespace)
			chosen, broken := match.Select(playbooks, inc, operatorNamespace, exprs)
			for _, b := range broken {
				out.Problems = append(out.Problems, fmt.Sprintf("%s: alert %s: playbook %s/%s: %v", p.file, inc.Spec.AlertName, b.Playbook.Namespace, b.Playbook.Name, b.Err))
			}
			answer := "no playbook answers it"
			if chosen != nil {
				answer = "answered by " + chosen.Namespace + "/" + chosen.Name
			}
			out.AlertLines = append(out.AlertLines, []string{"ALERT", inc.Spec.AlertName + " (" + a.Status + ")", inc.Namespace, answer})
		}
	}
	return out, nil
}

// clusterScopedKind refuses, as Riposte does, a namespaced playbook's rule
// that judges or looks up a cluster-scoped kind.
func clusterScopedKind(rules []*drift.Rule, scoped map[string]bool, operatorNamespace string) error {
	for _, r := range rules {
		kinds := []schema.GroupVersionKind{r.GVK}
		for _, gvk := range r.Lookups {
			kinds = append(kinds, gvk)
		}
		for _, gvk := range kinds {
			if scoped[gvk.Kind] {
				return fmt.Errorf("rule %s: %s is cluster-scoped; only a playbook in %s may judge or look up cluster-scoped kinds", r.Name, gvk.Kind, operatorNamespace)
			}
		}
	}
	return nil
}

func checkExpectation(out *Offline, o map[string]any, ref riposte.ObjectReference, found []drift.Finding) {
	md, _ := o["metadata"].(map[string]any)
	annotations, _ := md["annotations"].(map[string]any)
	raw, ok := annotations[ExpectAnnotation].(string)
	if !ok {
		return
	}
	var want []string
	for _, r := range strings.Split(raw, ",") {
		if r = strings.TrimSpace(r); r != "" && r != "none" {
			want = append(want, r)
		}
	}
	var got []string
	for _, f := range found {
		got = append(got, f.Rule)
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(want, got) {
		out.Problems = append(out.Problems, fmt.Sprintf("%s: expected to break [%s], breaks [%s]", describeRef(ref), strings.Join(want, ", "), strings.Join(got, ", ")))
	}
}

func describeRef(ref riposte.ObjectReference) string {
	if ref.Namespace == "" {
		return ref.Kind + " " + ref.Name
	}
	return ref.Kind + " " + ref.Namespace + "/" + ref.Name
}

// Print writes the check as a table, problems first.
func (o *Offline) Print(w io.Writer) {
	for _, p := range o.Problems {
		fmt.Fprintln(w, "PROBLEM:", p)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tPLAYBOOK\tRULE\tOBJECT\tMESSAGE")
	for _, f := range o.Findings {
		fmt.Fprintf(tw, "VIOLATION\t%s\t%s\t%s\t%s\n", f.Playbook, f.Rule, describeRef(f.Target), f.Message)
	}
	for _, a := range o.AlertLines {
		fmt.Fprintf(tw, "%s\t-\t%s\t-\t%s\n", a[0], a[1], a[3])
	}
	_ = tw.Flush()
	if len(o.Unjudged) > 0 {
		names := make([]string, 0, maxUnjudgedNamed)
		for _, ref := range o.Unjudged[:min(len(o.Unjudged), maxUnjudgedNamed)] {
			names = append(names, describeRef(ref))
		}
		more := ""
		if n := len(o.Unjudged) - len(names); n > 0 {
			more = fmt.Sprintf(" and %d more", n)
		}
		fmt.Fprintf(w, "\nNot judged by any rule: %s%s\n", strings.Join(names, ", "), more)
	}
	objects := "0 objects"
	if o.Objects > 0 {
		objects = fmt.Sprintf("%d objects (%d judged by at least one rule, %d not selected by any)", o.Objects, o.Judged, len(o.Unjudged))
	}
	fmt.Fprintf(w, "\n%d playbooks, %s, %d violations, %d alerts, %d problems\n",
		o.Playbooks, objects, len(o.Findings), len(o.AlertLines), len(o.Problems))
}

// maxUnjudgedNamed bounds the objects the summary names as not judged: a
// chart's output holds many ServiceAccounts and ConfigMaps.
const maxUnjudgedNamed = 10

func jsonOf(v any) ([]byte, error) { return json.Marshal(v) }

type document struct {
	file   string
	object map[string]any
}

type savedPayload struct {
	file    string
	payload *intake.Payload
}

// errUnknownDocument names the formats the check reads.
var errUnknownDocument = errors.New(`a document that is neither a manifest, an Alertmanager webhook notification (an object with "alerts") nor a list of alerts as Alertmanager's /api/v2/alerts takes them`)

// readDocuments reads every YAML or JSON document of the paths: manifests,
// Alertmanager webhook notifications (recognised by their "alerts" list)
// and lists of alerts as posted to Alertmanager.
func readDocuments(paths []string) ([]document, []savedPayload, error) {
	if len(paths) == 0 {
		return nil, nil, errors.New("no files: give -f PATH")
	}
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		for _, pattern := range []string{"*.yaml", "*.yml", "*.json"} {
			m, _ := filepath.Glob(filepath.Join(p, pattern))
			files = append(files, m...)
		}
	}
	sort.Strings(files)
	var docs []document
	var payloads []savedPayload
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			var doc any
			if err := dec.Decode(&doc); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, nil, fmt.Errorf("%s: %w", f, err)
			}
			if list, ok := doc.([]any); ok {
				// A list is alerts as Alertmanager's /api/v2/alerts takes them.
				p, err := alertListPayload(list, time.Now())
				if err != nil {
					return nil, nil, fmt.Errorf("%s: %w", f, err)
				}
				payloads = append(payloads, savedPayload{file: f, payload: p})
				continue
			}
			if doc == nil {
				continue
			}
			m, ok := doc.(map[string]any)
			if !ok {
				return nil, nil, fmt.Errorf("%s: %w", f, errUnknownDocument)
			}
			if _, isPayload := m["alerts"]; isPayload && m["kind"] == nil {
				// Decoded again by intake's own rules, so a payload the
				// webhook would refuse is refused here too.
				js, err := jsonOf(m)
				if err != nil {
					return nil, nil, err
				}
				p, err := intake.Decode(bytes.NewReader(js))
				if err != nil {
					return nil, nil, fmt.Errorf("%s: not a payload Riposte accepts: %w", f, err)
				}
				payloads = append(payloads, savedPayload{file: f, payload: p})
				continue
			}
			// Through the API machinery's own decoder, so integers are
			// integers, as rules see them in a cluster.
			js, err := jsonOf(m)
			if err != nil {
				return nil, nil, err
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(js); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", f, err)
			}
			docs = append(docs, document{file: f, object: u.Object})
		}
	}
	return docs, payloads, nil
}
