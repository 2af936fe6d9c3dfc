package record

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrExists: a record with that sequence is already stored. Another writer
// (a leader that has not yet stopped) got there first; the writer reads
// the chain's end again and seals its record after it.
var ErrExists = errors.New("a record with this sequence is already stored")

// Sink stores records where they outlive the cluster's objects. Records
// are never overwritten: Put refuses a sequence already stored.
type Sink interface {
	// Put stores a record under its sequence, unless one is stored there
	// (ErrExists).
	Put(ctx context.Context, seq int64, data []byte) error
	// Last is the stored record with the highest sequence, by its name,
	// and that sequence; nil when none is.
	Last(ctx context.Context) (int64, []byte, error)
	// Get is the record stored under a sequence; nil when none is. What is
	// not a regular file or object (a link, a pipe) is an error, never a
	// wait.
	Get(ctx context.Context, seq int64) ([]byte, error)
	// Walk calls fn with each stored record's name and content, in name
	// order (which is sequence order).
	Walk(ctx context.Context, fn func(name string, data []byte) error) error
	// PutKey stores a public key beside the records, under its KeyID, for
	// readers who have no copy of their own.
	PutKey(ctx context.Context, id string, pem []byte) error
	// Keys are the public keys stored beside the records, by KeyID.
	Keys(ctx context.Context) (map[string][]byte, error)
	// String names the sink for people: dir:/path or s3://bucket/prefix.
	String() string
}

// maxRecordBytes bounds what is read as one record (one is a few kB).
const maxRecordBytes = 16 << 20

// seqWidth pads sequences so names sort as numbers do.
const seqWidth = 20

// recordName is a record's name in a sink.
func recordName(seq int64) string { return fmt.Sprintf("%0*d.json", seqWidth, seq) }

// SequenceOfName is the sequence a record's name gives; ok false for a
// name no record has (one in a folder of its own included).
func SequenceOfName(name string) (int64, bool) {
	base, found := strings.CutSuffix(name, ".json")
	if !found || len(base) != seqWidth {
		return 0, false
	}
	seq, err := strconv.ParseInt(base, 10, 64)
	return seq, err == nil && seq > 0
}

// keyName is where a public key is kept, by KeyID ("ed25519:hex").
func keyName(id string) string { return strings.ReplaceAll(id, ":", "-") + ".pem" }

// keyIDOfName reverses keyName.
func keyIDOfName(name string) (string, bool) {
	base, found := strings.CutSuffix(name[strings.LastIndex(name, "/")+1:], ".pem")
	if !found {
		return "", false
	}
	return strings.Replace(base, "-", ":", 1), true
}
