package controllers_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/impersonation"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// kubectlAs runs the kubectl binary of the test control plane with the
// given kubeconfig, returning what it printed and whether it succeeded.
func kubectlAs(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.BinaryAssetsDirectory, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// managerKubeconfig writes a kubeconfig with the manager's identity and
// exactly its shipped RBAC: what a stolen manager token can do.
func managerKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manager.kubeconfig")
	if err := env.WriteManagerKubeconfig(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	return path
}

// expectImpersonationRefused runs `kubectl --as=user auth can-i ...` as the
// manager and asserts the API server refuses the impersonation itself.
func expectImpersonationRefused(t *testing.T, kubeconfig, user string, canI ...string) {
	t.Helper()
	out, err := kubectlAs(t, kubeconfig, append([]string{"--as=" + user, "auth", "can-i"}, canI...)...)
	t.Logf("kubectl --as=%s auth can-i %s (as the manager): %s", user, strings.Join(canI, " "), out)
	if err == nil || !strings.Contains(out, "is forbidden") || !strings.Contains(out, `User "`+testenv.ManagerUser+`" cannot impersonate`) {
		t.Errorf("kubectl --as=%s auth can-i %s as the manager: err %v, output %q; want the API server to refuse the impersonation", user, strings.Join(canI, " "), err, out)
	}
}

// managerMayImpersonate asks the API server, as an admin, whether the
// manager's account may impersonate namespace/name (a SubjectAccessReview).
func managerMayImpersonate(t *testing.T, namespace, name string) bool {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   testenv.ManagerUser,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNamespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: "impersonate", Resource: "serviceaccounts", Namespace: namespace, Name: name},
	}}
	if err := k8sClient.Create(context.Background(), review); err != nil {
		t.Fatal(err)
	}
	return review.Status.Allowed
}

// A stolen manager token cannot become a cluster-admin account in
// kube-system: the manager holds impersonate on no account cluster-wide.
func TestAttackManagerCannotImpersonateClusterAdmin(t *testing.T) {
	ctx := context.Background()
	admin := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "ops-admin", Namespace: "kube-system"}}
	if err := k8sClient.Create(ctx, admin); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ops-admin-cluster-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: admin.Name, Namespace: admin.Namespace}},
	}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	kubeconfig := managerKubeconfig(t)
	expectImpersonationRefused(t, kubeconfig, "system:serviceaccount:kube-system:ops-admin", "*", "*")
	if managerMayImpersonate(t, "kube-system", "ops-admin") || managerMayImpersonate(t, "", "") {
		t.Error("the API server lets the manager impersonate kube-system/ops-admin (or every account)")
	}
	// Nor any account of a namespace that granted nothing, nor a user.
	expectImpersonationRefused(t, kubeconfig, "system:serviceaccount:default:default", "get", "pods")
	expectImpersonationRefused(t, kubeconfig, "alice", "get", "pods")
}

// The manager cannot act as its own account through impersonation (which
// would let a playbook naming it open incidents that pass for alerts); it
// can act as exactly the cluster-wide accounts riposte-system names.
func TestAttackManagerCannotImpersonateItself(t *testing.T) {
	kubeconfig := managerKubeconfig(t)
	expectImpersonationRefused(t, kubeconfig, testenv.ManagerUser, "create", "incidents.riposte.dev", "-n", operatorNamespace)
	expectImpersonationRefused(t, kubeconfig, "system:serviceaccount:"+operatorNamespace+":default", "get", "pods")
	// The answer is the impersonated account's own ("yes" for the default
	// remediator, which may isolate pods; "no" for the policy pack's account
	// when the pack is not installed), not a refusal.
	for account, want := range map[string]string{impersonation.DefaultRemediator: "yes", "riposte-policy": "no"} {
		out, _ := kubectlAs(t, kubeconfig, "--as=system:serviceaccount:"+operatorNamespace+":"+account, "auth", "can-i", "patch", "pods", "-n", "default")
		if out != want || !managerMayImpersonate(t, operatorNamespace, account) {
			t.Errorf("the manager acting as %s/%s: auth can-i patch pods = %q, want %q: it must be allowed to impersonate it", operatorNamespace, account, out, want)
		}
	}
}

// A team that has not granted Riposte its account learns it from the
// playbook before any incident, with the command that fixes it; an
// incident fails visibly. A namespace admin runs that command; then Riposte
// may impersonate exactly that account, and no other in the namespace.
func TestAttackTeamWithoutGrantIsNotImpersonated(t *testing.T) {
	ns := strings.TrimRight(fmt.Sprintf("no-grant-%d", nsCounter.Add(1)), "-")
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: remediatorAccount, Namespace: ns}})
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "remediator-isolate", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "riposte-action-isolate"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: remediatorAccount, Namespace: ns}}})

	pb := isolatePlaybook(ns, "isolate", "ShellNoGrant", &riposte.AutoApprove{})
	mustCreate(t, pb)
	fix := "kubectl create rolebinding riposte-impersonate -n " + ns +
		" --clusterrole=riposte-impersonate-remediator --serviceaccount=riposte-system:riposte-controller-manager"
	waitForPlaybook(t, pb, func(ready, stalled *metav1.Condition, generation int64) error {
		if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != riposte.ReasonImpersonationNotGranted ||
			!strings.Contains(ready.Message, fix) || ready.ObservedGeneration != generation {
			return fmt.Errorf("Ready = %+v, want False/ImpersonationNotGranted naming %q", ready, fix)
		}
		if stalled == nil || stalled.Status != metav1.ConditionTrue || stalled.Reason != riposte.ReasonImpersonationNotGranted {
			return fmt.Errorf("Stalled = %+v, want True/ImpersonationNotGranted", stalled)
		}
		return nil
	})
	kubeconfig := managerKubeconfig(t)
	expectImpersonationRefused(t, kubeconfig, "system:serviceaccount:"+ns+":"+remediatorAccount, "patch", "pods", "-n", ns)

	// An incident it answers fails: the API server refuses the
	// impersonation (of the dry run, or of a plan's only write), and the
	// incident says what to grant.
	pod := deployedPod(t, ns, "web")
	mustCreate(t, alertIncident(ns, "am-no-grant", "ShellNoGrant", ns, pod.Name))
	inc := waitForPhase(t, ns, "am-no-grant", riposte.PhaseFailed)
	if c := condition(t, inc.Status.Conditions, riposte.ConditionReady); c.Reason != riposte.ReasonImpersonationNotGranted || !strings.Contains(c.Message, fix) {
		t.Errorf("Ready = %s: %s; want ImpersonationNotGranted with %q", c.Reason, c.Message, fix)
	}
	expectQuarantined(t, pod, false)

	// Only someone who may impersonate the account themselves can grant it
	// (RBAC escalation prevention): a user who may create RoleBindings but
	// not impersonate is refused.
	// The API server's authorizer sees a new binding a moment after it is
	// stored, so each step is retried until RBAC has caught up.
	grantAs := func(user, command string) (string, error) {
		path := filepath.Join(t.TempDir(), user+".kubeconfig")
		if err := env.WriteKubeconfig(path, user); err != nil {
			t.Fatal(err)
		}
		return kubectlAs(t, path, strings.Fields(command)[1:]...)
	}
	grant := func(user, command string) {
		t.Helper()
		testenv.Eventually(t, waitFor, func(context.Context) error {
			if out, err := grantAs(user, command); err != nil && !strings.Contains(out, "already exists") {
				return fmt.Errorf("%s ran %q: %v: %s", user, command, err, out)
			}
			return nil
		})
	}
	bindInNamespace(t, ns, "mallory-"+ns, "rolebinding-writer")
	testenv.Eventually(t, waitFor, func(context.Context) error {
		out, err := grantAs("mallory-"+ns, fix)
		if err == nil {
			t.Fatalf("a user who may not impersonate remediator granted it to Riposte: %s", out)
		}
		if !strings.Contains(out, "is attempting to grant RBAC permissions not currently held") {
			return fmt.Errorf("mallory's grant was refused, but not by escalation prevention: %s", out)
		}
		return nil
	})
	// A namespace admin may: the rules aggregation gives the admin role
	// (this control plane runs no controller-manager to aggregate them).
	bindInNamespace(t, ns, "erin-"+ns, "system:aggregate-to-admin", "system:aggregate-to-edit")
	grant("erin-"+ns, fix)

	// The RoleBinding wakes the playbook.
	waitForPlaybook(t, pb, func(ready, _ *metav1.Condition, generation int64) error {
		if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != generation {
			return fmt.Errorf("Ready = %+v, want True", ready)
		}
		return nil
	})
	out, err := kubectlAs(t, kubeconfig, "--as=system:serviceaccount:"+ns+":"+remediatorAccount, "auth", "can-i", "patch", "pods", "-n", ns)
	if err != nil || out != "yes" {
		t.Errorf("after the grant, the manager acting as %s/%s: auth can-i patch pods = %q (%v), want yes", ns, remediatorAccount, out, err)
	}
	expectImpersonationRefused(t, kubeconfig, "system:serviceaccount:"+ns+":default", "get", "pods", "-n", ns)
	if managerMayImpersonate(t, ns, "auditor") {
		t.Fatal("the manager may impersonate an account before it was granted")
	}
	// Any other account name: the two commands docs/security.md gives.
	for _, command := range strings.Split(impersonation.GrantCommand(ns, "auditor", operatorNamespace), " && ") {
		grant("erin-"+ns, command)
	}
	testenv.Eventually(t, waitFor, func(context.Context) error {
		if !managerMayImpersonate(t, ns, "auditor") {
			return fmt.Errorf("after the two-command grant, the manager may not impersonate %s/auditor", ns)
		}
		return nil
	})
	if managerMayImpersonate(t, ns, "default") || managerMayImpersonate(t, "kube-system", remediatorAccount) {
		t.Error("the team's grant lets the manager impersonate another account")
	}
}

// waitForPlaybook waits until check accepts the playbook's Ready and Stalled.
func waitForPlaybook(t *testing.T, pb *riposte.Playbook, check func(ready, stalled *metav1.Condition, generation int64) error) {
	t.Helper()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		cur := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(pb), cur); err != nil {
			return err
		}
		return check(meta.FindStatusCondition(cur.Status.Conditions, riposte.ConditionReady),
			meta.FindStatusCondition(cur.Status.Conditions, riposte.ConditionStalled), cur.Generation)
	})
}

// bindInNamespace binds ClusterRoles to user in ns; "rolebinding-writer"
// is made here: create and get RoleBindings, nothing else.
func bindInNamespace(t *testing.T, ns, user string, clusterRoles ...string) {
	t.Helper()
	for _, role := range clusterRoles {
		if role == "rolebinding-writer" {
			err := k8sClient.Create(context.Background(), &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role},
				Rules: []rbacv1.PolicyRule{{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"rolebindings"}, Verbs: []string{"get", "create"}}}})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user + "-" + strings.ReplaceAll(role, ":", "-"), Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}})
	}
}

// Playbooks that would run as an account no playbook may use are refused
// where they enter, with the reason: kube-system's, Riposte's own (also by
// a later update), and names that are not service account names.
func TestAttackForbiddenPlaybookIdentitiesAreRefusedAtAdmission(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cases := []struct {
		name, namespace, account, want string
		forbidden                      bool
	}{
		{"kube-system", "kube-system", "default", "no Playbook may live in kube-system", true},
		{"riposte-own-account", operatorNamespace, riposte.ManagerServiceAccountName, "a playbook may not run as Riposte's own account", true},
		{"not-dns", ns, "Bad_Name", "spec.serviceAccountName in body should match", false},
		{"too-long", ns, strings.Repeat("a", 254), "spec.serviceAccountName: Too long", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pb := isolatePlaybook(tc.namespace, "attack-"+tc.name, "Attack", &riposte.AutoApprove{})
			pb.Spec.ServiceAccountName = tc.account
			err := k8sClient.Create(ctx, pb)
			if err == nil {
				_ = k8sClient.Delete(ctx, pb)
				t.Fatalf("created playbook %s/%s running as %q", tc.namespace, pb.Name, tc.account)
			}
			if tc.forbidden != apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("creating playbook %s/%s as %q: %v; want a refusal saying %q", tc.namespace, pb.Name, tc.account, err, tc.want)
			}
		})
	}
	// Nor can the team role be bound cluster-wide, which would grant every
	// namespace's remediator, kube-system's included.
	err := k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "attack-impersonate-everywhere"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: impersonation.TeamClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: riposte.ManagerServiceAccountName, Namespace: operatorNamespace}},
	})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "a ClusterRoleBinding would let it impersonate every namespace's remediator") {
		t.Errorf("binding %s cluster-wide: %v; want refused", impersonation.TeamClusterRole, err)
	}
	// A cluster-wide playbook cannot be switched to Riposte's account later.
	pb := isolatePlaybook(operatorNamespace, "attack-switch-account", "AttackSwitch", nil)
	pb.Spec.ServiceAccountName = ""
	mustCreate(t, pb)
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), pb) })
	err = updateWithRetry(ctx, &riposte.Playbook{}, client.ObjectKeyFromObject(pb), func(obj client.Object) {
		obj.(*riposte.Playbook).Spec.ServiceAccountName = riposte.ManagerServiceAccountName
	})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "Riposte's own account") {
		t.Errorf("switching a cluster-wide playbook to Riposte's account: %v; want refused", err)
	}
}
