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

// LinkOf is where a stored entry leaves the chain.
func LinkOf(data []byte) (Link, error) {
	e, p, err := ParseEntry(data)
	if err != nil {
		return Link{}, err
	}
	if got := HashOf(e.Payload); got != e.Hash {
		return Link{}, fmt.Errorf("record %d does not match its hash", p.Sequence)
	}
	return Link{Sequence: p.Sequence, Hash: e.Hash}, nil
}
