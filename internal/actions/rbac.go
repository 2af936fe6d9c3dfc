package actions

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// revokeBinding removes one subject from a RoleBinding or ClusterRoleBinding,
// or deletes the binding. The subjects list is written whole, as planned
// (the plan is made again and compared with the approved one just before it
// is written); undo writes the old list back unless the list changed since,
// or re-creates a deleted binding.
func revokeBinding(ctx context.Context, in *Input) ([]Change, error) {
	p := in.Step.RevokeBinding
	name, err := in.Render(p.Name)
	if err != nil {
		return nil, err
	}
	namespace := ""
	var binding client.Object = &rbacv1.ClusterRoleBinding{}
	if p.Kind != riposte.BindingKind("ClusterRoleBinding") {
		if in.Target == nil || in.Target.Namespace == "" {
			return nil, userErrorf("RevokeBinding of a RoleBinding needs a namespaced target to find it in; the target is %s", describe(in.Target))
		}
		namespace, binding = in.Target.Namespace, &rbacv1.RoleBinding{}
	}
	if err := in.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, binding); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, userErrorf("%s %s does not exist", kindOf(binding), qualified(namespace, name))
		}
		return nil, fmt.Errorf("reading binding %s: %w", name, err)
	}
	ref := object("rbac.authorization.k8s.io/v1", kindOf(binding), namespace, name)
	if p.DeleteBinding {
		return []Change{{Op: Delete, Object: ref, UID: string(binding.GetUID()),
			Summary: fmt.Sprintf("delete %s %s (undo re-creates it)", kindOf(binding), qualified(namespace, name))}}, nil
	}
	subject, err := renderSubject(in, p.Subject)
	if err != nil {
		return nil, err
	}
	remaining := []any{}
	for _, s := range subjectsOf(binding) {
		if s.Kind == subject.Kind && s.Name == subject.Name && (s.Kind != rbacv1.ServiceAccountKind || s.Namespace == subject.Namespace) {
			continue
		}
		m, err := toMap(&s)
		if err != nil {
			return nil, err
		}
		remaining = append(remaining, m)
	}
	return []Change{{Op: MergePatch, Object: ref, Patch: map[string]any{"subjects": remaining},
		Summary: fmt.Sprintf("remove %s %s from %s %s", subject.Kind, qualified(subject.Namespace, subject.Name), kindOf(binding), qualified(namespace, name))}}, nil
}

func renderSubject(in *Input, s *riposte.BindingSubject) (rbacv1.Subject, error) {
	name, err := in.Render(s.Name)
	if err != nil {
		return rbacv1.Subject{}, err
	}
	out := rbacv1.Subject{Kind: string(s.Kind), Name: name}
	if out.Kind == "" {
		out.Kind = rbacv1.ServiceAccountKind
	}
	if out.Kind == rbacv1.ServiceAccountKind {
		if out.Namespace, err = in.Render(s.Namespace); err != nil {
			return out, err
		}
		if out.Namespace == "" && in.Target != nil {
			out.Namespace = in.Target.Namespace
		}
	}
	if name == "" {
		return out, userErrorf("the subject's name %q rendered empty", s.Name)
	}
	return out, nil
}

func subjectsOf(b client.Object) []rbacv1.Subject {
	switch b := b.(type) {
	case *rbacv1.RoleBinding:
		return b.Subjects
	case *rbacv1.ClusterRoleBinding:
		return b.Subjects
	}
	return nil
}

func kindOf(b client.Object) string {
	if _, ok := b.(*rbacv1.RoleBinding); ok {
		return "RoleBinding"
	}
	return "ClusterRoleBinding"
}

func qualified(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}
