package intake

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const firingNotification = `{"version":"4","groupKey":"{}:{alertname=\"Shell\"}","truncatedAlerts":0,"status":"firing",
 "receiver":"riposte","groupLabels":{"alertname":"Shell"},"commonLabels":{"alertname":"Shell"},
 "commonAnnotations":{"summary":"shell"},"externalURL":"http://am:9093","alerts":[
 {"status":"firing","labels":{"alertname":"Shell","severity":"critical","namespace":"shop","pod":"web-1"},
  "annotations":{"summary":"shell"},"startsAt":"2026-11-26T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
  "generatorURL":"http://prom/graph","fingerprint":"a1b2c3d4e5f60718"}]}`

// falcoAlert is a Falco event as Alertmanager sends it on after
// Falcosidekick's Alertmanager output posted it: labels rule, priority,
// severity (mapped from the priority), source="falco", eventsource,
// hostname, tags (sorted, comma-joined) and the event's output fields with
// dots made underscores; annotations info, description (Falco's output
// line) and summary (the rule); no alertname (falcosecurity/falcosidekick,
// outputs/alertmanager.go, newAlertmanagerPayload). The output fields are
// those of Falco's "Terminal shell in container" rule, priority NOTICE
// (falcosecurity/rules, rules/falco_rules.yaml), with the container and
// Kubernetes fields Falco appends.
const (
	falcoFingerprint = "5c2f0e9d41a7b836"
	falcoOutput      = "10:00:00.123456789: Notice A shell was spawned in a container with an attached terminal | evt_type=execve " +
		"user=root user_uid=0 user_loginuid=-1 process=bash proc_exepath=/usr/bin/bash parent=containerd-shim command=bash terminal=34816 " +
		"exe_flags=EXE_WRITABLE|EXE_LOWER_LAYER container_id=3ad7c2b1f0e4 container_name=web k8s_ns=shop k8s_pod_name=web-1"
	falcoAlert = `{"status":"firing","labels":{"rule":"Terminal shell in container","priority":"Notice","severity":"information",
  "source":"falco","eventsource":"syscall","hostname":"worker-1","tags":"T1059,container,maturity_stable,mitre_execution,shell",
  "evt_type":"execve","user_name":"root","user_uid":"0","user_loginuid":"-1","proc_name":"bash","proc_exepath":"/usr/bin/bash",
  "proc_pname":"containerd-shim","proc_cmdline":"bash","proc_tty":"34816","evt_arg_flags":"EXE_WRITABLE|EXE_LOWER_LAYER",
  "container_id":"3ad7c2b1f0e4","container_name":"web","k8s_ns_name":"shop","k8s_pod_name":"web-1"},
 "annotations":{"summary":"Terminal shell in container","info":"` + falcoOutput + `","description":"` + falcoOutput + `"},
 "startsAt":"2026-11-26T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"` + falcoFingerprint + `"}`
)

// notificationOf wraps alert objects into a version 4 notification.
func notificationOf(alerts ...string) string {
	return `{"version":"4","status":"firing","receiver":"riposte","alerts":[` + strings.Join(alerts, ",") + `]}`
}

func validAlert(fingerprint string) string {
	return `{"status":"firing","labels":{"alertname":"A","namespace":"shop"},"fingerprint":"` + fingerprint + `"}`
}

func jsonMap(n int, prefix string, extra map[string]string) string {
	m := map[string]string{}
	for k, v := range extra {
		m[k] = v
	}
	for i := 0; len(m) < n; i++ {
		m[fmt.Sprintf("%s%d", prefix, i)] = "v"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestDecode(t *testing.T) {
	starts := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		reason string
		body   string
		want   *Payload
		// wantField, when set, is the field a *ValidationError must name.
		wantField string
		wantErr   string
	}{
		{
			reason: "a firing notification decodes every field",
			body:   firingNotification,
			want: &Payload{
				Version: "4", GroupKey: `{}:{alertname="Shell"}`, Status: "firing", Receiver: "riposte",
				GroupLabels: map[string]string{"alertname": "Shell"}, CommonLabels: map[string]string{"alertname": "Shell"},
				CommonAnnotations: map[string]string{"summary": "shell"}, ExternalURL: "http://am:9093",
				Alerts: []Alert{{
					Status:       "firing",
					Labels:       map[string]string{"alertname": "Shell", "severity": "critical", "namespace": "shop", "pod": "web-1"},
					Annotations:  map[string]string{"summary": "shell"},
					StartsAt:     starts,
					GeneratorURL: "http://prom/graph",
					Fingerprint:  "a1b2c3d4e5f60718",
				}},
			},
		},
		{
			reason: "a resolved alert keeps its endsAt",
			body:   notificationOf(`{"status":"resolved","labels":{"alertname":"A"},"fingerprint":"ab12","endsAt":"2026-11-26T10:05:00Z"}`),
			want: &Payload{Version: "4", Status: "firing", Receiver: "riposte", Alerts: []Alert{{
				Status: "resolved", Labels: map[string]string{"alertname": "A"}, Fingerprint: "ab12", EndsAt: starts.Add(5 * time.Minute),
			}}},
		},
		{
			reason: "fields Alertmanager may add later are ignored",
			body:   `{"version":"4","future":1,"alerts":[{"status":"firing","labels":{"alertname":"A"},"fingerprint":"ab","new":true}]}`,
			want:   &Payload{Version: "4", Alerts: []Alert{{Status: "firing", Labels: map[string]string{"alertname": "A"}, Fingerprint: "ab"}}},
		},
		{
			reason: "trailing whitespace is not data",
			body:   notificationOf(validAlert("ab")) + "\n\t ",
			want:   &Payload{Version: "4", Status: "firing", Receiver: "riposte", Alerts: []Alert{{Status: "firing", Labels: map[string]string{"alertname": "A", "namespace": "shop"}, Fingerprint: "ab"}}},
		},
		{reason: "another payload version", body: `{"version":"3","alerts":[]}`, wantField: "version", wantErr: `version: must be "4", got "3"`},
		{reason: "no alerts", body: `{"version":"4","alerts":[]}`, wantField: "alerts", wantErr: "alerts: at least one alert is required"},
		{reason: "malformed JSON", body: `{"version":"4","alerts":[`, wantErr: "malformed JSON"},
		{reason: "an empty body", body: "", wantErr: "empty body"},
		{reason: "a second object after the payload", body: firingNotification + `{}`, wantErr: "data after the payload"},
		{reason: "garbage after the payload", body: firingNotification + `garbage`, wantErr: "data after the payload"},
		{reason: "a label of the wrong type", body: notificationOf(`{"status":"firing","fingerprint":"ab","labels":{"alertname":3}}`), wantErr: "malformed JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got, err := Decode(strings.NewReader(tc.body))
			wantErr := tc.wantErr != "" || tc.wantField != ""
			if !wantErr {
				if err != nil {
					t.Fatalf("Decode: unexpected error %v", err)
				}
				if tc.want != nil {
					if diff := cmp.Diff(tc.want, got); diff != "" {
						t.Errorf("Decode (-want +got):\n%s", diff)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode succeeded, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Decode error = %q, want one containing %q", err, tc.wantErr)
			}
			var verr *ValidationError
			isValidation := errors.As(err, &verr)
			if tc.wantField == "" {
				if isValidation {
					t.Errorf("Decode error %q is a *ValidationError, want a JSON error", err)
				}
				return
			}
			if !isValidation {
				t.Fatalf("Decode error %q (%T) is not a *ValidationError", err, err)
			}
			if diff := cmp.Diff(tc.wantField, verr.Field); diff != "" {
				t.Errorf("ValidationError.Field (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRefusesDuplicateKeys(t *testing.T) {
	cases := []struct {
		reason string
		body   string
		// wantField is the duplicated key's path; empty means the body is accepted.
		wantField string
	}{
		{
			reason:    "a label given twice",
			body:      notificationOf(`{"status":"firing","fingerprint":"ab","labels":{"alertname":"A","severity":"info","severity":"critical"}}`),
			wantField: "alerts[0].labels.severity",
		},
		{
			reason:    "labels given twice in one alert",
			body:      notificationOf(`{"status":"firing","fingerprint":"ab","labels":{"alertname":"A"},"labels":{"alertname":"B"}}`),
			wantField: "alerts[0].labels",
		},
		{
			reason:    "a field spelled twice in different case fills one struct field",
			body:      notificationOf(`{"status":"firing","fingerprint":"ab","labels":{"alertname":"A"},"Labels":{"alertname":"B"}}`),
			wantField: "alerts[0].Labels",
		},
		{
			reason:    "the same key written with an escape is the same key",
			body:      notificationOf(`{"status":"firing","fingerprint":"ab","labels":{"alertname":"A","\u0061lertname":"B"}}`),
			wantField: "alerts[0].labels.alertname",
		},
		{
			reason:    "a top-level field given twice",
			body:      `{"version":"4","version":"4","alerts":[` + validAlert("ab") + `]}`,
			wantField: "version",
		},
		{
			reason:    "alerts given twice",
			body:      `{"version":"4","alerts":[` + validAlert("ab") + `],"alerts":[` + validAlert("cd") + `]}`,
			wantField: "alerts",
		},
		{
			reason:    "a key that is no identifier is quoted in the path",
			body:      notificationOf(validAlert("a1"), `{"status":"firing","fingerprint":"ab","labels":{"alertname":"A","app.kubernetes.io/name":"x","app.kubernetes.io/name":"y"}}`),
			wantField: `alerts[1].labels["app.kubernetes.io/name"]`,
		},
		{
			reason:    "a duplicate inside an unknown field is still refused",
			body:      `{"version":"4","future":{"a":[{"b":1,"b":2}]},"alerts":[` + validAlert("ab") + `]}`,
			wantField: "future.a[0].b",
		},
		{
			reason:    "a group label given twice",
			body:      `{"version":"4","groupLabels":{"alertname":"A","alertname":"B"},"alerts":[` + validAlert("ab") + `]}`,
			wantField: "groupLabels.alertname",
		},
		{
			reason: "labels that differ in case are distinct labels",
			body:   notificationOf(`{"status":"firing","fingerprint":"ab","labels":{"alertname":"A","team":"x","Team":"y"}}`),
		},
		{
			reason: "the same key in different objects is no duplicate",
			body:   notificationOf(validAlert("a1"), validAlert("a2")),
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tc.body))
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("Decode: unexpected error %v", err)
				}
				return
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Decode error %v (%T), want a *ValidationError", err, err)
			}
			if diff := cmp.Diff(tc.wantField, verr.Field); diff != "" {
				t.Errorf("duplicated key's path (-want +got):\n%s", diff)
			}
			if !strings.Contains(err.Error(), "given twice") {
				t.Errorf("error %q does not say the key is given twice", err)
			}
		})
	}
}

func TestDecodeBoundsAlerts(t *testing.T) {
	alerts := func(n int) string {
		all := make([]string, n)
		for i := range all {
			all[i] = validAlert(fmt.Sprintf("f%d", i))
		}
		return notificationOf(all...)
	}
	cases := []struct {
		reason    string
		body      string
		maxAlerts int
		wantLimit int // 0: accepted
	}{
		{reason: "exactly the limit", body: alerts(3), maxAlerts: 3},
		{reason: "one over the limit", body: alerts(4), maxAlerts: 3, wantLimit: 3},
		{reason: "no limit given: the default", body: alerts(DefaultMaxAlerts + 1), wantLimit: DefaultMaxAlerts},
		{reason: "the default admits its own count", body: alerts(DefaultMaxAlerts)},
		{
			// Counted before decoding: the rest of the body is never read.
			reason: "refused before the malformed rest is reached", body: strings.TrimSuffix(alerts(4), "]}") + `,{"status":`, maxAlerts: 3, wantLimit: 3,
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			_, err := DecodeAtMost(strings.NewReader(tc.body), tc.maxAlerts)
			var tooMany *TooManyAlertsError
			switch {
			case tc.wantLimit == 0 && err != nil:
				t.Fatalf("DecodeAtMost: unexpected error %v", err)
			case tc.wantLimit == 0:
			case !errors.As(err, &tooMany):
				t.Fatalf("DecodeAtMost error %v (%T), want a *TooManyAlertsError", err, err)
			case tooMany.Limit != tc.wantLimit:
				t.Errorf("limit named %d, want %d", tooMany.Limit, tc.wantLimit)
			}
		})
	}
}

// Each alert is checked on its own, so one that cannot be stored costs the
// others nothing.
func TestCheckAlert(t *testing.T) {
	cases := []struct {
		reason     string
		alert      string
		wantReason string
		wantField  string
		wantMsg    string
	}{
		{reason: "a Prometheus alert", alert: validAlert("ab")},
		{reason: "a Falco alert through Falcosidekick, without alertname", alert: falcoAlert},
		{reason: "no labels at all: named by the fallback", alert: `{"status":"firing","fingerprint":"ab"}`},
		{
			reason: "a status other than firing or resolved", alert: `{"status":"pending","labels":{"alertname":"A"},"fingerprint":"ab"}`,
			wantReason: RefusedStatus, wantField: "alerts[1].status", wantMsg: `alerts[1].status: must be firing or resolved, got "pending"`,
		},
		{reason: "a missing fingerprint", alert: `{"status":"firing","labels":{"alertname":"A"}}`, wantReason: RefusedFingerprint, wantField: "alerts[1].fingerprint"},
		{reason: "a fingerprint that could not name an object", alert: `{"status":"firing","labels":{"alertname":"A"},"fingerprint":"../x"}`, wantReason: RefusedFingerprint, wantField: "alerts[1].fingerprint"},
		{reason: "a fingerprint over 64 characters", alert: `{"status":"firing","labels":{"alertname":"A"},"fingerprint":"` + strings.Repeat("f", 65) + `"}`, wantReason: RefusedFingerprint, wantField: "alerts[1].fingerprint"},
		{
			reason:     "more labels than the CRD allows",
			alert:      `{"status":"firing","fingerprint":"ab","labels":` + jsonMap(65, "l", map[string]string{"alertname": "A"}) + `}`,
			wantReason: RefusedLabels, wantField: "alerts[1].labels", wantMsg: "alerts[1].labels: 65 labels, at most 64",
		},
		{
			reason:     "a resolved alert that ends before it starts",
			alert:      `{"status":"resolved","fingerprint":"ab","labels":{"alertname":"A"},"startsAt":"2026-12-01T10:00:00Z","endsAt":"2026-12-01T09:00:00Z"}`,
			wantReason: RefusedTimes, wantField: "alerts[1].endsAt", wantMsg: "alerts[1].endsAt: the alert ends (2026-12-01T09:00:00Z) before it starts (2026-12-01T10:00:00Z)",
		},
		{reason: "a firing alert whose endsAt (Alertmanager's resolve timeout) is not a fact", alert: `{"status":"firing","fingerprint":"ab","labels":{"alertname":"A"},"startsAt":"2026-12-01T10:00:00Z","endsAt":"2026-12-01T09:00:00Z"}`},
		{reason: "exactly as many labels as the CRD allows", alert: `{"status":"firing","fingerprint":"ab","labels":` + jsonMap(64, "l", map[string]string{"alertname": "A"}) + `}`},
		{
			reason:     "more annotations than the CRD allows",
			alert:      `{"status":"firing","fingerprint":"ab","labels":{"alertname":"A"},"annotations":` + jsonMap(65, "a", nil) + `}`,
			wantReason: RefusedAnnotations, wantField: "alerts[1].annotations", wantMsg: "alerts[1].annotations: 65 annotations, at most 64",
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			// Second in its notification, so the index is seen to be the alert's.
			p, err := Decode(strings.NewReader(notificationOf(validAlert("a0"), tc.alert)))
			if err != nil {
				t.Fatalf("Decode: %v; one alert must never fail the notification", err)
			}
			if first := p.CheckAlert(0); first != nil {
				t.Errorf("the valid alert beside it: %v", first)
			}
			got := p.CheckAlert(1)
			if tc.wantReason == "" {
				if got != nil {
					t.Errorf("CheckAlert = %v, want nil", got)
				}
				return
			}
			if got == nil {
				t.Fatalf("CheckAlert = nil, want a refusal for %s", tc.wantReason)
			}
			if diff := cmp.Diff([]any{1, tc.wantReason, tc.wantField}, []any{got.Index, got.Reason, got.Field}); diff != "" {
				t.Errorf("index, reason, field (-want +got):\n%s", diff)
			}
			if !strings.Contains(got.Error(), tc.wantMsg) || !strings.HasPrefix(got.Error(), tc.wantField+": ") {
				t.Errorf("message %q, want it to start with the field and contain %q", got.Error(), tc.wantMsg)
			}
		})
	}
}
