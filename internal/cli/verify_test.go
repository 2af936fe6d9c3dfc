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

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/riposte-dev/riposte/internal/record"
)

// runVerify runs `kubectl riposte verify` with args and returns what it
// printed and its exit code.
func runVerify(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd := NewCommand(genericiooptions.IOStreams{Out: &out, ErrOut: &out})
	cmd.SetArgs(append([]string{"verify"}, args...))
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
	if code != 0 || !strings.Contains(out, "3 records, the chain is whole") || !strings.Contains(out, "Head: record 3, "+head.Hash) {
		t.Fatalf("an intact trail: exit %d:\n%s", code, out)
	}
	out, code = runVerify(t, "--dir", dir)
	if code != 0 || !strings.Contains(out, "the keys stored beside the records (pass --public-key") {
		t.Fatalf("without --public-key the command must say what it trusted: exit %d:\n%s", code, out)
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
		"2 records, 2 problems",
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
