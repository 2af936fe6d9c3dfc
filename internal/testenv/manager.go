package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// Manager is the real riposte binary running against an Env.
type Manager struct {
	Pid int
	// IntakeAddr, MetricsAddr and ProbesAddr are where it listens.
	IntakeAddr, MetricsAddr, ProbesAddr string
	// Dir holds its kubeconfig, token and log.
	Dir string
	// Exited closes when the process ends.
	Exited <-chan struct{}
}

// StartManager builds and runs the manager as its service account, with
// exactly the shipped RBAC, an intake token, and the given extra flags; it
// returns once the manager is ready (intake serving, caches synced).
func (e *Env) StartManager(t testing.TB, token string, extraArgs ...string) *Manager {
	t.Helper()
	return e.StartManagerInCgroup(t, token, nil, extraArgs...)
}

// StartManagerInCgroup is StartManager with the manager held to a memory
// cgroup's limit, as it would be in a container with that limit; nil is
// StartManager.
func (e *Env) StartManagerInCgroup(t testing.TB, token string, cgroup *MemoryCgroup, extraArgs ...string) *Manager {
	t.Helper()
	m := e.launchManager(t, token, nil, cgroup, extraArgs...)
	WaitHTTP(t, "http://"+m.IntakeAddr+"/healthz")
	WaitHTTP(t, "http://"+m.ProbesAddr+"/readyz") // caches synced
	return m
}

// LaunchManager starts the manager like StartManager, with extra
// environment, and returns at once: for a test that expects it to exit.
func (e *Env) LaunchManager(t testing.TB, token string, env []string, extraArgs ...string) *Manager {
	t.Helper()
	return e.launchManager(t, token, env, nil, extraArgs...)
}

func (e *Env) launchManager(t testing.TB, token string, env []string, cgroup *MemoryCgroup, extraArgs ...string) *Manager {
	t.Helper()
	dir := t.TempDir()
	kubeconfig, err := e.managerKubeconfig(dir)
	if err != nil {
		t.Fatalf("setting up the manager's identity: %v", err)
	}
	tokenFile := filepath.Join(dir, "intake-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &Manager{IntakeAddr: FreeAddr(t), MetricsAddr: FreeAddr(t), ProbesAddr: FreeAddr(t), Dir: dir}
	args := append([]string{"--kubeconfig", kubeconfig, "--namespace", OperatorNamespace,
		"--intake-bind-address", m.IntakeAddr, "--intake-token-file", tokenFile,
		"--metrics-bind-address", m.MetricsAddr, "--health-probe-bind-address", m.ProbesAddr,
		// The tests' Notify sinks are httptest servers on loopback.
		"--notify-allowed-destinations", "http://127.0.0.1"}, e.recordArgs(t, extraArgs)...)
	bin := BuildRiposte(t)
	if cgroup != nil {
		var err error
		if bin, args, err = cgroup.Wrap(bin, args); err != nil {
			t.Fatalf("starting the manager in its cgroup: %v", err)
		}
	}
	p, exited := startProcess(t, dir, "riposte", bin, env, args...)
	m.Pid, m.Exited = p.Pid, exited
	return m
}

// managerKubeconfig writes the manager's kubeconfig into dir: made on the
// first launch, the same one after, so a manager restarted while the API
// server is down (a fault test) starts as a kubelet would restart it.
func (e *Env) managerKubeconfig(dir string) (string, error) {
	e.manager.Lock()
	defer e.manager.Unlock()
	path := filepath.Join(dir, "manager.kubeconfig")
	if e.manager.kubeconfig == nil {
		if err := e.WriteManagerKubeconfig(context.Background(), path); err != nil {
			return "", err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		e.manager.kubeconfig = b
		return path, nil
	}
	return path, os.WriteFile(path, e.manager.kubeconfig, 0o600)
}
