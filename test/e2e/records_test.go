package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// The signing key is rotated as docs/records.md says: the manager restarts
// with a new key and the old public key under --record-previous-public-key,
// and its chain goes on from the old key's records, whole for an auditor
// who holds both public keys. A manager given a new key without the old one
// cannot tell the old records from forged ones: it does not build on them,
// counts them in riposte_records_untrusted_total, and the break shows in
// verify.
func TestRecordSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartForTest(t)
	c := env.Client
	const ns = "shop"
	env.TeamNamespace(t, ns, "riposte-action-isolate")
	mustCreate(t, c, &riposte.Playbook{
		ObjectMeta: metav1.ObjectMeta{Name: "isolate", Namespace: ns},
		Spec: riposte.PlaybookSpec{
			Triggers:           riposte.Triggers{Alerts: []riposte.AlertTrigger{{AlertNames: []string{"ContainerShell"}}}},
			ServiceAccountName: testenv.RemediatorAccount,
			Approval:           riposte.ApprovalPolicy{AutoApprove: &riposte.AutoApprove{}},
			Steps:              []riposte.Step{{Name: "isolate", Action: riposte.ActionIsolatePod}},
		},
	})
	intake, err := env.IntakeClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sink := filepath.Join(dir, "sink")
	keyFile := func(name string) string { return filepath.Join(dir, name+".key") }
	publicOf := func(name string) string {
		key, err := record.LoadKey(keyFile(name), false)
		if err != nil {
			t.Fatal(err)
		}
		pub := filepath.Join(dir, name+".pub")
		if err := os.WriteFile(pub, record.PublicPEM(key.Public().(ed25519.PublicKey)), 0o644); err != nil {
			t.Fatal(err)
		}
		return pub
	}
	verify := func(keys ...string) record.Report {
		t.Helper()
		var pems [][]byte
		for _, k := range keys {
			b, err := os.ReadFile(k)
			if err != nil {
				t.Fatal(err)
			}
			pems = append(pems, b)
		}
		trusted, err := record.TrustedKeys(pems...)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := record.Verify(ctx, record.Dir{Path: sink}, record.VerifyOptions{Trusted: trusted, Cluster: "default"})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	// remediate runs a manager with the key and flags until one incident
	// is remediated and its Remediated record is in the sink (verified with
	// the keys known so far and the manager's own), and returns the
	// manager's count of untrusted records it met.
	var known []string
	remediate := func(n int, key string, flags ...string) (untrusted string) {
		t.Helper()
		m := env.StartManager(t, "token", append([]string{"--record-dir", sink, "--record-create-signing-key", "--record-signing-key", keyFile(key)}, flags...)...)
		pub := publicOf(key)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", n), Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
		mustCreate(t, c, pod)
		inc := &riposte.Incident{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("am-shell-%d", n), Namespace: ns, Finalizers: []string{riposte.RecordFinalizer}},
			Spec: riposte.IncidentSpec{Source: riposte.SourceAlertmanager, AlertName: "ContainerShell", Fingerprint: fmt.Sprintf("5e1%d", n), Severity: "critical",
				Labels: map[string]string{"alertname": "ContainerShell", "namespace": ns, "pod": pod.Name}}}
		if err := intake.Create(ctx, inc); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !recorded(verify(append(known, pub)...), inc.UID) {
			if time.Now().After(deadline) {
				if err := c.Get(ctx, client.ObjectKeyFromObject(inc), inc); err != nil {
					t.Fatal(err)
				}
				t.Fatalf("incident %d: phase %s, conditions %+v: want Remediated and its record in the sink", n, inc.Status.Phase, inc.Status.Conditions)
			}
			time.Sleep(50 * time.Millisecond)
		}
		known = append(known, pub)
		untrusted = metric(t, m.MetricsAddr, "riposte_records_untrusted_total")
		_ = syscall.Kill(m.Pid, syscall.SIGTERM)
		<-m.Exited
		return untrusted
	}

	if got := remediate(1, "old"); got != "0" {
		t.Errorf("before any rotation, riposte_records_untrusted_total is %s, want 0", got)
	}
	oldPub := known[0]
	before := verify(oldPub).Head

	// The rotation done right: the new key, and the old public key trusted.
	if got := remediate(2, "new", "--record-previous-public-key", oldPub); got != "0" {
		t.Errorf("with the old key trusted, riposte_records_untrusted_total is %s, want 0: the old records are the manager's own", got)
	}
	newPub := known[1]
	rep := verify(oldPub, newPub)
	if !rep.OK() || rep.Head.Sequence <= before.Sequence {
		t.Fatalf("after a rotation with the old key trusted, the chain (head %d, was %d) has problems %+v: want it whole and longer", rep.Head.Sequence, before.Sequence, rep.Problems)
	}
	first := ""
	for _, s := range rep.Bodies {
		if s.Sequence == before.Sequence+1 {
			first = s.Body.Incident.Name
		}
	}
	if first != "am-shell-2" {
		t.Errorf("record %d, the first the new key signed, is of %q: want am-shell-2's, right after the old key's records", before.Sequence+1, first)
	}
	// An auditor given only the new key sees the old records for what
	// they then are: signed by a key they do not hold.
	if rep := verify(newPub); rep.OK() || rep.Problems[0].Kind != record.UntrustedKey {
		t.Errorf("verified with the new key alone: %+v, want the old records reported UntrustedKey", rep.Problems)
	}

	// A rotation that forgets the previous key: the manager cannot tell the
	// chain from a forgery, so it does not link to it, and says so.
	head := rep.Head
	if got := remediate(3, "third"); got == "0" || got == "" {
		t.Errorf("a manager whose chain it cannot trust reports riposte_records_untrusted_total %q: want it counted", got)
	}
	rep = verify(known...)
	broken := false
	for _, p := range rep.Problems {
		if p.Kind == record.Broken && p.Sequence == head.Sequence+1 {
			broken = true
		} else {
			t.Errorf("unexpected problem %s at record %d: %s", p.Kind, p.Sequence, p.Message)
		}
	}
	if !broken {
		t.Errorf("problems %+v: want record %d (the third key's first) reported Broken, not linked to the records it could not trust", rep.Problems, head.Sequence+1)
	}
}

// recorded reports whether the chain holds the incident's Remediated record.
func recorded(rep record.Report, uid types.UID) bool {
	for _, s := range rep.Bodies {
		if s.Body.Incident.UID == string(uid) && s.Body.Milestone == string(riposte.PhaseRemediated) {
			return true
		}
	}
	return false
}

// metric reads one unlabelled metric's value from a manager's plain-HTTP
// metrics endpoint; "" if it is not exported.
func metric(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}
