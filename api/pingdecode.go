package api

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
)

// decodePing is decodeJSON for a ping, the body every app sends all the
// time: a body the hand-written scanner is sure of is decoded by it, and
// any other body goes to decodeJSON, as it did before the scanner. The
// scanner is only tried when decodeJSON's own checks would pass, so every
// refusal, and its wording, is still decodeJSON's.
func decodePing(c *fiber.Ctx, r *pingRequest) error {
	if plainJSONType(c.Get(fiber.HeaderContentType)) {
		if body := c.Body(); len(body) <= maxJSONBody && decodePingFast(body, r) {
			return nil
		}
		// The scanner may have filled part of r before it gave up.
		*r = pingRequest{}
	}
	return decodeJSON(c, r)
}

// plainJSONType reports whether a Content-Type header is one decodeJSON
// takes, judged strictly: none at all, or application/json in lower case,
// with or without parameters. Other spellings decodeJSON may take too
// ("Application/JSON") are left to it; they are rare, and judging them
// here would mean copying its rules about case.
func plainJSONType(h string) bool {
	ct, _, _ := strings.Cut(h, ";")
	ct = strings.TrimSpace(ct)
	return ct == "" || ct == fiber.MIMEApplicationJSON
}

// decodePingFast decodes a ping's body into r, which must be zero, in one
// pass over its bytes and without reflection. It answers true only for a
// body the strict pass of decodeBytes (encoding/json, no unknown fields,
// plain keys, one value) accepts, and only with the pingRequest that pass
// gives. For anything it is not sure of it answers false, with r perhaps
// half filled, and the caller decodes the body the usual way: keys that
// are duplicated, escaped, not lower case or unknown; strings with an
// escape or invalid UTF-8; numbers encoding/json would refuse; a context
// that is not a flat object; a value of the wrong type; anything that is
// not exactly one JSON object.
func decodePingFast(body []byte, r *pingRequest) bool {
	s := pingScanner{b: body}
	s.space()
	if !s.eat('{') {
		return false
	}
	s.space()
	if !s.eat('}') {
		var seen uint16
		for {
			key, ok := s.key()
			if !ok {
				return false
			}
			bit, ok := s.field(key, r)
			if !ok || seen&bit != 0 {
				return false
			}
			seen |= bit
			s.space()
			if s.eat('}') {
				break
			}
			if !s.eat(',') {
				return false
			}
			s.space()
		}
	}
	s.space()
	return s.i == len(s.b)
}

// pingScanner reads a JSON text byte by byte; i is the next byte.
type pingScanner struct {
	b []byte
	i int
	// floats holds the ping's numbers, which its fields point to: one
	// allocation for all four rather than one each. A ping has four
	// number fields and none twice, so it never grows.
	floats []float64
}

// field reads the value of a ping's key (the ':' and the value after it)
// into r, and answers the key's bit in the set of keys seen, which the
// caller keeps: encoding/json lets a later duplicate key win, and merges
// a duplicated context, but the scanner gives up on duplicates instead.
func (s *pingScanner) field(key []byte, r *pingRequest) (bit uint16, ok bool) {
	s.space()
	if !s.eat(':') {
		return 0, false
	}
	s.space()
	switch string(key) {
	case "customer_id":
		return 1 << 0, s.stringField(&r.CustomerID)
	case "device_id":
		return 1 << 1, s.stringField(&r.DeviceID)
	case "ts":
		return 1 << 2, s.stringField(&r.TS)
	case "monitor_id":
		return 1 << 3, s.stringField(&r.MonitorID)
	case "lat":
		return 1 << 4, s.numberField(&r.Lat)
	case "lng":
		return 1 << 5, s.numberField(&r.Lng)
	case "accuracy_m":
		return 1 << 6, s.numberField(&r.AccuracyM)
	case "speed_mps":
		return 1 << 7, s.numberField(&r.SpeedMps)
	case "mocked":
		return 1 << 8, s.boolField(&r.Mocked)
	case "context":
		return 1 << 9, s.contextField(&r.ContextJSON)
	}
	return 0, false // a key a ping does not have
}

// stringField reads a string, or null, which encoding/json takes as
// leaving a string as it is.
func (s *pingScanner) stringField(to *string) bool {
	if s.literal("null") {
		return true
	}
	v, ok := s.str()
	*to = v
	return ok
}

// numberField reads a number, or null, which encoding/json takes as
// setting the pointer to nil.
func (s *pingScanner) numberField(to **float64) bool {
	if s.literal("null") {
		*to = nil
		return true
	}
	f, ok := s.number()
	if !ok {
		return false
	}
	if s.floats == nil {
		s.floats = make([]float64, 0, 4)
	}
	s.floats = append(s.floats, f)
	*to = &s.floats[len(s.floats)-1]
	return true
}

// boolField reads true or false, or null, which encoding/json takes as
// leaving a bool as it is.
func (s *pingScanner) boolField(to *bool) bool {
	switch {
	case s.literal("true"):
		*to = true
	case s.literal("false"):
		*to = false
	default:
		return s.literal("null")
	}
	return true
}

// contextField reads a flat object, which encoding/json would decode
// into a map[string]any (an empty object is an empty map, not nil), or
// null, which is no context. It keeps the object's bytes in raw, for
// encoding/json to decode if an audience reads them (few pings come to
// one, and the map was some 350 bytes a ping); the request's Context
// stays nil. A nested object or list gives up: it is rare in a ping, and
// the usual decoding knows it well.
func (s *pingScanner) contextField(raw *[]byte) bool {
	if s.literal("null") {
		*raw = nil
		return true
	}
	start := s.i
	if !s.flatObject() {
		return false
	}
	*raw = append([]byte(nil), s.b[start:s.i]...)
	return true
}

// flatObject reads an object of strings, numbers, booleans and nulls
// that encoding/json decodes as the scanner reads them.
func (s *pingScanner) flatObject() bool {
	if !s.eat('{') {
		return false
	}
	s.space()
	if s.eat('}') {
		return true
	}
	for {
		_, ok := s.key()
		if !ok {
			return false
		}
		s.space()
		if !s.eat(':') {
			return false
		}
		s.space()
		if _, ok = s.flatValue(); !ok {
			return false
		}
		s.space()
		if s.eat('}') {
			return true
		}
		if !s.eat(',') {
			return false
		}
		s.space()
	}
}

// flatValue reads a string, number, boolean or null as encoding/json
// decodes it into an any: string, float64, bool or nil.
func (s *pingScanner) flatValue() (any, bool) {
	switch {
	case s.i >= len(s.b):
		return nil, false
	case s.b[s.i] == '"':
		return s.str()
	case s.b[s.i] == '-' || s.b[s.i] >= '0' && s.b[s.i] <= '9':
		return s.number()
	case s.literal("true"):
		return true, true
	case s.literal("false"):
		return false, true
	}
	return nil, s.literal("null")
}

// key reads an object key that plainKeys lets through to the strict pass:
// lower-case ASCII without escapes (a space or punctuation is fine).
func (s *pingScanner) key() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c < 0x20, c == '\\', c >= 'A' && c <= 'Z', c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

// str reads a string without escapes. encoding/json would turn invalid
// UTF-8 into U+FFFD; the scanner gives up on it instead, and on control
// characters, which JSON does not allow in a string.
func (s *pingScanner) str() (string, bool) {
	if !s.eat('"') {
		return "", false
	}
	start, ascii := s.i, true
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(v) {
				return "", false
			}
			return string(v), true
		case c < 0x20, c == '\\':
			return "", false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", false
}

// number reads a JSON number (RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?
// ([eE][+-]?[0-9]+)?) as encoding/json does into a float64: by
// strconv.ParseFloat of its text, which refuses one out of range.
func (s *pingScanner) number() (float64, bool) {
	start := s.i
	s.eat('-')
	if !s.eat('0') && s.digits() == 0 {
		return 0, false
	}
	if s.eat('.') && s.digits() == 0 {
		return 0, false
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if s.digits() == 0 {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(s.b[start:s.i]), 64)
	return f, err == nil
}

// digits skips decimal digits and answers how many.
func (s *pingScanner) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

// literal skips word (true, false, null) if it comes next. What follows
// it is for the caller to check: in a ping, only white space, ',' or '}'
// may.
func (s *pingScanner) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// eat skips c if it comes next.
func (s *pingScanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// space skips JSON's white space (not Go's, which has more).
func (s *pingScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}
