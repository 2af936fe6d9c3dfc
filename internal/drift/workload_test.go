package drift

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const podSpec = `{containers: [{name: app, image: registry.example.com/shop/web:1.4.2}]}`

// Each workload kind's pod template is found where that kind keeps it, and
// judged as a Pod named after the workload, in its namespace.
func TestPodFromTemplate(t *testing.T) {
	tmpl := `{metadata: {labels: {app: web}, annotations: {a: b}}, spec: ` + podSpec + `}`
	cases := []struct {
		reason, manifest string
		ok               bool
	}{
		{"Deployment", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: w, namespace: shop}, spec: {template: ` + tmpl + `}}`, true},
		{"DaemonSet", `{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: w, namespace: shop}, spec: {template: ` + tmpl + `}}`, true},
		{"StatefulSet", `{apiVersion: apps/v1, kind: StatefulSet, metadata: {name: w, namespace: shop}, spec: {template: ` + tmpl + `}}`, true},
		{"ReplicaSet", `{apiVersion: apps/v1, kind: ReplicaSet, metadata: {name: w, namespace: shop}, spec: {template: ` + tmpl + `}}`, true},
		{"Job", `{apiVersion: batch/v1, kind: Job, metadata: {name: w, namespace: shop}, spec: {template: ` + tmpl + `}}`, true},
		{"CronJob keeps it in its jobTemplate", `{apiVersion: batch/v1, kind: CronJob, metadata: {name: w, namespace: shop}, spec: {schedule: "@daily", jobTemplate: {spec: {template: ` + tmpl + `}}}}`, true},
		{"CronJob without a jobTemplate", `{apiVersion: batch/v1, kind: CronJob, metadata: {name: w, namespace: shop}, spec: {schedule: "@daily"}}`, false},
		{"a template without a spec", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: w, namespace: shop}, spec: {template: {metadata: {labels: {app: web}}}}}`, false},
		{"another group's Deployment", `{apiVersion: example.com/v1, kind: Deployment, metadata: {name: w, namespace: shop}, spec: {template: ` + tmpl + `}}`, false},
		{"not a workload", `{apiVersion: v1, kind: Service, metadata: {name: w, namespace: shop}, spec: {template: ` + tmpl + `}}`, false},
	}
	want := obj(t, `{apiVersion: v1, kind: Pod, metadata: {name: w, namespace: shop, labels: {app: web}, annotations: {a: b}}, spec: `+podSpec+`}`)
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got, ok := PodFromTemplate(obj(t, tc.manifest))
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if ok {
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("pod (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestControllerOf(t *testing.T) {
	cases := []struct {
		reason, manifest string
		want             string
	}{
		{"a ReplicaSet's pod", `{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: shop, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4b9c, uid: u1, controller: true}]}}`, "apps/v1/ReplicaSet/shop/web-7d4b9c"},
		{"an owner that does not control", `{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: shop, ownerReferences: [{apiVersion: v1, kind: Node, name: n, uid: u1}]}}`, ""},
		{"no owner", `{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: shop}}`, ""},
	}
	for _, tc := range cases {
		ref, ok := ControllerOf(obj(t, tc.manifest))
		got := ""
		if ok {
			got = ref.APIVersion + "/" + ref.Kind + "/" + ref.Namespace + "/" + ref.Name
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.reason, got, tc.want)
		}
	}
}

func packRules(t *testing.T) []*Rule {
	t.Helper()
	var rules []*Rule
	for _, pb := range loadPack(t) {
		compiled, err := Compile(&pb, "riposte-system")
		if err != nil {
			t.Fatalf("playbook %s: %v", pb.Name, err)
		}
		rules = append(rules, compiled...)
	}
	return rules
}

// The pack judges workloads as charts render them, by their pod templates:
// each finding is about the workload.
func TestPackOnChartWorkloads(t *testing.T) {
	rules := packRules(t)
	cases := []struct {
		file string
		want []string
		// messages holds a part of the message of some of the rules broken.
		messages map[string]string
	}{
		{"node-exporter-daemonset.yaml", []string{"allowed-registries", "no-host-namespaces", "no-hostpath"},
			map[string]string{"no-hostpath": "sys (/sys), root (/)"}},
		{"kube-state-metrics-deployment.yaml", []string{"allowed-registries"},
			map[string]string{"allowed-registries": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.11.0"}},
		{"elasticsearch-statefulset.yaml", []string{"allowed-registries", "no-privileged-containers", "run-as-non-root"},
			map[string]string{"no-privileged-containers": "privileged containers: configure-sysctl", "run-as-non-root": "configure-sysctl"}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "..", "test", "testdata", "charts", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			o := obj(t, string(raw))
			ns := RefOf(o).Namespace
			nsObj := obj(t, `{apiVersion: v1, kind: Namespace, metadata: {name: `+ns+`, labels: {kubernetes.io/metadata.name: `+ns+`}}}`)
			judged := Judge(rules, o, nsObj, namespaced, func(schema.GroupVersionKind, string) ([]any, error) { return nil, nil }, nil)
			for _, err := range judged.Errors {
				t.Errorf("evaluation error: %v", err)
			}
			var got []string
			for _, f := range judged.Findings {
				got = append(got, f.Rule)
				if f.Target != RefOf(o) || f.Source != RefOf(o) {
					t.Errorf("%s: target %v source %v, want the workload", f.Rule, f.Target, f.Source)
				}
				if m := tc.messages[f.Rule]; m != "" && !strings.Contains(f.Message, m) {
					t.Errorf("%s: message %q does not say %q", f.Rule, f.Message, m)
				}
			}
			slices.Sort(got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rules broken (-want +got):\n%s", diff)
			}
			if judged.Evaluated != 6 {
				t.Errorf("%d pod rules evaluated, want the pack's 6", judged.Evaluated)
			}
		})
	}
}

// A pod is always judged on its own: its ownerReferences are written by
// whoever creates it, so no finding is dropped because of them (a forged
// reference to a privileged Deployment once hid a privileged pod). A
// workload another workload controls is judged through its owner only when
// the owner is there with the UID the reference names and the rule judges
// its kind.
func TestJudgeWorkloadsAndTheirPods(t *testing.T) {
	rules, err := Compile(playbookWith("shop", podRule(func(r *riposte.DriftRule) {
		r.Name = "no-privileged"
		r.Rule = `cel.bind(cs, object.spec.containers + (has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers : []),
			cs.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || !c.securityContext.privileged))`
	})), "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	privileged := `{containers: [{name: app, image: x:1, securityContext: {privileged: true}}]}`
	deployment := func(uid, spec string) map[string]any {
		return obj(t, `{apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: shop, uid: `+uid+`}, spec: {template: {metadata: {labels: {app: web}}, spec: `+spec+`}}}`)
	}
	// The ReplicaSet and pod as the Deployment and ReplicaSet controllers
	// write them: a controller reference with the owner's uid.
	rsOwnedBy := func(apiVersion, kind, uid, spec string) map[string]any {
		return obj(t, `{apiVersion: apps/v1, kind: ReplicaSet, metadata: {name: web-7d4b9c, namespace: shop, uid: r1,
			ownerReferences: [{apiVersion: `+apiVersion+`, kind: `+kind+`, name: web, uid: `+uid+`, controller: true, blockOwnerDeletion: true}]},
			spec: {template: {metadata: {labels: {app: web}}, spec: `+spec+`}}}`)
	}
	rs := func(spec string) map[string]any { return rsOwnedBy("apps/v1", "Deployment", "d1", spec) }
	podOwnedBy := func(kind, name, uid, spec string) map[string]any {
		return obj(t, `{apiVersion: v1, kind: Pod, metadata: {name: web-7d4b9c-x2x9p, namespace: shop, uid: p1, labels: {app: web},
			ownerReferences: [{apiVersion: apps/v1, kind: `+kind+`, name: `+name+`, uid: `+uid+`, controller: true, blockOwnerDeletion: true}]}, spec: `+spec+`}`)
	}
	pod := func(spec string) map[string]any { return podOwnedBy("ReplicaSet", "web-7d4b9c", "r1", spec) }
	job := func(ownerUID string) map[string]any {
		return obj(t, `{apiVersion: batch/v1, kind: Job, metadata: {name: backup-28950240, namespace: shop, uid: j1,
			ownerReferences: [{apiVersion: batch/v1, kind: CronJob, name: backup, uid: `+ownerUID+`, controller: true, blockOwnerDeletion: true}]},
			spec: {template: {spec: `+privileged+`}}}`)
	}
	cron := obj(t, `{apiVersion: batch/v1, kind: CronJob, metadata: {name: backup, namespace: shop, uid: c1},
		spec: {schedule: "@daily", jobTemplate: {spec: {template: {spec: `+privileged+`}}}}}`)
	debugged := `{containers: [{name: app, image: x:1}], ephemeralContainers: [{name: debugger, image: x:1, securityContext: {privileged: true}}]}`
	key := RuleKey(rules[0].Playbook, "no-privileged")
	cases := []struct {
		reason  string
		object  map[string]any
		cluster []map[string]any
		// want is the finding's target kind, "" for none; how is how the
		// rule saw the object: judged or unselected.
		want, how string
	}{
		{"a privileged Deployment", deployment("d1", privileged), nil, "Deployment", "judged"},
		{"a compliant Deployment", deployment("d1", podSpec), nil, "", "judged"},
		{"its ReplicaSet is judged through it", rs(privileged), []map[string]any{deployment("d1", privileged)}, "", "unselected"},
		{"a ReplicaSet naming a Deployment that is not there", rs(privileged), nil, "ReplicaSet", "judged"},
		{"a ReplicaSet naming a namesake of its owner", rs(privileged), []map[string]any{deployment("d2", privileged)}, "ReplicaSet", "judged"},
		{"a ReplicaSet an Argo Rollout controls, a kind the rule does not judge", rsOwnedBy("argoproj.io/v1alpha1", "Rollout", "d1", privileged),
			[]map[string]any{deployment("d1", privileged)}, "ReplicaSet", "judged"},
		{"a CronJob's Job is judged through it", job("c1"), []map[string]any{cron}, "", "unselected"},
		{"a Job naming a CronJob that is not there", job("c9"), []map[string]any{cron}, "Job", "judged"},
		{"a privileged replica of a privileged Deployment", pod(privileged), []map[string]any{rs(privileged), deployment("d1", privileged)}, "Pod", "judged"},
		{"a pod forging a controller reference to the Deployment", podOwnedBy("Deployment", "web", "d1", privileged),
			[]map[string]any{deployment("d1", privileged)}, "Pod", "judged"},
		{"a pod debugged with a privileged container", pod(debugged), []map[string]any{rs(podSpec), deployment("d1", podSpec)}, "Pod", "judged"},
		{"a pod left from before its Deployment was fixed", pod(privileged), []map[string]any{rs(privileged), deployment("d1", podSpec)}, "Pod", "judged"},
		{"a pod whose owners are not known", pod(privileged), nil, "Pod", "judged"},
		{"a compliant pod", pod(podSpec), []map[string]any{rs(podSpec), deployment("d1", podSpec)}, "", "judged"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			// get finds by name, as a cache does; Judge checks the UID.
			get := func(ref riposte.ObjectReference) (map[string]any, error) {
				for _, c := range tc.cluster {
					if r := RefOf(c); r.Kind == ref.Kind && r.Namespace == ref.Namespace && r.Name == ref.Name {
						return c, nil
					}
				}
				return nil, nil
			}
			got := Judge(rules, tc.object, nil, namespaced, nil, get)
			if len(got.Errors) > 0 {
				t.Fatalf("errors %v", got.Errors)
			}
			kind := ""
			if len(got.Findings) == 1 {
				kind = got.Findings[0].Target.Kind
				if got.Findings[0].Target != RefOf(tc.object) {
					t.Errorf("target %v, want the object judged", got.Findings[0].Target)
				}
			} else if len(got.Findings) > 1 {
				t.Fatalf("findings %+v", got.Findings)
			}
			how := "judged"
			if got.Unselected[key] {
				how = "unselected"
			}
			if kind != tc.want || how != tc.how {
				t.Errorf("finding about %q, %s; want %q, %s", kind, how, tc.want, tc.how)
			}
		})
	}

	// An owner that cannot be read now is not known to be absent: the
	// rule could not judge the workload, so nothing is opened for it (and
	// the judgment is not kept: the next look reads the owner again).
	unreadable := func(riposte.ObjectReference) (map[string]any, error) { return nil, errors.New("cache not synced") }
	got := Judge(rules, rs(privileged), nil, namespaced, nil, unreadable)
	if len(got.Findings) != 0 || !got.Failed[key] || len(got.Errors) != 1 {
		t.Errorf("owner unreadable: findings %+v, failed %v, errors %v; want the rule failed, nothing found", got.Findings, got.Failed, got.Errors)
	}
}

// podControllers opts a rule out of templates, or narrows the kinds; an
// objectSelector matches the labels the template gives its pods.
func TestPodControllers(t *testing.T) {
	ds := `{apiVersion: apps/v1, kind: DaemonSet, metadata: {name: agent, namespace: shop, labels: {team: infra}}, spec: {template: {metadata: {labels: {app: agent}}, spec: {hostNetwork: true, containers: [{name: a, image: x:1}]}}}}`
	deploy := `{apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: shop}, spec: {template: {metadata: {labels: {app: web}}, spec: {hostNetwork: true, containers: [{name: a, image: x:1}]}}}}`
	rule := func(edit func(*riposte.DriftRule)) []*Rule {
		rules, err := Compile(playbookWith("shop", podRule(func(r *riposte.DriftRule) {
			r.Rule = "!has(object.spec.hostNetwork) || !object.spec.hostNetwork"
			edit(r)
		})), "riposte-system")
		if err != nil {
			t.Fatal(err)
		}
		return rules
	}
	cases := []struct {
		reason   string
		edit     func(*riposte.DriftRule)
		object   string
		breaking bool
	}{
		{"every kind by default", func(*riposte.DriftRule) {}, ds, true},
		{"None judges pods only", func(r *riposte.DriftRule) { r.PodControllers = []riposte.PodController{riposte.PodControllerNone} }, ds, false},
		{"only the kinds named", func(r *riposte.DriftRule) {
			r.PodControllers = []riposte.PodController{riposte.PodControllerDeployment}
		}, ds, false},
		{"the kind named", func(r *riposte.DriftRule) {
			r.PodControllers = []riposte.PodController{riposte.PodControllerDeployment}
		}, deploy, true},
		{"objectSelector on the template's labels", func(r *riposte.DriftRule) {
			r.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}
		}, ds, true},
		{"not on the workload's own labels", func(r *riposte.DriftRule) {
			r.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "infra"}}
		}, ds, false},
	}
	for _, tc := range cases {
		got := Judge(rule(tc.edit), obj(t, tc.object), nil, namespaced, nil, nil)
		if (len(got.Findings) == 1) != tc.breaking || len(got.Errors) > 0 {
			t.Errorf("%s: findings %+v errors %v, want breaking %v", tc.reason, got.Findings, got.Errors, tc.breaking)
		}
	}
	// A rule about another kind judges no template.
	svc, _ := Compile(playbookWith("shop", riposte.DriftRule{Name: "s", Resource: riposte.ResourceKind{APIVersion: "v1", Kind: "Service"}, Rule: "false", Message: "m"}), "riposte-system")
	if got := Judge(svc, obj(t, deploy), nil, namespaced, nil, nil); got.Evaluated != 0 {
		t.Errorf("a Service rule judged a Deployment")
	}
}
