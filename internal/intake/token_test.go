package intake

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestFileTokenFollowsRewrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	ft := &FileToken{Path: path}
	base := time.Now().Add(-time.Hour)
	// Each step rewrites the file (unless content is nil) with a distinct
	// mtime, then reads the token.
	steps := []struct {
		reason    string
		content   []byte
		removed   bool
		wantToken string
		wantErr   bool
	}{
		{reason: "a missing file is an error", removed: true, wantErr: true},
		{reason: "the token is trimmed of whitespace", content: []byte("  first\n"), wantToken: "first"},
		{reason: "an unchanged file gives the same token", wantToken: "first"},
		{reason: "a rewritten file is read again", content: []byte("second-token\n"), wantToken: "second-token"},
		{reason: "a rewrite of the same size is seen by its mtime", content: []byte("third--token\n"), wantToken: "third--token"},
		{reason: "an empty file is an error, not an empty token", content: []byte(" \n"), wantErr: true},
		{reason: "a token written again after that is read", content: []byte("fourth"), wantToken: "fourth"},
		{reason: "a removed file is an error", removed: true, wantErr: true},
	}
	for i, step := range steps {
		if step.removed {
			_ = os.Remove(path)
		}
		if step.content != nil {
			if err := os.WriteFile(path, step.content, 0o600); err != nil {
				t.Fatal(err)
			}
			at := base.Add(time.Duration(i) * time.Second)
			if err := os.Chtimes(path, at, at); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ft.Token(context.Background())
		if step.wantErr {
			if err == nil {
				t.Errorf("%s: Token = %q, want an error", step.reason, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Token: %v", step.reason, err)
			continue
		}
		if diff := cmp.Diff(step.wantToken, string(got)); diff != "" {
			t.Errorf("%s: Token (-want +got):\n%s", step.reason, diff)
		}
	}
}

func TestSecretToken(t *testing.T) {
	key := types.NamespacedName{Namespace: "riposte-system", Name: "intake"}
	secret := func(data map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	cases := []struct {
		reason    string
		secret    *corev1.Secret
		field     string
		wantToken string
		wantErr   bool
	}{
		{reason: "the default key is token, trimmed", secret: secret(map[string]string{"token": "abc\n"}), wantToken: "abc"},
		{reason: "another key when Field names it", secret: secret(map[string]string{"bearer": "xyz"}), field: "bearer", wantToken: "xyz"},
		{reason: "a missing Secret is an error", wantErr: true},
		{reason: "a missing key is an error", secret: secret(map[string]string{"other": "abc"}), wantErr: true},
		{reason: "an empty value is an error", secret: secret(map[string]string{"token": "  "}), wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			b := fake.NewClientBuilder()
			if tc.secret != nil {
				b = b.WithObjects(tc.secret)
			}
			st := &SecretToken{Reader: b.Build(), Key: key, Field: tc.field}
			got, err := st.Token(context.Background())
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Token = %q, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if diff := cmp.Diff(tc.wantToken, string(got)); diff != "" {
				t.Errorf("Token (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSecretTokenFollowsRotation(t *testing.T) {
	ctx := context.Background()
	key := types.NamespacedName{Namespace: "riposte-system", Name: "intake"}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: map[string][]byte{"token": []byte("old")}}
	c := fake.NewClientBuilder().WithObjects(s).Build()
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	st := &SecretToken{Reader: c, Key: key, nowFunc: func() time.Time { return now }}

	if got, err := st.Token(ctx); err != nil || string(got) != "old" {
		t.Fatalf("Token = %q, %v; want old", got, err)
	}
	s.Data["token"] = []byte("new")
	if err := c.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Token(ctx); string(got) != "old" {
		t.Errorf("within the cache time Token = %q, want the cached old", got)
	}
	now = now.Add(secretTokenTTL)
	if got, _ := st.Token(ctx); string(got) != "new" {
		t.Errorf("after the cache time Token = %q, want new", got)
	}
}
