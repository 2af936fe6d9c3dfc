package guard

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

func TestEvaluate(t *testing.T) {
	pb := func(ns string) *riposte.Playbook {
		return &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pb"}}
	}
	pod := func(ns string) *riposte.ObjectReference {
		return &riposte.ObjectReference{Kind: "Pod", Namespace: ns, Name: "p"}
	}
	node := &riposte.ObjectReference{Kind: "Node", Name: "n1"}
	protected := []string{"kube-system", "riposte-system"}
	cases := []struct {
		reason     string
		playbook   *riposte.Playbook
		target     *riposte.ObjectReference
		objects    []riposte.ObjectReference
		wantReason string
	}{
		{reason: "a planned object in another namespace is refused too", playbook: pb("shop"), target: pod("shop"),
			objects: []riposte.ObjectReference{*pod("shop"), {Kind: "ConfigMap", Namespace: "web", Name: "x"}}, wantReason: "OutOfScope"},
		{reason: "a planned object in a protected namespace is refused", playbook: pb("riposte-system"), target: pod("shop"),
			objects: []riposte.ObjectReference{{Kind: "NetworkPolicy", Namespace: "kube-system", Name: "x"}}, wantReason: "ProtectedNamespace"},
		{reason: "a planned cluster-scoped object needs a cluster-wide playbook", playbook: pb("shop"), target: pod("shop"),
			objects: []riposte.ObjectReference{*node}, wantReason: "OutOfScope"},
		{reason: "a playbook acts in its own namespace", playbook: pb("shop"), target: pod("shop")},
		{reason: "not in another namespace", playbook: pb("shop"), target: pod("web"), wantReason: "OutOfScope"},
		{reason: "not on a cluster-scoped object", playbook: pb("shop"), target: node, wantReason: "OutOfScope"},
		{reason: "a cluster-wide playbook acts anywhere unprotected", playbook: pb("riposte-system"), target: pod("web")},
		{reason: "a cluster-wide playbook may act on nodes", playbook: pb("riposte-system"), target: node},
		{reason: "never in kube-system, even cluster-wide", playbook: pb("riposte-system"), target: pod("kube-system"), wantReason: "ProtectedNamespace"},
		{reason: "never in Riposte's own namespace", playbook: pb("riposte-system"), target: pod("riposte-system"), wantReason: "ProtectedNamespace"},
		{reason: "a protected namespace's own playbook is still refused", playbook: pb("kube-system"), target: pod("kube-system"), wantReason: "ProtectedNamespace"},
		{reason: "no target: nothing to guard yet", playbook: pb("shop"), target: nil},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			reason, msg, refused := Evaluate(Facts{Playbook: tc.playbook, Target: tc.target, Objects: tc.objects, OperatorNamespace: "riposte-system", ProtectedNamespaces: protected})
			if reason != tc.wantReason || refused != (tc.wantReason != "") {
				t.Errorf("Evaluate = %q (%q, refused %v), want %q", reason, msg, refused, tc.wantReason)
			}
		})
	}
}
