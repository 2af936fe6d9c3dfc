package notify

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestDestinationsCheck(t *testing.T) {
	allowed, err := ParseDestinations([]string{"hooks.slack.com", "*.chat.example", "http://mattermost.internal:8065/hooks/", "https://tickets.example/api/", "10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		reason string
		url    string
		// wantHost is what the refusal names; empty means allowed.
		wantHost string
	}{
		{reason: "a listed host over HTTPS", url: "https://hooks.slack.com/services/T0/B0/secret"},
		{reason: "a listed host on another port", url: "https://hooks.slack.com:8443/x"},
		{reason: "host names are case-insensitive", url: "https://HOOKS.Slack.com/x"},
		{reason: "a bare host allows HTTPS only", url: "http://hooks.slack.com/x", wantHost: `"hooks.slack.com" (http)`},
		{reason: "a subdomain of a wildcard", url: "https://team.chat.example/x"},
		{reason: "a wildcard does not cover the domain itself", url: "https://chat.example/x", wantHost: `"chat.example"`},
		{reason: "a lookalike suffix is another host", url: "https://hooks.slack.com.evil.example/x", wantHost: `"hooks.slack.com.evil.example"`},
		{reason: "a URL prefix: its scheme, host, port and path", url: "http://mattermost.internal:8065/hooks/abc"},
		{reason: "a URL prefix's path is matched on segments", url: "http://mattermost.internal:8065/hooksmith/abc", wantHost: `"mattermost.internal"`},
		{reason: "a URL prefix's port is required", url: "http://mattermost.internal:9000/hooks/abc", wantHost: `"mattermost.internal"`},
		{reason: "a URL prefix's scheme is required", url: "https://mattermost.internal:8065/hooks/abc", wantHost: `"mattermost.internal"`},
		{reason: "a prefix without a port allows the default one", url: "https://tickets.example/api/new"},
		{reason: "an unlisted host", url: "https://attacker.example/x", wantHost: `"attacker.example"`},
		{reason: "the metadata service by number", url: "http://169.254.169.254/latest/meta-data/", wantHost: `"169.254.169.254"`},
		{reason: "a listed IP address", url: "https://10.0.0.7/hook"},
		{reason: "credentials in the URL do not change the host", url: "https://hooks.slack.com@attacker.example/x", wantHost: `"attacker.example"`},
		{reason: "not a URL", url: "::not a url", wantHost: "not a valid"},
		{reason: "another scheme", url: "file:///etc/passwd", wantHost: "not a valid"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			err := allowed.Check(tc.url)
			if tc.wantHost == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), tc.wantHost) {
				t.Fatalf("Check error = %v, want a permanent one naming %s", err, tc.wantHost)
			}
			if strings.Contains(err.Error(), "/x") || strings.Contains(err.Error(), "meta-data") {
				t.Errorf("the error %q holds the URL's path, a credential", err)
			}
		})
	}

	var none *Destinations
	if err := none.Check("https://hooks.slack.com/x"); !IsPermanent(err) {
		t.Errorf("no list allows nothing, got %v", err)
	}
}

func TestParseDestinationsRefusesWhatCannotBeMatched(t *testing.T) {
	for _, entry := range []string{"ftp://x.example/", "https://user:pw@x.example/", "https://x.example/?q=1", "x.example/path", "*."} {
		if _, err := ParseDestinations([]string{entry}); err == nil {
			t.Errorf("ParseDestinations(%q) succeeded, want an error", entry)
		}
	}
}

func TestDestinationsReachable(t *testing.T) {
	listed, err := ParseDestinations([]string{"http://127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		reason  string
		d       *Destinations
		address string
		refused bool
	}{
		{reason: "the metadata service", d: listed, address: "169.254.169.254:80", refused: true},
		{reason: "link-local IPv6", d: listed, address: "[fe80::1]:443", refused: true},
		{reason: "AWS's IPv6 metadata address", d: listed, address: "[fd00:ec2::254]:80", refused: true},
		{reason: "loopback not listed by number", d: listed, address: "127.0.0.2:80", refused: true},
		{reason: "IPv4-mapped loopback", d: listed, address: "[::ffff:127.0.0.2]:80", refused: true},
		{reason: "the unspecified address", d: listed, address: "0.0.0.0:80", refused: true},
		{reason: "loopback listed by number", d: listed, address: "127.0.0.1:8080"},
		{reason: "a private address: in-cluster chat servers live there", d: listed, address: "10.1.2.3:443"},
		{reason: "a public address", d: listed, address: "203.0.113.9:443"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			err := tc.d.reachable(tc.address)
			if got := errors.Is(err, errAddressRefused); got != tc.refused {
				t.Errorf("reachable(%s) = %v, want refused %v", tc.address, err, tc.refused)
			}
		})
	}
}

// countingServer answers with answer, counting the requests it gets.
func countingServer(t *testing.T, answer func(n int32, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(calls.Add(1), w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestPostClassifiesAnswers(t *testing.T) {
	loopback, err := ParseDestinations([]string{"http://127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		reason        string
		codes         []int // answered in turn; the last repeats
		wantCalls     int32
		wantErr       bool
		wantPermanent bool
	}{
		{reason: "delivered", codes: []int{200}, wantCalls: 1},
		{reason: "a 5xx is retried, then delivered", codes: []int{503, 200}, wantCalls: 2},
		{reason: "a 408 is retried", codes: []int{408, 204}, wantCalls: 2},
		{reason: "a 429 is retried", codes: []int{429, 200}, wantCalls: 2},
		{reason: "retries are bounded and the failure stays transient", codes: []int{500}, wantCalls: 3, wantErr: true},
		{reason: "a 4xx is permanent at once", codes: []int{404}, wantCalls: 1, wantErr: true, wantPermanent: true},
		{reason: "a redirect is a permanent failure, not followed", codes: []int{302}, wantCalls: 1, wantErr: true, wantPermanent: true},
		{reason: "a permanent redirect too", codes: []int{308}, wantCalls: 1, wantErr: true, wantPermanent: true},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			srv, calls := countingServer(t, func(n int32, w http.ResponseWriter, r *http.Request) {
				code := tc.codes[min(int(n), len(tc.codes))-1]
				if code >= 300 && code < 400 {
					// Somewhere a post must never be led: the redirect
					// would land on this same server, counted.
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(code)
			})
			err := (&Webhook{URL: srv.URL + "/hook", Destinations: loopback}).Post(context.Background(), map[string]string{"text": "x"}, "")
			if calls.Load() != tc.wantCalls {
				t.Errorf("calls = %d, want %d", calls.Load(), tc.wantCalls)
			}
			if (err != nil) != tc.wantErr || IsPermanent(err) != tc.wantPermanent {
				t.Errorf("err = %v (permanent %v), want error %v, permanent %v", err, IsPermanent(err), tc.wantErr, tc.wantPermanent)
			}
		})
	}
}

func TestPostRefusesBeforeAnyRequest(t *testing.T) {
	srv, calls := countingServer(t, func(int32, http.ResponseWriter, *http.Request) {})
	slackOnly, err := ParseDestinations([]string{"hooks.slack.com"})
	if err != nil {
		t.Fatal(err)
	}
	numbersOnly, err := ParseDestinations([]string{"http://localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		reason string
		w      *Webhook
		want   string
	}{
		{reason: "a host not on the list", w: &Webhook{URL: srv.URL, Destinations: slackOnly}, want: `host "127.0.0.1" (http) is not an allowed notification destination`},
		{reason: "an invalid URL", w: &Webhook{URL: "http://[::1", Destinations: slackOnly}, want: "not a valid"},
		{
			// localhost is listed, but it is not listed by number, so the
			// loopback address it dials is still refused.
			reason: "a listed name that leads to loopback", w: &Webhook{URL: strings.Replace(srv.URL, "127.0.0.1", "localhost", 1), Destinations: numbersOnly},
			want: "loopback, link-local or a cloud metadata service",
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			err := tc.w.Post(context.Background(), map[string]string{"text": "x"}, "")
			if !IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want a permanent one containing %q", err, tc.want)
			}
		})
	}
	if calls.Load() != 0 {
		t.Errorf("the server got %d requests, want none", calls.Load())
	}
}

// The admin's own URL (no list) is trusted, even on loopback, but is still
// not redirected.
func TestTrustedWebhookFollowsNoRedirect(t *testing.T) {
	srv, calls := countingServer(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}
	})
	err := (&Webhook{URL: srv.URL}).Post(context.Background(), map[string]string{"text": "x"}, "")
	if !IsPermanent(err) || !strings.Contains(err.Error(), "redirect") || calls.Load() != 1 {
		t.Errorf("err = %v after %d calls, want one call and a permanent redirect failure", err, calls.Load())
	}
}
