package record

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sort"
)

// Problem kinds Verify reports.
const (
	// Unreadable: the file is not a record at all.
	Unreadable = "Unreadable"
	// Edited: the payload no longer matches the hash stored with it.
	Edited = "Edited"
	// Forged: the signature does not verify: the record was changed and its
	// hash recomputed, or written by someone without the key.
	Forged = "Forged"
	// UntrustedKey: signed by a key the reader does not trust.
	UntrustedKey = "UntrustedKey"
	// Moved: stored under a name whose sequence is not the one it says.
	Moved = "Moved"
	// Missing: sequences with no record: removed.
	Missing = "Missing"
	// Broken: a record does not name the hash of the one before it:
	// records were reordered, replaced or removed.
	Broken = "Broken"
	// Truncated: the chain ends before the head the reader expected.
	Truncated = "Truncated"
	// Forked: two records claim the same sequence.
	Forked = "Forked"
	// Foreign: a record of another cluster's chain.
	Foreign = "Foreign"
	// Empty: the sink holds no record at all: the wrong place was read, or
	// every record was removed.
	Empty = "Empty"
	// RetiredKey: signed by a key another key replaced earlier in the
	// chain. A rotated-away key signs nothing after the rotation: whoever
	// kept it wrote this record.
	RetiredKey = "RetiredKey"
)

// Problem is one way the trail is not what was written.
type Problem struct {
	Kind     string `json:"kind"`
	Sequence int64  `json:"sequence,omitempty"`
	Name     string `json:"name,omitempty"`
	Message  string `json:"message"`
}

// Report is what Verify found.
type Report struct {
	Sink string `json:"sink"`
	// Cluster is the cluster whose chain this is.
	Cluster string `json:"cluster,omitempty"`
	Records int    `json:"records"`
	// Bytes is the size of every record stored.
	Bytes int64 `json:"bytes"`
	// Head is the last record of the chain as stored.
	Head Link `json:"head"`
	// Duplicates are records whose body an earlier record already holds:
	// written again after a crash (records are written at least once), not
	// a fault. Readers count each body once.
	Duplicates int       `json:"duplicates"`
	Problems   []Problem `json:"problems,omitempty"`
	// Bodies are the verified records' bodies, each once, in order.
	Bodies []Sealed `json:"-"`
}

// Sealed is a verified record's body with where it stands.
type Sealed struct {
	Sequence   int64
	RecordedAt string
	Body       Body
}

// OK reports whether the trail is intact.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// VerifyOptions say what to trust and expect.
type VerifyOptions struct {
	// Trusted are the public keys records must be signed with, by KeyID.
	Trusted map[string]ed25519.PublicKey
	// ExpectHead, when set, is a record the chain must reach (the head an
	// Incident's status or the metric names): a chain cut short ends
	// before it.
	ExpectHead *Link
	// Cluster, when set, is the cluster whose chain it must be; when not,
	// the first record's, and every record must be of one cluster.
	Cluster string
	// AllowEmpty: a sink with no record is not a fault (nothing decided
	// yet). Otherwise it is: reading an empty folder must not pass for a
	// whole trail.
	AllowEmpty bool
}

// Verify reads every record in a sink and checks its hash, its signature,
// its place and its link to the one before, reporting each fault by the
// record it is found at.
func Verify(ctx context.Context, sink Sink, opts VerifyOptions) (Report, error) {
	rep := Report{Sink: sink.String()}
	type good struct {
		name    string
		entry   Entry
		payload Payload
	}
	bySeq := map[int64]good{}
	// bad are sequences whose record is there but cannot be trusted: they
	// are reported once, as what they are, not again as missing.
	bad := map[int64]bool{}
	rep.Cluster = opts.Cluster
	err := sink.Walk(ctx, func(name string, data []byte) error {
		rep.Records++
		rep.Bytes += int64(len(data))
		named, ok := SequenceOfName(name)
		if data == nil {
			rep.add(Problem{Kind: Unreadable, Sequence: named, Name: name, Message: name + " is not a regular file: records are files"})
			bad[named] = true
			return nil
		}
		e, p, fault := Check(data, opts.Trusted)
		switch {
		case fault != nil && fault.Kind == Unreadable && fault.Sequence == 0:
			rep.add(Problem{Kind: Unreadable, Sequence: named, Name: name, Message: name + " is " + fault.Message})
			bad[named] = true
			return nil
		case fault != nil:
			rep.add(Problem{Kind: fault.Kind, Sequence: fault.Sequence, Name: name, Message: fault.Message})
			bad[fault.Sequence] = true
			return nil
		case rep.Cluster == "":
			rep.Cluster = p.Cluster
		case p.Cluster != rep.Cluster:
			rep.add(Problem{Kind: Foreign, Sequence: p.Sequence, Name: name, Message: fmt.Sprintf("record %d is of cluster %q's chain, not %q's: each cluster's records need a folder of their own", p.Sequence, p.Cluster, rep.Cluster)})
			bad[p.Sequence] = true
			return nil
		}
		if !ok || named != p.Sequence {
			rep.add(Problem{Kind: Moved, Sequence: p.Sequence, Name: name, Message: fmt.Sprintf("%s holds record %d: records were renamed or reordered", name, p.Sequence)})
		}
		if other, dup := bySeq[p.Sequence]; dup {
			rep.add(Problem{Kind: Forked, Sequence: p.Sequence, Name: name, Message: fmt.Sprintf("%s and %s both say they are record %d", other.name, name, p.Sequence)})
			return nil
		}
		bySeq[p.Sequence] = good{name: name, entry: e, payload: p}
		return nil
	})
	if err != nil {
		return rep, err
	}
	seqs := make([]int64, 0, len(bySeq)+len(bad))
	for s := range bySeq {
		seqs = append(seqs, s)
	}
	for s := range bad {
		if _, ok := bySeq[s]; !ok && s > 0 {
			seqs = append(seqs, s)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	seen := map[string]bool{}
	// The keys that signed the chain, in turn: replacedAt is where each
	// key that was replaced stopped.
	var signer string
	replacedAt := map[string]int64{}
	// prev is the last record passed; its hash is unknown ("") after one
	// that cannot be trusted, so the next is not also called broken.
	var prev Link
	prevKnown := true
	for _, s := range seqs {
		g, ok := bySeq[s]
		switch {
		case s > prev.Sequence+1:
			rep.add(Problem{Kind: Missing, Sequence: prev.Sequence + 1, Message: missing(prev.Sequence+1, s-1)})
		case ok && prevKnown && g.payload.Previous != prev.Hash:
			rep.add(Problem{Kind: Broken, Sequence: s, Name: g.name, Message: fmt.Sprintf("record %d does not follow record %d: it names %s before it, not %s", s, prev.Sequence, orNone(g.payload.Previous), orNone(prev.Hash))})
		}
		if !ok {
			prev, prevKnown = Link{Sequence: s}, false
			continue
		}
		if at, replaced := replacedAt[g.payload.KeyID]; replaced {
			rep.add(Problem{Kind: RetiredKey, Sequence: s, Name: g.name, Message: fmt.Sprintf("record %d is signed by key %s, which another key replaced at record %d: a key signs nothing after its rotation, so whoever kept it wrote this one", s, g.payload.KeyID, at)})
			prev, prevKnown = Link{Sequence: s}, false
			continue
		}
		prev, prevKnown = Link{Sequence: s, Hash: g.entry.Hash}, true
		if signer != "" && g.payload.KeyID != signer {
			replacedAt[signer] = s
		}
		signer = g.payload.KeyID
		bh, err := BodyHash(g.payload.Body)
		if err != nil {
			return rep, err
		}
		if seen[bh] {
			rep.Duplicates++
			continue
		}
		seen[bh] = true
		rep.Bodies = append(rep.Bodies, Sealed{Sequence: s, RecordedAt: g.payload.RecordedAt, Body: g.payload.Body})
	}
	rep.Head = prev
	if rep.Records == 0 && !opts.AllowEmpty {
		rep.add(Problem{Kind: Empty, Message: rep.Sink + " holds no record: if records were written, this is the wrong place (the manager's --record-s3-prefix is by default its --cluster-name) or every record was removed"})
	}
	if want := opts.ExpectHead; want != nil {
		got, ok := bySeq[want.Sequence]
		switch {
		case !ok && want.Sequence > prev.Sequence:
			rep.add(Problem{Kind: Truncated, Sequence: want.Sequence, Message: fmt.Sprintf("the chain ends at record %d, but record %d was written: records after %d were removed", prev.Sequence, want.Sequence, prev.Sequence)})
		case ok && want.Hash != "" && got.entry.Hash != want.Hash:
			rep.add(Problem{Kind: Broken, Sequence: want.Sequence, Name: got.name, Message: fmt.Sprintf("record %d is not the one written: its hash is %s, not %s", want.Sequence, got.entry.Hash, want.Hash)})
		}
	}
	sort.SliceStable(rep.Problems, func(i, j int) bool { return rep.Problems[i].Sequence < rep.Problems[j].Sequence })
	return rep, nil
}

func (r *Report) add(p Problem) { r.Problems = append(r.Problems, p) }

func missing(from, to int64) string {
	if from == to {
		return fmt.Sprintf("record %d is missing: removed", from)
	}
	return fmt.Sprintf("records %d to %d are missing: removed", from, to)
}

func orNone(h string) string {
	if h == "" {
		return "no record"
	}
	return h
}

// TrustedKeys parses PEM public keys into Verify's trust map.
func TrustedKeys(pems ...[]byte) (map[string]ed25519.PublicKey, error) {
	keys := map[string]ed25519.PublicKey{}
	for _, p := range pems {
		pub, err := ParsePublicKey(p)
		if err != nil {
			return nil, err
		}
		keys[KeyID(pub)] = pub
	}
	return keys, nil
}
