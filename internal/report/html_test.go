package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
)

// chromium is Debian's Chromium (hack/install-chromium.sh, run by make
// testbins).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium: run hack/install-chromium.sh (make testbins does)")
	return ""
}

// weekOfWork is a week of remediations (more each day, and slower) and two
// drift rules' findings.
func weekOfWork() []record.Body {
	var bodies []record.Body
	alice := []riposte.Decision{{User: "alice", Decision: riposte.DecisionApprove}}
	for d := 0; d < 7; d++ {
		for i := 0; i <= d; i++ {
			uid := fmt.Sprintf("inc-%d-%d", d, i)
			if i%3 == 2 {
				bodies = append(bodies, remediation(uid, d, "manual", "warning", alice, 0.02, float64(60*(d+1)), 0.02, 600))
			} else {
				bodies = append(bodies, remediation(uid, d, "isolate", "critical", nil, 0.01, 0.002, float64(d+1)))
			}
		}
	}
	for d := 0; d < 7; d++ {
		for _, rule := range []string{"no-privileged", "no-host-network"} {
			if rule == "no-host-network" && d%2 == 1 {
				continue
			}
			b := record.Body{Kind: "Incident", Milestone: "Remediated", Incident: record.ObjectID{Namespace: "shop", Name: fmt.Sprintf("drift-%s-%d", rule, d), UID: fmt.Sprintf("%s-%d", rule, d)},
				Trigger: record.Trigger{Source: riposte.SourceDrift, AlertStatus: riposte.AlertFiring, Drift: &riposte.DriftFinding{Rule: rule}},
				Outcome: record.Outcome{Phase: riposte.PhaseRemediated, DetectedAt: ts(day0.Add(time.Duration(d)*24*time.Hour + time.Hour))}}
			if d < 3 {
				b.Trigger.AlertStatus, b.Trigger.EndsAt = riposte.AlertResolved, ts(day0.Add(time.Duration(d)*24*time.Hour+5*time.Hour))
			}
			bodies = append(bodies, b)
		}
	}
	return bodies
}

// The HTML report, rendered in a real headless Chromium: self-contained,
// its figures the JSON's, and its charts drawn: in the screenshot, one bar
// per day, each as tall, relative to the tallest, as its value.
func TestHTMLRendersInChromium(t *testing.T) {
	browser := chromium(t)
	r := Build(weekOfWork(), day0, day0.Add(7*24*time.Hour))
	var html bytes.Buffer
	if err := r.HTML(&html); err != nil {
		t.Fatal(err)
	}
	for _, external := range []string{"src=", "href=", "@import", "url("} {
		if strings.Contains(html.String(), external) {
			t.Errorf("the page refers to something outside itself (%s)", external)
		}
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, html.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, browser, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
			"--force-device-scale-factor=1", "--window-size=1200,1600", "--user-data-dir=" + filepath.Join(dir, "profile")}, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, errOut.String())
		}
		return out.Bytes()
	}

	// The DOM Chromium built: the numbers are the JSON's.
	dom := string(run("--dump-dom", "file://"+page))
	var fromJSON Report
	data, _ := json.Marshal(r)
	if err := json.Unmarshal(data, &fromJSON); err != nil {
		t.Fatal(err)
	}
	if got := attrValue(t, dom, `data-figure="incidents">(\d+)<`); got != strconv.Itoa(fromJSON.Incidents) {
		t.Errorf("the page says %s incidents, the JSON %d", got, fromJSON.Incidents)
	}
	if got := attrValue(t, dom, `data-figure="automatic">(\d+)<`); got != strconv.Itoa(fromJSON.Approvals.Automatic) {
		t.Errorf("the page says %s automatic approvals, the JSON %d", got, fromJSON.Approvals.Automatic)
	}
	days := regexp.MustCompile(`<rect [^>]*data-day="([0-9-]+)" data-seconds="([0-9.]+)"`).FindAllStringSubmatch(dom, -1)
	if len(days) != len(fromJSON.MTTR) {
		t.Fatalf("the MTTR chart has %d bars, the JSON %d days", len(days), len(fromJSON.MTTR))
	}
	for i, d := range days {
		if want := fromJSON.MTTR[i]; d[1] != want.Day || d[2] != strconv.FormatFloat(want.Value, 'f', 3, 64) {
			t.Errorf("bar %d: %s %s s, the JSON says %s %.3f s", i, d[1], d[2], want.Day, want.Value)
		}
	}
	if n := strings.Count(dom, `class="drift"`); n != 2 {
		t.Errorf("%d drift charts drawn, want one per rule (2)", n)
	}

	// The screenshot: each bar is there, in its colour, as tall as its
	// value says.
	shot := filepath.Join(dir, "report.png")
	run("--screenshot="+shot, "file://"+page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	blue := bars(img, [3]uint8{0x25, 0x63, 0xeb})
	if len(blue) != len(fromJSON.MTTR) {
		t.Fatalf("the screenshot shows %d blue bars, want one per day (%d); screenshot kept at %s", len(blue), len(fromJSON.MTTR), shot)
	}
	peak := 0.0
	for _, d := range fromJSON.MTTR {
		peak = max(peak, d.Value)
	}
	tallest := 0
	for _, h := range blue {
		tallest = max(tallest, h)
	}
	for i, h := range blue {
		want := fromJSON.MTTR[i].Value / peak
		if got := float64(h) / float64(tallest); got < want-0.03 || got > want+0.03 {
			t.Errorf("bar %d is %.2f of the tallest, its value %.2f of the peak", i, got, want)
		}
	}
	if red := bars(img, [3]uint8{0xdc, 0x26, 0x26}); len(red) == 0 {
		t.Error("no drift bar in the screenshot")
	}
	if keep := os.Getenv("RIPOSTE_REPORT_SCREENSHOT"); keep != "" || t.Failed() {
		if keep == "" {
			keep = filepath.Join(os.TempDir(), "riposte-report-failed.png")
		}
		data, _ := os.ReadFile(shot)
		_ = os.WriteFile(keep, data, 0o644)
		t.Logf("screenshot: %s", keep)
	}
}

func attrValue(t *testing.T, dom, pattern string) string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the page has nothing matching %s", pattern)
	}
	return m[1]
}

// bars finds the bars of one colour in the first chart that has them:
// runs of that colour along the row where it is widest, each with its
// height in pixels, left to right.
func bars(img image.Image, c [3]uint8) []int {
	b := img.Bounds()
	is := func(x, y int) bool {
		r, g, bl, _ := img.At(x, y).RGBA()
		near := func(v uint32, w uint8) bool { d := int(v>>8) - int(w); return d > -4 && d < 4 }
		return near(r, c[0]) && near(g, c[1]) && near(bl, c[2])
	}
	// The row just above the first chart's baseline: the lowest row, in
	// the topmost band of this colour, where it is widest.
	bestY, best := -1, 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		n := 0
		for x := b.Min.X; x < b.Max.X; x++ {
			if is(x, y) {
				n++
			}
		}
		if n >= best && n > 0 {
			bestY, best = y, n
		} else if n == 0 && bestY >= 0 {
			break // the first chart ended
		}
	}
	if bestY < 0 {
		return nil
	}
	var heights []int
	for x := b.Min.X; x < b.Max.X; x++ {
		if !is(x, bestY) || x > b.Min.X && is(x-1, bestY) {
			continue
		}
		// A run starts at x: its height is measured at its middle.
		end := x
		for end+1 < b.Max.X && is(end+1, bestY) {
			end++
		}
		mid := (x + end) / 2
		h := 0
		for y := bestY; y >= b.Min.Y && is(mid, y); y-- {
			h++
		}
		heights = append(heights, h)
	}
	return heights
}
