package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
)

// runVerify runs `kubectl riposte verify` with args and returns what it
// printed and its exit code.
func runVerify(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return runCommand(t, append([]string{"verify"}, args...)...)
}

// runCommand runs `kubectl riposte` with args: what it printed, and its
// exit code (-1 for an error).
func runCommand(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd := NewCommand(genericiooptions.IOStreams{Out: &out, ErrOut: &out})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	var exit *ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.Code
	}
	return out.String() + "error: " + err.Error(), -1
}

func TestVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	sink := record.Dir{Path: dir}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := record.Signer{Key: priv, Cluster: "prod"}
	ctx := context.Background()
	if err := sink.PutKey(ctx, record.KeyID(priv.Public().(ed25519.PublicKey)), record.PublicPEM(priv.Public().(ed25519.PublicKey))); err != nil {
		t.Fatal(err)
	}
	var head record.Link
	for _, name := range []string{"a", "b", "c"} {
		e, data, err := signer.Seal(head, record.Body{Kind: "Incident", Milestone: "Remediated", Incident: record.ObjectID{Namespace: "shop", Name: name, UID: name}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Put(ctx, head.Sequence+1, data); err != nil {
			t.Fatal(err)
		}
		head = record.Link{Sequence: head.Sequence + 1, Hash: e.Hash}
	}
	pub := filepath.Join(t.TempDir(), "riposte-records.pub")
	if err := os.WriteFile(pub, record.PublicPEM(priv.Public().(ed25519.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}

	out, code := runVerify(t, "--dir", dir, "--public-key", pub, "--expect-head", "3:"+head.Hash)
	if code != 0 || !strings.Contains(out, `3 records of cluster "prod", the chain is whole`) || !strings.Contains(out, "Head: record 3, "+head.Hash) {
		t.Fatalf("an intact trail: exit %d:\n%s", code, out)
	}
	out, code = runVerify(t, "--dir", dir)
	if code != 0 || !strings.Contains(out, "the keys stored beside the records (pass --public-key") || !strings.Contains(out, `3 records of cluster "prod"`) {
		t.Fatalf("without --public-key the command must say what it trusted, and whose chain it read: exit %d:\n%s", code, out)
	}
	// The auditor names the cluster they audit: another's chain is refused.
	out, code = runVerify(t, "--dir", dir, "--public-key", pub, "--cluster-name", "staging")
	if code != 1 || !strings.Contains(out, `record 1 is of cluster "prod"'s chain, not "staging"'s`) {
		t.Errorf("--cluster-name staging over prod's records: exit %d:\n%s", code, out)
	}
	// An empty folder (a wrong --dir, or every record removed) is no whole trail.
	empty := t.TempDir()
	out, code = runVerify(t, "--dir", empty, "--public-key", pub)
	if code != 1 || !strings.Contains(out, "Empty") || !strings.Contains(out, "holds no record") {
		t.Errorf("an empty sink: exit %d:\n%s", code, out)
	}
	if out, code = runVerify(t, "--dir", empty, "--public-key", pub, "--allow-empty"); code != 0 {
		t.Errorf("an empty sink with --allow-empty: exit %d:\n%s", code, out)
	}
	if out, code = runCommand(t, "report", "--dir", empty, "--public-key", pub, "--live=false"); code != 0 || !strings.Contains(out, "0 incidents detected") || !strings.Contains(out, "warning: dir:"+empty+" holds no record") {
		t.Errorf("report over an empty sink reports nothing, as no fault, and warns it may be the wrong place: exit %d:\n%s", code, out)
	}

	// Someone removes the last record and edits the first: both are named.
	if err := os.Remove(filepath.Join(dir, "records", "00000000000000000003.json")); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(dir, "records", "00000000000000000001.json")
	data, _ := os.ReadFile(first)
	if err := os.WriteFile(first, bytes.Replace(data, []byte(`"Remediated"`), []byte(`"Rejected"`), 1), 0o640); err != nil {
		t.Fatal(err)
	}
	out, code = runVerify(t, "--dir", dir, "--public-key", pub, "--expect-head", "3")
	for _, want := range []string{
		`2 records of cluster "prod", 2 problems`,
		"1       Edited     00000000000000000001.json  record 1 was edited",
		"3       Truncated  -                          the chain ends at record 2, but record 3 was written",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	out, _ = runVerify(t, "--dir", dir, "--public-key", pub, "-o", "json")
	if !strings.Contains(out, `"kind": "Edited"`) {
		t.Errorf("-o json lacks the problem:\n%s", out)
	}
	if out, code = runVerify(t); code != -1 || !strings.Contains(out, "--dir PATH or --s3-bucket NAME") {
		t.Errorf("no sink named: exit %d:\n%s", code, out)
	}
}

// report over a record directory, with no cluster: the figures of the
// records that verify, as a table, JSON, CSV and HTML.
func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	sink := record.Dir{Path: dir}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := record.Signer{Key: priv, Cluster: "prod"}
	ctx := context.Background()
	_ = sink.PutKey(ctx, record.KeyID(priv.Public().(ed25519.PublicKey)), record.PublicPEM(priv.Public().(ed25519.PublicKey)))
	now := time.Now()
	var head record.Link
	for i, name := range []string{"a", "b", "c"} {
		detected := metav1.NewTime(now.Add(-time.Duration(i+1) * time.Hour))
		remediated := metav1.NewTime(detected.Add(time.Duration(i+1) * 10 * time.Second))
		body := record.Body{Kind: "Incident", Milestone: "Remediated", Incident: record.ObjectID{Namespace: "shop", Name: name, UID: name},
			Trigger:   record.Trigger{Source: riposte.SourceAlertmanager, Severity: "critical"},
			Playbook:  &record.Playbook{Namespace: "shop", Name: "isolate"},
			Decisions: record.Decisions{Automatic: &riposte.AutoApproval{DecidedAt: detected}},
			Outcome:   record.Outcome{Phase: riposte.PhaseRemediated, DetectedAt: &detected, EnrichedAt: &detected, RemediatedAt: &remediated}}
		e, data, _ := signer.Seal(head, body, now)
		if err := sink.Put(ctx, head.Sequence+1, data); err != nil {
			t.Fatal(err)
		}
		head = record.Link{Sequence: head.Sequence + 1, Hash: e.Hash}
	}
	out, code := runCommand(t, "report", "--dir", dir, "--live=false", "--since", "24h")
	for _, want := range []string{"3 incidents detected", "(3 from records, 0 live", "playbook shop/isolate          3", "20s / 30s", "automatic 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	out, _ = runCommand(t, "report", "--dir", dir, "--live=false", "-o", "json")
	if !strings.Contains(out, `"incidents": 3`) || !strings.Contains(out, `"automatic": 3`) {
		t.Errorf("-o json:\n%s", out)
	}
	out, _ = runCommand(t, "report", "--dir", dir, "--live=false", "-o", "csv")
	if !strings.Contains(out, "stages,playbook,shop/isolate,total_p50_seconds,20.000") {
		t.Errorf("-o csv:\n%s", out)
	}
	out, _ = runCommand(t, "report", "--dir", dir, "--live=false", "-o", "html")
	if !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, `id="mttr-chart"`) {
		t.Errorf("-o html:\n%.300s", out)
	}
	if out, code = runCommand(t, "report", "--dir", dir, "--live=false", "-o", "pdf"); code != -1 || !strings.Contains(out, "want table, json, csv or html") {
		t.Errorf("-o pdf: exit %d: %s", code, out)
	}
}
