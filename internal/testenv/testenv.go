// Package testenv starts a real kube-apiserver and etcd (controller-runtime's
// envtest on binaries built by hack/build-testbins.sh) with Riposte's CRDs
// installed, for controller and end-to-end tests.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// KubeVersion is the version hack/build-testbins.sh builds by default.
const KubeVersion = "1.37.2"

// RepoRoot is the repository's root folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Scheme knows the built-in types and Riposte's.
func Scheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(riposte.AddToScheme(s))
	return s
}

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	// Client talks to the API server directly: what a user would see.
	Client client.Client
	// manager is the kubeconfig every manager this Env launches uses.
	manager struct {
		sync.Mutex
		kubeconfig []byte
	}
	// records is the record sink of the managers it launches.
	records struct {
		sync.Mutex
		dir     string
		checked sync.Map // the tests whose records are checked at their end
	}
}

// Start starts the control plane with Riposte's CRDs, plus any extra CRD
// folders a test needs (for example a stand-in for the Gateway API). It fails
// loudly, not skips, when the binaries are missing: `make test` builds them.
func Start(extraCRDDirs ...string) (*Env, error) {
	return start(options{}, extraCRDDirs...)
}

// StartKeeping starts the control plane like Start, with etcd keeping its
// data in dataDir: stopped and started again on the same folder, it serves
// what was stored before (make run's local control plane).
func StartKeeping(dataDir string, extraCRDDirs ...string) (*Env, error) {
	return start(options{dataDir: dataDir}, extraCRDDirs...)
}

// NoFsyncEnv, set to "true", starts etcd without fsync: the benchmarks
// measure both ways, as storage speed sets the floor of every write.
const NoFsyncEnv = "RIPOSTE_ETCD_UNSAFE_NO_FSYNC"

type options struct {
	auditLog, dataDir string
	// certDir keeps the API server's certificates: stopped and started
	// again, it serves the same identity to the same clients.
	certDir string
	// apiServerArgs are extra kube-apiserver flags.
	apiServerArgs map[string]string
}

// Faults configure a control plane a fault test stops and starts again.
type Faults struct {
	// Dir holds etcd's data and the API server's certificates, so each
	// survives its own restart (ControlPlane.Etcd or .APIServer Stop then
	// Start) with every client still trusted.
	Dir string
	// AuditLog, when set, records every request as StartAudited does.
	AuditLog string
	// APIServerArgs are extra kube-apiserver flags (for example a short
	// etcd-compaction-interval for a soak).
	APIServerArgs map[string]string
}

// StartForFaults starts a control plane whose etcd and API server can each
// be stopped and started again in the middle of a test.
func StartForFaults(f Faults, extraCRDDirs ...string) (*Env, error) {
	certDir := filepath.Join(f.Dir, "apiserver")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	return start(options{auditLog: f.AuditLog, dataDir: filepath.Join(f.Dir, "etcd"), certDir: certDir, apiServerArgs: f.APIServerArgs}, extraCRDDirs...)
}

// auditPolicy records every request's metadata (who, as whom, what, on
// which object) once it is answered: enough to count a remediation's
// requests, and never a request or response body.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
`

// StartAudited starts the control plane like Start, with the API server
// writing an audit log of every request to auditLog (JSON lines), so a
// benchmark can count the requests a remediation makes.
func StartAudited(auditLog string, extraCRDDirs ...string) (*Env, error) {
	return start(options{auditLog: auditLog}, extraCRDDirs...)
}

func start(o options, extraCRDDirs ...string) (*Env, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(RepoRoot(), "bin", "k8s", KubeVersion)
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		return nil, fmt.Errorf("no kube-apiserver in %s: run `make testbins` (or `make test`) first: %w", assets, err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     append([]string{filepath.Join(RepoRoot(), "config", "crd", "bases")}, extraCRDDirs...),
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme(),
	}
	if o.dataDir != "" {
		// envtest removes only a data folder it made itself.
		if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
			return nil, err
		}
		env.ControlPlane.Etcd = &envtest.Etcd{DataDir: o.dataDir}
	}
	if o.certDir != "" {
		// envtest regenerates certificates only in a folder it made itself.
		// A fault test's outage is abrupt: SIGTERM, then SIGKILL after a
		// second rather than kube-apiserver's graceful drain of watches.
		env.ControlPlane.APIServer = &envtest.APIServer{CertDir: o.certDir, StopTimeout: time.Second}
	}
	for k, v := range o.apiServerArgs {
		env.ControlPlane.GetAPIServer().Configure().Set(k, v)
	}
	if os.Getenv(NoFsyncEnv) == "true" {
		if env.ControlPlane.Etcd == nil {
			env.ControlPlane.Etcd = &envtest.Etcd{}
		}
		env.ControlPlane.Etcd.Configure().Set("unsafe-no-fsync", "true")
	}
	if o.auditLog != "" {
		auditLog := o.auditLog
		policy := filepath.Join(filepath.Dir(auditLog), "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return nil, err
		}
		args := env.ControlPlane.GetAPIServer().Configure()
		args.Set("audit-policy-file", policy)
		args.Set("audit-log-path", auditLog)
		args.Set("audit-log-format", "json")
		args.Set("audit-log-mode", "blocking")
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	cfg.QPS, cfg.Burst = -1, -1
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	e := &Env{Environment: env, Config: cfg, Client: c}
	if err := e.installPolicies(context.Background()); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return e, nil
}

// Eventually polls check until it returns nil or the timeout passes, then
// fails the test with the last error.
func Eventually(t testing.TB, timeout time.Duration, check func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		err := check(ctx)
		if err == nil {
			return
		}
		// A call cut short by the deadline says nothing about the condition:
		// report what the last complete check found.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %v", timeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Consistently checks that check keeps returning nil for the whole duration.
func Consistently(t testing.TB, duration time.Duration, check func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(duration)
	for time.Now().Before(deadline) {
		if err := check(context.Background()); err != nil {
			t.Fatalf("condition broken: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartForTest starts a control plane for one test and stops it after.
func StartForTest(t testing.TB, extraCRDDirs ...string) *Env {
	t.Helper()
	env, err := Start(extraCRDDirs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env
}
