package enrich

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const (
	maxRoles       = 32
	maxPermissions = 40
	maxDangerous   = 16
)

// subjectMatches reports whether a binding subject covers the service account.
func subjectMatches(s rbacv1.Subject, namespace, name string) bool {
	switch s.Kind {
	case rbacv1.ServiceAccountKind:
		return s.Name == name && s.Namespace == namespace
	case rbacv1.GroupKind:
		return s.Name == "system:serviceaccounts" || s.Name == "system:serviceaccounts:"+namespace || s.Name == "system:authenticated"
	}
	return false
}

// identity gathers the roles bound to a service account and summarises them.
func (e *Enricher) identity(ctx context.Context, namespace, sa string, ic *riposte.IncidentContext) error {
	if sa == "" {
		sa = "default"
	}
	id := &riposte.IdentityContext{ServiceAccount: namespace + "/" + sa}
	var rules []rbacv1.PolicyRule
	var roles []string

	var rbs rbacv1.RoleBindingList
	if err := e.Reader.List(ctx, &rbs, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing role bindings: %w", err)
	}
	for _, b := range rbs.Items {
		if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return subjectMatches(s, namespace, sa) }) {
			continue
		}
		r, err := e.roleRules(ctx, b.RoleRef, namespace)
		if err != nil {
			return err
		}
		roles = append(roles, fmt.Sprintf("%s/%s via RoleBinding %s", b.RoleRef.Kind, b.RoleRef.Name, b.Name))
		rules = append(rules, r...)
	}
	var crbs rbacv1.ClusterRoleBindingList
	if err := e.Reader.List(ctx, &crbs, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing cluster role bindings: %w", err)
	}
	for _, b := range crbs.Items {
		if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			// The bootstrap bindings every account or every authenticated
			// user gets (discovery, basic user) say nothing about this pod;
			// bindings that name its account, or grant its groups a role of
			// someone's making, do.
			if s.Kind == rbacv1.GroupKind && strings.HasPrefix(b.RoleRef.Name, "system:") {
				return false
			}
			return subjectMatches(s, namespace, sa) && s.Name != "system:authenticated"
		}) {
			continue
		}
		r, err := e.roleRules(ctx, b.RoleRef, "")
		if err != nil {
			return err
		}
		roles = append(roles, fmt.Sprintf("ClusterRole/%s via ClusterRoleBinding %s", b.RoleRef.Name, b.Name))
		rules = append(rules, r...)
	}
	sort.Strings(roles)
	id.Roles, ic.Truncated = bound(roles, maxRoles, "identity.roles", ic.Truncated)
	id.Permissions, ic.Truncated = bound(Permissions(rules), maxPermissions, "identity.permissions", ic.Truncated)
	id.Dangerous, ic.Truncated = bound(Dangerous(rules), maxDangerous, "identity.dangerous", ic.Truncated)
	ic.Identity = id
	return nil
}

func (e *Enricher) roleRules(ctx context.Context, ref rbacv1.RoleRef, namespace string) ([]rbacv1.PolicyRule, error) {
	if ref.Kind == "Role" {
		var r rbacv1.Role
		if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &r); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		return r.Rules, nil
	}
	var r rbacv1.ClusterRole
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: ref.Name}, &r); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return r.Rules, nil
}

// Permissions renders rules as "verbs resources" lines, deduplicated and sorted.
func Permissions(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		var line string
		switch {
		case len(r.NonResourceURLs) > 0:
			line = strings.Join(r.Verbs, ",") + " " + strings.Join(r.NonResourceURLs, ",")
		default:
			res := make([]string, 0, len(r.Resources))
			for _, g := range r.APIGroups {
				for _, name := range r.Resources {
					if g == "" {
						res = append(res, name)
					} else {
						res = append(res, name+"."+g)
					}
				}
			}
			line = strings.Join(r.Verbs, ",") + " " + strings.Join(res, ",")
			if len(r.ResourceNames) > 0 {
				line += " (" + strings.Join(r.ResourceNames, ",") + ")"
			}
		}
		if !slices.Contains(out, line) {
			out = append(out, line)
		}
	}
	sort.Strings(out)
	return out
}

// Dangerous names the permissions an attacker holding the token would use.
func Dangerous(rules []rbacv1.PolicyRule) []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, r := range rules {
		core := slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, "*")
		verb := func(vs ...string) bool {
			return slices.Contains(r.Verbs, "*") || slices.ContainsFunc(vs, func(v string) bool { return slices.Contains(r.Verbs, v) })
		}
		resource := func(name string) bool {
			return slices.Contains(r.Resources, "*") || slices.Contains(r.Resources, name)
		}
		if slices.Contains(r.Verbs, "*") {
			add("wildcard verbs")
		}
		if slices.Contains(r.Resources, "*") {
			add("wildcard resources")
		}
		if core && resource("secrets") && verb("get", "list", "watch") && len(r.ResourceNames) == 0 {
			add("reads Secrets")
		}
		if core && resource("pods") && verb("create") {
			add("creates pods")
		}
		if core && resource("pods/exec") && verb("create", "get") {
			add("pods/exec")
		}
		for _, v := range []string{"escalate", "bind", "impersonate"} {
			if slices.Contains(r.Verbs, v) {
				add(v)
			}
		}
	}
	sort.Strings(out)
	return out
}

// bound cuts a list to n entries and notes the cut.
func bound(list []string, n int, name string, truncated []string) ([]string, []string) {
	if len(list) <= n {
		return list, truncated
	}
	return list[:n], append(truncated, fmt.Sprintf("%s: %d of %d kept", name, n, len(list)))
}
