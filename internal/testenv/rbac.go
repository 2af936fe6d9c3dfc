package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// GrantManagerRBAC installs the manager's generated roles
// (config/rbac/role.yaml) and its leader-election Role, and binds them to
// user, so a test runs Riposte with exactly the permissions it ships with.
func (e *Env) GrantManagerRBAC(ctx context.Context, user string) error {
	for _, file := range []string{"role.yaml", "leader_election_role.yaml"} {
		if err := e.grantRoles(ctx, filepath.Join(RepoRoot(), "config", "rbac", file), user); err != nil {
			return err
		}
	}
	return nil
}

// grantRoles applies the roles in path and binds each to user.
func (e *Env) grantRoles(ctx context.Context, path, user string) error {
	// Applied, not created, so a control plane kept across runs (make run)
	// takes the roles of the code it now runs.
	if err := ApplyDir(ctx, e.Config, path); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var probe struct {
			Kind string `json:"kind"`
		}
		var raw []byte
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if raw, err = jsonOf(doc); err != nil {
			return err
		}
		_ = utilyaml.Unmarshal(raw, &probe)
		switch probe.Kind {
		case "ClusterRole":
			var role rbacv1.ClusterRole
			if err := utilyaml.Unmarshal(raw, &role); err != nil {
				return err
			}
			if err := e.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: role.Name + "-" + bindingSuffix(user)},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
				Subjects:   subject,
			}); ignoreExists(err) != nil {
				return err
			}
		case "Role":
			var role rbacv1.Role
			if err := utilyaml.Unmarshal(raw, &role); err != nil {
				return err
			}
			if err := e.Client.Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: role.Name + "-" + bindingSuffix(user), Namespace: role.Namespace},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
				Subjects:   subject,
			}); ignoreExists(err) != nil {
				return err
			}
		}
	}
}

func jsonOf(doc map[string]any) ([]byte, error) { return json.Marshal(doc) }

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// bindingSuffix turns a user name into something a binding's name may hold.
func bindingSuffix(user string) string {
	return strings.NewReplacer(":", "-", "@", "-").Replace(user)
}
