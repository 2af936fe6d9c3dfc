package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
)

// DefaultMaxAlerts bounds the alerts of one notification when the handler
// sets no limit. Alertmanager sends at most its receiver's max_alerts (0, no
// limit, by default), usually far fewer.
const DefaultMaxAlerts = 1000

// maxDepth bounds how deeply a body may nest objects and arrays. A
// notification is five levels deep at most (alerts[i].labels.name); each
// level costs the scan its path, so 100,000 brackets in a 1 MiB body held
// gigabytes before this bound.
const maxDepth = 32

// TooManyAlertsError refuses a notification with more alerts than intake
// takes in one request.
type TooManyAlertsError struct{ Limit int }

func (e *TooManyAlertsError) Error() string {
	return fmt.Sprintf("more than %d alerts in one notification; set max_alerts on the Alertmanager receiver to at most %d", e.Limit, e.Limit)
}

// scan walks the body's tokens once, before anything is decoded. It refuses
// a key given twice in one object, where encoding/json would silently keep
// the last, and stops as soon as the alerts outnumber maxAlerts, so a huge
// notification costs no decoding. Only the first JSON value is scanned:
// what follows it is Decode's to refuse.
func scan(body []byte, maxAlerts int) error {
	type frame struct {
		object  bool
		path    string
		wantKey bool
		key     string
		keys    map[string]bool
		// fold: the object decodes into a struct, whose field names
		// encoding/json matches case-insensitively, so "labels" and
		// "Labels" are the same key there.
		fold bool
		// alerts: the array is the payload's alerts, whose elements are
		// counted and decode into structs.
		alerts bool
		index  int
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var stack []*frame
	for {
		tok, err := dec.Token()
		switch {
		case errors.Is(err, io.EOF) && len(stack) == 0:
			return nil // an empty body; Decode says so
		case errors.Is(err, io.EOF):
			return fmt.Errorf("malformed JSON: %w", io.ErrUnexpectedEOF)
		case err != nil:
			return fmt.Errorf("malformed JSON: %w", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}

		if top != nil && top.object && top.wantKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return nil
				}
				continue
			}
			key, _ := tok.(string)
			id := key
			if top.fold {
				id = foldName(key)
			}
			if top.keys[id] {
				return &ValidationError{Field: joinPath(top.path, key), Problem: "the key is given twice; send each key once"}
			}
			top.keys[id] = true
			top.key, top.wantKey = key, false
			continue
		}
		if top != nil && !top.object && tok == json.Delim(']') {
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return nil
			}
			continue
		}

		// A value: where it is, and what it decodes into.
		path, fold, alerts := "", len(stack) == 0, false
		switch {
		case top == nil:
		case top.object:
			path = joinPath(top.path, top.key)
			alerts = len(stack) == 1 && strings.EqualFold(top.key, "alerts")
			top.wantKey = true
		default:
			path = fmt.Sprintf("%s[%d]", top.path, top.index)
			top.index++
			if top.alerts {
				if top.index > maxAlerts {
					return &TooManyAlertsError{Limit: maxAlerts}
				}
				fold = true
			}
		}
		if (tok == json.Delim('{') || tok == json.Delim('[')) && len(stack) >= maxDepth {
			return &ValidationError{Field: path, Problem: fmt.Sprintf("nested deeper than %d levels; a notification is a few levels deep", maxDepth)}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, path: path, wantKey: true, keys: map[string]bool{}, fold: fold})
		case json.Delim('['):
			stack = append(stack, &frame{path: path, alerts: alerts})
		default:
			if len(stack) == 0 {
				return nil
			}
		}
	}
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// joinPath names a key below path the way errors name fields:
// alerts[0].labels.severity, or labels["app.kubernetes.io/name"].
func joinPath(path, key string) string {
	switch {
	case !identifier.MatchString(key):
		return fmt.Sprintf("%s[%q]", path, key)
	case path == "":
		return key
	default:
		return path + "." + key
	}
}

// foldName is the form under which encoding/json matches a key to a struct
// field: two keys with the same folded name fill the same field.
func foldName(key string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, key)
}
