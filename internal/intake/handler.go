package intake

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

const (
	defaultMaxBodyBytes = 1 << 20
	defaultMaxInFlight  = 64
	// storeParallelism bounds the writes one notification makes at once.
	storeParallelism = 8
)

// Handler serves Alertmanager's webhook.
type Handler struct {
	Store Store
	Token TokenSource
	// MaxBodyBytes bounds a request body (default 1 MiB).
	MaxBodyBytes int64
	// MaxInFlight bounds concurrent requests; past it the answer is 503 with
	// Retry-After rather than an unbounded queue in memory (default 64).
	MaxInFlight      int
	DefaultNamespace string
	Log              logr.Logger

	once     sync.Once
	inFlight chan struct{}
}

// StoredIncident is one entry of a successful answer.
type StoredIncident struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
}

// ServeHTTP checks, in order: method, caller, capacity, size, payload; then
// stores every alert and answers 200 only when all are stored.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() {
		n := h.MaxInFlight
		if n <= 0 {
			n = defaultMaxInFlight
		}
		h.inFlight = make(chan struct{}, n)
	})
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "only POST is accepted")
		return
	}
	if ok, err := h.authenticate(r); !ok {
		if err != nil {
			// The token could not be read: the operator's problem, not the caller's.
			h.Log.Error(err, "reading the intake token")
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="riposte"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return
	}
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "intake is saturated; retry")
		return
	}

	limit := h.MaxBodyBytes
	if limit <= 0 {
		limit = defaultMaxBodyBytes
	}
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is larger than the %d-byte limit", r.ContentLength, limit))
		return
	}
	payload, err := Decode(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than the %d-byte limit", limit))
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	stored, err := h.storeAll(r.Context(), payload)
	if err != nil {
		status, retryAfter := statusFor(err)
		if retryAfter {
			w.Header().Set("Retry-After", "1")
		}
		h.Log.Error(err, "storing alerts", "receiver", payload.Receiver, "alerts", len(payload.Alerts), "status", status)
		writeError(w, status, err.Error())
		return
	}
	h.Log.V(1).Info("stored alerts", "receiver", payload.Receiver, "alerts", len(stored))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"incidents": stored})
}

func (h *Handler) authenticate(r *http.Request) (bool, error) {
	want, err := h.Token.Token(r.Context())
	if err != nil || len(want) == 0 {
		return false, err
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), want) == 1, nil
}

// storeAll writes every alert's Incident, a few at a time, and fails if any
// write failed, so the whole notification is retried.
func (h *Handler) storeAll(ctx context.Context, p *Payload) ([]StoredIncident, error) {
	out := make([]StoredIncident, len(p.Alerts))
	errs := make([]error, len(p.Alerts))
	sem := make(chan struct{}, storeParallelism)
	var wg sync.WaitGroup
	for i, a := range p.Alerts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			key, err := h.Store.Upsert(ctx, IncidentFor(a, h.DefaultNamespace))
			out[i], errs[i] = StoredIncident{Namespace: key.Namespace, Name: key.Name, Status: a.Status}, err
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// statusFor maps a storage failure to what Alertmanager should do: a 4xx
// for what a retry cannot fix, a 5xx (it retries) for everything else.
func statusFor(err error) (status int, retryAfter bool) {
	switch {
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		return http.StatusBadRequest, false
	case apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err):
		return http.StatusServiceUnavailable, true
	default:
		return http.StatusInternalServerError, false
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
