package testenv

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
)

// RecordSink is the record directory and signing key every manager this
// Env launches uses (unless a test names its own sink): one chain for the
// Env, however often its managers are killed and started.
func (e *Env) RecordSink(t testing.TB) (dir, key string) {
	t.Helper()
	e.records.Lock()
	defer e.records.Unlock()
	if e.records.dir == "" {
		dir, err := os.MkdirTemp("", "riposte-records-")
		if err != nil {
			t.Fatal(err)
		}
		e.records.dir = dir
	}
	return filepath.Join(e.records.dir, "sink"), filepath.Join(e.records.dir, "signing.key")
}

// NoRecordsEnv, set to "true", launches managers without a record sink:
// the benchmarks measure Riposte with and without records.
const NoRecordsEnv = "RIPOSTE_TEST_NO_RECORDS"

// recordArgs adds the Env's record sink to a manager's flags, unless the
// test chose its own; and, once per test, checks at its end (after every
// manager it launched stopped and stored what it had queued) that the
// chain verifies and that every incident that reached a decision has its
// record in it.
func (e *Env) recordArgs(t testing.TB, args []string) []string {
	if os.Getenv(NoRecordsEnv) == "true" {
		return args // a benchmark measuring what records cost
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--record-") {
			return args
		}
	}
	dir, key := e.RecordSink(t)
	if _, checked := e.records.checked.LoadOrStore(t, true); !checked {
		t.Cleanup(func() { e.CheckRecords(t) })
	}
	return append([]string{"--record-dir", dir, "--record-signing-key", key, "--record-create-signing-key"}, args...)
}

// VerifyRecords verifies the Env's record chain with its signing key. An
// empty chain is not a fault here: a test may decide nothing, and
// CheckRecords finds any decided incident missing from the chain.
func (e *Env) VerifyRecords(t testing.TB) record.Report {
	t.Helper()
	dir, keyFile := e.RecordSink(t)
	key, err := record.LoadKey(keyFile, false)
	if err != nil {
		t.Fatalf("the records' signing key: %v", err)
	}
	trusted, err := record.TrustedKeys(record.PublicPEM(key.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := record.Verify(context.Background(), record.Dir{Path: dir}, record.VerifyOptions{Trusted: trusted, AllowEmpty: true})
	if err != nil {
		t.Fatalf("reading the records: %v", err)
	}
	return rep
}

// CheckRecords fails the test if the Env's chain does not verify, or if an
// incident that reached a decision has no record in it, or a record other
// than the one its status names.
func (e *Env) CheckRecords(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(e.records.dir, "signing.key")); err != nil {
		return // no manager got as far as making its key
	}
	rep := e.VerifyRecords(t)
	for _, p := range rep.Problems {
		t.Errorf("record chain: %s: %s", p.Kind, p.Message)
	}
	// Bodies holds each body once, at its first record: a milestone
	// written again after a restart (at least once) is the same body.
	byUID := map[string]map[string]bool{}
	for _, s := range rep.Bodies {
		if byUID[s.Body.Incident.UID] == nil {
			byUID[s.Body.Incident.UID] = map[string]bool{}
		}
		byUID[s.Body.Incident.UID][s.Body.Milestone] = true
	}
	var incidents riposte.IncidentList
	if err := e.Client.List(context.Background(), &incidents); err != nil {
		t.Errorf("listing incidents to check their records: %v", err)
		return
	}
	decided, missing := 0, []string{}
	for i := range incidents.Items {
		inc := &incidents.Items[i]
		if record.MilestoneOf(inc) == "" {
			continue
		}
		decided++
		got := byUID[string(inc.UID)]
		if len(got) == 0 {
			missing = append(missing, fmt.Sprintf("%s/%s (%s)", inc.Namespace, inc.Name, inc.Status.Phase))
			continue
		}
		if r := inc.Status.Record; r != nil && (!got[r.Milestone] || r.Sequence > rep.Head.Sequence) {
			t.Errorf("incident %s/%s says its %s record is record %d; the chain (head %d) holds no such record of it", inc.Namespace, inc.Name, r.Milestone, r.Sequence, rep.Head.Sequence)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d decided incidents have no record in the chain: %s", len(missing), decided, strings.Join(missing[:min(len(missing), 10)], ", "))
	}
	t.Logf("records: %d in the chain (head %d, %d written twice), verified; %d decided incidents, each recorded", rep.Records, rep.Head.Sequence, rep.Duplicates, decided)
}
