package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// AdminKubeconfig writes a kubeconfig for a new cluster-admin identity, so a
// process started by a test talks to the API server as a real user.
func (e *Env) AdminKubeconfig(t testing.TB, dir, name string) string {
	t.Helper()
	return e.UserKubeconfig(t, dir, name, "system:masters")
}

// UserKubeconfig writes a kubeconfig for a new identity in the given groups:
// it may do only what RBAC grants it.
func (e *Env) UserKubeconfig(t testing.TB, dir, name string, groups ...string) string {
	t.Helper()
	path := filepath.Join(dir, name+".kubeconfig")
	if err := e.WriteKubeconfig(path, name, groups...); err != nil {
		t.Fatal(err)
	}
	return path
}

// FreeAddr returns a loopback address with a port nobody listens on and
// that no earlier call in this test process returned: the kernel may hand
// a port just closed to the next listen on port 0, and two servers told to
// bind the same port (weed's master and its S3 gateway, once, in CI) fail.
func FreeAddr(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// BuildRiposte builds the manager binary, once per test process, and
// returns its path.
func BuildRiposte(t testing.TB) string {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if built.path != "" {
		return built.path
	}
	// Once per test process: a restart in a test (a crash, a kill) then
	// costs the manager's own start, not a build.
	dir, err := os.MkdirTemp("", "riposte-build-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "riposte")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/riposte")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building riposte: %v\n%s", err, out)
	}
	built.path = bin
	return bin
}

// built is the riposte binary this process built.
var built struct {
	sync.Mutex
	path string
}

// AlertmanagerBinary is the Alertmanager hack/build-testbins.sh built.
func AlertmanagerBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("ALERTMANAGER")
	if bin == "" {
		bin = filepath.Join(RepoRoot(), "bin", "alertmanager")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no Alertmanager binary at %s: run `make testbins`: %v", bin, err)
	}
	return bin
}

// StartProcess runs a binary for the test's lifetime and stops it with
// SIGINT at the end. Its output goes to dir/name.log, printed on failure.
func StartProcess(t testing.TB, dir, name, bin string, args ...string) *os.Process {
	t.Helper()
	p, _ := startProcess(t, dir, name, bin, nil, args...)
	return p
}

// startProcess is StartProcess with extra environment; the channel closes
// when the process exits.
func startProcess(t testing.TB, dir, name, bin string, env []string, args ...string) (*os.Process, <-chan struct{}) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			s := string(out)
			if len(s) > 8000 {
				s = "..." + s[len(s)-8000:]
			}
			t.Logf("--- %s log ---\n%s", name, s)
		}
	})
	return cmd.Process, exited
}

// WaitHTTP waits until url answers 200.
func WaitHTTP(t testing.TB, url string) {
	t.Helper()
	Eventually(t, 60*time.Second, func(ctx context.Context) error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d", url, resp.StatusCode)
		}
		return nil
	})
}
