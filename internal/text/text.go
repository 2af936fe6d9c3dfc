// Package text shortens strings to the byte limits Kubernetes fields have,
// without splitting a UTF-8 character.
package text

import "unicode/utf8"

// Clip cuts s to at most n bytes, on a character boundary.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ellipsis marks where Elide cut.
const ellipsis = "…"

// Elide is Clip that marks the cut with an ellipsis, still within n bytes.
func Elide(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < len(ellipsis) {
		return Clip(s, n)
	}
	return Clip(s, n-len(ellipsis)) + ellipsis
}
