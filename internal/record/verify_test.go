package record

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// writeChain stores n records through a real Writer into a directory, as
// the manager does, and returns the sink and the trusted key.
func writeChain(t *testing.T, n int) (Dir, map[string]ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sink := Dir{Path: t.TempDir()}
	stored := make(chan types.NamespacedName, n)
	w := &Writer{Sink: sink, Signer: Signer{Key: priv, Cluster: "test"}, Notify: func(nn types.NamespacedName) { stored <- nn }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Start(ctx) }()
	for i := range n {
		uid := types.UID(fmt.Sprintf("uid-%d", i))
		w.Submit(types.NamespacedName{Namespace: "ns", Name: fmt.Sprintf("inc-%d", i)}, Key{UID: uid, Milestone: "Remediated"},
			Body{Kind: "Incident", Milestone: "Remediated", Incident: ObjectID{Namespace: "ns", Name: fmt.Sprintf("inc-%d", i), UID: string(uid)},
				Outcome: Outcome{Phase: riposte.PhaseRemediated}})
	}
	for range n {
		select {
		case <-stored:
		case <-time.After(10 * time.Second):
			t.Fatal("the writer stored nothing within 10s")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	trusted, err := TrustedKeys(PublicPEM(priv.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	return sink, trusted, priv
}

// linkOf is where a stored record leaves the chain.
func linkOf(t *testing.T, data []byte) Link {
	t.Helper()
	e, p, err := ParseEntry(data)
	if err != nil {
		t.Fatal(err)
	}
	return Link{Sequence: p.Sequence, Hash: e.Hash}
}

func recordFile(d Dir, seq int64) string { return filepath.Join(d.records(), recordName(seq)) }

// rewrite edits record seq's payload with edit, keeping or recomputing its
// hash, and keeping its signature.
func rewrite(t *testing.T, d Dir, seq int64, rehash bool, edit func(p map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(recordFile(d, seq))
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := ParseEntry(data)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		t.Fatal(err)
	}
	edit(p)
	if e.Payload, err = json.Marshal(p); err != nil {
		t.Fatal(err)
	}
	if rehash {
		e.Hash = HashOf(e.Payload)
	}
	out, _ := e.Marshal()
	if err := os.WriteFile(recordFile(d, seq), out, 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyCatchesEveryTampering(t *testing.T) {
	setPhase := func(phase string) func(map[string]any) {
		return func(p map[string]any) { p["body"].(map[string]any)["outcome"].(map[string]any)["phase"] = phase }
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, d Dir, priv ed25519.PrivateKey)
		expect *Link
		want   []Problem // kind and sequence; the message must contain Message
	}{
		{name: "untouched", tamper: func(*testing.T, Dir, ed25519.PrivateKey) {}},
		{name: "an outcome edited, the hash left", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			rewrite(t, d, 3, false, setPhase("Rejected"))
		}, want: []Problem{{Kind: Edited, Sequence: 3, Message: "record 3 was edited"}}},
		{name: "an outcome edited and the hash recomputed", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			rewrite(t, d, 3, true, setPhase("Rejected"))
		}, want: []Problem{
			{Kind: Forged, Sequence: 3, Message: "record 3's signature does not verify"},
		}},
		{name: "a record removed", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			os.Remove(recordFile(d, 2))
		}, want: []Problem{{Kind: Missing, Sequence: 2, Message: "record 2 is missing"}}},
		{name: "two records removed", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			os.Remove(recordFile(d, 2))
			os.Remove(recordFile(d, 3))
		}, want: []Problem{{Kind: Missing, Sequence: 2, Message: "records 2 to 3 are missing"}}},
		{name: "two records swapped", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			a, _ := os.ReadFile(recordFile(d, 2))
			b, _ := os.ReadFile(recordFile(d, 3))
			os.WriteFile(recordFile(d, 2), b, 0o640)
			os.WriteFile(recordFile(d, 3), a, 0o640)
		}, want: []Problem{
			{Kind: Moved, Sequence: 2, Message: "holds record 2"},
			{Kind: Moved, Sequence: 3, Message: "holds record 3"},
		}},
		{name: "two records swapped and renumbered, hashes recomputed", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			a, _ := os.ReadFile(recordFile(d, 2))
			b, _ := os.ReadFile(recordFile(d, 3))
			os.WriteFile(recordFile(d, 2), b, 0o640)
			os.WriteFile(recordFile(d, 3), a, 0o640)
			rewrite(t, d, 2, true, func(p map[string]any) { p["sequence"] = 2 })
			rewrite(t, d, 3, true, func(p map[string]any) { p["sequence"] = 3 })
		}, want: []Problem{
			{Kind: Forged, Sequence: 2, Message: "record 2's signature"},
			{Kind: Forged, Sequence: 3, Message: "record 3's signature"},
		}},
		{name: "the last records removed", expect: &Link{Sequence: 5}, tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			os.Remove(recordFile(d, 5))
			os.Remove(recordFile(d, 4))
		}, want: []Problem{{Kind: Truncated, Sequence: 5, Message: "the chain ends at record 3, but record 5 was written"}}},
		{name: "a record forged with another key", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			data, _ := os.ReadFile(recordFile(d, 4))
			prev := linkOf(t, data)
			_, forged, _ := Signer{Key: other, Cluster: "test"}.Seal(prev, Body{Kind: "Incident", Milestone: "Remediated"}, time.Now())
			os.WriteFile(recordFile(d, 5), forged, 0o640)
		}, want: []Problem{{Kind: UntrustedKey, Sequence: 5, Message: "record 5 is signed by key ed25519:"}}},
		{name: "a record replaced by one sealed with the key after the wrong record", tamper: func(t *testing.T, d Dir, priv ed25519.PrivateKey) {
			data, _ := os.ReadFile(recordFile(d, 2))
			prev := linkOf(t, data)
			// Signed with the real key (stolen), but chained after 2, stored as 4.
			_, forged, _ := Signer{Key: priv, Cluster: "test"}.Seal(prev, Body{Kind: "Incident", Milestone: "Remediated"}, time.Now())
			os.WriteFile(recordFile(d, 4), forged, 0o640)
		}, want: []Problem{
			{Kind: Moved, Sequence: 3, Message: "holds record 3"},
			{Kind: Forked, Sequence: 3, Message: "both say they are record 3"},
			{Kind: Missing, Sequence: 4, Message: "record 4 is missing"},
		}},
		{name: "a file that is not a record", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			os.WriteFile(recordFile(d, 3), []byte("deleted by cleanup\n"), 0o640)
		}, want: []Problem{{Kind: Unreadable, Sequence: 3, Message: "is not a record"}}},
		{name: "bytes added after a record", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			data, _ := os.ReadFile(recordFile(d, 3))
			os.WriteFile(recordFile(d, 3), append(data, []byte(`{"note":"approved by the CISO"}`+"\n")...), 0o640)
		}, want: []Problem{{Kind: Edited, Sequence: 3, Message: "its file holds more than the record as written"}}},
		{name: "a field given twice, the second read", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			data, _ := os.ReadFile(recordFile(d, 3))
			e, _, _ := ParseEntry(data)
			twice := strings.TrimSuffix(string(data), "}\n") + `,"hash":` + fmt.Sprintf("%q", e.Hash) + "}\n"
			os.WriteFile(recordFile(d, 3), []byte(twice), 0o640)
		}, want: []Problem{{Kind: Edited, Sequence: 3, Message: "a field given twice"}}},
		{name: "a record of another cluster's chain, with the same key", tamper: func(t *testing.T, d Dir, priv ed25519.PrivateKey) {
			data, _ := os.ReadFile(recordFile(d, 5))
			_, other, _ := Signer{Key: priv, Cluster: "staging"}.Seal(linkOf(t, data), Body{Kind: "Incident", Milestone: "Remediated"}, time.Now())
			os.WriteFile(recordFile(d, 6), other, 0o640)
		}, want: []Problem{{Kind: Foreign, Sequence: 6, Message: `record 6 is of cluster "staging"'s chain, not "test"'s`}}},
		{name: "a pipe where a record belongs", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			if err := syscall.Mkfifo(recordFile(d, 6), 0o640); err != nil {
				t.Skip("no named pipes here:", err)
			}
		}, want: []Problem{{Kind: Unreadable, Sequence: 6, Message: "is not a regular file"}}},
		{name: "every record removed", tamper: func(t *testing.T, d Dir, _ ed25519.PrivateKey) {
			for seq := int64(1); seq <= 5; seq++ {
				os.Remove(recordFile(d, seq))
			}
		}, want: []Problem{{Kind: Empty, Message: "holds no record"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink, trusted, priv := writeChain(t, 5)
			tc.tamper(t, sink, priv)
			rep, err := Verify(context.Background(), sink, VerifyOptions{Trusted: trusted, ExpectHead: tc.expect})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != len(tc.want) {
				t.Fatalf("problems: got %d, want %d:\n%s", len(rep.Problems), len(tc.want), describeProblems(rep.Problems))
			}
			for i, want := range tc.want {
				got := rep.Problems[i]
				if got.Kind != want.Kind || got.Sequence != want.Sequence || !strings.Contains(got.Message, want.Message) {
					t.Errorf("problem %d: got %s at %d (%q), want %s at %d containing %q", i, got.Kind, got.Sequence, got.Message, want.Kind, want.Sequence, want.Message)
				}
			}
			if len(tc.want) == 0 && (rep.Head.Sequence != 5 || len(rep.Bodies) != 5) {
				t.Errorf("an untouched chain: head %d with %d bodies, want 5 and 5", rep.Head.Sequence, len(rep.Bodies))
			}
		})
	}
}

func describeProblems(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s at %d: %s\n", p.Kind, p.Sequence, p.Message)
	}
	return b.String()
}

// A record stored twice (the manager restarted before noting it on its
// incident) is one record to readers, not a fault.
func TestVerifyCountsARecordWrittenTwiceOnce(t *testing.T) {
	sink, trusted, priv := writeChain(t, 2)
	data, _ := os.ReadFile(recordFile(sink, 2))
	_, p, _ := ParseEntry(data)
	prev := linkOf(t, data)
	_, again, err := Signer{Key: priv, Cluster: "test"}.Seal(prev, p.Body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Put(context.Background(), 3, again); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), sink, VerifyOptions{Trusted: trusted})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Duplicates != 1 || len(rep.Bodies) != 2 || rep.Head.Sequence != 3 {
		t.Fatalf("got ok=%v duplicates=%d bodies=%d head=%d, want a clean chain of 3 with 1 duplicate and 2 bodies:\n%s", rep.OK(), rep.Duplicates, len(rep.Bodies), rep.Head.Sequence, describeProblems(rep.Problems))
	}
}

// A second writer (a leader that has not stopped yet) cannot overwrite a
// record: the sink refuses the sequence, and the writer follows the chain.
func TestDirRefusesARecordAlreadyStored(t *testing.T) {
	sink, trusted, priv := writeChain(t, 3)
	data, _ := os.ReadFile(recordFile(sink, 2))
	prev := linkOf(t, data)
	_, other, _ := Signer{Key: priv, Cluster: "test"}.Seal(prev, Body{Kind: "Incident", Milestone: "Rejected"}, time.Now())
	if err := sink.Put(context.Background(), 3, other); err != ErrExists {
		t.Fatalf("a second record 3: got %v, want ErrExists", err)
	}
	// And the writer carries on after the chain's end.
	stored := make(chan types.NamespacedName, 1)
	w := &Writer{Sink: sink, Signer: Signer{Key: priv, Cluster: "test"}, Notify: func(nn types.NamespacedName) { stored <- nn }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Start(ctx)
	w.Submit(types.NamespacedName{Name: "later"}, Key{UID: "later", Milestone: "Remediated"}, Body{Kind: "Incident", Milestone: "Remediated"})
	<-stored
	if s, ok := w.Last("later"); !ok || s.Sequence != 4 {
		t.Fatalf("the next writer stored %+v, want record 4", s)
	}
	rep, _ := Verify(context.Background(), sink, VerifyOptions{Trusted: trusted})
	if !rep.OK() || rep.Head.Sequence != 4 {
		t.Fatalf("chain after a second writer: head %d, problems:\n%s", rep.Head.Sequence, describeProblems(rep.Problems))
	}
}

// The key Helm's genPrivateKey "ed25519" makes (the chart's Secret) is
// read as the manager's signing key.
func TestHelmGeneratedKeyIsRead(t *testing.T) {
	const helmKey = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEQBTBgS45NiBG70VkO1rXnnJlJ0ozpOo/pkVz8eT2R5\n-----END PRIVATE KEY-----\n"
	path := filepath.Join(t.TempDir(), "ed25519.key")
	if err := os.WriteFile(path, []byte(helmKey), 0o400); err != nil {
		t.Fatal(err)
	}
	priv, err := LoadKey(path, false)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey([]byte(helmKey))
	if err != nil || !pub.Equal(priv.Public()) {
		t.Fatalf("the public half of the same key: %v", err)
	}
	if _, err := LoadKey(filepath.Join(t.TempDir(), "missing"), false); err == nil {
		t.Fatal("a missing key file was not refused")
	}
}

// A new leader reads back the newest records: a milestone the last leader
// stored, not yet noted on its incident, is not stored again.
func TestNewWriterRecallsWhatWasStored(t *testing.T) {
	sink, _, priv := writeChain(t, 3)
	stored := make(chan types.NamespacedName, 4)
	w := &Writer{Sink: sink, Signer: Signer{Key: priv, Cluster: "test"}, Notify: func(nn types.NamespacedName) { stored <- nn }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Start(ctx)
	// Handed in again after the takeover, then a new one.
	w.Submit(types.NamespacedName{Namespace: "ns", Name: "inc-2"}, Key{UID: "uid-2", Milestone: "Remediated"}, Body{Kind: "Incident", Milestone: "Remediated"})
	w.Submit(types.NamespacedName{Namespace: "ns", Name: "new"}, Key{UID: "new", Milestone: "Remediated"}, Body{Kind: "Incident", Milestone: "Remediated"})
	eventually(t, func() bool { _, ok := w.Last("new"); return ok })
	if s, ok := w.Last("new"); !ok || s.Sequence != 4 {
		t.Fatalf("the new record is %+v, want record 4 (the recalled one not stored again)", s)
	}
	if s, ok := w.Last("uid-2"); !ok || s.Sequence != 3 || s.At.IsZero() {
		t.Fatalf("the recalled record is %+v, want record 3 with its time", s)
	}
}

func eventually(t *testing.T, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !done(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not within 10s")
		}
	}
}
