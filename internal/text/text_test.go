package text

import (
	"testing"
	"unicode/utf8"
)

func TestClipAndElide(t *testing.T) {
	cases := []struct {
		reason, s   string
		n           int
		clip, elide string
	}{
		{reason: "short enough", s: "abc", n: 3, clip: "abc", elide: "abc"},
		{reason: "cut", s: "abcdef", n: 5, clip: "abcde", elide: "ab…"},
		{reason: "never inside a character", s: "aé€b", n: 4, clip: "aé", elide: "a…"},
		{reason: "a limit below the mark", s: "abcdef", n: 2, clip: "ab", elide: "ab"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if got := Clip(tc.s, tc.n); got != tc.clip || len(got) > tc.n || !utf8.ValidString(got) {
				t.Errorf("Clip(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.clip)
			}
			if got := Elide(tc.s, tc.n); got != tc.elide || len(got) > tc.n || !utf8.ValidString(got) {
				t.Errorf("Elide(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.elide)
			}
		})
	}
}
