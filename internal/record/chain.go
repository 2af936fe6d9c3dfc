package record

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Format names the record format in every payload.
const Format = "riposte.dev/record/v1"

// Payload is what is hashed and signed: the body, where it stands in the
// chain, and who signed it.
type Payload struct {
	Format string `json:"format"`
	// Sequence counts the cluster's records from 1, with no gaps.
	Sequence int64 `json:"sequence"`
	// Previous is the hash of record Sequence-1; empty for the first.
	Previous string `json:"previous"`
	// Cluster names the cluster whose chain this is.
	Cluster string `json:"cluster"`
	// RecordedAt is when the record was sealed.
	RecordedAt string `json:"recordedAt"`
	// KeyID names the key that signed it (KeyID of its public key).
	KeyID string `json:"keyID"`
	Body  Body   `json:"body"`
}

// Entry is one stored record: the payload exactly as signed, its hash and
// its signature. The payload is kept as the bytes that were signed, so
// checking it never depends on how a reader re-encodes JSON.
type Entry struct {
	Payload   json.RawMessage `json:"payload"`
	Hash      string          `json:"hash"`
	Signature string          `json:"signature"`
}

// Link is where a chain ends: the last record's sequence and hash.
type Link struct {
	Sequence int64  `json:"sequence"`
	Hash     string `json:"hash"`
}

// Signer seals bodies into entries with one key.
type Signer struct {
	Key     ed25519.PrivateKey
	Cluster string
}

// Seal makes the entry that follows prev.
func (s Signer) Seal(prev Link, body Body, at time.Time) (Entry, []byte, error) {
	payload, err := json.Marshal(Payload{
		Format: Format, Sequence: prev.Sequence + 1, Previous: prev.Hash, Cluster: s.Cluster,
		RecordedAt: timeOf(at), KeyID: KeyID(s.Key.Public().(ed25519.PublicKey)), Body: body,
	})
	if err != nil {
		return Entry{}, nil, fmt.Errorf("encoding record %d: %w", prev.Sequence+1, err)
	}
	e := Entry{Payload: payload, Hash: HashOf(payload), Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(s.Key, payload))}
	data, err := e.Marshal()
	return e, data, err
}

// Marshal is the entry as stored: one line of JSON.
func (e Entry) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"payload":`)
	buf.Write(e.Payload)
	hash, _ := json.Marshal(e.Hash)
	sig, _ := json.Marshal(e.Signature)
	fmt.Fprintf(&buf, `,"hash":%s,"signature":%s}`+"\n", hash, sig)
	return buf.Bytes(), nil
}

// HashOf is the hash a record is chained by: SHA-256 of its payload.
func HashOf(payload []byte) string {
	sum := sha256.Sum256(payload)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// BodyHash identifies a body whatever record carries it, so a record
// written twice (at least once delivery) is seen as one.
func BodyHash(b Body) (string, error) {
	data, err := json.Marshal(b)
	if err != nil {
		return "", err
	}
	return HashOf(data), nil
}

// ParseEntry reads a stored entry and its payload, without checking them.
func ParseEntry(data []byte) (Entry, Payload, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&e); err != nil {
		return Entry{}, Payload{}, fmt.Errorf("not a record: %w", err)
	}
	if len(e.Payload) == 0 {
		return e, Payload{}, errors.New("not a record: no payload")
	}
	var p Payload
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return e, Payload{}, fmt.Errorf("not a record: its payload: %w", err)
	}
	return e, p, nil
}

// Fault is why a stored record cannot be trusted: its Kind is one of the
// problem kinds Verify reports.
type Fault struct {
	Kind string
	// Sequence is the one its payload names, when that can be read.
	Sequence int64
	Message  string
}

func (f *Fault) Error() string { return f.Message }

// Check reads a stored entry and checks that it is a record as it was
// sealed: its bytes are the entry's own encoding (nothing added around it,
// no key given twice), its payload matches its hash, its format is known,
// and its signature verifies with one of the trusted keys.
func Check(data []byte, trusted map[string]ed25519.PublicKey) (Entry, Payload, *Fault) {
	e, p, err := ParseEntry(data)
	if err != nil {
		return e, p, &Fault{Kind: Unreadable, Message: err.Error()}
	}
	if HashOf(e.Payload) != e.Hash {
		return e, p, &Fault{Kind: Edited, Sequence: p.Sequence, Message: fmt.Sprintf("record %d was edited: its content does not match the hash stored with it", p.Sequence)}
	}
	if sealed, _ := e.Marshal(); !bytes.Equal(sealed, data) {
		return e, p, &Fault{Kind: Edited, Sequence: p.Sequence, Message: fmt.Sprintf("record %d was edited: its file holds more than the record as written (bytes added around it, or a field given twice)", p.Sequence)}
	}
	if p.Format != Format {
		return e, p, &Fault{Kind: Unreadable, Sequence: p.Sequence, Message: fmt.Sprintf("record %d is in format %q; this reader knows %s", p.Sequence, p.Format, Format)}
	}
	key, ok := trusted[p.KeyID]
	if !ok {
		return e, p, &Fault{Kind: UntrustedKey, Sequence: p.Sequence, Message: fmt.Sprintf("record %d is signed by key %s, which is not trusted", p.Sequence, p.KeyID)}
	}
	if sig, err := base64.StdEncoding.DecodeString(e.Signature); err != nil || !ed25519.Verify(key, e.Payload, sig) {
		return e, p, &Fault{Kind: Forged, Sequence: p.Sequence, Message: fmt.Sprintf("record %d's signature does not verify with key %s: it was changed (and its hash recomputed) or written without the key", p.Sequence, p.KeyID)}
	}
	return e, p, nil
}
