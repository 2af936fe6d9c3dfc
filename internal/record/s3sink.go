package record

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Options say where an S3 sink stores records.
type S3Options struct {
	// Endpoint is the S3 API's URL; empty is AWS's for the region.
	Endpoint string
	Region   string
	Bucket   string
	// Prefix is the folder records and keys go under (the cluster's name,
	// so clusters can share a bucket).
	Prefix string
	// PathStyle addresses the bucket in the path (MinIO, SeaweedFS), not
	// as a host name.
	PathStyle bool
	// ObjectLock, when above 0, stores each record under S3 Object Lock in
	// compliance mode for that long: not even the bucket's owner can
	// delete or overwrite it before then. The bucket must have Object Lock
	// enabled.
	ObjectLock time.Duration
	// AccessKeyID and SecretAccessKey; empty reads AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY.
	AccessKeyID, SecretAccessKey string
	// HTTPClient, if set, sends the requests.
	HTTPClient *http.Client
}

// S3 is a sink in an S3-compatible bucket. Each record is one object,
// written only if no object has its name (a conditional put, If-None-Match),
// and, with ObjectLock, retained against deletion.
type S3 struct {
	opts   S3Options
	client *s3.Client
}

// NewS3 builds an S3 sink; it sends nothing until used.
func NewS3(o S3Options) (*S3, error) {
	if o.Bucket == "" {
		return nil, errors.New("the S3 record sink needs a bucket")
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.AccessKeyID == "" {
		o.AccessKeyID, o.SecretAccessKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	if o.AccessKeyID == "" || o.SecretAccessKey == "" {
		return nil, errors.New("the S3 record sink needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	cfg := aws.Config{
		Region:      o.Region,
		Credentials: credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, ""),
		// Records are small and written one at a time; the writer retries.
		RetryMaxAttempts: 1,
	}
	if o.HTTPClient != nil {
		cfg.HTTPClient = o.HTTPClient
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
	})
	return &S3{opts: o, client: client}, nil
}

func (s *S3) String() string { return "s3://" + path.Join(s.opts.Bucket, s.opts.Prefix) }

func (s *S3) key(parts ...string) string {
	return path.Join(append([]string{s.opts.Prefix}, parts...)...)
}

// Put stores a record, create-only, under Object Lock when configured.
func (s *S3) Put(ctx context.Context, seq int64, data []byte) error {
	return s.create(ctx, s.key("records", recordName(seq)), data, "application/json", true)
}

func (s *S3) create(ctx context.Context, key string, data []byte, contentType string, lock bool) error {
	in := &s3.PutObjectInput{
		Bucket: aws.String(s.opts.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentType: aws.String(contentType), IfNoneMatch: aws.String("*"),
	}
	if lock && s.opts.ObjectLock > 0 {
		in.ObjectLockMode = s3types.ObjectLockModeCompliance
		in.ObjectLockRetainUntilDate = aws.Time(time.Now().Add(s.opts.ObjectLock))
		in.ChecksumAlgorithm = s3types.ChecksumAlgorithmSha256 // Object Lock needs a checksum
	}
	_, err := s.client.PutObject(ctx, in)
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "PreconditionFailed" || api.ErrorCode() == "ConditionalRequestConflict") {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("record sink %s: storing %s: %w", s, key, err)
	}
	return nil
}

// names lists the objects under a folder, in key order, by their names in
// it (one in a folder below it keeps that folder in its name).
func (s *S3) names(ctx context.Context, folder string) ([]string, error) {
	var names []string
	under := s.key(folder) + "/"
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.opts.Bucket), Prefix: aws.String(under)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("record sink %s: listing %s: %w", s, folder, err)
		}
		for _, o := range page.Contents {
			names = append(names, strings.TrimPrefix(aws.ToString(o.Key), under))
		}
	}
	return names, nil
}

func (s *S3) get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.opts.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("record sink %s: reading %s: %w", s, key, err)
	}
	defer out.Body.Close()
	return io.ReadAll(io.LimitReader(out.Body, maxRecordBytes))
}

// Get reads the record stored under seq.
func (s *S3) Get(ctx context.Context, seq int64) ([]byte, error) {
	data, err := s.get(ctx, s.key("records", recordName(seq)))
	var missing *s3types.NoSuchKey
	if errors.As(err, &missing) {
		return nil, nil
	}
	return data, err
}

// Last reads the record with the highest sequence.
func (s *S3) Last(ctx context.Context) (int64, []byte, error) {
	names, err := s.names(ctx, "records")
	if err != nil {
		return 0, nil, err
	}
	for i := len(names) - 1; i >= 0; i-- {
		if seq, ok := SequenceOfName(names[i]); ok {
			data, err := s.get(ctx, s.key("records", names[i]))
			return seq, data, err
		}
	}
	return 0, nil, nil
}

// Walk reads every object under records/, in key order.
func (s *S3) Walk(ctx context.Context, fn func(name string, data []byte) error) error {
	names, err := s.names(ctx, "records")
	if err != nil {
		return err
	}
	for _, n := range names {
		data, err := s.get(ctx, s.key("records", n))
		if err != nil {
			return err
		}
		if err := fn(n, data); err != nil {
			return err
		}
	}
	return nil
}

// PutKey stores a public key once.
func (s *S3) PutKey(ctx context.Context, id string, pem []byte) error {
	if err := s.create(ctx, s.key("keys", keyName(id)), pem, "application/x-pem-file", false); err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	return nil
}

// Keys reads the public keys stored beside the records.
func (s *S3) Keys(ctx context.Context) (map[string][]byte, error) {
	names, err := s.names(ctx, "keys")
	if err != nil {
		return nil, err
	}
	keys := map[string][]byte{}
	for _, n := range names {
		id, ok := keyIDOfName(n)
		if !ok || strings.Contains(n, "/") {
			continue
		}
		data, err := s.get(ctx, s.key("keys", n))
		if err != nil {
			return nil, err
		}
		keys[id] = data
	}
	return keys, nil
}
