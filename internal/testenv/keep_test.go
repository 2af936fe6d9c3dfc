package testenv

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// make run's control plane is stopped and started again on the same folder:
// what a user stored must still be there, and the manager's roles applied
// again must not fail on the ones kept.
func TestStartKeepingServesWhatWasStoredBefore(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "etcd")

	first, err := StartKeeping(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.ManagerConfig(ctx); err != nil {
		_ = first.Stop()
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kept"}}
	pb := &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "kept", Namespace: "kept"},
		Spec: riposte.PlaybookSpec{
			Triggers: riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"Kept"}}}},
			Steps:    []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
		},
	}
	for _, obj := range []client.Object{ns, pb} {
		if err := first.Client.Create(ctx, obj); err != nil {
			_ = first.Stop()
			t.Fatal(err)
		}
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	second, err := StartKeeping(data)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = second.Stop() }()
	if _, err := second.ManagerConfig(ctx); err != nil {
		t.Fatalf("granting the manager's roles again on a kept control plane: %v", err)
	}
	got := &riposte.Playbook{}
	if err := second.Client.Get(ctx, client.ObjectKeyFromObject(pb), got); err != nil {
		t.Fatalf("the playbook stored before the restart: %v", err)
	}
	if got.UID != pb.UID {
		t.Errorf("playbook UID %s after the restart, %s before: not the same object", got.UID, pb.UID)
	}
}
