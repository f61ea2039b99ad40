package engine

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// A ping's answer is encoded by hand, into a buffer the caller keeps:
// encoding/json's reflection, and its check of the bytes Monitor's
// MarshalJSON returns, were some 6% of the server's CPU. The encoding is
// encoding/json's, byte for byte (TestResultJSONMatchesEncodingJSON).
//
// Result has no MarshalJSON of its own: Step (simulate.go) embeds it, and
// the method, promoted, would encode a step as its result alone.

// AppendJSON appends the result as json.Marshal encodes it: the same
// fields in the same order, left out or null alike, and strings escaped
// alike. Unlike json.Marshal it does not refuse a time outside the years
// 0 to 9999, which no result holds.
func (r *Result) AppendJSON(b []byte) []byte {
	if r == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"events":`...)
	b = appendList(b, r.Events, (*Event).appendJSON)
	b = append(b, `,"offers":`...)
	b = appendList(b, r.Offers, (*IssuedOffer).appendJSON)
	if len(r.Explain) > 0 {
		b = append(b, `,"explain":`...)
		b = appendList(b, r.Explain, (*Explanation).appendJSON)
	}
	if r.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, r.Reason)
	}
	if r.Trust != nil {
		b = append(b, `,"trust":{"level":`...)
		b = appendJSONString(b, r.Trust.Level)
		b = append(b, `,"signals":`...)
		b = appendList(b, r.Trust.Signals, appendJSONStringAt)
		b = append(b, '}')
	}
	if r.Monitor != nil {
		b = append(b, `,"monitor":`...)
		b = r.Monitor.appendJSON(b)
	}
	if r.NextPing != nil {
		b = append(b, `,"next_ping":{"distance_m":`...)
		b = strconv.AppendInt(b, int64(r.NextPing.DistanceM), 10)
		b = append(b, `,"after_s":`...)
		b = appendIntPointer(b, r.NextPing.AfterS)
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendList writes a list as encoding/json does a slice: null when nil.
func appendList[T any](b []byte, xs []T, each func(*T, []byte) []byte) []byte {
	if xs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = each(&xs[i], b)
	}
	return append(b, ']')
}

func (e *Event) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"store_id":`...)
	b = appendJSONString(b, e.StoreID)
	b = append(b, `,"distance_m":`...)
	b = strconv.AppendInt(b, int64(e.DistanceM), 10)
	if e.VisitS != nil {
		b = append(b, `,"visit_s":`...)
		b = strconv.AppendInt(b, int64(*e.VisitS), 10)
	}
	if e.DwellS != nil {
		b = append(b, `,"dwell_s":`...)
		b = strconv.AppendInt(b, int64(*e.DwellS), 10)
	}
	return append(b, '}')
}

func (o *IssuedOffer) appendJSON(b []byte) []byte {
	b = append(b, `{"coupon_code":`...)
	b = appendJSONString(b, o.CouponCode)
	b = append(b, `,"rule_id":`...)
	b = appendJSONString(b, o.RuleID)
	b = append(b, `,"store_id":`...)
	b = appendJSONString(b, o.StoreID)
	b = append(b, `,"title":`...)
	b = appendJSONString(b, o.Title)
	b = append(b, `,"body":`...)
	b = appendJSONString(b, o.Body)
	b = append(b, `,"expires_at":"`...)
	// time.Time's MarshalJSON writes this format, quoted.
	b = o.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if o.Variant != "" {
		b = append(b, `,"variant":`...)
		b = appendJSONString(b, o.Variant)
	}
	if o.Kind != "" {
		b = append(b, `,"kind":`...)
		b = appendJSONString(b, o.Kind)
	}
	return append(b, '}')
}

func (x *Explanation) appendJSON(b []byte) []byte {
	b = append(b, `{"rule_id":`...)
	b = appendJSONString(b, x.RuleID)
	b = append(b, `,"store_id":`...)
	b = appendJSONString(b, x.StoreID)
	b = append(b, `,"result":`...)
	b = appendJSONString(b, x.Result)
	if x.Variant != "" {
		b = append(b, `,"variant":`...)
		b = appendJSONString(b, x.Variant)
	}
	return append(b, '}')
}

func appendIntPointer(b []byte, n *int) []byte {
	if n == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, int64(*n), 10)
}

// appendJSONStringAt is appendJSONString in the shape appendList takes.
func appendJSONStringAt(s *string, b []byte) []byte {
	return appendJSONString(b, *s)
}

// jsonSafe tells which ASCII bytes encoding/json writes as they are: all
// but control characters, the quote and the backslash, and <, > and &,
// which it escapes so that JSON inside HTML cannot close a script.
var jsonSafe = func() (safe [utf8.RuneSelf]bool) {
	for c := range safe {
		safe[c] = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return safe
}()

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s exactly as encoding/json does, without
// allocating: offers' titles and bodies are often not ASCII. Beside the
// ASCII it escapes, encoding/json writes invalid UTF-8 as \ufffd, one per
// byte, and escapes U+2028 and U+2029, which end a line in JavaScript;
// every other character goes as it is.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !jsonSafe[c] {
				b = appendEscapedByte(append(b, s[start:i]...), c)
				start = i + 1
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[start:i]...), `\u202`...)
			b = append(b, hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendEscapedByte writes an ASCII byte jsonSafe refuses as encoding/json
// does: a short escape where JSON has one, else \u00XX in lower case.
func appendEscapedByte(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}
