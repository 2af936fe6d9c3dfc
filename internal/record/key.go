package record

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyID names a public key: "ed25519:" and the first 16 bytes of its
// SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:16])
}

// LoadKey reads an ed25519 private key in PKCS #8 PEM, as Helm's
// genPrivateKey "ed25519" and openssl genpkey -algorithm ed25519 write it.
// create: a missing file is made with a new key (make run's default); a
// mounted Secret is never written.
func LoadKey(path string, create bool) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the record signing key: %w", err)
	}
	return ParsePrivateKey(data)
}

// ParsePrivateKey reads a PKCS #8 PEM ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("the record signing key is not a PEM \"PRIVATE KEY\" (PKCS #8)")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the record signing key: %w", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the record signing key is a %T; want ed25519", key)
	}
	return priv, nil
}

func createKey(path string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the record signing key: %w", err)
	}
	err = linkWhole(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if errors.Is(err, fs.ErrExist) {
		return LoadKey(path, false) // made meanwhile by another process
	}
	if err != nil {
		return nil, fmt.Errorf("creating the record signing key: %w", err)
	}
	return priv, nil
}

// linkWhole writes data under another name, then links it into place: a
// replica starting at the same moment finds either no key or the whole key,
// never a file still being written, and a link never replaces a key
// (fs.ErrExist then).
func linkWhole(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".signing-key-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(f.Name()) }()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	return os.Link(f.Name(), path)
}

// PublicPEM is a public key in PKIX PEM, as records' readers are given it.
func PublicPEM(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKey reads a PKIX PEM ed25519 public key, or the public half
// of a PKCS #8 private key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM key")
	}
	switch block.Type {
	case "PUBLIC KEY":
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("a %T public key; want ed25519", key)
		}
		return pub, nil
	case "PRIVATE KEY":
		priv, err := ParsePrivateKey(data)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("a PEM %q; want PUBLIC KEY", block.Type)
}
