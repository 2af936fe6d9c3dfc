package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/testenv"
)

func kstatusOf(t *testing.T, obj client.Object) status.Status {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: m})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status
}

// Flux and Argo CD judge health with kstatus: Riposte's conditions must read
// as Current when done, InProgress while working or waiting, Failed when only
// a person can fix it.
func TestConditionsReadAsKstatus(t *testing.T) {
	ns := newNamespace(t)
	pod := deployedPod(t, ns, "web")
	mustCreate(t, isolatePlaybook(ns, "auto", "Shell", &riposte.AutoApprove{}))
	mustCreate(t, isolatePlaybook(ns, "manual", "Slow", nil))
	broken := isolatePlaybook(ns, "broken", "Never", nil)
	broken.Spec.When = "incident.("
	mustCreate(t, broken)
	mustCreate(t, alertIncident(ns, "done", "Shell", ns, pod.Name))
	mustCreate(t, alertIncident(ns, "waiting", "Slow", ns, pod.Name))
	mustCreate(t, alertIncident(ns, "failed", "Shell", ns, "ghost"))

	for _, tc := range []struct {
		name  string
		phase riposte.IncidentPhase
		want  status.Status
	}{
		{"done", riposte.PhaseRemediated, status.CurrentStatus},
		{"waiting", riposte.PhaseAwaitingApproval, status.InProgressStatus},
		{"failed", riposte.PhaseFailed, status.FailedStatus},
	} {
		inc := waitForPhase(t, ns, tc.name, tc.phase)
		if got := kstatusOf(t, inc); got != tc.want {
			t.Errorf("incident %s (%s): kstatus %s, want %s", tc.name, tc.phase, got, tc.want)
		}
	}
	for name, want := range map[string]status.Status{"auto": status.CurrentStatus, "broken": status.FailedStatus} {
		testenv.Eventually(t, waitFor, func(ctx context.Context) error {
			pb := &riposte.Playbook{}
			if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pb); err != nil {
				return err
			}
			if got := kstatusOf(t, pb); got != want {
				return fmt.Errorf("playbook %s: kstatus %s, want %s", name, got, want)
			}
			return nil
		})
	}
}

// A GitOps tool that applies the same playbook again and again sees no
// change and no conflict: Riposte never writes a playbook's spec.
func TestPlaybooksSyncWithoutDrift(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	flux, err := env.UserClient("flux", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	manifest := func() *unstructured.Unstructured {
		pb := isolatePlaybook(ns, "synced", "Shell", &riposte.AutoApprove{When: "incident.spec.severity == 'critical'"})
		pb.TypeMeta = metav1.TypeMeta{APIVersion: riposte.GroupVersion.String(), Kind: "Playbook"}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pb)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		return u
	}
	apply := func() *riposte.Playbook {
		// No force: a conflict with Riposte over any field would fail here.
		if err := flux.Apply(ctx, client.ApplyConfigurationFromUnstructured(manifest()), client.FieldOwner("kustomize-controller")); err != nil {
			t.Fatalf("sync: %v", err)
		}
		pb := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "synced"}, pb); err != nil {
			t.Fatal(err)
		}
		return pb
	}
	first := apply()
	testenv.Eventually(t, waitFor, func(ctx context.Context) error {
		pb := &riposte.Playbook{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "synced"}, pb); err != nil {
			return err
		}
		if pb.Status.ObservedGeneration != pb.Generation {
			return fmt.Errorf("status not observed yet")
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		again := apply()
		if again.Generation != first.Generation {
			t.Fatalf("sync %d changed the spec: generation %d -> %d", i, first.Generation, again.Generation)
		}
		for _, mf := range again.ManagedFields {
			ownsSpec := mf.FieldsV1 != nil && strings.Contains(string(mf.FieldsV1.Raw), `"f:spec"`)
			if mf.Manager != "kustomize-controller" && ownsSpec {
				t.Errorf("%s owns spec fields of a synced playbook: %s", mf.Manager, mf.FieldsV1.Raw)
			}
		}
	}
}
