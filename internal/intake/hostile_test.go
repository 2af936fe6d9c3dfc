package intake

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// Hostile input at the real listener: each gets a precise answer, nothing
// holds a connection, and what was stored before stays stored (and nothing
// more is).
func TestHostileInputAtTheListener(t *testing.T) {
	store := &memoryStore{}
	var logged strings.Builder
	log := funcr.New(func(prefix, args string) { logged.WriteString(prefix + args + "\n") }, funcr.Options{Verbosity: 1})
	h := &Handler{Store: store, Token: staticToken(testToken), DefaultNamespace: "riposte-system", Log: log}
	base, stop := startServer(t, &Server{Handler: h, Log: logr.Discard()}, "http")
	defer func() { _ = stop() }()
	host := strings.TrimPrefix(base, "http://")

	post := func(t *testing.T, url, body string, auth bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if auth {
			req.Header.Set("Authorization", "Bearer "+testToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(t, base+WebhookPath, notificationOf(validAlert("0000000000000001")), true); code != 200 {
		t.Fatalf("a valid notification: %d %s", code, body)
	}
	before := store.stored()

	nested := `{"version":"4","alerts":[` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `]}`
	var many []string
	for i := range 10000 {
		many = append(many, validAlert(fmt.Sprintf("%016x", i+2)))
	}
	cases := []struct {
		reason   string
		body     string
		query    string
		auth     bool
		wantCode int
		wantSays string
	}{
		{reason: "a body larger than the limit", body: notificationOf(validAlert("0000000000000002")) + strings.Repeat(" ", 2<<20), auth: true,
			wantCode: http.StatusRequestEntityTooLarge, wantSays: "larger than the 1048576-byte limit"},
		{reason: "10,000 alerts in one notification", body: notificationOf(many...), auth: true,
			wantCode: http.StatusRequestEntityTooLarge, wantSays: "set max_alerts on the Alertmanager receiver"},
		{reason: "nesting 100,000 deep", body: nested, auth: true, wantCode: http.StatusBadRequest, wantSays: "nested deeper than 32 levels"},
		{reason: "a key given twice", body: `{"version":"4","version":"5","status":"firing","receiver":"r","alerts":[` + validAlert("0000000000000003") + `]}`, auth: true,
			wantCode: http.StatusBadRequest, wantSays: "version: the key is given twice"},
		// Stored, not dropped: the bytes read as U+FFFD, as encoding/json
		// reads them (Alertmanager never sends them).
		{reason: "invalid UTF-8 in a label", body: notificationOf(`{"status":"firing","labels":{"alertname":"A","namespace":"shop","pod":"web-` + "\xff\xfe" + `"},"fingerprint":"0000000000000004"}`), auth: true,
			wantCode: http.StatusOK, wantSays: "am-0000000000000004"},
		{reason: "the token in the query string, not the header", body: notificationOf(validAlert("0000000000000005")), query: "?token=" + testToken + "&access_token=" + testToken,
			wantCode: http.StatusUnauthorized, wantSays: "missing or wrong bearer token"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			code, body := post(t, base+WebhookPath+tc.query, tc.body, tc.auth)
			if code != tc.wantCode || !strings.Contains(body, tc.wantSays) {
				t.Errorf("answered %d %.300s; want %d saying %q", code, body, tc.wantCode, tc.wantSays)
			}
		})
	}

	t.Run("a header trickled byte by byte is cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		start := time.Now()
		if _, err := io.WriteString(conn, "POST "+WebhookPath+" HTTP/1.1\r\nHost: intake\r\n"); err != nil {
			t.Fatal(err)
		}
		closed := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(conn) // ends when the server closes the connection
			closed <- err
		}()
		for header := "X-Slow: " + strings.Repeat("a", 60); ; header = header[1:] {
			select {
			case <-closed:
				if took := time.Since(start); took > 10*time.Second {
					t.Errorf("the connection was held %s", took)
				}
				return
			case <-time.After(250 * time.Millisecond):
			}
			if len(header) == 0 || time.Since(start) > 20*time.Second {
				t.Fatalf("still open after %s of trickling a header", time.Since(start))
			}
			_, _ = io.WriteString(conn, header[:1])
		}
	})

	t.Run("many idle connections do not keep a notification out", func(t *testing.T) {
		var idle []net.Conn
		for range 300 {
			c, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			idle = append(idle, c)
		}
		defer func() {
			for _, c := range idle {
				_ = c.Close()
			}
		}()
		start := time.Now()
		if code, body := post(t, base+WebhookPath, notificationOf(validAlert("0000000000000006")), true); code != 200 {
			t.Fatalf("with 300 idle connections open: %d %s", code, body)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("answered after %s with 300 idle connections open", took)
		}
	})

	stored := store.stored()
	if len(stored) != len(before)+2 || stored[0] != before[0] {
		t.Errorf("stored %v; want what was stored before (%v) and the two notifications taken since", stored, before)
	}
	if strings.Contains(logged.String(), testToken) {
		t.Error("the token from the query string reached the log")
	}
}
