package api

import (
	"errors"
	"reflect"
	"testing"

	"github.com/nearcast/nearcast/rules"
)

// The one-pass decoding of a good document must give what the careful
// one gives, and refuse what it refuses.
func TestDecodeFastPathIsAsStrict(t *testing.T) {
	tests := []struct {
		name, body string
		field      string // "" for a good document
	}{
		{"good", `{"customer_id":"c-1","lat":52.5,"lng":13.4,"context":{"app_state":"background"}}`, ""},
		{"good, spaced", " {\n \"customer_id\" : \"c-1\", \"lat\": 1, \"lng\": 2}\n", ""},
		{"good, capitals in values and context keys", `{"customer_id":"C-1","lat":1,"lng":2,"context":{"App":"X"}}`, ""},
		{"a key in capitals", `{"customer_id":"c-1","Lat":1,"lng":2}`, "Lat"},
		{"a key escaped", `{"customer_id":"c-1","l\u0061t":1,"lng":2}`, ""},
		{"a key with the Kelvin sign", `{"customer_id":"c-1","lat":1,"lng":2,"speed_mps":1,"trac\u212a":1}`, "trac\u212a"},
		{"an unknown key", `{"customer_id":"c-1","lat":1,"lng":2,"altitude":3}`, "altitude"},
		{"a wrong type", `{"customer_id":"c-1","lat":"north","lng":2}`, "lat"},
		{"two documents", `{"customer_id":"c-1"}{"customer_id":"c-2"}`, "-"},
		{"null", `null`, "-"},
		{"a list", `[]`, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fast, slow pingRequest
			errFast, errSlow := decodeBytes([]byte(tt.body), &fast), decodeSlowly([]byte(tt.body), &slow)
			if (errFast == nil) != (errSlow == nil) || errFast != nil && errFast.Error() != errSlow.Error() {
				t.Fatalf("one pass: %v; careful: %v", errFast, errSlow)
			}
			if errFast == nil && !reflect.DeepEqual(fast, slow) {
				t.Fatalf("one pass: %+v; careful: %+v", fast, slow)
			}
			switch {
			case tt.field == "" && errFast != nil:
				t.Fatalf("refused a good document: %v", errFast)
			case tt.field != "" && errFast == nil:
				t.Fatalf("accepted a bad document")
			case tt.field != "" && tt.field != "-":
				var ve *rules.ValidationError
				e := toError(errFast)
				if errors.As(errFast, &ve) && ve.Faults[0].Field != tt.field || !errors.As(errFast, &ve) && e.Field != tt.field {
					t.Fatalf("error %v does not name %q", errFast, tt.field)
				}
			}
		})
	}
}

// FuzzDecodePing: whatever the body, the one-pass decoding and the
// careful one agree.
func FuzzDecodePing(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c-1","lat":52.5,"lng":13.4}`,
		`{"customer_id":"c-1","LAT":52.5,"lng":13.4}`,
		`{"customer_id":"c-1","lat":52.5,"lng":13.4,"context":{"a":[1,{"b":null}]}}`,
		`{"customer_id":"c-1","lat":1e400}`,
		`{"ts":"2026-11-22T08:00:00Z","speed_mps":-1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, slow pingRequest
		errFast, errSlow := decodeBytes(body, &fast), decodeSlowly(body, &slow)
		if (errFast == nil) != (errSlow == nil) {
			t.Fatalf("%q: one pass: %v; careful: %v", body, errFast, errSlow)
		}
		if errFast == nil && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: one pass: %+v; careful: %+v", body, fast, slow)
		}
	})
}

// BenchmarkDecodePing: a ping as apps send it, decoded in one pass (a
// good document) and by the careful pass alone (what every ping took
// before).
func BenchmarkDecodePing(b *testing.B) {
	body := []byte(`{"customer_id":"c-0000042","device_id":"d-0000042","lat":52.521512,"lng":13.413011,"accuracy_m":12,"speed_mps":1.3,"context":{"app_state":"background"}}`)
	for _, bm := range []struct {
		name   string
		decode func([]byte, any) error
	}{{"one_pass", decodeBytes}, {"careful", decodeSlowly}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var p pingRequest
				if err := bm.decode(body, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
