package impersonation

import (
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestAccount(t *testing.T) {
	for _, tc := range []struct{ namespace, named, want string }{
		{"team-a", "remediator", "remediator"},
		{"team-a", "", ""}, // refused elsewhere: a namespaced playbook must name one
		{"riposte-system", "", DefaultRemediator},
		{"riposte-system", "riposte-policy", "riposte-policy"},
	} {
		if got := Account(tc.namespace, tc.named, "riposte-system"); got != tc.want {
			t.Errorf("Account(%q, %q) = %q, want %q", tc.namespace, tc.named, got, tc.want)
		}
	}
}

func TestIsManager(t *testing.T) {
	if !IsManager("riposte-system", "riposte-controller-manager", "riposte-system") {
		t.Error("Riposte's own account is not recognised")
	}
	// Another namespace's account of that name is only a namesake.
	if IsManager("team-a", "riposte-controller-manager", "riposte-system") || IsManager("riposte-system", "riposte-remediator", "riposte-system") {
		t.Error("an account other than Riposte's own is taken for it")
	}
}

func TestGrantCommand(t *testing.T) {
	for _, tc := range []struct{ namespace, account, want string }{
		{"team-a", "remediator", "kubectl create rolebinding riposte-impersonate -n team-a --clusterrole=riposte-impersonate-remediator --serviceaccount=riposte-system:riposte-controller-manager"},
		{"team-a", "auditor", "kubectl create role riposte-impersonate-auditor -n team-a --verb=impersonate --resource=serviceaccounts --resource-name=auditor && " +
			"kubectl create rolebinding riposte-impersonate-auditor -n team-a --role=riposte-impersonate-auditor --serviceaccount=riposte-system:riposte-controller-manager"},
	} {
		if got := GrantCommand(tc.namespace, tc.account, "riposte-system"); got != tc.want {
			t.Errorf("GrantCommand(%q, %q) =\n%s\nwant\n%s", tc.namespace, tc.account, got, tc.want)
		}
	}
}

func TestRefused(t *testing.T) {
	sa := schema.GroupResource{Resource: "serviceaccounts"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"legacy check", apierrors.NewForbidden(sa, "remediator", errors.New(`User "system:serviceaccount:riposte-system:riposte-controller-manager" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "team-a"`)), true},
		{"constrained check, wrapped", fmt.Errorf("dry run: %w", apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "web",
			errors.New(`User "system:serviceaccount:riposte-system:riposte-controller-manager" cannot impersonate-on:serviceaccount:patch resource "pods" in API group "" in the namespace "team-a"`))), true},
		{"the account's own RBAC", apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "web", errors.New(`User "system:serviceaccount:team-a:remediator" cannot patch resource "pods"`)), false},
		{"not forbidden", errors.New("cannot impersonate, said a proxy"), false},
		{"nil", nil, false},
	} {
		if got := Refused(tc.err); got != tc.want {
			t.Errorf("%s: Refused = %v, want %v", tc.name, got, tc.want)
		}
	}
}
