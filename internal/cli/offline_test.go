package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func repo(parts ...string) string { return filepath.Join(append([]string{"..", ".."}, parts...)...) }

// The policy pack judged offline against a team's manifests and a saved
// Alertmanager payload: every expectation in the files holds, each
// violation names its playbook, rule and object, and the alert is matched.
func TestOfflineCheckOnFiles(t *testing.T) {
	got, err := RunOffline([]string{repo("config", "samples", "policies"), repo("test", "testdata", "offline")}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Problems) > 0 {
		t.Fatalf("problems: %v", got.Problems)
	}
	var out bytes.Buffer
	got.Print(&out)
	for _, want := range []string{
		"riposte-system/policy-default-deny",
		"default-deny-ingress             Namespace scratch",
		"no-privileged-containers         Pod shop/debug               privileged containers: shell",
		"no-serviceaccount-cluster-admin  ClusterRoleBinding ci-admin",
		"ContainerShellSpawned (firing)",
		"answered by demo/isolate-on-shell",
		"7 violations, 1 alerts, 0 problems",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, f := range got.Findings {
		if f.Target.Name == "web" || f.Target.Name == "shop" {
			t.Errorf("compliant %s %s reported: %s", f.Target.Kind, f.Target.Name, f.Rule)
		}
	}
	if code := got.Failed(false); code != 0 {
		t.Errorf("exit %d without --fail-on-violation, want 0", code)
	}
	if code := got.Failed(true); code != 2 {
		t.Errorf("exit %d with --fail-on-violation, want 2", code)
	}
}

// A rule that does not compile, a team's rule on a cluster-scoped kind and
// an expectation that does not hold each fail the check, each said once.
func TestOfflineCheckFailsOnBrokenPlaybooks(t *testing.T) {
	got, err := RunOffline([]string{repo("test", "testdata", "offline-broken")}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(got.Problems, "\n")
	for _, want := range []string{
		"playbook team/broken: InvalidRule: spec.triggers.drift[0].rule",
		"Pod team/unlabelled: expected to break [], breaks [needs-team-label]",
		"playbook team/reaches-out: InvalidRule: rule no-admins: ClusterRoleBinding is cluster-scoped",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}
	if len(got.Problems) != 3 || got.Failed(false) != 1 {
		t.Errorf("%d problems, exit %d; want 3 and 1", len(got.Problems), got.Failed(false))
	}
}

// Files that are not what they claim are refused with the file's name.
func TestOfflineCheckRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"not-yaml.yaml":    "kind: [",
		"bad-payload.json": `{"version": "3", "alerts": [{"labels": {}}]}`,
	}
	for name, body := range cases {
		path := filepath.Join(dir, name)
		if err := writeFile(path, body); err != nil {
			t.Fatal(err)
		}
		if _, err := RunOffline([]string{path}, "default", "riposte-system"); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	if _, err := RunOffline(nil, "default", "riposte-system"); err == nil {
		t.Error("no files accepted")
	}

	// One alert the webhook could not store is a problem of that file, as
	// the webhook stores the others.
	path := filepath.Join(dir, "unstorable-alert.json")
	if err := writeFile(path, `{"version": "4", "alerts": [{"status": "pending", "fingerprint": "ab", "labels": {}}]}`); err != nil {
		t.Fatal(err)
	}
	got, err := RunOffline([]string{path}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	if joined := strings.Join(got.Problems, "\n"); !strings.Contains(joined, "unstorable-alert.json: an alert Riposte cannot store: alerts[0].status") {
		t.Errorf("problems %q, want one naming the file and the alert's field", joined)
	}
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o600) }
