package rules

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// sampleCustomers are the profiles fuzzed rules are rendered for.
var sampleCustomers = []*Customer{
	{ID: "c"},
	{ID: "c", FirstName: "Anna", Locale: "de-AT", Timezone: "Europe/Berlin", Segments: []string{"a", "b"},
		Attributes: map[string]any{"tier": "gold", "n": 3.0, "list": []any{"x"}}, Consent: Consent{true, true}},
}

func renderAll(t *testing.T, c *Compiled) {
	lat, lng := 52.5, 13.4
	st := &Store{ID: "s", Name: "S", Lat: &lat, Lng: &lng, RadiusM: 100}
	for _, cu := range sampleCustomers {
		_ = c.Render(OfferData{Customer: cu, Store: st, DistanceM: 42, CouponCode: "ABC", ExpiresAt: time.Unix(1800000000, 0)})
	}
}

// FuzzCompileRule: whatever rule document a marketer sends, Compile
// answers, without panicking, either a rule that renders for any profile
// or a ValidationError naming what is wrong.
func FuzzCompileRule(f *testing.F) {
	good, _ := json.Marshal(goodRule())
	f.Add(good)
	f.Add([]byte(`{"name":"x","trigger":{"on":"dwell","dwell_s":60},"audience":"customer.attributes.n > 2","offer":{"title":{"en":"{{range .customer.segments}}{{.}}{{end}}"},"body":{"en":"{{distance .distance_m}}"}}}`))
	f.Add([]byte(`{"name":"x","trigger":{"on":"enter"},"when":{"days":["mon"],"local_time":["07:00-11:00"],"quiet_hours":"22:00-07:00"},"offer":{"title":{"en":"{{clock .coupon.expires_at}}"},"body":{"en":"{{default \"y\" .customer.attributes.z}}"}}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var r Rule
		if json.Unmarshal(doc, &r) != nil {
			return
		}
		c, err := Compile(&r)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Faults) == 0 {
				t.Fatalf("Compile(%s) = %v, want a ValidationError with faults", doc, err)
			}
			return
		}
		renderAll(t, c)
	})
}

// FuzzRenderTemplate: whatever a title's template, a rule that compiles
// renders, for an empty and a full profile, without panicking or hanging.
func FuzzRenderTemplate(f *testing.F) {
	for _, s := range []string{
		"Hallo {{.customer.first_name}}!",
		"{{range $i, $s := .customer.segments}}{{$i}}:{{$s}} {{end}}",
		"{{with .customer.attributes.tier}}{{.}}{{else}}none{{end}}",
		"{{if gt .distance_m 10}}far{{end}} {{printf \"%05d\" .distance_m}}",
		"{{define \"x\"}}{{template \"x\"}}{{end}}{{template \"x\"}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		r := goodRule()
		r.Audience = ""
		r.Offer.Title[1].Template = tmpl
		c, err := Compile(r)
		if err != nil {
			return
		}
		renderAll(t, c)
	})
}
