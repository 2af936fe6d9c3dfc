package actions

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// The planner is a pure function of what it reads; a fake reader is enough
// here. What the API server makes of the plan is tested in controllers/.
func TestIsolatePodPlan(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1"}}
	hostNet := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "node-agent", Namespace: "shop", UID: "u2"}, Spec: corev1.PodSpec{HostNetwork: true}}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod, hostNet).Build()
	inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: "am-1", Namespace: "shop"}}
	podRef := func(name, uid string) *riposte.ObjectReference {
		return &riposte.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: name, UID: uid}
	}
	cases := []struct {
		reason      string
		target      *riposte.ObjectReference
		params      *riposte.IsolatePodParams
		wantErr     string
		wantObjects []string
		wantEgress  bool
	}{
		{reason: "deny-all policy, then the label", target: podRef("web", "u1"),
			wantObjects: []string{"NetworkPolicy/shop/riposte-quarantine-deny-all", "Pod/shop/web"}},
		{reason: "allowDNS uses its own policy variant", target: podRef("web", "u1"), params: &riposte.IsolatePodParams{AllowDNS: true},
			wantObjects: []string{"NetworkPolicy/shop/riposte-quarantine-allow-dns", "Pod/shop/web"}, wantEgress: true},
		{reason: "no target", wantErr: "needs a Pod target; the incident's target is not resolved"},
		{reason: "a Service is not a pod", target: &riposte.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: "shop", Name: "web"}, wantErr: "needs a Pod target"},
		{reason: "a Deployment target that does not exist (its pods: TestCatalogue)", target: &riposte.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"},
			wantErr: "Deployment/shop/web does not exist"},
		{reason: "a pod that is gone", target: podRef("ghost", ""), wantErr: "pod shop/ghost does not exist"},
		{reason: "a pod replaced since the incident saw it", target: podRef("web", "old-uid"), wantErr: "was replaced"},
		{reason: "a host-network pod cannot be isolated by a NetworkPolicy", target: podRef("node-agent", "u2"), wantErr: "uses the host network"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			changes, err := isolatePod(context.Background(), &Input{
				Incident: inc, Step: riposte.Step{Name: "isolate", Action: riposte.ActionIsolatePod, IsolatePod: tc.params},
				Target: tc.target, Reader: reader, Scheme: scheme,
			})
			if tc.wantErr != "" {
				var ue *UserError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &ue) {
					t.Fatalf("Plan error = %v, want a UserError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range changes {
				got = append(got, c.Ref().String())
			}
			if diff := cmp.Diff(tc.wantObjects, got); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			if !changes[0].Shared || changes[1].Shared || changes[1].UID != "u1" {
				t.Errorf("the policy must be shared (undo keeps it) and the label tied to the pod's UID: %+v", changes)
			}
			_, hasEgress := changes[0].Object.Object["spec"].(map[string]any)["egress"]
			if hasEgress != tc.wantEgress {
				t.Errorf("policy egress rules present = %v, want %v", hasEgress, tc.wantEgress)
			}
			md := changes[1].Patch["metadata"].(map[string]any)
			labels := md["labels"].(map[string]any)
			selector := changes[0].Object.Object["spec"].(map[string]any)["podSelector"].(map[string]any)["matchLabels"].(map[string]any)
			if labels[QuarantineLabel] != selector[QuarantineLabel] {
				t.Errorf("the pod's label %q is not what the policy selects %q", labels[QuarantineLabel], selector[QuarantineLabel])
			}
			if got := md["annotations"].(map[string]any)[QuarantinedByAnnotation]; got != "shop/am-1="+labels[QuarantineLabel].(string) {
				t.Errorf("pod annotation = %q, want the incident with its variant", got)
			}
			if h := changes[1].Hold; h == nil || *h != (Hold{Holder: "shop/am-1", Variant: labels[QuarantineLabel].(string)}) {
				t.Errorf("the label's hold is %+v, want the incident's with its variant", h)
			}
		})
	}
}

// Several incidents may hold one pod isolated; the label is the strictest
// hold, and releasing one, in any order, keeps the others'. Each patch is
// computed from the pod as read, and says when the pod already is so (the
// executor then writes nothing).
func TestQuarantineHolders(t *testing.T) {
	cases := []struct {
		reason     string
		label      string
		annotation string
		hold       *Hold  // added, or
		release    string // released
		want       string
		inPlace    bool
	}{
		{reason: "the first hold labels the pod", hold: &Hold{"shop/a", "allow-dns"},
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":"shop/a=allow-dns"},"labels":{"riposte.dev/quarantine":"allow-dns"}}}`},
		{reason: "a second hold joins the first, at the strictest", label: "allow-dns", annotation: "shop/a=allow-dns", hold: &Hold{"shop/b", "deny-all"},
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":"shop/a=allow-dns,shop/b=deny-all"},"labels":{"riposte.dev/quarantine":"deny-all"}}}`},
		{reason: "a hold already there is in place", label: "deny-all", annotation: "shop/a=allow-dns,shop/b=deny-all", hold: &Hold{"shop/b", "deny-all"},
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":"shop/a=allow-dns,shop/b=deny-all"},"labels":{"riposte.dev/quarantine":"deny-all"}}}`, inPlace: true},
		{reason: "a hold whose label someone removed is written again", annotation: "shop/a=deny-all", hold: &Hold{"shop/a", "deny-all"},
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":"shop/a=deny-all"},"labels":{"riposte.dev/quarantine":"deny-all"}}}`},
		{reason: "the last holder frees the pod", label: "deny-all", annotation: "shop/a=deny-all", release: "shop/a",
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":null},"labels":{"riposte.dev/quarantine":null}}}`},
		{reason: "another holder keeps it isolated", label: "deny-all", annotation: "shop/a=deny-all,shop/b=deny-all", release: "shop/a",
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":"shop/b=deny-all"},"labels":{"riposte.dev/quarantine":"deny-all"}}}`},
		{reason: "the strictest remaining hold wins", label: "deny-all", annotation: "shop/a=deny-all,shop/b=allow-dns", release: "shop/a",
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":"shop/b=allow-dns"},"labels":{"riposte.dev/quarantine":"allow-dns"}}}`},
		{reason: "releasing the weaker hold keeps deny-all", label: "deny-all", annotation: "shop/a=deny-all,shop/b=allow-dns", release: "shop/b",
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":"shop/a=deny-all"},"labels":{"riposte.dev/quarantine":"deny-all"}}}`},
		{reason: "releasing one not holding changes nothing but the format", label: "deny-all", annotation: "shop/a", release: "shop/x",
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":"shop/a=deny-all"},"labels":{"riposte.dev/quarantine":"deny-all"}}}`},
		{reason: "releasing a pod already free is in place", release: "shop/a",
			want: `{"metadata":{"annotations":{"riposte.dev/quarantined-by":null},"labels":{"riposte.dev/quarantine":null}}}`, inPlace: true},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			labels, annotations := map[string]string{}, map[string]string{}
			if tc.label != "" {
				labels[QuarantineLabel] = tc.label
			}
			if tc.annotation != "" {
				annotations[QuarantinedByAnnotation] = tc.annotation
			}
			var patch map[string]any
			var inPlace bool
			if tc.hold != nil {
				patch, inPlace = HoldQuarantine(labels, annotations, *tc.hold)
			} else {
				patch, inPlace = ReleaseQuarantine(labels, annotations, tc.release)
			}
			if b, _ := json.Marshal(patch); string(b) != tc.want || inPlace != tc.inPlace {
				t.Errorf("patch = %s, in place %v\nwant    %s, in place %v", b, inPlace, tc.want, tc.inPlace)
			}
			if tc.hold != nil {
				if got := HoldIn(patch, tc.hold.Holder); got != *tc.hold {
					t.Errorf("HoldIn(patch) = %+v, want %+v: a record must give back its hold", got, *tc.hold)
				}
			}
		})
	}
}
