package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func goodRule() *Rule {
	return &Rule{
		ID: "latte", Name: "Latte", Priority: 10,
		Trigger:  Trigger{On: OnEnter, Stores: &StoreSelector{Tags: []string{"coffee"}}},
		Audience: "customer.attributes.tier == 'gold'",
		Caps:     Caps{PerCustomerPerDay: 1},
		Offer: Offer{
			Title: Texts{{"de", "Hallo {{.customer.first_name}}!"}, {"en", "Hi {{.customer.first_name}}!"}},
			Body:  Texts{{"de", "{{.store.name}} ist {{.distance_m}} m entfernt"}, {"en", "{{.store.name}} is {{.distance_m}} m away"}},
		},
	}
}

func TestCompileFaults(t *testing.T) {
	tests := []struct {
		name         string
		mutate       func(r *Rule)
		field        string
		msg          string
		precondition bool
	}{
		{"missing name", func(r *Rule) { r.Name = "" }, "name", "required", false},
		{"unknown trigger", func(r *Rule) { r.Trigger.On = "arrive" }, "trigger.on", `not "arrive"`, false},
		{"missing trigger", func(r *Rule) { r.Trigger.On = "" }, "trigger.on", "required", false},
		{"dwell without dwell_s", func(r *Rule) { r.Trigger.On = OnDwell }, "trigger.dwell_s", "needs dwell_s", false},
		{"dwell_s on enter", func(r *Rule) { r.Trigger.DwellS = 300 }, "trigger.dwell_s", "belongs to", false},
		{"empty selector", func(r *Rule) { r.Trigger.Stores = &StoreSelector{} }, "trigger.stores", "no ids and no tags", false},
		{"bad store id", func(r *Rule) { r.Trigger.Stores = &StoreSelector{IDs: []string{"ok", "no spaces"}} }, "trigger.stores.ids[1]", "may only hold", false},
		{"negative cap", func(r *Rule) { r.Caps.PerCustomerPerDay = -1 }, "caps.per_customer_per_day", "0 (no cap) or more", false},
		{"validity too short", func(r *Rule) { r.Offer.ValidForS = 5 }, "offer.valid_for_s", "between 60", false},
		{"expression syntax", func(r *Rule) { r.Audience = "customer.attributes.tier ==" }, "audience", "", true},
		{"expression unknown field", func(r *Rule) { r.Audience = "customer.tier == 'gold'" }, "audience", "customer has no field tier", true},
		{"expression not bool", func(r *Rule) { r.Audience = "customer.first_name" }, "audience", "bool", true},
		{"template syntax", func(r *Rule) { r.Offer.Title[0].Template = "Hallo {{.customer.first_name" }, "offer.title.de", "template", false},
		{"template unknown field", func(r *Rule) { r.Offer.Body[1].Template = "{{.store.nam}}" }, "offer.body.en", `store has no field "nam"`, true},
		{"template that fails at send time", func(r *Rule) { r.Offer.Body[1].Template = "{{index .customer.segments 3}}" }, "offer.body.en", "fails for a customer with an empty profile", true},
		{"template unknown root", func(r *Rule) { r.Offer.Body[1].Template = "{{.shop.name}}" }, "offer.body.en", `no field "shop"`, true},
		{"template range over a number", func(r *Rule) { r.Offer.Body[1].Template = "{{range 1000000000}}{{end}}" }, "offer.body.en", "only over a list of the data", true},
		{"template range within a range", func(r *Rule) {
			r.Offer.Body[1].Template = "{{range .customer.segments}}{{range $.customer.segments}}x{{end}}{{end}}"
		}, "offer.body.en", "range inside a range", true},
		{"template text too long", func(r *Rule) { r.Offer.Body[1].Template = strings.Repeat("x", MaxTextBytes+1) }, "offer.body.en", "longer than 4096 bytes", true},
		{"bad language", func(r *Rule) { r.Offer.Title[1].Lang = "english!" }, "offer.title.english!", "language tag", false},
		{"no title", func(r *Rule) { r.Offer.Title = nil }, "offer.title", "at least one language", false},
		{"languages differ", func(r *Rule) { r.Offer.Body = r.Offer.Body[:1] }, "offer.body", "same languages", false},
		{"empty text", func(r *Rule) { r.Offer.Title[0].Template = " " }, "offer.title.de", "empty", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := goodRule()
			tt.mutate(r)
			_, err := Compile(r)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Compile = %v, want a ValidationError", err)
			}
			f := ve.Faults[0]
			if f.Field != tt.field || !strings.Contains(f.Message, tt.msg) || f.Precondition != tt.precondition {
				t.Fatalf("fault %+v, want field %q, message containing %q, precondition %v", f, tt.field, tt.msg, tt.precondition)
			}
		})
	}
}

func TestCompileReportsEveryFaultAtOnce(t *testing.T) {
	r := goodRule()
	r.Name = ""
	r.Trigger.On = "x"
	r.Audience = "nope +"
	_, err := Compile(r)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Faults) != 3 {
		t.Fatalf("want 3 faults, got %v", err)
	}
	if ve.Precondition() {
		t.Fatal("a document with malformed fields is not only a precondition failure")
	}
}

func TestCompileDefaults(t *testing.T) {
	r := goodRule()
	c, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	if !r.IsEnabled() || r.Offer.ValidForS != DefaultValidForS || c.ValidFor(0) != time.Hour {
		t.Fatalf("defaults: enabled %v, valid_for_s %d", r.IsEnabled(), r.Offer.ValidForS)
	}
}

func TestAudience(t *testing.T) {
	r := goodRule()
	r.Audience = "customer.attributes.tier == 'gold' && context.local_hour < 11 && 'coffee' in store.tags"
	c, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	store := &Store{ID: "s", Name: "S", Tags: []string{"coffee"}}
	tests := []struct {
		name string
		tier any
		hour int
		want bool
	}{
		{"gold in the morning", "gold", 9, true},
		{"gold in the afternoon", "gold", 15, false},
		{"silver", "silver", 9, false},
		{"no tier attribute", nil, 9, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cu := &Customer{ID: "c", Attributes: map[string]any{}}
			if tt.tier != nil {
				cu.Attributes["tier"] = tt.tier
			}
			env := AudienceEnv{Customer: cu, Store: store, Context: map[string]any{"local_hour": tt.hour}}
			if got := c.Matches(&env); got != tt.want {
				t.Fatalf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRenderPicksLanguage(t *testing.T) {
	c, err := Compile(goodRule())
	if err != nil {
		t.Fatal(err)
	}
	store := &Store{ID: "s", Name: "Alexanderplatz"}
	tests := []struct {
		locale, title, body string
	}{
		{"de", "Hallo Anna!", "Alexanderplatz ist 37 m entfernt"},
		{"de-AT", "Hallo Anna!", "Alexanderplatz ist 37 m entfernt"},
		{"en-GB", "Hi Anna!", "Alexanderplatz is 37 m away"},
		{"fr", "Hallo Anna!", "Alexanderplatz ist 37 m entfernt"}, // the rule's first language
		{"", "Hallo Anna!", "Alexanderplatz ist 37 m entfernt"},
	}
	for _, tt := range tests {
		t.Run(tt.locale, func(t *testing.T) {
			m := c.Render(OfferData{Customer: &Customer{FirstName: "Anna", Locale: tt.locale}, Store: store, DistanceM: 37})
			if m.Title != tt.title || m.Body != tt.body {
				t.Fatalf("got %q / %q", m.Title, m.Body)
			}
		})
	}
}

// The fallback language is the offer's default_locale, whatever the order
// of the texts' keys (which a generated client does not keep); left out,
// it is the first language written, and filled in; one the texts lack is
// refused.
func TestDefaultLocale(t *testing.T) {
	var r Rule
	doc := `{"id": "r", "name": "R", "trigger": {"on": "enter"}, "offer": {
		"title": {"en": "Hi", "fr": "Salut", "de": "Hallo"}, "body": {"en": "x", "fr": "x", "de": "x"}}}`
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		t.Fatal(err)
	}
	render := func(r *Rule, locale string) string {
		c, err := Compile(r)
		if err != nil {
			t.Fatal(err)
		}
		return c.Render(OfferData{Customer: &Customer{Locale: locale}, Store: &Store{ID: "s"}}).Title
	}
	if got := render(&r, "es"); got != "Hi" || r.Offer.DefaultLocale != "en" {
		t.Fatalf("without default_locale: %q, filled in %q; want the first written, en", got, r.Offer.DefaultLocale)
	}
	r.Offer.DefaultLocale = "de"
	if got := render(&r, "es"); got != "Hallo" {
		t.Fatalf("default_locale de: %q", got)
	}
	if got := render(&r, "fr-CA"); got != "Salut" {
		t.Fatalf("the customer's own language comes first: %q", got)
	}
	r.Offer.DefaultLocale = "it"
	_, err := Compile(&r)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Faults[0].Field != "offer.default_locale" || !strings.Contains(ve.Faults[0].Message, "de, en, fr") {
		t.Fatalf("a default_locale the texts lack: %v", err)
	}
}

func TestRenderMissingAttributeIsEmpty(t *testing.T) {
	r := goodRule()
	r.Offer.Body = Texts{{"de", "Dein {{.customer.attributes.favorite_drink}}."}, {"en", "x"}}
	c, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	m := c.Render(OfferData{Customer: &Customer{Locale: "de"}, Store: &Store{}})
	if m.Body != "Dein ." {
		t.Fatalf("body %q", m.Body)
	}
}

func TestTextsKeepOrder(t *testing.T) {
	var r Rule
	doc := `{"offer": {"title": {"en": "A", "de": "B", "fr": "C"}}}`
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(r.Offer.Title)
	if string(out) != `{"en":"A","de":"B","fr":"C"}` {
		t.Fatalf("order lost: %s", out)
	}
	if err := json.Unmarshal([]byte(`{"offer": {"title": ["x"]}}`), &r); err == nil {
		t.Fatal("a list is not texts")
	}
}

func TestStoreNormalize(t *testing.T) {
	lat, lng, bad := 52.5, 13.4, 95.0
	tests := []struct {
		name  string
		s     Store
		field string
	}{
		{"ok", Store{ID: "s", Name: "S", Lat: &lat, Lng: &lng}, ""},
		{"no lat", Store{ID: "s", Name: "S", Lng: &lng}, "lat"},
		{"lat out of range", Store{ID: "s", Name: "S", Lat: &bad, Lng: &lng}, "lat"},
		{"radius too big", Store{ID: "s", Name: "S", Lat: &lat, Lng: &lng, RadiusM: 60000}, "radius_m"},
		{"radius too small", Store{ID: "s", Name: "S", Lat: &lat, Lng: &lng, RadiusM: 5}, "radius_m"},
		{"bad zone", Store{ID: "s", Name: "S", Lat: &lat, Lng: &lng, Timezone: "Mars/Olympus"}, "timezone"},
		{"bad day", Store{ID: "s", Name: "S", Lat: &lat, Lng: &lng, OpeningHours: map[string][]string{"monday": {"07:00-20:00"}}}, "opening_hours.monday"},
		{"bad span", Store{ID: "s", Name: "S", Lat: &lat, Lng: &lng, OpeningHours: map[string][]string{"mon": {"7-20"}}}, "opening_hours.mon[0]"},
		{"no name", Store{ID: "s", Lat: &lat, Lng: &lng}, "name"},
		{"polygon", Store{ID: "s", Name: "S", Polygon: [][2]float64{{52, 13}, {52, 13.01}, {52.01, 13.01}, {52, 13}}}, ""},
		{"polygon too few points", Store{ID: "s", Name: "S", Polygon: [][2]float64{{52, 13}, {52, 13.01}}}, "polygon"},
		{"polygon point out of range", Store{ID: "s", Name: "S", Polygon: [][2]float64{{52, 13}, {52, 13.01}, {95, 13.01}}}, "polygon[2]"},
		{"polygon across the antimeridian", Store{ID: "s", Name: "S", Polygon: [][2]float64{{0, 179.99}, {0, -179.99}, {0.01, -179.99}}}, "polygon[0]"},
		{"polygon crossing itself", Store{ID: "s", Name: "S", Polygon: [][2]float64{{52, 13}, {52.01, 13.01}, {52, 13.01}, {52.01, 13}}}, "polygon[2]"},
		{"polygon and radius", Store{ID: "s", Name: "S", RadiusM: 50, Polygon: [][2]float64{{52, 13}, {52, 13.01}, {52.01, 13.01}}}, "radius_m"},
		{"polygon too large", Store{ID: "s", Name: "S", Polygon: [][2]float64{{50, 13}, {50, 15}, {51.5, 14}}}, "polygon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Normalize()
			if tt.field == "" {
				if err != nil || (tt.s.Polygon == nil && tt.s.RadiusM != DefaultRadiusM) || tt.s.Lat == nil {
					t.Fatalf("err %v, radius %v", err, tt.s.RadiusM)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Faults[0].Field != tt.field {
				t.Fatalf("got %v, want a fault at %s", err, tt.field)
			}
		})
	}
}

func TestOpeningHours(t *testing.T) {
	s := &Store{Timezone: "Europe/Berlin", OpeningHours: map[string][]string{
		"mon": {"07:00-12:00", "14:00-20:00"},
		"fri": {"18:00-02:00"}, // past midnight into Saturday
	}}
	sc := compileSchedule(s)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	at := func(day, hour, min int) time.Time { return time.Date(2026, 11, day, hour, min, 0, 0, berlin) }
	tests := []struct {
		name string
		t    time.Time
		open bool
	}{
		{"monday morning", at(23, 8, 0), true},
		{"monday lunch break", at(23, 13, 0), false},
		{"monday closing minute", at(23, 20, 0), false},
		{"friday night", at(27, 23, 30), true},
		{"saturday after midnight", at(28, 1, 30), true},
		{"saturday morning", at(28, 9, 0), false},
		{"sunday", at(22, 12, 0), false},
		{"monday 8:00 Berlin given in UTC", at(23, 8, 0).UTC(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sc.openAt(tt.t); got != tt.open {
				t.Fatalf("openAt(%v) = %v", tt.t, got)
			}
		})
	}
	if always := compileSchedule(&Store{}); !always.openAt(time.Now()) {
		t.Fatal("a store without opening hours is always open")
	}
}

func TestWhen(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	lat, lng := 52.5, 13.4
	store := &StoreEntry{Store: &Store{ID: "s", Lat: &lat, Lng: &lng, Timezone: "Europe/Berlin"}}
	store.sched = compileSchedule(&Store{Timezone: "Europe/Berlin", OpeningHours: map[string][]string{
		"mon": {"07:00-20:00"}, "tue": {"07:00-20:00"}, "sat": {"09:00-18:00"}}})
	cust := &Customer{Timezone: "Europe/Berlin"}
	global := [2]int{21 * 60, 8 * 60}
	at := func(day, hour, min int) time.Time { return time.Date(2026, 11, day, hour, min, 0, 0, berlin) }
	from, until := at(23, 0, 0), at(29, 0, 0)
	f, tr := false, true
	five := 5
	tests := []struct {
		name string
		when *When
		t    time.Time
		want string
	}{
		{"no when, open", nil, at(23, 9, 0), WhenOK},
		{"no when, closed on sunday", nil, at(22, 12, 0), WhenStoreClosed},
		{"in the last 15 minutes before closing", nil, at(23, 19, 50), WhenStoreClosed},
		{"a 5 minute buffer allows 19:50", &When{ClosingBufferMin: &five}, at(23, 19, 50), WhenOK},
		{"store_open false ignores the hours", &When{StoreOpen: &f}, at(22, 12, 0), WhenOK},
		{"store_open true", &When{StoreOpen: &tr}, at(22, 12, 0), WhenStoreClosed},
		{"before from", &When{From: &from}, at(22, 12, 0), WhenSchedule},
		{"at until", &When{StoreOpen: &f, Until: &until}, at(29, 0, 0), WhenSchedule},
		{"inside from-until", &When{From: &from, Until: &until}, at(24, 9, 0), WhenOK},
		{"not one of the days", &When{Days: []string{"sat"}}, at(23, 9, 0), WhenSchedule},
		{"one of the days", &When{Days: []string{"mon", "sat"}}, at(23, 9, 0), WhenOK},
		{"outside the local time windows", &When{LocalTime: []string{"07:00-09:00", "17:00-19:00"}}, at(23, 12, 0), WhenSchedule},
		{"inside a local time window", &When{LocalTime: []string{"07:00-09:00", "17:00-19:00"}}, at(23, 8, 30), WhenOK},
		{"quiet hours in the morning", &When{StoreOpen: &f}, at(23, 7, 30), WhenQuiet},
		{"quiet hours at night", &When{StoreOpen: &f}, at(23, 23, 0), WhenQuiet},
		{"a rule narrows quiet hours", &When{StoreOpen: &f, QuietHours: "22:00-07:00"}, at(23, 7, 30), WhenOK},
		{"a rule cannot widen them", &When{StoreOpen: &f, QuietHours: "20:00-09:00"}, at(23, 20, 30), WhenOK},
		{"a widened rule still keeps the setting's", &When{StoreOpen: &f, QuietHours: "20:00-09:00"}, at(23, 21, 30), WhenQuiet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := goodRule()
			r.When = tt.when
			c, err := Compile(r)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Allowed(tt.t, store, cust, global); got != tt.want {
				t.Fatalf("Allowed(%v) = %q, want %q", tt.t, got, tt.want)
			}
		})
	}
}

func TestWhenFaults(t *testing.T) {
	from := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	until := from.Add(-time.Hour)
	big := 500
	r := goodRule()
	r.When = &When{From: &from, Until: &until, Days: []string{"mon", "someday"}, LocalTime: []string{"7-9"}, ClosingBufferMin: &big, QuietHours: "late"}
	_, err := Compile(r)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatal(err)
	}
	var fields []string
	for _, f := range ve.Faults {
		fields = append(fields, f.Field)
	}
	want := "when.until when.days[1] when.local_time[0] when.closing_buffer_min when.quiet_hours"
	if strings.Join(fields, " ") != want {
		t.Fatalf("faults at %v, want %s", fields, want)
	}
}

func TestTemplateHelpers(t *testing.T) {
	r := goodRule()
	r.Offer.Title = Texts{{"de", "{{.store.name}} in {{distance .distance_m}}"}, {"en", "{{.store.name}} in {{distance .distance_m}}"}, {"en-GB", "{{.store.name}}, {{distance .distance_m}}"}}
	r.Offer.Body = Texts{
		{"de", "Gültig bis {{clock .coupon.expires_at}}: 20 % auf {{default \"deinen Kaffee\" .customer.attributes.favorite_drink}}."},
		{"en", "Valid until {{clock .coupon.expires_at}}: 20% off {{default \"your coffee\" .customer.attributes.favorite_drink}}."},
		{"en-GB", "Valid until {{clock .coupon.expires_at}}."},
	}
	c, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC) // 11:30 in Berlin
	tests := []struct {
		locale string
		dist   int
		attrs  map[string]any
		title  string
		body   string
	}{
		{"de", 80, nil, "Alexanderplatz in 80 m", "Gültig bis 11:30 Uhr: 20 % auf deinen Kaffee."},
		{"de-AT", 1234, map[string]any{"favorite_drink": "Melange"}, "Alexanderplatz in 1,2 km", "Gültig bis 11:30 Uhr: 20 % auf Melange."},
		{"en-US", 1250, nil, "Alexanderplatz in 1.2 km", "Valid until 11:30 AM: 20% off your coffee."},
		{"en", 999, map[string]any{"favorite_drink": ""}, "Alexanderplatz in 999 m", "Valid until 11:30 AM: 20% off your coffee."},
		{"en-GB", 80, nil, "Alexanderplatz, 80 m", "Valid until 11:30."},
	}
	for _, tt := range tests {
		t.Run(tt.locale, func(t *testing.T) {
			cu := &Customer{Locale: tt.locale, Timezone: "Europe/Berlin", Attributes: tt.attrs}
			m := c.Render(OfferData{Customer: cu, Store: &Store{Name: "Alexanderplatz"}, DistanceM: tt.dist, ExpiresAt: expires})
			if m.Title != tt.title || m.Body != tt.body {
				t.Fatalf("got %q / %q\nwant %q / %q", m.Title, m.Body, tt.title, tt.body)
			}
		})
	}
}

// Stores of a snapshot with the same hours in the same timezone share
// one compiled schedule; other hours, or another timezone, have their
// own, and each store is open when its own hours say.
func TestStoresShareSchedules(t *testing.T) {
	lat, lng := 52.52, 13.40
	store := func(id, tz string, hours map[string][]string) *Store {
		return &Store{ID: id, Name: id, Lat: &lat, Lng: &lng, Timezone: tz, OpeningHours: hours}
	}
	early := map[string][]string{"mon": {"06:00-12:00"}, "tue": {"06:00-12:00"}}
	late := map[string][]string{"mon": {"14:00-22:00"}}
	snap, err := BuildSnapshot(1, []*Store{
		store("a", "Europe/Berlin", early), store("b", "Europe/Berlin", map[string][]string{"tue": {"06:00-12:00"}, "mon": {"06:00-12:00"}}),
		store("c", "Europe/Berlin", late), store("d", "America/New_York", early),
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := func(id string) *StoreEntry { return snap.Stores[snap.storePos[id]] }
	mon := func(e *StoreEntry) *[2]int { return &e.sched.open[time.Monday][0] }
	if mon(at("a")) != mon(at("b")) {
		t.Fatal("two stores with the same hours have a schedule each")
	}
	if mon(at("a")) == mon(at("c")) || mon(at("a")) == mon(at("d")) {
		t.Fatal("a store with other hours, or in another timezone, shares a schedule")
	}
	// Monday 2026-11-30, 10:00 in Berlin (09:00 UTC; 04:00 in New York).
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	for id, open := range map[string]bool{"a": true, "b": true, "c": false, "d": false} {
		if got := at(id).OpenAt(now); got != open {
			t.Errorf("store %s open at %s: %v, want %v", id, now, got, open)
		}
	}
}

// Stores where the same rules fire share one list of them, in the same
// order; a store with another rule, or none, has its own.
func TestStoresShareRuleLists(t *testing.T) {
	lat, lng := 52.52, 13.40
	store := func(id string, tags ...string) *Store {
		return &Store{ID: id, Name: id, Lat: &lat, Lng: &lng, Tags: tags}
	}
	coffee, one := goodRule(), goodRule()
	coffee.ID = "coffee"
	one.ID, one.Priority = "one", 20
	one.Trigger.Stores = &StoreSelector{IDs: []string{"c"}}
	snap, err := BuildSnapshot(1, []*Store{store("a", "coffee"), store("b", "coffee"), store("c", "coffee"), store("d", "tea")},
		[]*Rule{coffee, one}, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := func(id string) []*Compiled {
		pos, _ := snap.StoreByID(id)
		return snap.Candidates(pos, OnEnter)
	}
	ids := func(l []*Compiled) (out []string) {
		for _, c := range l {
			out = append(out, c.Rule.ID)
		}
		return out
	}
	a, b, c := at("a"), at("b"), at("c")
	if len(a) != 1 || len(b) != 1 || &a[0] != &b[0] {
		t.Fatalf("a and b: %v and %v, not one list", ids(a), ids(b))
	}
	if got := ids(c); len(got) != 2 || got[0] != "one" || got[1] != "coffee" || &c[0] == &a[0] {
		t.Fatalf("c: %v, want its own [one coffee]", got)
	}
	if d := at("d"); len(d) != 0 {
		t.Fatalf("d: %v, want none", ids(d))
	}
	if cap(a) != len(a) {
		t.Fatal("a shared list can be appended to in place")
	}
}

// Stores decoded for a snapshot keep what they said: compacting them
// (one string for a repeated tag or time zone, the coordinates in one
// array) changes no value, and each store's coordinates stay its own.
func TestCompactStoresKeepsValues(t *testing.T) {
	var stores, want []*Store
	for i := range 50 {
		lat, lng := 52.5+float64(i)/100, 13.4-float64(i)/100
		tz := []string{"Europe/Berlin", "Europe/Paris"}[i%2]
		st := &Store{ID: fmt.Sprint("s-", i), Name: "N", Timezone: tz, Tags: []string{"coffee", fmt.Sprint("brand-", i%3)},
			OpeningHours: map[string][]string{"mon": {"06:00-12:00", fmt.Sprintf("%02d:00-20:00", 13+i%2)}}}
		if i%5 == 0 {
			st.OpeningHours = nil
		}
		if i%7 != 3 { // some polygons: no point of their own
			st.Lat, st.Lng = &lat, &lng
		}
		stores = append(stores, st)
		w := *st
		w.Tags = slices.Clone(st.Tags)
		if st.OpeningHours != nil {
			w.OpeningHours = map[string][]string{"mon": slices.Clone(st.OpeningHours["mon"])}
		}
		if st.Lat != nil {
			la, ln := lat, lng
			w.Lat, w.Lng = &la, &ln
		}
		want = append(want, &w)
	}
	stores = compactStores(stores)
	for i, st := range stores {
		if !reflect.DeepEqual(st, want[i]) {
			t.Fatalf("store %d after compacting: %+v, want %+v", i, st, want[i])
		}
	}
	*stores[0].Lat = 1 // a store's coordinates are its own
	if *stores[1].Lat != *want[1].Lat || *stores[0].Lng != *want[0].Lng {
		t.Fatal("changing one store's latitude changed another's coordinates")
	}
	_ = append(stores[0].Tags, "tea") // and its tags: one array, but no room to grow into the next
	if !slices.Equal(stores[1].Tags, want[1].Tags) {
		t.Fatalf("appending to one store's tags changed the next's: %v", stores[1].Tags)
	}
}

// Each store's dwell thresholds: ascending, each once, none for a store
// without dwell rules, and no room to grow into the next store's.
func TestDwellLists(t *testing.T) {
	dwell := func(ss ...int) []*Compiled {
		var out []*Compiled
		for _, s := range ss {
			out = append(out, &Compiled{Rule: &Rule{Trigger: Trigger{On: OnDwell, DwellS: s}}})
		}
		return out
	}
	got := dwellLists([][]*Compiled{dwell(600, 300, 600), nil, dwell(120), dwell(900, 60)})
	want := [][]int{{300, 600}, nil, {120}, {60, 900}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("dwell lists %v, want %v", got, want)
	}
	_ = append(got[0], 1)
	if got[2][0] != 120 {
		t.Fatal("appending to one store's list changed the next's")
	}
}
