package record_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"k8s.io/apimachinery/pkg/types"

	. "github.com/riposte-dev/riposte/internal/record"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// newBucket makes a bucket on a real S3 server and a sink in it; the
// client is the bucket owner's own, for tampering.
func newBucket(t *testing.T, srv *testenv.S3Server, bucket string) (*S3, *s3.Client) {
	t.Helper()
	sink, err := NewS3(S3Options{Endpoint: srv.Endpoint, Bucket: bucket, Prefix: "cluster-a", PathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	owner := srv.CreateBucket(t, bucket)
	return sink, owner
}

func describeProblems(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s at %d: %s\n", p.Kind, p.Sequence, p.Message)
	}
	return b.String()
}

// The S3 sink against SeaweedFS: a writer's records are stored, read back
// and verified; a second record of the same sequence is refused; a server
// that goes down delays the records and loses none.
func TestS3SinkStoresAVerifiableChainAndWaitsOutAnOutage(t *testing.T) {
	srv := testenv.StartS3(t)
	sink, owner := newBucket(t, srv, "riposte-records")
	ctx := context.Background()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)

	stored := make(chan types.NamespacedName, 100)
	w := &Writer{Sink: sink, Signer: Signer{Key: priv, Cluster: "cluster-a"}, Retry: 200 * time.Millisecond,
		Notify: func(nn types.NamespacedName) { stored <- nn }}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Start(wctx)
	submit := func(i int) {
		w.Submit(types.NamespacedName{Namespace: "ns", Name: fmt.Sprint(i)}, Key{UID: types.UID(fmt.Sprint(i)), Milestone: "Remediated"},
			Body{Kind: "Incident", Milestone: "Remediated", Incident: ObjectID{Namespace: "ns", Name: fmt.Sprint(i), UID: fmt.Sprint(i)}})
	}
	waitStored := func(uid string) Stored {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			if s, ok := w.Last(types.UID(uid)); ok {
				return s
			}
			select {
			case <-stored:
			case <-deadline:
				t.Fatalf("record of %s not stored within 60s; the sink says: %v", uid, w.Behind())
			}
		}
	}
	for i := 1; i <= 3; i++ {
		submit(i)
	}
	if s := waitStored("3"); s.Sequence != 3 {
		t.Fatalf("third record stored as %d", s.Sequence)
	}

	// A record 3 that is not the one stored is refused by the server.
	// An object in a folder below records/ is not the chain's end.
	_, err := owner.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("riposte-records"), Key: aws.String("cluster-a/records/zz/00000000000000000099.json"), Body: bytes.NewReader([]byte("{}"))})
	if err != nil {
		t.Fatal(err)
	}
	seq, data, err := sink.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := ParseEntry(data)
	if seq != 3 || p.Sequence != 3 {
		t.Fatalf("the chain's end in the bucket: named %d, holding %d; want record 3", seq, p.Sequence)
	}
	head := Link{Sequence: p.Sequence}
	if _, err := owner.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("riposte-records"), Key: aws.String("cluster-a/records/zz/00000000000000000099.json")}); err != nil {
		t.Fatal(err)
	}
	_, other, _ := Signer{Key: priv, Cluster: "cluster-a"}.Seal(Link{Sequence: 2}, Body{Kind: "Incident", Milestone: "Rejected"}, time.Now())
	if err := sink.Put(ctx, 3, other); !errors.Is(err, ErrExists) {
		t.Fatalf("a second record 3 in the bucket: got %v, want ErrExists (a conditional put refused)", err)
	}

	// The server goes down: records wait, the writer says why, and all are
	// stored once it is back.
	srv.Stop()
	submit(4)
	submit(5)
	testenv.Eventually(t, 30*time.Second, func(context.Context) error {
		if w.Behind() == nil {
			return errors.New("the writer does not say the sink is failing")
		}
		return nil
	})
	if _, ok := w.Last("4"); ok {
		t.Fatal("record 4 stored while the server was down")
	}
	srv.Start()
	if s := waitStored("5"); s.Sequence != 5 {
		t.Fatalf("fifth record stored as %d", s.Sequence)
	}
	if w.Behind() != nil {
		t.Fatalf("the writer still says the sink fails: %v", w.Behind())
	}

	keys, err := sink.Keys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("public keys beside the records: %d, %v", len(keys), err)
	}
	trusted, _ := TrustedKeys(PublicPEM(priv.Public().(ed25519.PublicKey)))
	rep, err := Verify(ctx, sink, VerifyOptions{Trusted: trusted, ExpectHead: &Link{Sequence: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Head.Sequence != 5 || len(rep.Bodies) != 5 || head.Sequence != 3 {
		t.Fatalf("verify of the bucket: ok=%v head=%d bodies=%d:\n%s", rep.OK(), rep.Head.Sequence, len(rep.Bodies), describeProblems(rep.Problems))
	}

	// Tampering in the bucket is caught as in a directory: an object
	// overwritten by someone with write access to the bucket.
	_, err = owner.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("riposte-records"), Key: aws.String("cluster-a/records/00000000000000000002.json"), Body: bytes.NewReader(other)})
	if err != nil {
		t.Fatal(err)
	}
	rep, _ = Verify(ctx, sink, VerifyOptions{Trusted: trusted})
	var moved bool
	for _, p := range rep.Problems {
		moved = moved || p.Kind == Moved && p.Name == "00000000000000000002.json"
	}
	if !moved {
		t.Fatalf("record 2 overwritten with another record was not caught as such:\n%s", describeProblems(rep.Problems))
	}
}

// With --record-s3-object-lock, each record is stored under Object Lock in
// compliance mode on a bucket that has it (SeaweedFS): the bucket's owner
// can neither delete the record's version nor shorten its retention, and
// an overwrite or a delete marker leaves the locked version readable, while
// verify, which reads the current versions, shows the change.
func TestS3ObjectLockKeepsRecordsFromTheBucketOwner(t *testing.T) {
	srv := testenv.StartS3(t)
	ctx := context.Background()
	const bucket = "riposte-locked"
	owner := srv.CreateBucket(t, bucket, func(in *s3.CreateBucketInput) { in.ObjectLockEnabledForBucket = aws.Bool(true) })
	sink, err := NewS3(S3Options{Endpoint: srv.Endpoint, Bucket: bucket, Prefix: "cluster-a", PathStyle: true, ObjectLock: time.Hour,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer := Signer{Key: priv, Cluster: "cluster-a"}
	var prev Link
	var first []byte
	for i := int64(1); i <= 2; i++ {
		e, data, err := signer.Seal(prev, Body{Kind: "Incident", Milestone: "Remediated", Incident: ObjectID{Namespace: "ns", Name: fmt.Sprint(i), UID: fmt.Sprint(i)}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Put(ctx, i, data); err != nil {
			t.Fatalf("storing record %d under Object Lock: %v", i, err)
		}
		prev = Link{Sequence: i, Hash: e.Hash}
		if i == 1 {
			first = data
		}
	}
	key := aws.String("cluster-a/records/00000000000000000001.json")
	head, err := owner.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if head.ObjectLockMode != s3types.ObjectLockModeCompliance || head.ObjectLockRetainUntilDate == nil ||
		time.Until(*head.ObjectLockRetainUntilDate) < 50*time.Minute || head.VersionId == nil {
		t.Fatalf("record 1 stored with lock mode %q until %v (version %v): want COMPLIANCE for an hour", head.ObjectLockMode, head.ObjectLockRetainUntilDate, head.VersionId)
	}
	locked := head.VersionId

	// The owner may delete a version that is not locked (so what follows
	// is refused for the lock, not for want of rights)...
	scratch, err := owner.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("scratch"), Body: bytes.NewReader([]byte("x"))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("scratch"), VersionId: scratch.VersionId}); err != nil {
		t.Fatalf("the bucket owner cannot delete an unlocked version: %v", err)
	}
	// ...but cannot remove a record for good, nor shorten its lock.
	_, err = owner.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: key, VersionId: locked})
	if err == nil {
		t.Fatal("the bucket owner deleted a record's locked version")
	}
	t.Logf("deleting the locked version: %v", err)
	_, err = owner.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{Bucket: aws.String(bucket), Key: key, VersionId: locked,
		Retention: &s3types.ObjectLockRetention{Mode: s3types.ObjectLockRetentionModeCompliance, RetainUntilDate: aws.Time(time.Now().Add(time.Minute))}})
	if err == nil {
		t.Fatal("the bucket owner shortened a record's compliance lock")
	}
	t.Logf("shortening the lock: %v", err)

	// An overwrite makes a new version: verify sees the current one as
	// edited, and the locked original is still there to prove what was.
	if _, err := owner.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: key, Body: bytes.NewReader([]byte(`{"payload":{}}`))}); err != nil {
		t.Fatal(err)
	}
	trusted, _ := TrustedKeys(PublicPEM(priv.Public().(ed25519.PublicKey)))
	rep, err := Verify(ctx, sink, VerifyOptions{Trusted: trusted})
	if err != nil {
		t.Fatal(err)
	}
	atFirst := false
	for _, p := range rep.Problems {
		atFirst = atFirst || p.Sequence == 1 || p.Name == "00000000000000000001.json"
	}
	if !atFirst {
		t.Errorf("verify after record 1 was overwritten:\n%s want a fault at record 1", describeProblems(rep.Problems))
	}
	got, err := owner.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: key, VersionId: locked})
	if err != nil {
		t.Fatalf("the locked version after an overwrite: %v", err)
	}
	kept, _ := io.ReadAll(got.Body)
	_ = got.Body.Close()
	if !bytes.Equal(kept, first) {
		t.Errorf("the locked version of record 1 reads %q, want the record as stored", kept)
	}
}
