package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Server is a real S3-compatible server (SeaweedFS's weed, built from
// source by hack/build-testbins.sh) on loopback, for the record sink.
type S3Server struct {
	Endpoint             string
	AccessKey, SecretKey string
	dir                  string
	args                 []string
	bin                  string
	t                    testing.TB
	proc                 *os.Process
	exited               <-chan struct{}
	starts               int
}

// WeedBinary is the SeaweedFS server hack/build-testbins.sh built.
func WeedBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("WEED")
	if bin == "" {
		bin = filepath.Join(RepoRoot(), "bin", "weed")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no SeaweedFS binary at %s: run `make testbins`: %v", bin, err)
	}
	return bin
}

// StartS3 runs SeaweedFS with its S3 gateway for the test's lifetime and
// waits until it answers. One identity, with every S3 action, is allowed.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	dir := t.TempDir()
	s := &S3Server{AccessKey: "riposte-test", SecretKey: "riposte-test-secret", dir: dir, bin: WeedBinary(t), t: t}
	config := `{"identities":[{"name":"riposte","credentials":[{"accessKey":"` + s.AccessKey + `","secretKey":"` + s.SecretKey + `"}],"actions":["Admin","Read","Write","List","Tagging"]}]}`
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o750); err != nil {
		t.Fatal(err)
	}
	port := func() string { _, p, _ := net.SplitHostPort(FreeAddr(t)); return p }
	s3Port := port()
	s.Endpoint = "http://127.0.0.1:" + s3Port
	// Every port chosen here: weed's defaults add 10000 to each for gRPC,
	// which may not be free, or even exist.
	s.args = []string{"server", "-ip", "127.0.0.1", "-ip.bind", "127.0.0.1", "-dir", filepath.Join(dir, "data"),
		"-master.port", port(), "-master.port.grpc", port(), "-volume.port", port(), "-volume.port.grpc", port(),
		"-filer.port", port(), "-filer.port.grpc", port(), "-s3", "-s3.port", s3Port, "-s3.port.grpc", port(),
		"-s3.config", filepath.Join(dir, "s3.json"), "-master.volumeSizeLimitMB", "64", "-volume.max", "8",
		"-master.telemetry=false", "-iam.port", port()}
	s.Start()
	return s
}

// Start runs the server (again, after Stop) on the same ports and data,
// and waits until its S3 gateway answers.
func (s *S3Server) Start() {
	s.t.Helper()
	s.starts++
	s.proc, s.exited = startProcess(s.t, s.dir, fmt.Sprintf("weed-%d", s.starts), s.bin, nil, s.args...)
	Eventually(s.t, 90*time.Second, func(context.Context) error {
		c, err := net.DialTimeout("tcp", s.Endpoint[len("http://"):], time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// Stop kills the server, as a crash or an outage would.
func (s *S3Server) Stop() {
	_ = s.proc.Kill()
	<-s.exited
}

// CreateBucket makes a bucket as the server's one identity, trying while
// the gateway's filer is still starting; opts set more of the request
// (Object Lock, say).
func (s *S3Server) CreateBucket(t testing.TB, name string, opts ...func(*s3.CreateBucketInput)) *s3.Client {
	t.Helper()
	owner := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")})
	Eventually(t, 60*time.Second, func(ctx context.Context) error {
		in := &s3.CreateBucketInput{Bucket: aws.String(name)}
		for _, o := range opts {
			o(in)
		}
		_, err := owner.CreateBucket(ctx, in)
		return err
	})
	return owner
}

// Env is the environment a manager reads the server's credentials from.
func (s *S3Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}
