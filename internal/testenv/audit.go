package testenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// AuditEvent is what the tests read of one audit.k8s.io/v1 Event in the log
// of a control plane started with an audit log (StartAudited,
// StartForFaults): metadata only, as the policy records.
type AuditEvent struct {
	Stage                    string    `json:"stage"`
	Verb                     string    `json:"verb"`
	RequestURI               string    `json:"requestURI"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
	User                     struct {
		Username string `json:"username"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// ReadAudit calls each for every request the audit log records as
// answered (stage ResponseComplete), in order.
func ReadAudit(path string, each func(e *AuditEvent)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("reading the audit log: %w", err)
		}
		if e.Stage == "ResponseComplete" {
			each(&e)
		}
	}
	return sc.Err()
}

// Write is true for a request that may change something: not a read, not
// a dry run.
func (e *AuditEvent) Write() bool {
	switch e.Verb {
	case "get", "list", "watch":
		return false
	}
	return !strings.Contains(e.RequestURI, "dryRun=All")
}

// SucceededWrite is a write the API server took: answered 2xx.
func (e *AuditEvent) SucceededWrite() bool {
	return e.Write() && e.ResponseStatus != nil && e.ResponseStatus.Code >= http.StatusOK && e.ResponseStatus.Code < http.StatusMultipleChoices
}

// AttemptedWrite is a write the API server did not refuse (not a 4xx): it
// may have been stored even when no 2xx was sent back (its client was
// killed mid-request).
func (e *AuditEvent) AttemptedWrite() bool {
	return e.Write() && (e.ResponseStatus == nil || e.ResponseStatus.Code < 400 || e.ResponseStatus.Code >= 500)
}
