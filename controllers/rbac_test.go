package controllers_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/riposte-dev/riposte/internal/testenv"
)

// grantedToEveryAccount are what Kubernetes' bootstrap roles give every
// service account; docs/security.md names them too.
var grantedToEveryAccount = []string{
	"authentication.k8s.io/selfsubjectreviews", "authorization.k8s.io/selfsubjectaccessreviews",
	"authorization.k8s.io/selfsubjectrulesreviews", "certificates.k8s.io/clustertrustbundles",
}

// documentedPermissions parses the table under a heading of
// docs/security.md (up to the next one of its level) into
// "group/resource" -> verbs.
func documentedPermissions(t *testing.T, heading string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, found := strings.Cut(string(b), "\n"+heading+"\n")
	if !found {
		t.Fatalf("docs/security.md has no heading %q", heading)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	out := map[string][]string{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || strings.TrimSpace(cells[1]) == "API group" || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		group := strings.TrimSpace(cells[1])
		if group == "core" {
			group = ""
		}
		resources := cells[2]
		if i := strings.Index(resources, "("); i >= 0 {
			resources = resources[:i]
		}
		for _, r := range strings.Split(resources, ",") {
			key := group + "/" + strings.TrimSpace(r)
			for _, v := range strings.Split(cells[3], ",") {
				out[key] = append(out[key], strings.TrimSpace(v))
			}
		}
	}
	return out
}

// The manager's effective permissions, as the API server reports them for
// its own identity, are all in docs/security.md.
func TestManagerPermissionsAreDocumented(t *testing.T) {
	if n := len(documentedPermissions(t, "## What the manager may do")); n < 10 {
		t.Fatalf("parsed only %d documented permissions from docs/security.md", n)
	}
	expectDocumentedPermissions(t, "the manager", intakeClient, "## What the manager may do", operatorNamespace, newNamespace(t))
}

// expectDocumentedPermissions asks the API server what c may do in each
// namespace and fails on any permission the table under heading in
// docs/security.md does not list (or if there is none at all).
func expectDocumentedPermissions(t *testing.T, who string, c client.Client, heading string, namespaces ...string) {
	t.Helper()
	documented := documentedPermissions(t, heading)
	found := false
	for _, ns := range namespaces {
		review := &authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}
		if err := c.Create(context.Background(), review); err != nil {
			t.Fatal(err)
		}
		for _, rule := range review.Status.ResourceRules {
			for _, g := range rule.APIGroups {
				for _, r := range rule.Resources {
					key := g + "/" + r
					if slices.Contains(grantedToEveryAccount, key) {
						continue
					}
					found = true
					for _, v := range rule.Verbs {
						if !slices.Contains(documented[key], v) {
							t.Errorf("in namespace %s %s may %s %s, which docs/security.md does not list", ns, who, v, key)
						}
					}
				}
			}
		}
	}
	if !found {
		t.Errorf("the API server reported no rules for %s", who)
	}
}
