package api

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// strictPing is the strict pass of decodeBytes (its first branch) on its
// own: what the ping scanner must agree with.
func strictPing(body []byte) (pingRequest, bool) {
	var r pingRequest
	t := bytes.Trim(body, jsonSpace)
	if len(t) == 0 || t[0] != '{' || !plainKeys(t) {
		return r, false
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.DisallowUnknownFields()
	if dec.Decode(&r) != nil || dec.More() {
		return r, false
	}
	_, err := dec.Token()
	return r, err == io.EOF
}

// settleContext decodes the context the scanner kept as JSON, as the
// engine does when an audience reads it, so that a request compares
// with encoding/json's.
func (r *pingRequest) settleContext(t testing.TB) {
	t.Helper()
	if r.ContextJSON == nil {
		return
	}
	if r.Context != nil {
		t.Fatalf("both a context and its JSON: %v, %s", r.Context, r.ContextJSON)
	}
	if err := json.Unmarshal(r.ContextJSON, &r.Context); err != nil {
		t.Fatalf("the context kept as JSON does not decode: %s: %v", r.ContextJSON, err)
	}
	r.ContextJSON = nil
}

// checkPingFast fails the test if the scanner accepts a body the strict
// pass refuses, or decodes it otherwise; it reports whether the scanner
// took the body. Besides reflect.DeepEqual, the two are compared as JSON,
// which tells -0 from 0, as DeepEqual does not.
func checkPingFast(t *testing.T, body []byte) bool {
	t.Helper()
	var got pingRequest
	if !decodePingFast(body, &got) {
		return false
	}
	got.settleContext(t)
	want, ok := strictPing(body)
	if !ok {
		t.Fatalf("%q: the scanner took a body the strict pass refuses, as %+v", body, got)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !reflect.DeepEqual(got, want) || !bytes.Equal(g, w) {
		t.Fatalf("%q: the scanner gives %s, the strict pass %s", body, g, w)
	}
	return true
}

// pingGen writes ping bodies from a seeded source: valid ones of the
// common shape, which the scanner is meant to take, and others, valid
// or broken, which it must take right or leave alone.
type pingGen struct{ r *rand.Rand }

// pingMember is one key and the JSON text of its value.
type pingMember struct{ key, value string }

var (
	// pingPlainStrings are strings without escapes, as apps send them.
	pingPlainStrings = []string{"c-0000042", "d-0000042", "", "2026-11-22T08:00:00Z", "2026-11-22T08:00:00.123456789+01:00",
		"Grüße ☕", "日本語", "emoji 😀", "a b/c", "x'y", "\x7f", "mon-7", "background", "U+FFFD \uFFFD"}
	// pingEscapedStrings are string contents with escapes, valid JSON all.
	pingEscapedStrings = []string{`a\"b`, `\\`, `\/`, `line\nbreak`, `\t`, `caf\u00e9`, `\ud83d\ude00`, `\ud800`, `\udc00x`, `\u0000`, `\b\f\r`}
	// pingPlainNumbers are numbers encoding/json decodes into a float64.
	pingPlainNumbers = []string{"0", "-0", "1e2", "52.52", "1E-7", "13.4050000001", "-180", "90", "1.7976931348623157e308",
		"5e-324", "1e-400", "123456789012345678901234567890", "0.1", "2.5E+3", "-0.0", "0e0", "1E+0", "12", "100000", "1e-07"}
	// pingBadNumbers are not JSON numbers, or out of a float64's range.
	pingBadNumbers = []string{"01", "-01", "00.5", "1.", ".5", "+1", "1e", "1e+", "-", "0x10", "Infinity", "NaN", "1_000", "1e400", "-1e400", "1.e3", "--1"}
	// pingContextKeys are keys plainKeys lets through.
	pingContextKeys = []string{"app_state", "battery", "", "screen on", "os", "x1", "a-b"}
	// pingKeys are a ping's keys.
	pingKeys = []string{"customer_id", "device_id", "lat", "lng", "accuracy_m", "ts", "speed_mps", "mocked", "context", "monitor_id"}
)

func (g pingGen) pick(list []string) string { return list[g.r.IntN(len(list))] }

// space is JSON white space: mostly none, sometimes some.
func (g pingGen) space() string {
	switch g.r.IntN(6) {
	case 0:
		return " "
	case 1:
		var b strings.Builder
		for range g.r.IntN(4) + 1 {
			b.WriteByte(" \t\r\n"[g.r.IntN(4)])
		}
		return b.String()
	}
	return ""
}

// number is a number from the list, or a random one in any format.
func (g pingGen) number() string {
	if g.r.IntN(2) == 0 {
		return g.pick(pingPlainNumbers)
	}
	f := g.r.NormFloat64() * float64(g.r.IntN(1000)+1)
	return strconv.FormatFloat(f, "fgeE"[g.r.IntN(4)], g.r.IntN(12)-1, 64)
}

// value is a common value for a ping's key, null now and then.
func (g pingGen) value(key string) string {
	if g.r.IntN(20) == 0 {
		return "null"
	}
	switch key {
	case "lat", "lng", "accuracy_m", "speed_mps":
		return g.number()
	case "mocked":
		return g.pick([]string{"true", "false"})
	case "context":
		return g.context()
	}
	return `"` + g.pick(pingPlainStrings) + `"`
}

// flat is a common value in a context.
func (g pingGen) flat() string {
	switch g.r.IntN(5) {
	case 0:
		return g.number()
	case 1:
		return g.pick([]string{"true", "false", "null"})
	}
	return `"` + g.pick(pingPlainStrings) + `"`
}

// context is a flat object of common values.
func (g pingGen) context() string {
	n := g.r.IntN(5)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"` + g.pick(pingContextKeys) + `"` + g.space() + ":" + g.space() + g.flat()
	}
	return "{" + g.space() + strings.Join(parts, ","+g.space()) + g.space() + "}"
}

// members are some of a ping's keys, in any order, with common values.
func (g pingGen) members() []pingMember {
	keys := append([]string(nil), pingKeys...)
	g.r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	ms := make([]pingMember, g.r.IntN(len(keys)+1))
	for i := range ms {
		ms[i] = pingMember{keys[i], g.value(keys[i])}
	}
	return ms
}

// render writes members as an object, white space around every token.
func (g pingGen) render(ms []pingMember) string {
	var b strings.Builder
	b.WriteString(g.space() + "{" + g.space())
	for i, m := range ms {
		if i > 0 {
			b.WriteString("," + g.space())
		}
		b.WriteString(`"` + m.key + `"` + g.space() + ":" + g.space() + m.value + g.space())
	}
	b.WriteString("}" + g.space())
	return b.String()
}

// other is a body that is not of the common shape: valid but with what
// the scanner leaves to encoding/json, or broken in one of many ways.
func (g pingGen) other() string {
	ms := g.members()
	if len(ms) == 0 {
		ms = []pingMember{{"lat", "1"}}
	}
	k := g.r.IntN(len(ms))
	switch g.r.IntN(12) {
	case 0:
		ms[k].value = g.wrongType(ms[k].key)
	case 1:
		ms = append(ms, pingMember{g.pick([]string{"altitude", "Lat", "LAT", "l\\u0061t", "lat ", "", "trac\u212a", "ctx"}), g.number()})
	case 2:
		ms[k].key = strings.ToUpper(ms[k].key[:1]) + ms[k].key[1:]
	case 3:
		ms = append(ms, pingMember{ms[k].key, g.value(ms[k].key)})
	case 4:
		ms = append(ms, pingMember{"context", g.pick([]string{`{"a":{"b":1}}`, `{"a":[1,2]}`, `{"a":[]}`, `{"A":1}`, `{"\u0061":1}`, `{"é":1}`, `{"a":1,"a":2}`, `{"a":"x","a":null}`})})
	case 5:
		ms[k] = pingMember{"device_id", `"` + g.pick([]string{"\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf", "ok\xe2\x82", "\x01", "\t"}) + `"`}
	case 6:
		ms[k] = pingMember{g.pick([]string{"lat", "speed_mps"}), g.pick(pingBadNumbers)}
	case 7:
		ms[k] = pingMember{g.pick([]string{"customer_id", "ts", "monitor_id"}), `"` + g.pick(pingEscapedStrings) + `"`}
	case 8:
		ms[k] = pingMember{"context", `{"k":"` + g.pick(pingEscapedStrings) + `"}`}
	}
	return g.mangle(g.render(ms))
}

// wrongType is a value encoding/json refuses for key.
func (g pingGen) wrongType(key string) string {
	switch key {
	case "lat", "lng", "accuracy_m", "speed_mps":
		return g.pick([]string{`"52"`, "true", "[1]", "{}", `""`})
	case "mocked":
		return g.pick([]string{"1", `"true"`, "0", "[]", "True"})
	case "context":
		return g.pick([]string{"[]", `"x"`, "1", "true", "[{}]"})
	}
	return g.pick([]string{"42", "true", "{}", "[]", `["x"]`})
}

// mangle breaks a body's text now and then: cut short, extra commas,
// garbage after it, a byte changed, white space JSON does not know.
func (g pingGen) mangle(s string) string {
	if s == "" {
		return s
	}
	at := g.r.IntN(len(s))
	switch g.r.IntN(14) {
	case 0:
		return s[:at]
	case 1:
		return strings.Replace(s, "{", "{,", 1)
	case 2:
		return strings.Replace(s, "}", ",}", 1)
	case 3:
		return strings.Replace(s, ",", ",,", 1)
	case 4:
		return s + g.pick([]string{"x", "{}", ",", "]", "}", " 1", "\x00", "null", "\f"})
	case 5:
		return s[:at] + string(rune(g.r.IntN(128))) + s[at+1:]
	case 6:
		return s[:at] + s[at+1:]
	case 7:
		return g.pick([]string{"\f", "\v", "\u00a0", "\ufeff"}) + s
	case 8:
		return g.pick([]string{"", " ", "null", "[]", `"x"`, "1", "{", "}", `{"lat"}`, `{"lat":}`, `{'lat':1}`, "{}{}"})
	}
	return s
}

// A seeded stream of bodies, valid and broken: whatever the scanner
// takes, the strict pass takes too and decodes alike; and the scanner
// takes nearly every valid body of the common shape, so it pays.
func TestPingFastDecodeMatchesEncodingJSON(t *testing.T) {
	g := pingGen{rand.New(rand.NewPCG(2026, 11))}
	const n = 10000
	common := 0
	for range n {
		body := g.render(g.members())
		if _, ok := strictPing([]byte(body)); !ok {
			t.Fatalf("%q: the strict pass refuses a body of the common shape", body)
		}
		if checkPingFast(t, []byte(body)) {
			common++
		}
	}
	others := 0
	for range n {
		if checkPingFast(t, []byte(g.other())) {
			others++
		}
	}
	t.Logf("the scanner took %d of %d common bodies and %d of %d others", common, n, others, n)
	if common*10 <= n*9 {
		t.Errorf("the scanner took only %d of %d common bodies, want over 90%%", common, n)
	}
}

// FuzzPingFastDecode: whatever the body, the scanner takes only what the
// strict pass takes, and decodes it alike.
func FuzzPingFastDecode(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c-0000042","device_id":"d-0000042","lat":52.521512,"lng":13.413011,"accuracy_m":12,"speed_mps":1.3,"context":{"app_state":"background"}}`,
		`{"lat":-0,"lng":1E-7,"mocked":true,"context":{}}`,
		` {"ts":"2026-11-22T08:00:00Z" , "monitor_id":null,"context":{"a":1,"b":null,"c":false,"d":"é"}}` + "\n",
		`{"lat":null,"mocked":null,"context":null,"customer_id":null}`,
		`{"lat":1,"lat":2}`,
		`{"lat":1e400}`,
		`{"lat":01}`,
		`{"Lat":1}`,
		`{"customer_id":"a\"b"}`,
		`{"context":{"a":{"b":1}}}`,
		"{\"customer_id\":\"\xff\"}",
		`{}x`,
		``,
	} {
		f.Add([]byte(s))
	}
	g := pingGen{rand.New(rand.NewPCG(1, 2))}
	for range 20 {
		f.Add([]byte(g.render(g.members())))
		f.Add([]byte(g.other()))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkPingFast(t, body)
	})
}

// Through Fiber, decodePing answers what decodeJSON answers, whether the
// scanner takes the body or not: the same request, the same refusal.
func TestPingFastDecodeThroughFiber(t *testing.T) {
	app := fiber.New()
	typical := `{"customer_id":"c-1","lat":52.5,"lng":13.4,"context":{"app_state":"background"}}`
	tests := []struct{ name, contentType, body string }{
		{"typical", "application/json", typical},
		{"with a charset", "application/json; charset=utf-8", typical},
		{"no content type", "", typical},
		{"content type in capitals", "Application/JSON", typical},
		{"not JSON", "text/plain", typical},
		{"too large", "application/json", `{"customer_id":"` + strings.Repeat("c", maxJSONBody) + `"}`},
		{"an escape", "application/json", `{"customer_id":"c-\u0031","lat":1,"lng":2}`},
		{"a nested context", "application/json", `{"lat":1,"lng":2,"context":{"a":{"b":[1]}}}`},
		{"an unknown key", "application/json", `{"lat":1,"lng":2,"altitude":3}`},
		{"half scanned", "application/json", `{"customer_id":"c-1","lat":1,"lng":"east"}`},
		{"empty", "application/json", ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decode := func(f func(*fiber.Ctx, *pingRequest) error) (pingRequest, error) {
				var fctx fasthttp.RequestCtx
				fctx.Request.Header.SetMethod("POST")
				if tt.contentType != "" {
					fctx.Request.Header.SetContentType(tt.contentType)
				}
				fctx.Request.SetBodyString(tt.body)
				c := app.AcquireCtx(&fctx)
				defer app.ReleaseCtx(c)
				var r pingRequest
				err := f(c, &r)
				return r, err
			}
			got, gotErr := decode(decodePing)
			got.settleContext(t)
			want, wantErr := decode(func(c *fiber.Ctx, r *pingRequest) error { return decodeJSON(c, r) })
			if !reflect.DeepEqual(gotErr, wantErr) || !reflect.DeepEqual(got, want) {
				t.Fatalf("decodePing: %+v, %v; decodeJSON: %+v, %v", got, gotErr, want, wantErr)
			}
		})
	}
}

// BenchmarkDecodePingFast: the ping of BenchmarkDecodePing, decoded by
// the scanner.
func BenchmarkDecodePingFast(b *testing.B) {
	body := []byte(`{"customer_id":"c-0000042","device_id":"d-0000042","lat":52.521512,"lng":13.413011,"accuracy_m":12,"speed_mps":1.3,"context":{"app_state":"background"}}`)
	b.ReportAllocs()
	for b.Loop() {
		var p pingRequest
		if !decodePingFast(body, &p) {
			b.Fatal("the scanner refused a typical ping")
		}
	}
}
