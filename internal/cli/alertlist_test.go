package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"

	"github.com/riposte-dev/riposte/internal/intake"
	"github.com/riposte-dev/riposte/internal/testenv"
)

// A saved list of alerts, as Prometheus and amtool post them to
// Alertmanager, is read like a webhook notification: each alert is matched,
// with the status Alertmanager would give it now.
func TestOfflineCheckReadsAlertLists(t *testing.T) {
	got, err := RunOffline([]string{repo("test", "testdata", "offline-alerts")}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	got.Print(&out)
	lines := strings.Split(out.String(), "\n")
	for _, want := range [][2]string{
		{"KubePodCrashLooping (firing)", "answered by shop/restart-on-crashloop"},
		{"NodeFilesystemSpaceFillingUp (resolved)", "no playbook answers it"},
		{"1 playbooks, 0 objects, 0 violations, 2 alerts, 0 problems", ""},
	} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, want[0]) && strings.Contains(l, want[1]) }) {
			t.Errorf("no line with %q and %q:\n%s", want[0], want[1], out.String())
		}
	}
}

// Each alert of a list becomes what Alertmanager would notify at that
// moment (its api/v2 POST handler and its dispatcher's rules).
func TestAlertListAsNotified(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	labels := map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-6d5f7c9b8d-x2xkq", "severity": "warning"}
	fingerprint := model.LabelSet{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-6d5f7c9b8d-x2xkq", "severity": "warning"}.Fingerprint().String()
	withEmpty := maps.Clone(labels)
	withEmpty["exported_pod"] = ""
	for _, tc := range []struct {
		name   string
		alert  postableAlert
		status string
		starts time.Time
		ends   time.Time
	}{
		{"no times: firing from now", postableAlert{Labels: labels}, "firing", now, time.Time{}},
		{"ends later: firing, endsAt not sent", postableAlert{Labels: labels, StartsAt: past, EndsAt: future}, "firing", past, time.Time{}},
		{"ended: resolved", postableAlert{Labels: labels, StartsAt: past.Add(-time.Hour), EndsAt: past}, "resolved", past.Add(-time.Hour), past},
		{"ends now: resolved", postableAlert{Labels: labels, StartsAt: past, EndsAt: now}, "resolved", past, now},
		{"only ended: starts when it ended", postableAlert{Labels: labels, EndsAt: past}, "resolved", past, past},
		{"empty labels are dropped before the fingerprint", postableAlert{Labels: withEmpty, StartsAt: past}, "firing", past, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := asNotified(tc.alert, now)
			if a.Status != tc.status || !a.StartsAt.Equal(tc.starts) || !a.EndsAt.Equal(tc.ends) || a.Fingerprint != fingerprint || !cmp.Equal(a.Labels, labels) {
				t.Errorf("got %s %v..%v %s %v; want %s %v..%v %s", a.Status, a.StartsAt, a.EndsAt, a.Fingerprint, a.Labels, tc.status, tc.starts, tc.ends, fingerprint)
			}
		})
	}
}

// A list the webhook would refuse is refused, and the file named.
func TestAlertListRefusals(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ body, want string }{
		"no-labels.json":  {`[{"annotations": {"summary": "x"}}]`, "alerts[0]: no labels"},
		"not-alerts.json": {`[1, 2]`, "not a list of alerts as Alertmanager's /api/v2/alerts takes them"},
		"bad-time.json":   {`[{"labels": {"alertname": "A"}, "startsAt": "yesterday"}]`, "not a list of alerts"},
		"a-string.yaml":   {`just words`, "neither a manifest, an Alertmanager webhook notification"},
	} {
		path := filepath.Join(dir, name)
		if err := writeFile(path, tc.body); err != nil {
			t.Fatal(err)
		}
		_, err := RunOffline([]string{path}, "default", "riposte-system")
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming the file and %q", name, err, tc.want)
		}
	}
}

// An alert without alertname is read, as the webhook stores it: named
// after the label its source names it by, here Falco's rule as
// Falcosidekick posts it (falcosecurity/falcosidekick, outputs/alertmanager.go).
func TestAlertListWithoutAlertname(t *testing.T) {
	path := filepath.Join(t.TempDir(), "falco.json")
	if err := writeFile(path, `[{"labels": {"rule": "Terminal shell in container", "priority": "Notice", "severity": "information",
		"source": "falco", "eventsource": "syscall", "k8s_ns_name": "shop", "k8s_pod_name": "web-1"}}]`); err != nil {
		t.Fatal(err)
	}
	got, err := RunOffline([]string{path}, "default", "riposte-system")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	got.Print(&out)
	if !strings.Contains(out.String(), "Terminal shell in container (firing)") || len(got.Problems) != 0 {
		t.Errorf("output:\n%s\nwant the alert named after its rule, no problems", out.String())
	}
}

// The status, times, labels and fingerprint are the ones a real
// Alertmanager sends Riposte when the same list is posted to it.
func TestAlertListMatchesAlertmanager(t *testing.T) {
	dir := t.TempDir()
	received := make(chan intake.Payload, 4)
	sink := &http.Server{Addr: testenv.FreeAddr(t), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p intake.Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err == nil {
			received <- p
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = sink.ListenAndServe() }()
	t.Cleanup(func() { _ = sink.Close() })
	amAddr := testenv.FreeAddr(t)
	config := fmt.Sprintf("route: {receiver: sink, group_by: ['...'], group_wait: 0s}\nreceivers: [{name: sink, webhook_configs: [{url: 'http://%s/', send_resolved: true}]}]\n", sink.Addr)
	if err := writeFile(filepath.Join(dir, "am.yml"), config); err != nil {
		t.Fatal(err)
	}
	testenv.StartProcess(t, dir, "alertmanager", testenv.AlertmanagerBinary(t), "--config.file", filepath.Join(dir, "am.yml"),
		"--storage.path", filepath.Join(dir, "data"), "--web.listen-address", amAddr, "--cluster.listen-address=")
	testenv.WaitHTTP(t, "http://"+amAddr+"/-/ready")

	file, err := os.ReadFile(repo("test", "testdata", "offline-alerts", "alerts-v2.json"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+amAddr+"/api/v2/alerts", "application/json", strings.NewReader(string(file)))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("posting the list to Alertmanager: %v %v", err, resp)
	}
	_ = resp.Body.Close()
	var list []any
	if err := json.Unmarshal(file, &list); err != nil {
		t.Fatal(err)
	}
	ours, err := alertListPayload(list, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Alertmanager notifies the firing alert; a resolved alert it never
	// saw firing needs no notification.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var theirs intake.Payload
	select {
	case theirs = <-received:
	case <-ctx.Done():
		t.Fatal(errors.New("Alertmanager sent no notification within 30s"))
	}
	if len(theirs.Alerts) != 1 {
		t.Fatalf("Alertmanager notified %d alerts, want the firing one: %+v", len(theirs.Alerts), theirs)
	}
	want := theirs.Alerts[0]
	got := ours.Alerts[0]
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the firing alert differs from Alertmanager's notification (-Alertmanager +offline):\n%s", diff)
	}
	if ended := ours.Alerts[1]; ended.Status != "resolved" || len(ended.Fingerprint) != 16 {
		t.Errorf("the ended alert: %+v", ended)
	}
}
