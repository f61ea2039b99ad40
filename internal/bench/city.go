package bench

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// City is the bench's world: stores, rules and customers, all made from
// one seed, so that two runs (and the baseline) see the same city.
type City struct {
	CenterLat, CenterLng float64
	RadiusM              float64
	Stores               []*rules.Store
	Rules                []*rules.Rule
	Customers            int
	Seed                 uint64
}

// Store categories; each store carries its category and its brand as tags.
var categories = []string{"coffee", "bakery", "pharmacy", "grocery", "fashion", "electronics", "books", "fastfood", "fuel", "beauty"}

// brandsPer is how many brands share a category.
const brandsPer = 12

func brandTag(cat string, b int) string { return fmt.Sprintf("%s-%02d", cat, b) }

// offset moves a point by north and east metres.
func offset(lat, lng, northM, eastM float64) (float64, float64) {
	const mPerDeg = 111194.9
	return lat + northM/mPerDeg, lng + eastM/(mPerDeg*math.Cos(lat*math.Pi/180))
}

// place picks a point the way shops and people spread in a metro area:
// a share (crowdPct) crowds the centre (a normal spread of sigma metres),
// the rest spreads evenly over the whole disc.
func (c *City) place(rng *rand.Rand, crowdPct int, sigma float64) (float64, float64) {
	for {
		var n, e float64
		if rng.IntN(100) < crowdPct {
			n, e = rng.NormFloat64()*sigma, rng.NormFloat64()*sigma
		} else {
			r := c.RadiusM * math.Sqrt(rng.Float64())
			a := rng.Float64() * 2 * math.Pi
			n, e = r*math.Cos(a), r*math.Sin(a)
		}
		if n*n+e*e <= c.RadiusM*c.RadiusM {
			return offset(c.CenterLat, c.CenterLng, n, e)
		}
	}
}

// ring is a convex polygon of k corners around a point, its radius
// varying by up to a fifth so that it is not a regular shape.
func ring(rng *rand.Rand, lat, lng, radiusM float64, k int) [][2]float64 {
	out := make([][2]float64, k)
	for i := range out {
		a := 2 * math.Pi * float64(i) / float64(k)
		r := radiusM * (0.9 + 0.2*rng.Float64())
		la, ln := offset(lat, lng, r*math.Cos(a), r*math.Sin(a))
		out[i] = [2]float64{la, ln}
	}
	return out
}

// NewCity makes a city of about the given number of stores around a centre:
// shops of ten categories at a metro's density (circles of 50 to 150 m,
// denser in the centre), malls (polygons of 150 to 250 m with small
// tenants inside), and a few large polygons (stations, airports, stadiums
// of 800 to 1,500 m); rules across brands, categories, single stores and
// priorities; customers are made on demand (Customer).
func NewCity(seed uint64, stores, ruleCount, customers int) *City {
	c := &City{CenterLat: 52.52, CenterLng: 13.405, RadiusM: 30000, Customers: customers, Seed: seed}
	rng := rand.New(rand.NewPCG(seed, 1))
	add := func(s *rules.Store) {
		s.ID = fmt.Sprintf("s-%05d", len(c.Stores))
		s.Timezone = "Europe/Berlin"
		if s.Name == "" {
			s.Name = fmt.Sprintf("%s %d", s.Tags[1], len(c.Stores))
		}
		c.Stores = append(c.Stores, s)
	}
	shop := func(lat, lng, radius float64) *rules.Store {
		cat := categories[rng.IntN(len(categories))]
		s := &rules.Store{Lat: &lat, Lng: &lng, RadiusM: math.Round(radius), Tags: []string{cat, brandTag(cat, rng.IntN(brandsPer))}}
		if rng.IntN(10) < 3 {
			s.OpeningHours = map[string][]string{}
			for _, d := range []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"} {
				s.OpeningHours[d] = []string{"06:00-23:00"}
			}
		}
		return s
	}
	large := max(1, stores/2000)
	malls := max(1, stores/500)
	for i := 0; i < large && len(c.Stores) < stores; i++ {
		lat, lng := c.place(rng, 50, 12000)
		kind := []string{"station", "airport", "stadium"}[i%3]
		add(&rules.Store{Name: fmt.Sprintf("%s %d", kind, i), Lat: &lat, Lng: &lng,
			Polygon: ring(rng, lat, lng, 800+700*rng.Float64(), 12), Tags: []string{kind, "landmark"}})
	}
	for i := 0; i < malls && len(c.Stores) < stores; i++ {
		lat, lng := c.place(rng, 50, 6000)
		r := 150 + 100*rng.Float64()
		add(&rules.Store{Name: fmt.Sprintf("mall %d", i), Lat: &lat, Lng: &lng,
			Polygon: ring(rng, lat, lng, r, 8), Tags: []string{"mall", "landmark"}})
		for t := 0; t < 20 && len(c.Stores) < stores; t++ {
			d, a := 0.6*r*math.Sqrt(rng.Float64()), rng.Float64()*2*math.Pi
			tl, tg := offset(lat, lng, d*math.Cos(a), d*math.Sin(a))
			add(shop(tl, tg, 30))
		}
	}
	for len(c.Stores) < stores {
		lat, lng := c.place(rng, 50, 8000)
		add(shop(lat, lng, 50+100*rng.Float64()))
	}

	for i := 0; i < ruleCount; i++ {
		if i == 0 {
			c.Rules = append(c.Rules, welcome())
			continue
		}
		c.Rules = append(c.Rules, c.rule(rng, i))
	}
	return c
}

// audiences are the kinds of audience marketers write.
var audiences = []string{
	"",
	"",
	"customer.attributes.tier == 'gold'",
	"customer.attributes.tier in ['gold', 'silver']",
	"'commuter' in customer.segments",
	"'student' in customer.segments && context.local_hour < 18",
	"customer.attributes.visits_30d >= 3",
	"visit.first_at_store",
	"customer.locale == 'de' && customer.attributes.tier != 'bronze'",
	"context.local_weekday in ['sat', 'sun'] || customer.attributes.tier == 'gold'",
}

// welcome is the city's catch-all: a coffee on the house at a
// customer's first visit to any store, open or not.
func welcome() *rules.Rule {
	enabled, anyHour := true, false
	return &rules.Rule{
		ID: "r-welcome", Name: "Welcome", Tags: []string{"welcome"}, Enabled: &enabled, Priority: 1,
		Trigger:  rules.Trigger{On: rules.OnEnter},
		Audience: "visit.first_at_store",
		When:     &rules.When{StoreOpen: &anyHour},
		Caps:     rules.Caps{PerCustomerTotal: 1},
		Offer: rules.Offer{
			Title:     rules.Texts{{Lang: "de", Template: "Willkommen, {{.customer.first_name}}!"}, {Lang: "en", Template: "Welcome, {{.customer.first_name}}!"}},
			Body:      rules.Texts{{Lang: "de", Template: "Ein Kaffee geht bei {{.store.name}} auf uns."}, {Lang: "en", Template: "Coffee is on us at {{.store.name}}."}},
			ValidForS: 3600,
		},
	}
}

func (c *City) rule(rng *rand.Rand, i int) *rules.Rule {
	cat := categories[rng.IntN(len(categories))]
	enabled := true
	r := &rules.Rule{
		ID: fmt.Sprintf("r-%04d", i), Name: fmt.Sprintf("%s offer %d", cat, i), Tags: []string{cat},
		Enabled: &enabled, Priority: 1 + rng.IntN(100),
		Trigger:  rules.Trigger{On: rules.OnEnter},
		Audience: audiences[rng.IntN(len(audiences))],
		Caps:     rules.Caps{PerCustomerPerDay: 1, Total: 1000000},
		Offer: rules.Offer{
			Title: rules.Texts{
				{Lang: "de", Template: "Hallo {{.customer.first_name}}!"},
				{Lang: "en", Template: "Hi {{.customer.first_name}}!"},
			},
			Body: rules.Texts{
				{Lang: "de", Template: "{{.store.name}} ist {{distance .distance_m}} entfernt: 20 % auf deinen Einkauf."},
				{Lang: "en", Template: "{{.store.name}} is {{distance .distance_m}} away: 20% off today."},
			},
			ValidForS: 3600,
		},
	}
	// Most offers are a brand's own, at its stores; some a whole
	// category's; some a few stores'; a few every landmark's.
	switch k := rng.IntN(100); {
	case k < 65:
		r.Trigger.Stores = &rules.StoreSelector{Tags: []string{brandTag(cat, rng.IntN(brandsPer))}}
	case k < 75:
		r.Trigger.Stores = &rules.StoreSelector{Tags: []string{cat}}
	case k < 97:
		sel := &rules.StoreSelector{}
		for n := 1 + rng.IntN(5); n > 0; n-- {
			sel.IDs = append(sel.IDs, c.Stores[rng.IntN(len(c.Stores))].ID)
		}
		r.Trigger.Stores = sel
	default:
		r.Trigger.Stores = &rules.StoreSelector{Tags: []string{"landmark"}}
	}
	switch k := rng.IntN(10); {
	case k == 0:
		r.Trigger.On, r.Trigger.DwellS = rules.OnDwell, 60
	case k == 1:
		r.Trigger.On = rules.OnExit
	}
	if rng.IntN(5) == 0 {
		r.HoldoutPct = 10
	}
	withVariants(r, i)
	return r
}

// DropVariants turns the city's experiments back into plain offers (the
// first variant's texts), to measure what variants cost.
func (c *City) DropVariants() {
	for _, r := range c.Rules {
		if len(r.Offer.Variants) > 0 {
			r.Offer.Title, r.Offer.Body = r.Offer.Variants[0].Title, r.Offer.Variants[0].Body
			r.Offer.Variants, r.Offer.Selection, r.Offer.Bandit = nil, "", nil
		}
	}
}

// withVariants makes every fifth rule an experiment of two or three
// variants (docs/experiments.md), and every twentieth a bandit learning
// apart by tier; by the rule's number, so that the rest of the city is
// drawn as before.
func withVariants(r *rules.Rule, i int) {
	if i%5 != 0 {
		return
	}
	offers := []struct{ id, de, en string }{
		{"pct", "20 % auf deinen Einkauf.", "20% off today."},
		{"size", "eine Größe größer, gratis.", "a free size-up."},
		{"two", "zwei zum Preis von einem.", "two for one."},
	}
	n := 2 + i/5%2
	for _, o := range offers[:n] {
		r.Offer.Variants = append(r.Offer.Variants, rules.Variant{ID: o.id, Discount: o.id, Weight: 1,
			Title: r.Offer.Title,
			Body: rules.Texts{
				{Lang: "de", Template: "{{.store.name}} ist {{distance .distance_m}} entfernt: " + o.de},
				{Lang: "en", Template: "{{.store.name}} is {{distance .distance_m}} away: " + o.en},
			}})
	}
	r.Offer.Title, r.Offer.Body = nil, nil
	if i%20 == 0 {
		r.Offer.Selection = rules.SelectBandit
		r.Offer.Bandit = &rules.Bandit{SegmentBy: "customer.attributes.tier", Segments: []string{"gold", "silver", "bronze"}}
	}
}

var firstNames = []string{"Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Jonas", "Lea", "Lukas", "Mia", "Noah", "Sophie", "Tim", "Zoe"}
var drinks = []string{"Flat White", "Latte", "Espresso", "Chai", "Cappuccino"}
var segments = []string{"commuter", "student", "family", "tourist"}

// CustomerID and DeviceID name the bench's customer n and their phone.
func CustomerID(n int) string { return fmt.Sprintf("c-%07d", n) }
func DeviceID(n int) string   { return fmt.Sprintf("d-%07d", n) }

// Customer makes customer n's profile and phone, the same every time.
func (c *City) Customer(n int) (*rules.Customer, *rules.Device) {
	rng := rand.New(rand.NewPCG(c.Seed, uint64(n)+1<<32))
	locale := "de"
	if rng.IntN(5) < 2 {
		locale = "en"
	}
	var segs []string
	for _, s := range segments {
		if rng.IntN(4) == 0 {
			segs = append(segs, s)
		}
	}
	tier := []string{"bronze", "bronze", "silver", "gold"}[rng.IntN(4)]
	cust := &rules.Customer{
		ID: CustomerID(n), FirstName: firstNames[rng.IntN(len(firstNames))], Locale: locale, Timezone: "Europe/Berlin",
		Consent:  rules.Consent{Location: rng.IntN(100) < 95, Push: rng.IntN(100) < 85},
		Segments: segs,
		Attributes: map[string]any{
			"tier": tier, "favorite_drink": drinks[rng.IntN(len(drinks))], "visits_30d": float64(rng.IntN(12)),
		},
	}
	// An FCM registration token is about 160 characters.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	tok := make([]byte, 163)
	for i := range tok {
		tok[i] = alphabet[rng.IntN(len(alphabet))]
	}
	tok[22] = ':'
	platform := "android"
	if rng.IntN(5) < 2 {
		platform = "ios"
	}
	return cust, &rules.Device{ID: DeviceID(n), FCMToken: string(tok), Platform: platform}
}

// CircleIndexBytes is the geo index's size per circular store: an index
// of the city's circles alone, built the way the server builds its own.
func (c *City) CircleIndexBytes() (float64, error) {
	var fences []geo.Fence
	for _, s := range c.Stores {
		if len(s.Polygon) == 0 {
			fences = append(fences, s.Fence())
		}
	}
	if len(fences) == 0 {
		return 0, nil
	}
	ix, err := geo.NewIndex(fences)
	if err != nil {
		return 0, err
	}
	return float64(ix.Bytes()) / float64(ix.Len()), nil
}
