package controllers_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/zap/zapcore"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/riposte-dev/riposte/controllers"
	"github.com/riposte-dev/riposte/internal/notify"
	"github.com/riposte-dev/riposte/internal/priority"
	"github.com/riposte-dev/riposte/internal/record"
	"github.com/riposte-dev/riposte/internal/testenv"
)

const operatorNamespace = "riposte-system"

var (
	env       *testenv.Env
	k8sClient client.Client // an admin, uncached: asserts what a user would see
	// intakeClient acts as Riposte's own service account, the only identity
	// that opens Alertmanager incidents.
	intakeClient client.Client
	// people: alice and bob may approve; carol may edit gates but holds no
	// approve verb; dave opens incidents and may approve.
	people = map[string]client.Client{}
	// notifications receives what the gate controller sends for waiting gates.
	notifications = &notificationSink{}
	// records is the directory sink every incident's records go to, and
	// recordKey signs them; the suite verifies the whole chain at the end.
	records   record.Dir
	recordKey ed25519.PrivateKey
	// lanes is shared with intake in a real manager: tests hold it to
	// stand for intake's writes in flight.
	lanes = &priority.Lanes{}
)

// TestMain runs every controller test against one real kube-apiserver and
// etcd, with the real manager and all of Riposte's reconcilers.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(zapLevel()))))
	var err error
	env, err = testenv.Start(filepath.Join(testenv.RepoRoot(), "test", "testdata", "crds"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8sClient = env.Client

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	managerCfg, err := env.ManagerConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if intakeClient, err = client.New(managerCfg, client.Options{Scheme: env.Scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := setUpPeople(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	notifyServer := httptest.NewServer(notifications)
	defer notifyServer.Close()
	recordsDir, err := os.MkdirTemp("", "riposte-records-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(recordsDir)
	records = record.Dir{Path: recordsDir}
	if recordKey, err = record.LoadKey(filepath.Join(recordsDir, "signing.key"), true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	stop, err := env.RunManager(func(cfg *rest.Config) (ctrl.Manager, error) {
		return controllers.NewManager(cfg, controllers.ManagerOptions{
			Options: controllers.Options{
				OperatorNamespace:       operatorNamespace,
				ProtectedNamespaces:     []string{operatorNamespace, "kube-system", "kube-public"},
				MaxConcurrentReconciles: 4,
				NotifyURL:               notifyServer.URL,
				// The tests' webhooks are httptest servers on loopback, listed by
				// number as an admin would list an in-cluster receiver.
				NotifyAllowedDestinations: []string{"http://127.0.0.1"},
				Records:                   &controllers.Records{Sink: records, Key: recordKey, Cluster: "controllers-suite"},
				Lanes:                     lanes,
			},
			// No listeners, whose ports would clash between test binaries
			// running at once: the tests read metrics from the registry.
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			// A test may build the manager again in this process.
			SkipNameValidation: true,
		})
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	code := m.Run()
	if code == 0 && !chainIntact() {
		return 1
	}
	return code
}

// chainIntact verifies every record the suite's remediations left (none,
// when -run picked tests that decide nothing).
func chainIntact() bool {
	trusted, err := record.TrustedKeys(record.PublicPEM(recordKey.Public().(ed25519.PublicKey)))
	if err == nil {
		var rep record.Report
		if rep, err = record.Verify(context.Background(), records, record.VerifyOptions{Trusted: trusted, AllowEmpty: true}); err == nil && !rep.OK() {
			err = fmt.Errorf("%d problems, the first: %s", len(rep.Problems), rep.Problems[0].Message)
		}
		if err == nil {
			fmt.Fprintf(os.Stderr, "records: %d, verified (head %d, %d written twice)\n", rep.Records, rep.Head.Sequence, rep.Duplicates)
			return true
		}
	}
	fmt.Fprintln(os.Stderr, "the suite's record chain does not verify:", err)
	return false
}

// setUpPeople creates the test's people with client certificates and binds
// the roles Riposte ships (config/rbac) as a cluster admin would.
func setUpPeople(ctx context.Context) error {
	for _, f := range []string{"approver_role.yaml", "playbook_editor_role.yaml", "action_roles.yaml", "remediator.yaml"} {
		if err := testenv.ApplyDir(ctx, env.Config, filepath.Join(testenv.RepoRoot(), "config", "rbac", f)); err != nil {
			return err
		}
	}
	roles := map[string][]string{
		"alice": {"riposte-approver"},
		"bob":   {"riposte-approver"},
		"carol": {"riposte-editor", "gate-editor-without-approve"},
		"dave":  {"riposte-editor", "riposte-approver"},
	}
	// carol can write gates but holds no approve verb.
	if err := k8sClient.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "gate-editor-without-approve"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"riposte.dev"}, Resources: []string{"approvalgates"},
			Verbs: []string{"get", "list", "watch", "update", "patch"}}},
	}); err != nil {
		return err
	}
	for user, bound := range roles {
		for _, role := range bound {
			if err := k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
			}); err != nil {
				return err
			}
		}
		c, err := env.UserClient(user, "security-team")
		if err != nil {
			return err
		}
		people[user] = c
	}
	return nil
}

// notificationSink records the gate notifications Riposte posts.
type notificationSink struct {
	mu       sync.Mutex
	received []notify.Message
	// down is a gate whose notifications are answered 503, as by a
	// receiver that is down, this many more times.
	down     string
	downFor  int
	attempts map[string]int
}

func (n *notificationSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m notify.Message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.attempts == nil {
		n.attempts = map[string]int{}
	}
	n.attempts[m.Namespace+"/"+m.Gate]++
	if m.Namespace+"/"+m.Gate == n.down && n.downFor > 0 {
		n.downFor--
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	n.received = append(n.received, m)
}

// failNext answers the next times notifications about the gate with 503.
func (n *notificationSink) failNext(namespace, gate string, times int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down, n.downFor = namespace+"/"+gate, times
}

func (n *notificationSink) attemptsAbout(namespace, gate string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.attempts[namespace+"/"+gate]
}

func (n *notificationSink) about(namespace, gate string) []notify.Message {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []notify.Message
	for _, m := range n.received {
		if m.Namespace == namespace && m.Gate == gate {
			out = append(out, m)
		}
	}
	return out
}

func zapLevel() int {
	if os.Getenv("RIPOSTE_TEST_DEBUG") != "" {
		return -1
	}
	return 10 // quiet unless asked
}
