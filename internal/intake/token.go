package intake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TokenSource yields the bearer token callers must present.
type TokenSource interface {
	Token(ctx context.Context) ([]byte, error)
}

// FileToken reads the token from a file, again whenever the file changes, so
// a rotated Secret mounted as a file takes effect without a restart.
type FileToken struct {
	Path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	token   []byte
}

// Token implements TokenSource.
func (f *FileToken) Token(context.Context) ([]byte, error) {
	info, err := os.Stat(f.Path)
	if err != nil {
		return nil, fmt.Errorf("intake token file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != nil && info.ModTime().Equal(f.modTime) && info.Size() == f.size {
		return f.token, nil
	}
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, fmt.Errorf("intake token file: %w", err)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) == 0 {
		return nil, errors.New("intake token file is empty")
	}
	f.token, f.modTime, f.size = tok, info.ModTime(), info.Size()
	return tok, nil
}

// secretTokenTTL is how long SecretToken trusts what it read: long enough
// that requests (or a flood of wrong guesses) do not each cost an API
// request, short enough that a rotated Secret applies promptly.
const secretTokenTTL = 10 * time.Second

// SecretToken reads the token from a Secret's key (default "token"). Use a
// non-caching reader (the manager's API reader) so Riposte need not watch
// every Secret in the cluster.
type SecretToken struct {
	Reader client.Reader
	Key    types.NamespacedName
	Field  string

	mu      sync.Mutex
	token   []byte
	readAt  time.Time
	nowFunc func() time.Time // for tests
}

// Token implements TokenSource.
func (s *SecretToken) Token(ctx context.Context) ([]byte, error) {
	now := time.Now
	if s.nowFunc != nil {
		now = s.nowFunc
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != nil && now().Sub(s.readAt) < secretTokenTTL {
		return s.token, nil
	}
	var secret corev1.Secret
	if err := s.Reader.Get(ctx, s.Key, &secret); err != nil {
		return nil, fmt.Errorf("intake token secret %s: %w", s.Key, err)
	}
	field := s.Field
	if field == "" {
		field = "token"
	}
	tok := bytes.TrimSpace(secret.Data[field])
	if len(tok) == 0 {
		return nil, fmt.Errorf("intake token secret %s has no non-empty key %q", s.Key, field)
	}
	s.token, s.readAt = tok, now()
	return tok, nil
}
