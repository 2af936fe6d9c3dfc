package intake

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/tools/events"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

const (
	defaultMaxBodyBytes = 1 << 20
	defaultMaxInFlight  = 64
	defaultStoreTimeout = 5 * time.Second
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
	MaxInFlight int
	// StoreTimeout bounds how long one alert's write may take (default 5s):
	// when the API server cannot store (its etcd down, it hangs), intake
	// answers 503 and Alertmanager retries, rather than the notification
	// waiting on the API server's own minute-long timeout.
	StoreTimeout     time.Duration
	DefaultNamespace string
	Log              logr.Logger
	// Metrics, when set, observes every request.
	Metrics Metrics
	// Recorder, when set, records Events on the incidents a notification
	// stored about what was odd in it (a derived name, alerts Alertmanager
	// left out). Recording is asynchronous, so it never delays an answer.
	Recorder events.EventRecorder

	once     sync.Once
	inFlight chan struct{}
}

// Metrics observes the webhook's requests. It must be safe for concurrent use.
type Metrics interface {
	// ObserveRequest is called once per request with the status code
	// answered, the number of alerts in the payload (0 when it was not
	// decoded) and how long the answer took.
	ObserveRequest(code int, alerts int, elapsed time.Duration)
	// ObserveOddities is called once per decoded notification, whatever
	// the answer, with what was odd in it.
	ObserveOddities(o Oddities)
}

// Oddities is what a notification held that a plain one does not.
type Oddities struct {
	// Refused counts the alerts that cannot be stored, by reason (one of
	// the Refused constants).
	Refused map[string]int
	// Derived counts the alerts without an alertname label, by the label
	// their name was read from ("" when none was: FallbackAlertName).
	Derived map[string]int
	// Stale counts the alerts whose incident already held a later state.
	Stale int
	// Truncated is how many alerts Alertmanager left out (truncatedAlerts).
	Truncated int
}

// Event reasons intake records on incidents. They are Events only, never
// conditions, which belong to the controllers.
const (
	ReasonAlertNameDerived = "AlertNameDerived"
	ReasonAlertsTruncated  = "AlertsTruncated"
)

// StoredIncident is one entry of a successful answer.
type StoredIncident struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	// Stale: the incident already held a later state of the alert and was
	// kept as it was.
	Stale bool `json:"stale,omitempty"`
}

// ServeHTTP checks, in order: method, caller, capacity, size, payload; then
// stores every alert that can be stored. It answers 200 when each alert is
// stored or can never be (those are listed as refused), 5xx when a retry
// could store one that failed, and 400 only when no alert can ever be.
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

	results := h.storeAll(r.Context(), payload)
	if h.Metrics != nil {
		h.Metrics.ObserveOddities(oddities(payload, results))
	}
	h.recordEvents(payload, results)

	stored, refused, failed := sortResults(results)
	if code, retryAfter, msg := storeFailure(failed, len(results)); code != 0 {
		log.Error(errors.New(msg), "storing alerts", "code", code)
		if retryAfter {
			w.Header().Set("Retry-After", "1")
		}
		return writeError(w, code, msg), alerts
	}
	if len(refused) > 0 {
		msg := refusedMessage(refused, len(results))
		if len(stored) == 0 {
			// Nothing here can ever be stored: a retry would be refused the same.
			log.Info("refused every alert of a notification", "reason", msg)
			return writeError(w, http.StatusBadRequest, msg), alerts
		}
		log.Info("stored a notification's alerts but some can never be", "reason", msg)
		return writeJSON(w, http.StatusOK, map[string]any{"incidents": stored, "refused": refused}), alerts
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

// result is what became of one alert of a notification: stored (possibly
// stale), refused for good, or failed in a way a retry may fix.
type result struct {
	inc     *riposte.Incident
	stale   bool
	refused *AlertError
	err     error
	// derived: the name was not the alertname label but read from
	// derivedFrom ("" for FallbackAlertName).
	derived     bool
	derivedFrom string
}

// storeAll writes the Incident of every alert that can be stored, a few at
// a time, and returns what became of each at its index.
func (h *Handler) storeAll(ctx context.Context, p *Payload) []result {
	results := make([]result, len(p.Alerts))
	timeout := h.StoreTimeout
	if timeout <= 0 {
		timeout = defaultStoreTimeout
	}
	// Once one write cannot reach the API server or times out, the answer
	// is 503 whatever the others do: the rest stop at once rather than each
	// waiting out its own timeout on a server that hangs. A server that
	// answers (throttling included) lets the others through.
	ctx, giveUp := context.WithCancelCause(ctx)
	defer giveUp(nil)
	sem := make(chan struct{}, storeParallelism)
	var wg sync.WaitGroup
	for i, a := range p.Alerts {
		if refused := p.CheckAlert(i); refused != nil {
			results[i].refused = refused
			continue
		}
		sem <- struct{}{}
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			<-sem
			results[i].err = fmt.Errorf("not tried: %w", cause)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			res := &results[i]
			if _, from := AlertName(a.Labels); from != "alertname" {
				res.derived, res.derivedFrom = true, from
			}
			res.inc = IncidentFor(a, h.DefaultNamespace)
			storeCtx, cancel := context.WithTimeout(ctx, timeout)
			err := h.Store.Upsert(storeCtx, res.inc)
			cancel()
			if errors.Is(err, context.Canceled) && context.Cause(ctx) != nil {
				err = fmt.Errorf("stopped: %w", context.Cause(ctx)) // another write found the API server unavailable
			}
			var stale *StaleError
			switch {
			case err == nil:
			case errors.As(err, &stale):
				res.stale = true
			case permanent(err):
				res.refused = &AlertError{Index: i, Fingerprint: a.Fingerprint, Reason: RefusedByAPIServer, Message: err.Error()}
			default:
				res.err = err
				if unreachable(err) {
					giveUp(err)
				}
			}
		})
	}
	wg.Wait()
	return results
}

// permanent tells what the alert itself makes the API server refuse
// (invalid, bad request), which no retry fixes, from what someone can fix:
// a Forbidden (RBAC, an admission policy) or a name held by another object,
// for which a 4xx would make Alertmanager drop the alert for good.
func permanent(err error) bool {
	var taken *NameTakenError
	if errors.As(err, &taken) {
		return false
	}
	var again *NewEpisodeError
	if errors.As(err, &again) {
		// Refused under its episode's name too: its times cannot be ordered.
		return true
	}
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)
}

// sortResults splits the results into the answer's incidents, its refused
// alerts, and the failures a retry may fix (nil where none).
func sortResults(results []result) (stored []StoredIncident, refused []*AlertError, failed []error) {
	stored, refused = []StoredIncident{}, []*AlertError{}
	for _, r := range results {
		switch {
		case r.refused != nil:
			refused = append(refused, r.refused)
		case r.err != nil:
			failed = append(failed, r.err)
		default:
			stored = append(stored, StoredIncident{Namespace: r.inc.Namespace, Name: r.inc.Name, Status: string(r.inc.Spec.Status), Stale: r.stale})
		}
	}
	return stored, refused, failed
}

func oddities(p *Payload, results []result) Oddities {
	o := Oddities{Refused: map[string]int{}, Derived: map[string]int{}, Truncated: max(p.TruncatedAlerts, 0)}
	for _, r := range results {
		switch {
		case r.refused != nil:
			o.Refused[r.refused.Reason]++
		case r.stale:
			o.Stale++
		}
		if r.derived {
			o.Derived[r.derivedFrom]++
		}
	}
	return o
}

// recordEvents tells, on each incident the notification stored, what a
// person looking at it should know: where its name came from, and that
// Alertmanager left alerts of its group out.
func (h *Handler) recordEvents(p *Payload, results []result) {
	if h.Recorder == nil {
		return
	}
	for _, r := range results {
		if r.inc == nil || r.refused != nil || r.err != nil {
			continue
		}
		if r.derived && !r.stale {
			if r.derivedFrom != "" {
				h.Recorder.Eventf(r.inc, nil, corev1.EventTypeNormal, ReasonAlertNameDerived, "Store",
					"the alert has no alertname label; it is named %q after its %s label", r.inc.Spec.AlertName, r.derivedFrom)
			} else {
				h.Recorder.Eventf(r.inc, nil, corev1.EventTypeWarning, ReasonAlertNameDerived, "Store",
					"the alert has none of the labels %s; it is named %s", strings.Join(nameLabels, ", "), FallbackAlertName)
			}
		}
		if p.TruncatedAlerts > 0 && !r.stale {
			h.Recorder.Eventf(r.inc, nil, corev1.EventTypeWarning, ReasonAlertsTruncated, "Store",
				"Alertmanager left %d alerts of this notification's group out (the receiver's max_alerts); "+
					"they are not stored until a notification carries them", p.TruncatedAlerts)
		}
	}
}

// storeFailure decides the answer when writes a retry may fix failed (code
// 0 when none did): a single one makes the whole notification 5xx, since
// Alertmanager retries all of it or nothing, and rewriting the stored ones
// is harmless.
func storeFailure(failed []error, alerts int) (code int, retryAfter bool, msg string) {
	if len(failed) == 0 {
		return 0, false, ""
	}
	unavailable := 0
	for _, err := range failed {
		if apiServerUnavailable(err) {
			unavailable++
		}
	}
	msg = fmt.Sprintf("%d of %d alerts were not stored: %s", len(failed), alerts, listed(failed))
	if unavailable == len(failed) {
		return http.StatusServiceUnavailable, true, msg
	}
	return http.StatusInternalServerError, false, msg
}

// unreachable is true for a write that got no answer from the API server:
// the round trip failed or timed out.
func unreachable(err error) bool {
	var status apierrors.APIStatus
	return !errors.As(err, &status) && apiServerUnavailable(err)
}

// apiServerUnavailable is true when the API server could not take the write
// at all: it throttled or timed out, said it is unavailable (its storage is
// down), or could not be reached. Only the time fixes these, so the answer
// is 503 with Retry-After, as for a saturated intake.
func apiServerUnavailable(err error) bool {
	if apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsServiceUnavailable(err) {
		return true
	}
	if utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	// Any other failure of the round trip itself (TLS, HTTP/2, a cut
	// connection): the client wraps each in a url.Error.
	var netErr net.Error
	var urlErr *url.Error
	return errors.As(err, &netErr) || errors.As(err, &urlErr)
}

func refusedMessage(refused []*AlertError, alerts int) string {
	errs := make([]error, len(refused))
	for i, r := range refused {
		errs[i] = r
	}
	return fmt.Sprintf("%d of %d alerts can never be stored: %s", len(refused), alerts, listed(errs))
}

// listed spells out the first few errors.
func listed(errs []error) string {
	reported := make([]string, 0, maxReportedFailures)
	for _, err := range errs[:min(len(errs), maxReportedFailures)] {
		reported = append(reported, err.Error())
	}
	msg := strings.Join(reported, "; ")
	if more := len(errs) - len(reported); more > 0 {
		msg += fmt.Sprintf("; and %d more", more)
	}
	return msg
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
