package record_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
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
