package record

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/riposte-dev/riposte/internal/metrics"
)

// Key identifies one milestone of one incident.
type Key struct {
	UID       types.UID
	Milestone string
}

// Stored is where a record landed in the chain.
type Stored struct {
	Milestone string
	Link
	At time.Time
}

// Writer seals the records the incident reconciler hands it, in the order
// they come, and stores each in the sink, off the path a remediation
// waits on. It runs on the leader only, so the chain has one writer; a
// leader that lost the lease and still writes is refused by the sink's
// create-only Put, and the new leader reads the chain's end again.
//
// Nothing is lost when the sink is down: a record waits in memory, and
// the incident it comes from keeps it (its status says which milestone is
// stored, and its finalizer waits for the last), so a restart hands it in
// again. A record stored but not yet noted on its incident is handed in
// again after a restart and stored twice; readers count each body once.
type Writer struct {
	Sink   Sink
	Signer Signer
	// Notify is told when an incident's record was stored (or failed to
	// be), so its reconciler looks again.
	Notify func(types.NamespacedName)
	// Retry is the longest wait between attempts while the sink fails.
	Retry time.Duration

	// Grace is how long a stopping writer goes on storing what is queued;
	// 0 is 5 seconds.
	Grace time.Duration
	// Trusted are public keys, besides its own, whose records the writer
	// builds on: the keys it signed with before a rotation. A record in
	// the sink signed with any other is not built on (someone without the
	// key put it there), nor read back.
	Trusted map[string]ed25519.PublicKey

	trusted map[string]ed25519.PublicKey
	ownKey  string
	// ownFrom is the first record the writer's own key signed, as far as
	// it knows (0: none yet); only the writer's goroutine uses it.
	ownFrom int64
	mu      sync.Mutex
	wake    chan struct{}
	queue   []Key
	pending map[Key]*item
	stored  map[types.UID]Stored
	lastErr error
}

type item struct {
	of    types.NamespacedName
	body  Body
	since time.Time
}

func (w *Writer) notify(nn types.NamespacedName) {
	if w.Notify != nil {
		w.Notify(nn)
	}
}

func (w *Writer) init() {
	if w.pending == nil {
		w.pending, w.stored, w.wake = map[Key]*item{}, map[types.UID]Stored{}, make(chan struct{}, 1)
		pub := w.Signer.Key.Public().(ed25519.PublicKey)
		w.ownKey = KeyID(pub)
		w.trusted = map[string]ed25519.PublicKey{w.ownKey: pub}
		for id, k := range w.Trusted {
			w.trusted[id] = k
		}
	}
}

// Submit hands in the record of an incident's milestone. A milestone
// already waiting keeps its place and takes the newer body; one already
// stored is not stored again.
func (w *Writer) Submit(of types.NamespacedName, key Key, body Body) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.init()
	if s, ok := w.stored[key.UID]; ok && s.Milestone == key.Milestone {
		return
	}
	if it, ok := w.pending[key]; ok {
		it.body = body
		return
	}
	w.pending[key] = &item{of: of, body: body, since: time.Now()}
	w.queue = append(w.queue, key)
	metrics.RecordsPending.Set(float64(len(w.queue)))
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Last is the latest record stored for an incident in this process.
func (w *Writer) Last(uid types.UID) (Stored, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.stored[uid]
	return s, ok
}

// Forget drops what the writer knows of an incident that is gone.
func (w *Writer) Forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.stored, uid)
}

// Behind says why records wait, if the sink is failing: nil when it is not.
func (w *Writer) Behind() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// NeedLeaderElection: only the leader writes the chain.
func (w *Writer) NeedLeaderElection() bool { return true }

// Start writes records until ctx ends. It first publishes the public key
// beside the records and reads where the chain ends.
func (w *Writer) Start(ctx context.Context) error {
	w.mu.Lock()
	w.init()
	w.mu.Unlock()
	pub := w.Signer.Key.Public().(ed25519.PublicKey)
	var head Link
	for attempt := 0; ; attempt++ {
		err := w.Sink.PutKey(ctx, KeyID(pub), PublicPEM(pub))
		if err == nil {
			head, err = w.readBack(ctx)
		}
		if err == nil {
			break
		}
		w.fail(err)
		if !w.sleep(ctx, attempt) {
			return nil
		}
	}
	metrics.RecordHeadSequence.Set(float64(head.Sequence))
	work := ctx
	for attempt := 0; ; {
		if ctx.Err() != nil && work == ctx {
			// Stopping: what is queued, and what the reconciles still
			// running hand in, is stored if the sink answers within the
			// grace period; what is not is handed in again by its incident
			// after the restart.
			var cancel context.CancelFunc
			work, cancel = context.WithTimeout(context.WithoutCancel(ctx), w.grace())
			defer cancel()
		}
		if work.Err() != nil {
			return nil
		}
		key, it, ok := w.next()
		if !ok {
			metrics.RecordsOldestPending.Set(0)
			if ctx.Err() != nil {
				// Stopping and idle: done once nothing more comes for a
				// moment (the controllers stop beside the writer).
				select {
				case <-w.wake:
					continue
				case <-time.After(quietBeforeStop):
					return nil
				case <-work.Done():
					return nil
				}
			}
			select {
			case <-ctx.Done():
			case <-w.wake:
			}
			continue
		}
		metrics.RecordsOldestPending.Set(time.Since(it.since).Seconds())
		entry, data, err := w.Signer.Seal(head, it.body, time.Now())
		if err == nil {
			err = w.Sink.Put(work, head.Sequence+1, data)
		}
		if errors.Is(err, ErrExists) {
			// Another writer extended the chain, or something else holds
			// the name: go on after it.
			if head, err = w.follow(work, head); err == nil {
				continue
			}
		}
		if err != nil {
			if work.Err() != nil {
				return nil
			}
			w.fail(err)
			if attempt == 0 {
				w.notify(it.of) // so its incident says the sink is behind
			}
			if !w.sleep(work, attempt) {
				return nil
			}
			attempt++
			continue
		}
		attempt = 0
		head = Link{Sequence: head.Sequence + 1, Hash: entry.Hash}
		if w.ownFrom == 0 {
			w.ownFrom = head.Sequence // previous keys sign nothing from here on
		}
		metrics.RecordsStored.Inc()
		metrics.RecordHeadSequence.Set(float64(head.Sequence))
		w.done(key, Stored{Milestone: key.Milestone, Link: head, At: time.Now()})
		w.notify(it.of)
	}
}

// quietBeforeStop is how long a stopping writer waits for a record from a
// reconcile still running.
const quietBeforeStop = time.Second

func (w *Writer) grace() time.Duration {
	if w.Grace <= 0 {
		return 5 * time.Second
	}
	return w.Grace
}

// recallDepth is how many of the newest records a new leader reads back.
const recallDepth = 2000

// readBack reads the newest records when the writer starts: where the
// chain ends, and which milestones they hold, so that a new leader (or a
// restart) does not store again the milestones the last one stored and
// had not yet noted on their incidents. It learns only from records it can
// trust: signed by its own key, or by a previous key below the first record
// its own key signed (a key signs nothing after its rotation). One put in
// the sink by someone without the key is neither built on nor counts as a
// milestone stored; the chain goes on after it, not from it (verify
// reports the break). A milestone it does not learn is stored again, and
// readers count it once.
func (w *Writer) readBack(ctx context.Context) (Link, error) {
	top, data, err := w.Sink.Last(ctx)
	if err != nil || data == nil {
		return Link{}, err
	}
	type read struct {
		seq   int64
		entry Entry
		p     Payload
		fault *Fault
	}
	var newest []read // newest first
	for seq := top; seq > max(0, top-recallDepth); seq-- {
		if seq != top {
			if data, err = w.Sink.Get(ctx, seq); err != nil {
				return Link{}, err
			}
		}
		if data == nil {
			continue
		}
		e, p, fault := w.check(data)
		if fault == nil && p.Sequence != seq {
			fault = &Fault{Kind: Moved, Sequence: p.Sequence, Message: fmt.Sprintf("%s holds record %d", recordName(seq), p.Sequence)}
		}
		newest = append(newest, read{seq: seq, entry: e, p: p, fault: fault})
		if fault == nil && p.KeyID == w.ownKey {
			w.ownFrom = seq
		}
	}
	head := Link{Sequence: top}
	found, untrusted := false, 0
	for _, r := range newest {
		fault := r.fault
		if fault == nil {
			fault = w.retired(r.seq, r.p)
		}
		if fault != nil {
			w.untrusted(ctx, r.seq, fault, untrusted)
			untrusted++
			continue
		}
		if !found {
			head.Hash, found = r.entry.Hash, true
		}
		at, err := time.Parse(time.RFC3339Nano, r.p.RecordedAt)
		if err != nil {
			continue
		}
		uid := types.UID(r.p.Body.Incident.UID)
		w.mu.Lock()
		if _, newer := w.stored[uid]; !newer {
			w.stored[uid] = Stored{Milestone: r.p.Body.Milestone, Link: Link{Sequence: r.seq, Hash: r.entry.Hash}, At: at}
		}
		w.mu.Unlock()
	}
	if untrusted > loggedUntrusted {
		log.FromContext(ctx).Error(nil, "more records in the sink are not ones this manager can build on; kubectl riposte verify lists them",
			"sink", w.Sink.String(), "untrusted", untrusted)
	}
	return head, nil
}

// retired refuses a record signed by a previous key above the first
// record the writer's own key signed: after a rotation, only whoever kept
// the old key could have written it.
func (w *Writer) retired(seq int64, p Payload) *Fault {
	if p.KeyID == w.ownKey || w.ownFrom == 0 || seq < w.ownFrom {
		return nil
	}
	return &Fault{Kind: RetiredKey, Sequence: seq, Message: fmt.Sprintf("record %d is signed by key %s, which this manager's key replaced at record %d", seq, p.KeyID, w.ownFrom)}
}

// check is Check with the writer's keys, and the record must be of its
// cluster's chain.
func (w *Writer) check(data []byte) (Entry, Payload, *Fault) {
	e, p, fault := Check(data, w.trusted)
	if fault == nil && p.Cluster != w.Signer.Cluster {
		fault = &Fault{Kind: Foreign, Sequence: p.Sequence, Message: fmt.Sprintf("record %d is of cluster %q's chain, not %q's", p.Sequence, p.Cluster, w.Signer.Cluster)}
	}
	return e, p, fault
}

// follow reads the record that holds the sequence after head: another
// writer's, which the chain goes on after, or one the writer cannot
// trust, which it goes on after but not from.
func (w *Writer) follow(ctx context.Context, head Link) (Link, error) {
	seq := head.Sequence + 1
	data, err := w.Sink.Get(ctx, seq)
	if err != nil {
		return head, err
	}
	if data == nil {
		return head, fmt.Errorf("record sink %s refuses record %d as stored, but holds none under its name", w.Sink, seq)
	}
	e, p, fault := w.check(data)
	if fault == nil && p.Sequence != seq {
		fault = &Fault{Kind: Moved, Sequence: p.Sequence, Message: fmt.Sprintf("%s holds record %d", recordName(seq), p.Sequence)}
	}
	if fault == nil {
		fault = w.retired(seq, p)
	}
	if fault != nil {
		w.untrusted(ctx, seq, fault, 0)
		return Link{Sequence: seq, Hash: head.Hash}, nil
	}
	return Link{Sequence: seq, Hash: e.Hash}, nil
}

// loggedUntrusted is how many untrusted records one read back logs one by
// one; the rest are counted in one line.
const loggedUntrusted = 10

func (w *Writer) untrusted(ctx context.Context, seq int64, fault *Fault, logged int) {
	metrics.RecordsUntrusted.Inc()
	if logged >= loggedUntrusted {
		return
	}
	log.FromContext(ctx).Error(fault, "a record in the sink is not one this manager can build on; the chain goes on after it, and kubectl riposte verify reports it",
		"sink", w.Sink.String(), "sequence", seq, "problem", fault.Kind)
}

// next is the oldest record waiting, as it is now (Submit may give it a
// newer body meanwhile). One handed in before the writer recalled the
// newest records, and found among them, is dropped, and its incident told.
func (w *Writer) next() (Key, item, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) > 0 {
		key := w.queue[0]
		it := w.pending[key]
		if s, ok := w.stored[key.UID]; !ok || s.Milestone != key.Milestone {
			return key, *it, true
		}
		w.queue = w.queue[1:]
		delete(w.pending, key)
		metrics.RecordsPending.Set(float64(len(w.queue)))
		go w.notify(it.of)
	}
	return Key{}, item{}, false
}

func (w *Writer) done(key Key, s Stored) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = w.queue[1:]
	delete(w.pending, key)
	w.stored[key.UID] = s
	w.lastErr = nil
	metrics.RecordsPending.Set(float64(len(w.queue)))
}

func (w *Writer) fail(err error) {
	metrics.RecordSinkErrors.Inc()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastErr = err
}

// sleep waits before the next attempt, doubling from 100ms to Retry.
func (w *Writer) sleep(ctx context.Context, attempt int) bool {
	limit := w.Retry
	if limit <= 0 {
		limit = 10 * time.Second
	}
	d := min(100*time.Millisecond<<min(attempt, 10), limit)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
