package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/agent"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// `riposte mcp` as an agent starts it: the binary over stdio, with the
// agent's own kubeconfig, driven by the SDK's own client. What it proposes
// is in the agent's name; it refuses to serve tokens in the clear off
// loopback.
func TestRiposteMCPOverStdio(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartForTest(t)
	const ns = "shop"
	env.TeamNamespace(t, ns)
	if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "rbac", "agent_role.yaml")); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, env.Client, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "holmes-riposte-agent", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "riposte-agent"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "holmes"}}})
	kubeconfig := env.UserKubeconfig(t, t.TempDir(), "holmes")
	bin := testenv.BuildRiposte(t)

	session, err := mcp.NewClient(&mcp.Implementation{Name: "holmesgpt", Version: "test"}, nil).
		Connect(ctx, &mcp.CommandTransport{Command: exec.Command(bin, "mcp", "--kubeconfig", kubeconfig)}, nil)
	if err != nil {
		t.Fatalf("connecting to riposte mcp over stdio: %v", err)
	}
	defer session.Close()
	if init := session.InitializeResult(); init == nil || init.ServerInfo.Name != "riposte" || !strings.Contains(init.Instructions, "cannot approve") {
		t.Errorf("the server introduces itself as %+v", init)
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "propose_remediation", Arguments: map[string]any{
		"namespace": ns, "kind": "Deployment", "name": "web", "problem": "CryptoMiner", "summary": "xmrig in web", "reasoning": "CPU at 100% since 02:00; the process list shows xmrig"}})
	if err != nil || res.IsError {
		t.Fatalf("propose_remediation: %v %+v", err, res)
	}
	var proposed agent.ProposeOutput
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &proposed); err != nil || proposed.RequestedBy != "holmes" {
		t.Fatalf("proposal %s: want it in holmes's name", b)
	}
	inc := &riposte.Incident{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: proposed.Name}, inc); err != nil {
		t.Fatal(err)
	}
	if inc.Spec.RequestedBy != "holmes" || inc.Spec.Target == nil || inc.Spec.Target.APIVersion != "apps/v1" || inc.Spec.Annotations["description"] == "" {
		t.Errorf("the stored proposal: %+v", inc.Spec)
	}

	out, err := exec.Command(bin, "mcp", "--kubeconfig", kubeconfig, "--http-address", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is not loopback") {
		t.Errorf("serving plain HTTP off loopback: %v\n%s", err, out)
	}
}
