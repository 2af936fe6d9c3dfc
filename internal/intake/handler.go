package intake

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

const (
	defaultMaxBodyBytes = 1 << 20
	defaultMaxInFlight  = 64
	// storeParallelism bounds the writes one notification makes at once.
	storeParallelism = 8
	// maxReportedFailures bounds how many store failures one answer spells out.
	maxReportedFailures = 3
)

// Handler serves Alertmanager's webhook. Alertmanager retries a notification
// answered 5xx and drops one answered 4xx, so a 4xx is only given for what a
// retry cannot fix.
type Handler struct {
	Store Store
	Token TokenSource
	// MaxBodyBytes bounds a request body (default 1 MiB).
	MaxBodyBytes int64
	// MaxAlerts bounds the alerts of one notification (default
	// DefaultMaxAlerts); a larger one is refused before it is decoded.
	MaxAlerts int
	// MaxInFlight bounds concurrent requests; past it the answer is 503 with
	// Retry-After rather than an unbounded queue in memory (default 64).
	MaxInFlight      int
	DefaultNamespace string
	Log              logr.Logger
	// Metrics, when set, observes every request.
	Metrics Metrics

	once     sync.Once
	inFlight chan struct{}
}

// Metrics observes the webhook's requests. It must be safe for concurrent use.
type Metrics interface {
	// ObserveRequest is called once per request with the status code
	// answered, the number of alerts in the payload (0 when it was not
	// decoded) and how long the answer took.
	ObserveRequest(code int, alerts int, elapsed time.Duration)
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
	start := time.Now()
	code, alerts := h.serve(w, r)
	if h.Metrics != nil {
		h.Metrics.ObserveRequest(code, alerts, time.Since(start))
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (code, alerts int) {
	h.once.Do(func() {
		n := h.MaxInFlight
		if n <= 0 {
			n = defaultMaxInFlight
		}
		h.inFlight = make(chan struct{}, n)
	})
	log := h.Log.WithValues("remote", r.RemoteAddr)

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed; use POST", r.Method)), 0
	}

	switch err := h.authenticate(r); {
	case errors.Is(err, errUnauthenticated):
		log.V(1).Info("refused a request without a valid bearer token")
		w.Header().Set("WWW-Authenticate", "Bearer")
		return writeError(w, http.StatusUnauthorized, "missing or wrong bearer token"), 0
	case err != nil:
		// Riposte's own problem, not the caller's: answer so Alertmanager retries
		// once the token is readable again, instead of dropping the alerts.
		log.Error(err, "cannot read the intake token")
		w.Header().Set("Retry-After", "5")
		return writeError(w, http.StatusServiceUnavailable, "intake cannot read its configured token; retry later"), 0
	}

	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		log.V(1).Info("intake is saturated", "maxInFlight", cap(h.inFlight))
		w.Header().Set("Retry-After", "1")
		return writeError(w, http.StatusServiceUnavailable, "intake is saturated; retry"), 0
	}

	limit := h.MaxBodyBytes
	if limit <= 0 {
		limit = defaultMaxBodyBytes
	}
	if r.ContentLength > limit {
		log.V(1).Info("refused an oversized body", "bytes", r.ContentLength, "limit", limit)
		return writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is larger than the %d-byte limit", r.ContentLength, limit)), 0
	}
	payload, err := DecodeAtMost(http.MaxBytesReader(w, r.Body, limit), h.MaxAlerts)
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			log.V(1).Info("refused an oversized body", "limit", limit)
			return writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is larger than the %d-byte limit", limit)), 0
		}
		if tooMany := (*TooManyAlertsError)(nil); errors.As(err, &tooMany) {
			log.V(1).Info("refused a notification with too many alerts", "limit", tooMany.Limit)
			return writeError(w, http.StatusRequestEntityTooLarge, err.Error()), 0
		}
		log.V(1).Info("refused an invalid payload", "reason", err.Error())
		return writeError(w, http.StatusBadRequest, err.Error()), 0
	}
	alerts = len(payload.Alerts)
	log = log.WithValues("receiver", payload.Receiver, "groupKey", payload.GroupKey, "alerts", alerts)
	if payload.TruncatedAlerts > 0 {
		log.Info("Alertmanager left alerts out of this notification; raise the receiver's max_alerts to store them", "truncatedAlerts", payload.TruncatedAlerts)
	}

	stored, errs := h.storeAll(r.Context(), payload)
	if code, retryAfter, msg := storeFailure(errs); code != 0 {
		log.Error(errors.New(msg), "storing alerts", "code", code)
		if retryAfter {
			w.Header().Set("Retry-After", "1")
		}
		return writeError(w, code, msg), alerts
	}
	log.V(1).Info("stored alerts")
	return writeJSON(w, http.StatusOK, map[string]any{"incidents": stored}), alerts
}

var errUnauthenticated = errors.New("unauthenticated")

// authenticate returns nil for a caller presenting the configured token,
// errUnauthenticated for any other caller, or why the configured token could
// not be read.
func (h *Handler) authenticate(r *http.Request) error {
	presented, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok || h.Token == nil {
		return errUnauthenticated
	}
	want, err := h.Token.Token(r.Context())
	if err != nil {
		return err
	}
	// An empty configured token would otherwise match an empty presented one.
	if len(want) == 0 {
		return errUnauthenticated
	}
	// Comparing digests keeps the comparison constant-time in the token's
	// length too, which ConstantTimeCompare alone does not.
	got, expected := sha256.Sum256(presented), sha256.Sum256(want)
	if subtle.ConstantTimeCompare(got[:], expected[:]) != 1 {
		return errUnauthenticated
	}
	return nil
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive (RFC 9110).
func bearerToken(header string) ([]byte, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, false
	}
	token = strings.TrimSpace(token)
	return []byte(token), token != ""
}

// storeAll writes every alert's Incident, a few at a time, and returns each
// write's error at the alert's index.
func (h *Handler) storeAll(ctx context.Context, p *Payload) ([]StoredIncident, []error) {
	stored := make([]StoredIncident, len(p.Alerts))
	errs := make([]error, len(p.Alerts))
	sem := make(chan struct{}, storeParallelism)
	var wg sync.WaitGroup
	for i, a := range p.Alerts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			inc := IncidentFor(a, h.DefaultNamespace)
			errs[i] = h.Store.Upsert(ctx, inc)
			stored[i] = StoredIncident{Namespace: inc.Namespace, Name: inc.Name, Status: a.Status}
		})
	}
	wg.Wait()
	return stored, errs
}

// storeFailure decides the answer when some writes failed: code 0 when none
// did. A single failure a retry could fix makes the whole notification 5xx,
// since Alertmanager retries all of it or nothing, and rewriting the stored
// ones is harmless. Only what the alert itself makes the API server refuse
// (invalid, bad request) is permanent: a Forbidden (RBAC, an admission
// policy) or a name held by another object can be fixed by someone, and
// a 400 would make Alertmanager drop the notification for good.
func storeFailure(errs []error) (code int, retryAfter bool, msg string) {
	var failed []error
	permanent, throttled := 0, 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed = append(failed, err)
		var taken *NameTakenError
		switch {
		case errors.As(err, &taken):
			// Neither permanent (the name frees when the impostor goes)
			// nor throttling: a plain 500, retried with Alertmanager's
			// backoff.
		case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
			permanent++
		case apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err):
			throttled++
		}
	}
	if len(failed) == 0 {
		return 0, false, ""
	}

	reported := make([]string, 0, maxReportedFailures)
	for _, err := range failed[:min(len(failed), maxReportedFailures)] {
		reported = append(reported, err.Error())
	}
	msg = fmt.Sprintf("%d of %d alerts were not stored: %s", len(failed), len(errs), strings.Join(reported, "; "))
	if more := len(failed) - len(reported); more > 0 {
		msg += fmt.Sprintf("; and %d more", more)
	}

	switch {
	case permanent == len(failed):
		return http.StatusBadRequest, false, "the API server refused the incidents: " + msg
	case permanent+throttled == len(failed):
		return http.StatusServiceUnavailable, true, msg
	default:
		return http.StatusInternalServerError, false, msg
	}
}

func writeError(w http.ResponseWriter, code int, msg string) int {
	return writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, body any) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
	return code
}
