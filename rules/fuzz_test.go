package rules

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// sampleCustomers are the profiles fuzzed rules are rendered for.
var sampleCustomers = []*Customer{
	{ID: "c"},
	{ID: "c", FirstName: "Anna", Locale: "de-AT", Timezone: "Europe/Berlin", Segments: []string{"a", "b"},
		Attributes: map[string]any{"tier": "gold", "n": 3.0, "list": []any{"x"}}, Consent: Consent{Location: true, Push: true}},
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

// FuzzMarketerCode: whatever audience and text a marketer writes, saving
// the rule answers a rule or a ValidationError, and a rule that saves
// evaluates and renders, for an ordinary profile and for one written
// before profiles were bounded, quickly and without panicking: an
// evaluation that goes over its budget fails closed, a text past its
// bounds is an error and never its source.
func FuzzMarketerCode(f *testing.F) {
	for _, s := range [][2]string{
		{"customer.attributes.tier == 'gold' && 'commuter' in customer.segments", "Hallo {{.customer.first_name}}!"},
		{"any(customer.segments, hasPrefix(#, 'vip')) && none(store.tags, # == 'closed')", "{{range .customer.segments}}#{{.}} {{end}}"},
		{"all(customer.segments, any(customer.segments, # != ''))", "{{range $i, $t := $.store.tags}}{{$i}}{{$t}}{{end}}"},
	} { // the attacks of issue 14 are in testdata/fuzz/FuzzMarketerCode

		f.Add(s[0], s[1])
	}
	lat, lng := 52.5, 13.4
	store := &Store{ID: "s", Name: "S", Lat: &lat, Lng: &lng, RadiusM: 3000, Tags: []string{"coffee", "vip"}}
	old := &Customer{ID: "c", FirstName: strings.Repeat("A", 5000), Locale: "en", Segments: make([]string, 2000),
		Attributes: map[string]any{"tier": "gold", "n": 3.0, "list": make([]any, 2000), "note": strings.Repeat("x", 10_000)}}
	profiles := append(slices.Clone(sampleCustomers), old)
	f.Fuzz(func(t *testing.T, audience, text string) {
		r := goodRule()
		r.Audience = audience
		r.Offer.Body[1].Template = text
		c, err := Compile(r)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Faults) == 0 {
				t.Fatalf("Compile = %v, want a ValidationError with faults", err)
			}
			return
		}
		for _, cu := range profiles {
			env := AudienceEnv{Customer: cu, Store: store, Context: map[string]any{"local_hour": 9}}
			start := time.Now()
			_, err := c.Match(&env)
			if err != nil && !errors.Is(err, ErrAudienceBudget) {
				t.Fatalf("Match(%q) = %v, want nil or ErrAudienceBudget", audience, err)
			}
			m, err := c.RenderMessage(OfferData{Customer: cu, Store: store, DistanceM: 3000, CouponCode: "ABC", ExpiresAt: start})
			if err == nil && (m.Body == text && strings.Contains(text, "{{") || len(m.Title) > MaxTextBytes || len(m.Body) > MaxTextBytes) {
				t.Fatalf("RenderMessage(%q) = %+v", text, m)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("evaluating %q and rendering %q took %v", audience, text, took)
			}
		}
	})
}
