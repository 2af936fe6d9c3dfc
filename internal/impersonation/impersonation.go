// Package impersonation names the accounts Riposte acts as and says how a
// team grants Riposte the right to impersonate one. The API server, not
// Riposte's code, decides: Riposte holds `impersonate` only on the accounts
// named in a Role or RoleBinding in their own namespace.
package impersonation

import (
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const (
	// DefaultRemediator is the account cluster-wide playbooks (those in
	// Riposte's namespace) run as when they name none.
	DefaultRemediator = "riposte-remediator"
	// TeamAccount is the account name the ready-made ClusterRole
	// TeamClusterRole lets Riposte impersonate, in each namespace that binds it.
	TeamAccount = "remediator"
	// TeamClusterRole is shipped in config/rbac/impersonation_role.yaml.
	TeamClusterRole = "riposte-impersonate-remediator"
)

// Account is the service account a playbook in namespace runs as: the one it
// names, or DefaultRemediator for a cluster-wide playbook that names none
// ("" for a namespaced playbook that names none).
func Account(namespace, serviceAccountName, operatorNamespace string) string {
	if serviceAccountName == "" && namespace == operatorNamespace {
		return DefaultRemediator
	}
	return serviceAccountName
}

// IsManager reports whether namespace/account is Riposte's own account,
// which no playbook may run as: acting as it would lend a playbook
// Riposte's power (opening Alertmanager incidents, creating gates).
func IsManager(namespace, account, operatorNamespace string) bool {
	return namespace == operatorNamespace && account == riposte.ManagerServiceAccountName
}

// GrantCommand is the kubectl command that lets Riposte impersonate
// namespace/account: a RoleBinding to the ready-made ClusterRole for the
// conventional account name, else a Role naming the account and its
// binding. Either way the creator must be allowed to create RoleBindings
// there and to impersonate that account themselves (RBAC escalation
// prevention): a namespace admin is.
func GrantCommand(namespace, account, operatorNamespace string) string {
	manager := operatorNamespace + ":" + riposte.ManagerServiceAccountName
	if account == TeamAccount {
		return fmt.Sprintf("kubectl create rolebinding riposte-impersonate -n %s --clusterrole=%s --serviceaccount=%s",
			namespace, TeamClusterRole, manager)
	}
	role := "riposte-impersonate-" + account
	return fmt.Sprintf("kubectl create role %[1]s -n %[2]s --verb=impersonate --resource=serviceaccounts --resource-name=%[3]s && "+
		"kubectl create rolebinding %[1]s -n %[2]s --role=%[1]s --serviceaccount=%[4]s", role, namespace, account, manager)
}

// NotGrantedMessage tells the playbook's author what is missing and the
// command that fixes it.
func NotGrantedMessage(namespace, account, operatorNamespace string) string {
	return fmt.Sprintf("Riposte may not impersonate the service account %s/%s, so it cannot plan or apply this playbook's remediation; "+
		"an admin of namespace %s grants it with: %s",
		namespace, account, namespace, GrantCommand(namespace, account, operatorNamespace))
}

// Refused reports whether err is the API server refusing Riposte's
// impersonation itself (not the impersonated account's own lack of a
// permission). The legacy check answers "cannot impersonate resource
// serviceaccounts", constrained impersonation (KEP-5284) "cannot
// impersonate-on:serviceaccount:<verb> ...".
func Refused(err error) bool {
	return err != nil && apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot impersonate")
}
