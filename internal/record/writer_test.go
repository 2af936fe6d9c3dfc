package record

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"

	"github.com/riposte-dev/riposte/internal/metrics"
)

// startWriter runs a writer on sink until the test ends.
func startWriter(t *testing.T, sink Sink, priv ed25519.PrivateKey, trusted ...ed25519.PublicKey) *Writer {
	t.Helper()
	w := &Writer{Sink: sink, Signer: Signer{Key: priv, Cluster: "test"}, Retry: time.Second, Trusted: map[string]ed25519.PublicKey{}}
	for _, k := range trusted {
		w.Trusted[KeyID(k)] = k
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func deleted(uid string) (types.NamespacedName, Key, Body) {
	return types.NamespacedName{Namespace: "ns", Name: uid}, Key{UID: types.UID(uid), Milestone: MilestoneDeleted},
		Body{Kind: "Incident", Milestone: MilestoneDeleted, Incident: ObjectID{Namespace: "ns", Name: uid, UID: uid}}
}

// The attack: someone who may write to the sink, without the signing key,
// appends a record saying incident uid-x's Deleted record is stored, so
// that a new leader, reading the chain back, would let uid-x go with no
// record of its own. The writer trusts only what its keys signed: it
// neither learns from the forged record nor builds on it, and stores
// uid-x's own record after it.
func TestAttackForgedRecordInTheSinkIsNotBuiltOn(t *testing.T) {
	sink, trusted, priv := writeChain(t, 3)
	data, _ := os.ReadFile(recordFile(sink, 3))
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	nn, key, body := deleted("uid-x")
	_, forged, _ := Signer{Key: attacker, Cluster: "test"}.Seal(linkOf(t, data), body, time.Now())
	if err := sink.Put(context.Background(), 4, forged); err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(metrics.RecordsUntrusted)

	w := startWriter(t, sink, priv)
	eventually(t, func() bool { return testutil.ToFloat64(metrics.RecordsUntrusted) > before })
	if s, ok := w.Last("uid-x"); ok {
		t.Fatalf("the writer took the forged record for uid-x's: %+v", s)
	}
	w.Submit(nn, key, body)
	eventually(t, func() bool { _, ok := w.Last("uid-x"); return ok })
	if s, _ := w.Last("uid-x"); s.Sequence != 5 {
		t.Fatalf("uid-x's record is %d, want 5, after the forged 4", s.Sequence)
	}
	rep, err := Verify(context.Background(), sink, VerifyOptions{Trusted: trusted})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != UntrustedKey || rep.Problems[0].Sequence != 4 {
		t.Fatalf("verify, want only record 4 reported as signed by an untrusted key:\n%s", describeProblems(rep.Problems))
	}
	if got := rep.Bodies[len(rep.Bodies)-1]; got.Sequence != 5 || got.Body.Incident.UID != "uid-x" {
		t.Fatalf("the last verified record is %d of %s, want 5 of uid-x", got.Sequence, got.Body.Incident.UID)
	}
	// Record 5 names record 3 before it, the last one the key signed.
	data5, _ := os.ReadFile(recordFile(sink, 5))
	_, p5, _ := ParseEntry(data5)
	if p5.Previous != linkOf(t, data).Hash {
		t.Fatalf("record 5 follows %s, want record 3's hash %s", p5.Previous, linkOf(t, data).Hash)
	}
}

// The same, while the writer runs: the forged record takes the next
// sequence first. The writer goes on after it.
func TestAttackForgedRecordTakesTheNextSequence(t *testing.T) {
	sink, trusted, priv := writeChain(t, 2)
	w := startWriter(t, sink, priv)
	nn, key, body := deleted("uid-y")
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	data, _ := os.ReadFile(recordFile(sink, 2))
	_, forged, _ := Signer{Key: attacker, Cluster: "test"}.Seal(linkOf(t, data), body, time.Now())
	if err := sink.Put(context.Background(), 3, forged); err != nil {
		t.Fatal(err)
	}
	w.Submit(nn, key, body)
	eventually(t, func() bool { _, ok := w.Last("uid-y"); return ok })
	if s, _ := w.Last("uid-y"); s.Sequence != 4 {
		t.Fatalf("uid-y's record is %d, want 4, after the forged 3", s.Sequence)
	}
	rep, _ := Verify(context.Background(), sink, VerifyOptions{Trusted: trusted})
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != UntrustedKey || rep.Problems[0].Sequence != 3 {
		t.Fatalf("verify, want only record 3 reported:\n%s", describeProblems(rep.Problems))
	}
}

// countingSink counts the writes tried.
type countingSink struct {
	Sink
	puts atomic.Int64
}

func (c *countingSink) Put(ctx context.Context, seq int64, data []byte) error {
	c.puts.Add(1)
	return c.Sink.Put(ctx, seq, data)
}

// A name taken by something that is not a record (a pipe) makes every
// write of that sequence fail: the writer says why and waits between
// attempts, rather than spinning or blocking on the pipe.
func TestWriterWaitsOnANameThatIsNotARecord(t *testing.T) {
	sink, _, priv := writeChain(t, 2)
	if err := syscall.Mkfifo(recordFile(sink, 3), 0o640); err != nil {
		t.Skip("no named pipes here:", err)
	}
	counting := &countingSink{Sink: sink}
	w := startWriter(t, counting, priv)
	w.Submit(deleted("uid-z"))
	eventually(t, func() bool { return w.Behind() != nil })
	if err := w.Behind(); !strings.Contains(err.Error(), "is not a regular file") {
		t.Fatalf("the writer says %q, want that record 3's name is not a regular file", err)
	}
	time.Sleep(2 * time.Second)
	// Backing off from 100ms doubling to 1s: about 5 attempts in 2s; a
	// writer that spun would make thousands.
	if n := counting.puts.Load(); n > 10 {
		t.Fatalf("%d writes tried in 2s: the writer does not wait between attempts", n)
	}
	if _, ok := w.Last("uid-z"); ok {
		t.Fatal("stored despite the name being taken")
	}
}

// Rotating the signing key: the new key's writer is given the old public
// key, builds on the old records, and a reader who trusts both keys sees
// one whole chain. Without the old key, the new writer cannot vouch for
// the old records: it starts the chain again and verify reports the break.
func TestKeyRotation(t *testing.T) {
	sink, oldTrusted, oldKey := writeChain(t, 3)
	_, newKey, _ := ed25519.GenerateKey(rand.Reader)
	oldPub, newPub := oldKey.Public().(ed25519.PublicKey), newKey.Public().(ed25519.PublicKey)
	w := startWriter(t, sink, newKey, oldPub)
	w.Submit(deleted("after-rotation"))
	eventually(t, func() bool { _, ok := w.Last("after-rotation"); return ok })

	both := map[string]ed25519.PublicKey{KeyID(oldPub): oldPub, KeyID(newPub): newPub}
	rep, _ := Verify(context.Background(), sink, VerifyOptions{Trusted: both})
	if !rep.OK() || rep.Head.Sequence != 4 {
		t.Fatalf("verify with both keys: head %d, problems:\n%s", rep.Head.Sequence, describeProblems(rep.Problems))
	}
	rep, _ = Verify(context.Background(), sink, VerifyOptions{Trusted: oldTrusted})
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != UntrustedKey || rep.Problems[0].Sequence != 4 {
		t.Fatalf("verify with the old key only, want record 4 as untrusted:\n%s", describeProblems(rep.Problems))
	}

	// A writer given a new key and not the old one.
	sink2, _, oldKey2 := writeChain(t, 2)
	_, newKey2, _ := ed25519.GenerateKey(rand.Reader)
	w2 := startWriter(t, sink2, newKey2)
	w2.Submit(deleted("unlinked"))
	eventually(t, func() bool { _, ok := w2.Last("unlinked"); return ok })
	old2, new2 := oldKey2.Public().(ed25519.PublicKey), newKey2.Public().(ed25519.PublicKey)
	rep, _ = Verify(context.Background(), sink2, VerifyOptions{Trusted: map[string]ed25519.PublicKey{KeyID(old2): old2, KeyID(new2): new2}})
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != Broken || rep.Problems[0].Sequence != 3 {
		t.Fatalf("a new key without the old: want record 3 reported as not following record 2:\n%s", describeProblems(rep.Problems))
	}
}

// The attack after a rotation: whoever kept the old key (leaked, say: the
// reason it was rotated) appends a record it signed, saying uid-x's
// Deleted record is stored. The writer, which trusts the old key only for
// the records before its own key took over, neither learns from it nor
// builds on it; verify with both keys names it.
func TestAttackRetiredKeySignsAfterTheRotation(t *testing.T) {
	sink, _, oldKey := writeChain(t, 3)
	_, newKey, _ := ed25519.GenerateKey(rand.Reader)
	oldPub, newPub := oldKey.Public().(ed25519.PublicKey), newKey.Public().(ed25519.PublicKey)
	rotated := &Writer{Sink: sink, Signer: Signer{Key: newKey, Cluster: "test"}, Retry: time.Second, Trusted: map[string]ed25519.PublicKey{KeyID(oldPub): oldPub}}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = rotated.Start(ctx); close(stopped) }()
	rotated.Submit(deleted("after-rotation"))
	eventually(t, func() bool { _, ok := rotated.Last("after-rotation"); return ok })
	stop()
	<-stopped

	data, _ := os.ReadFile(recordFile(sink, 4))
	nn, key, body := deleted("uid-x")
	_, planted, _ := Signer{Key: oldKey, Cluster: "test"}.Seal(linkOf(t, data), body, time.Now())
	if err := sink.Put(context.Background(), 5, planted); err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(metrics.RecordsUntrusted)
	w := startWriter(t, sink, newKey, oldPub)
	eventually(t, func() bool { return testutil.ToFloat64(metrics.RecordsUntrusted) > before })
	if s, ok := w.Last("uid-x"); ok {
		t.Fatalf("the writer took the old key's record, signed after the rotation, for uid-x's: %+v", s)
	}
	if s, ok := w.Last("after-rotation"); !ok || s.Sequence != 4 {
		t.Fatalf("the writer did not learn its own record 4: %+v", s)
	}
	w.Submit(nn, key, body)
	eventually(t, func() bool { _, ok := w.Last("uid-x"); return ok })
	if s, _ := w.Last("uid-x"); s.Sequence != 6 {
		t.Fatalf("uid-x's record is %d, want 6, after the planted 5", s.Sequence)
	}
	both := map[string]ed25519.PublicKey{KeyID(oldPub): oldPub, KeyID(newPub): newPub}
	rep, err := Verify(context.Background(), sink, VerifyOptions{Trusted: both})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != RetiredKey || rep.Problems[0].Sequence != 5 {
		t.Fatalf("verify with both keys, want only record 5 reported as signed by the key rotated away:\n%s", describeProblems(rep.Problems))
	}
	t.Logf("verify: %s", rep.Problems[0].Message)
}
