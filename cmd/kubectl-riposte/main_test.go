package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The test binary doubles as the plugin: run with this variable set, it is
// main(), so the tests see the real exit status, stdout and stderr.
const asPlugin = "KUBECTL_RIPOSTE_TEST_AS_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(asPlugin) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// plugin runs the plugin with no kubeconfig anywhere: not in $KUBECONFIG,
// not in $HOME/.kube, not in-cluster.
func plugin(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = []string{asPlugin + "=1", "HOME=" + home, "KUBECONFIG=" + filepath.Join(home, "none"), "PATH=" + os.Getenv("PATH")}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// Help is help: exit 0, usage on stdout, nothing on stderr, and no
// kubeconfig needed, for the plugin and each of its commands.
func TestHelpNeedsNoKubeconfig(t *testing.T) {
	commands := []string{"gates", "show", "approve", "reject", "describe", "undo", "escalate", "pause", "resume", "whoami", "test", "completion", "options"}
	cases := [][]string{{"--help"}, {"-h"}, {"help"}}
	for _, c := range commands {
		cases = append(cases, []string{c, "--help"}, []string{c, "-h"}, []string{"help", c})
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, errOut, code := plugin(t, args...)
			if code != 0 || errOut != "" || !strings.Contains(out, "Usage:") {
				t.Errorf("exit %d, stderr %q, stdout:\n%s", code, errOut, out)
			}
		})
	}
	out, _, _ := plugin(t, "--help")
	for _, flag := range []string{"--as ", "--as-group", "--token", "--server", "--kubeconfig", "--context", "-n, --namespace", "--insecure-skip-tls-verify"} {
		if !strings.Contains(out, flag) {
			t.Errorf("--help does not offer %s:\n%s", flag, out)
		}
	}
	if out, _, _ := plugin(t, "show", "--help"); !strings.Contains(out, "-o, --output") {
		t.Errorf("show --help offers no -o:\n%s", out)
	}
	// As kubectl: a command's help is its own flags, the connection flags
	// every command takes are listed by `options`.
	if out, _, _ := plugin(t, "approve", "--help"); strings.Contains(out, "--as-uid") || !strings.Contains(out, "--reason") ||
		!strings.Contains(out, `Use "kubectl riposte options"`) {
		t.Errorf("approve --help should show its own flags and point to options:\n%s", out)
	}
	if out, _, code := plugin(t, "options"); code != 0 || !strings.Contains(out, "--as ") || !strings.Contains(out, "--kubeconfig") {
		t.Errorf("options: exit %d, want the connection flags:\n%s", code, out)
	}
}

// A command that needs the cluster says the kubeconfig is missing, once,
// on stderr; a wrong command line says what is wrong.
func TestErrorsAreSaidOnce(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gates"}, "error: loading kubeconfig:"},
		{[]string{"frobnicate"}, `error: unknown command "frobnicate"`},
		{[]string{"approve", "g1"}, "error: approve: --reason is required: it is recorded with your decision"},
		{[]string{"show"}, "error: show takes exactly one name, got 0"},
		{[]string{"gates", "--bogus"}, "error: unknown flag: --bogus"},
	} {
		out, errOut, code := plugin(t, tc.args...)
		if code != 1 || !strings.HasPrefix(errOut, tc.want) || strings.Count(errOut, "error:") != 1 || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
}

// Shell completion scripts come from the plugin itself, without a cluster.
func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		out, errOut, code := plugin(t, "completion", shell)
		if code != 0 || errOut != "" || !strings.Contains(out, "kubectl-riposte") {
			t.Errorf("completion %s: exit %d, stderr %q, %d bytes", shell, code, errOut, len(out))
		}
	}
}

// The offline check needs no cluster; its exit status is the check's.
func TestOfflineCheckNeedsNoKubeconfig(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	samples := []string{"test", "-f", filepath.Join(root, "config", "samples", "policies"), "-f", filepath.Join(root, "test", "testdata", "offline")}
	out, errOut, code := plugin(t, samples...)
	if code != 0 || errOut != "" || !strings.Contains(out, "0 problems") {
		t.Errorf("test: exit %d, stderr %q:\n%s", code, errOut, out)
	}
	if _, _, code := plugin(t, append(samples, "--fail-on-violation")...); code != 2 {
		t.Errorf("test --fail-on-violation: exit %d, want 2", code)
	}
}
