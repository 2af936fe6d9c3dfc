package playbook

import (
	"context"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// checkIdentity's verdicts, the API server's answer stubbed: where the
// admission policy is missing, Riposte's own account is still refused, and
// never even asked about.
func TestCheckIdentity(t *testing.T) {
	for _, tc := range []struct {
		name, namespace, account string
		allowed                  bool
		askErr                   error
		wantReason, wantMessage  string
		wantErr                  bool
	}{
		{name: "granted", namespace: "team-a", account: "remediator", allowed: true},
		{name: "not granted", namespace: "team-a", account: "remediator", wantReason: riposte.ReasonImpersonationNotGranted,
			wantMessage: "kubectl create rolebinding riposte-impersonate -n team-a --clusterrole=riposte-impersonate-remediator --serviceaccount=riposte-system:riposte-controller-manager"},
		{name: "cluster-wide default", namespace: "riposte-system", wantReason: riposte.ReasonImpersonationNotGranted, wantMessage: "riposte-system/riposte-remediator"},
		{name: "Riposte's own account", namespace: "riposte-system", account: riposte.ManagerServiceAccountName, allowed: true,
			wantReason: riposte.ReasonServiceAccountForbidden, wantMessage: "no playbook may run as it"},
		{name: "the API server cannot answer", namespace: "team-a", account: "remediator", askErr: errors.New("connection refused"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := false
			r := &Reconciler{OperatorNamespace: "riposte-system", CanImpersonate: func(_ context.Context, namespace, account string) (bool, error) {
				asked = true
				return tc.allowed, tc.askErr
			}}
			pb := &riposte.Playbook{ObjectMeta: metav1.ObjectMeta{Namespace: tc.namespace, Name: "p"}, Spec: riposte.PlaybookSpec{ServiceAccountName: tc.account}}
			reason, msg, err := r.checkIdentity(context.Background(), pb)
			if (err != nil) != tc.wantErr || reason != tc.wantReason || !strings.Contains(msg, tc.wantMessage) {
				t.Errorf("checkIdentity = %q, %q, %v; want %q containing %q (error: %v)", reason, msg, err, tc.wantReason, tc.wantMessage, tc.wantErr)
			}
			if asked && tc.wantReason == riposte.ReasonServiceAccountForbidden {
				t.Error("asked the API server about Riposte's own account")
			}
		})
	}
}
