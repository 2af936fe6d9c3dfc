package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const (
	// OperatorNamespace is where Riposte runs in tests, as in config/default.
	OperatorNamespace = "riposte-system"
	// ManagerUser is the identity of Riposte's manager: its service account,
	// which the shipped admission policies recognise.
	ManagerUser = "system:serviceaccount:" + OperatorNamespace + ":riposte-controller-manager"
)

// UserConfig returns a rest.Config authenticating as a new user with a client
// certificate: the API server knows it by that name and those groups, and it
// may do only what RBAC grants it.
func (e *Env) UserConfig(name string, groups ...string) (*rest.Config, error) {
	u, err := e.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	cfg := u.Config()
	cfg.QPS, cfg.Burst = -1, -1
	return cfg, nil
}

// UserClient is a client acting as the named user.
func (e *Env) UserClient(name string, groups ...string) (client.Client, error) {
	cfg, err := e.UserConfig(name, groups...)
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: e.Scheme})
}

// ManagerConfig creates Riposte's namespace, grants the manager's service
// account exactly the shipped RBAC, and returns a config acting as it.
func (e *Env) ManagerConfig(ctx context.Context) (*rest.Config, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OperatorNamespace}}
	if err := e.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if err := e.GrantManagerRBAC(ctx, ManagerUser); err != nil {
		return nil, err
	}
	// As an install does: the action roles, the default remediator, and
	// whom the manager may impersonate.
	for _, f := range []string{"action_roles.yaml", "remediator.yaml", "impersonation_role.yaml"} {
		if err := ApplyDir(ctx, e.Config, filepath.Join(RepoRoot(), "config", "rbac", f)); err != nil {
			return nil, err
		}
	}
	return e.UserConfig(ManagerUser, "system:serviceaccounts", "system:serviceaccounts:"+OperatorNamespace)
}

// installPolicies applies config/policies and waits until the API server
// enforces them: policies take effect asynchronously.
func (e *Env) installPolicies(ctx context.Context) error {
	if err := ApplyDir(ctx, e.Config, filepath.Join(RepoRoot(), "config", "policies")); err != nil {
		return fmt.Errorf("installing config/policies: %w", err)
	}
	probe := &riposte.Incident{
		ObjectMeta: metav1.ObjectMeta{Name: "policy-probe", Namespace: "default"},
		Spec:       riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: "Probe", Fingerprint: "0"},
	}
	// A playbook no one may create: kube-system's (riposte-playbook-identity).
	playbookProbe := &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "policy-probe", Namespace: "kube-system"},
		Spec: riposte.PlaybookSpec{
			Triggers: riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"Probe"}}}},
			Steps:    []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
		},
	}
	// A binding no one may create: the team role, cluster-wide.
	bindingProbe := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "policy-probe"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "riposte-impersonate-remediator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: riposte.ManagerServiceAccountName, Namespace: OperatorNamespace}},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := e.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		if apierrors.IsForbidden(err) {
			if err = e.Client.Create(ctx, playbookProbe.DeepCopy(), client.DryRunAll); apierrors.IsForbidden(err) {
				if err = e.Client.Create(ctx, bindingProbe.DeepCopy(), client.DryRunAll); apierrors.IsForbidden(err) {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the admission policies in config/policies did not take effect within 30s (last answer: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WriteKubeconfig writes a kubeconfig for a new user in the given groups.
func (e *Env) WriteKubeconfig(path, name string, groups ...string) error {
	u, err := e.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return err
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(path, kc, 0o600)
}

// WriteManagerKubeconfig grants the manager's service account its shipped
// RBAC and writes a kubeconfig acting as it, for running the real binary.
func (e *Env) WriteManagerKubeconfig(ctx context.Context, path string) error {
	if _, err := e.ManagerConfig(ctx); err != nil {
		return err
	}
	return e.WriteKubeconfig(path, ManagerUser, "system:serviceaccounts", "system:serviceaccounts:"+OperatorNamespace)
}

// RemediatorAccount is the service account test playbooks run as.
const RemediatorAccount = "remediator"

// Remediator creates the playbooks' account in ns, binds the given action
// ClusterRoles to it there, and lets Riposte impersonate it, as a team would.
func (e *Env) Remediator(ctx context.Context, ns string, clusterRoles ...string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: RemediatorAccount, Namespace: ns}}
	if err := e.Client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := e.GrantImpersonation(ctx, ns); err != nil {
		return err
	}
	for _, role := range clusterRoles {
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: RemediatorAccount + "-" + strings.TrimPrefix(role, "riposte-action-"), Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: RemediatorAccount, Namespace: ns}},
		}
		if err := e.Client.Create(ctx, rb); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// ImpersonationBinding is the RoleBinding a team creates to let Riposte
// impersonate its RemediatorAccount (docs/security.md's one line).
const ImpersonationBinding = "riposte-impersonate"

// GrantImpersonation lets Riposte impersonate RemediatorAccount in ns, with
// the shipped ClusterRole riposte-impersonate-remediator, as a team does.
func (e *Env) GrantImpersonation(ctx context.Context, ns string) error {
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ImpersonationBinding, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "riposte-impersonate-remediator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: riposte.ManagerServiceAccountName, Namespace: OperatorNamespace}},
	}
	if err := e.Client.Create(ctx, rb); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("letting Riposte impersonate %s/%s: %w", ns, RemediatorAccount, err)
	}
	return nil
}

// IntakeClient is a client with the manager's own identity and RBAC, the only
// one allowed to open Alertmanager incidents: tests open them as intake does.
func (e *Env) IntakeClient(ctx context.Context) (client.Client, error) {
	cfg, err := e.ManagerConfig(ctx)
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: e.Scheme})
}

// TeamNamespace creates namespace ns whose playbooks run as
// RemediatorAccount, bound to the given action ClusterRoles.
func (e *Env) TeamNamespace(t testing.TB, ns string, clusterRoles ...string) {
	t.Helper()
	ctx := context.Background()
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := e.Remediator(ctx, ns, clusterRoles...); err != nil {
		t.Fatal(err)
	}
}
