package main

import (
	"context"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

func ptr[T any](v T) *T { return &v }

// demoStores are real places in Berlin and Hamburg.
var demoStores = []rules.Store{
	{ID: "s-alex", Name: "Alexanderplatz", Lat: ptr(52.5219), Lng: ptr(13.4132), RadiusM: 100,
		Tags: []string{"coffee", "berlin"}, Timezone: "Europe/Berlin"},
	{ID: "s-hackescher", Name: "Hackescher Markt", Lat: ptr(52.5225), Lng: ptr(13.4025), RadiusM: 80,
		Tags: []string{"coffee", "berlin"}, Timezone: "Europe/Berlin",
		OpeningHours: map[string][]string{"mon": {"07:00-20:00"}, "tue": {"07:00-20:00"}, "wed": {"07:00-20:00"},
			"thu": {"07:00-20:00"}, "fri": {"07:00-22:00"}, "sat": {"09:00-22:00"}, "sun": {"10:00-18:00"}}},
	{ID: "s-potsdamer", Name: "Potsdamer Platz", Lat: ptr(52.5096), Lng: ptr(13.3759), RadiusM: 150,
		Tags: []string{"coffee", "berlin", "mall"}, Timezone: "Europe/Berlin"},
	{ID: "s-jungfernstieg", Name: "Jungfernstieg", Lat: ptr(53.5534), Lng: ptr(9.9925), RadiusM: 100,
		Tags: []string{"coffee", "hamburg"}, Timezone: "Europe/Berlin"},
	{ID: "s-hh-hbf", Name: "Hamburg Hauptbahnhof", Lat: ptr(53.5530), Lng: ptr(10.0069), RadiusM: 200,
		Tags: []string{"coffee", "hamburg", "station"}, Timezone: "Europe/Berlin"},
}

var demoRules = []rules.Rule{
	{ID: "gold-flat-white", Name: "Flat White for gold members", Priority: 10,
		Trigger: rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{Tags: []string{"coffee"}}},
		// No promotion for two weeks after a bad visit: "sorry-coffee"
		// speaks to a detractor instead.
		Audience: "customer.attributes.tier == 'gold' && (customer.last_nps < 0 || customer.last_nps > 6 || visit.days_since_feedback > 14)",
		Caps:     rules.Caps{PerCustomerPerDay: 1},
		Offer: rules.Offer{
			Title: rules.Texts{
				{Lang: "de", Template: "Hallo {{.customer.first_name}}!"},
				{Lang: "en", Template: "Hello {{.customer.first_name}}!"},
			},
			Body: rules.Texts{
				{Lang: "de", Template: "{{.store.name}} ist {{.distance_m}} m entfernt: 20 % auf deinen {{.customer.attributes.favorite_drink}}."},
				{Lang: "en", Template: "{{.store.name}} is {{.distance_m}} m away: 20% off your {{.customer.attributes.favorite_drink}}."},
			},
			ValidForS: 3600}},
	{ID: "welcome-coffee", Name: "Welcome coffee", Priority: 5,
		Trigger: rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{Tags: []string{"coffee"}}},
		Caps:    rules.Caps{PerCustomerPerDay: 1},
		Offer: rules.Offer{
			Title: rules.Texts{
				{Lang: "en", Template: "A coffee on us, {{.customer.first_name}}"},
				{Lang: "de", Template: "Ein Kaffee geht auf uns, {{.customer.first_name}}"},
			},
			Body: rules.Texts{
				{Lang: "en", Template: "Show code {{.coupon.code}} at {{.store.name}}."},
				{Lang: "de", Template: "Zeig den Code {{.coupon.code}} bei {{.store.name}}."},
			},
			ValidForS: 1800}},
	// The customer's voice (docs/feedback.md): a question after a visit of
	// five minutes or more, and a recovery offer for a customer whose last
	// answer was a detractor's, for two weeks.
	{ID: "how-was-it", Name: "How was your visit?", Priority: 3,
		Trigger:  rules.Trigger{On: rules.OnExit, Stores: &rules.StoreSelector{Tags: []string{"coffee"}}},
		Audience: "visit.duration_s >= 300",
		Offer: rules.Offer{Kind: rules.KindFeedback, Question: &rules.Question{Scale: rules.ScaleNPS, Comment: true},
			Title: rules.Texts{
				{Lang: "de", Template: "Wie war es bei {{.store.name}}?"},
				{Lang: "en", Template: "How was {{.store.name}}?"},
			},
			Body: rules.Texts{
				{Lang: "de", Template: "Wie wahrscheinlich empfiehlst du uns weiter, von 0 bis 10?"},
				{Lang: "en", Template: "How likely are you to recommend us, from 0 to 10?"},
			}}},
	{ID: "sorry-coffee", Name: "Sorry: a coffee on us", Priority: 20,
		Trigger:  rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{Tags: []string{"coffee"}}},
		Audience: "customer.last_nps >= 0 && customer.last_nps <= 6 && visit.days_since_feedback <= 14",
		Caps:     rules.Caps{PerCustomerTotal: 1},
		Offer: rules.Offer{
			Title: rules.Texts{
				{Lang: "de", Template: "Das tut uns leid, {{.customer.first_name}}"},
				{Lang: "en", Template: "We are sorry, {{.customer.first_name}}"},
			},
			Body: rules.Texts{
				{Lang: "de", Template: "Dein nächster Kaffee bei {{.store.name}} geht auf uns."},
				{Lang: "en", Template: "Your next coffee at {{.store.name}} is on us."},
			},
			ValidForS: 7 * 24 * 3600}},
	{ID: "station-goodbye", Name: "Goodbye at the station", Priority: 1,
		Trigger: rules.Trigger{On: rules.OnExit, Stores: &rules.StoreSelector{IDs: []string{"s-hh-hbf"}}},
		Caps:    rules.Caps{PerCustomerPerDay: 1},
		Offer: rules.Offer{
			Title: rules.Texts{
				{Lang: "de", Template: "Gute Reise, {{.customer.first_name}}!"},
				{Lang: "en", Template: "Safe travels, {{.customer.first_name}}!"},
			},
			Body: rules.Texts{
				{Lang: "de", Template: "Für die Rückfahrt: ein Croissant gratis bei {{.store.name}}."},
				{Lang: "en", Template: "For your way back: a free croissant at {{.store.name}}."},
			},
			ValidForS: 7 * 24 * 3600}},
}

// seedDemo writes the demo stores, rules and customer. It overwrites
// documents of the same ids and nothing else.
func seedDemo(ctx context.Context, live *rules.Live, customers *engine.Customers) error {
	cat := live.Catalog()
	for _, s := range demoStores {
		if _, err := cat.PutStore(ctx, &s); err != nil {
			return err
		}
	}
	// Rules are checked against the stores they name: load those first.
	if err := live.Refresh(ctx); err != nil {
		return err
	}
	for _, r := range demoRules {
		if err := cat.PutRule(ctx, &r, false); err != nil {
			return err
		}
	}
	anna := rules.Customer{ID: "c-42", FirstName: "Anna", Locale: "de", Timezone: "Europe/Berlin",
		Consent:    rules.Consent{Location: true, Push: true, Feedback: true},
		Segments:   []string{"commuter"},
		Attributes: map[string]any{"tier": "gold", "favorite_drink": "Flat White", "visits_30d": 4.0}}
	if _, err := customers.Put(ctx, &anna); err != nil {
		return err
	}
	_, err := customers.PutDevice(ctx, "c-42", &rules.Device{ID: "d-1", FCMToken: "demo-fcm-token-anna", Platform: "android"})
	return err
}
