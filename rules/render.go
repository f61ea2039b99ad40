package rules

import (
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"golang.org/x/text/language"
)

// templateFields is what a template can name, from its root: a nil value
// is a leaf, a map a record, and anyKey a record whose keys are free (the
// customer's attributes).
var anyKey = map[string]any{"*": nil}

var templateFields = map[string]any{
	"customer": map[string]any{
		"id": nil, "first_name": nil, "last_name": nil, "locale": nil, "timezone": nil,
		"segments": nil, "attributes": anyKey,
		"consent": map[string]any{"location": nil, "push": nil},
	},
	"store": map[string]any{
		"id": nil, "name": nil, "tags": nil, "timezone": nil, "radius_m": nil, "lat": nil, "lng": nil,
	},
	"distance_m": nil,
	"coupon":     map[string]any{"code": nil, "expires_at": nil},
	"rule":       map[string]any{"id": nil, "name": nil},
	"visit": map[string]any{"store_visits": nil, "visits": nil, "first_at_store": nil,
		"days_since_store": nil, "days_since_any": nil, "offers_received": nil, "redeemed": nil, "days_since_redeemed": nil},
}

// checkTemplateFields names every field a template uses that does not
// exist, such as {{.customer.firstname}}. Inside range and with the dot
// moves, so only paths from the root are checked there ($.customer...).
func checkTemplateFields(t *template.Template) []string {
	var bad []string
	check := func(path []string) {
		var node any = templateFields
		for i, p := range path {
			m, ok := node.(map[string]any)
			if !ok {
				bad = append(bad, fmt.Sprintf("{{.%s}}: %s has no fields", strings.Join(path, "."), strings.Join(path[:i], ".")))
				return
			}
			if _, free := m["*"]; free {
				return
			}
			next, ok := m[p]
			if !ok {
				where := "the template"
				if i > 0 {
					where = strings.Join(path[:i], ".")
				}
				bad = append(bad, fmt.Sprintf("{{.%s}}: %s has no field %q", strings.Join(path, "."), where, p))
				return
			}
			node = next
		}
	}
	ranges := 0 // ranges around the node walked
	var walk func(n parse.Node, rooted bool)
	walk = func(n parse.Node, rooted bool) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c, rooted)
			}
		case *parse.ActionNode:
			walk(n.Pipe, rooted)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c, rooted)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a, rooted)
			}
		case *parse.FieldNode:
			if rooted {
				check(n.Ident)
			}
		case *parse.VariableNode:
			if len(n.Ident) > 1 && n.Ident[0] == "$" {
				check(n.Ident[1:])
			}
		case *parse.IfNode:
			walk(n.Pipe, rooted)
			walk(n.List, rooted)
			walk(n.ElseList, rooted)
		case *parse.RangeNode:
			// A range goes over a list of the data, once: a range over a
			// number ({{range 1000000000}}) or a range within a range
			// could keep a ping waiting for ever.
			if ranges > 0 {
				bad = append(bad, "a range inside a range is not allowed")
			}
			if !overData(n.Pipe) {
				bad = append(bad, "range goes only over a list of the data, such as {{range .customer.segments}}")
			}
			walk(n.Pipe, rooted)
			ranges++
			walk(n.List, false)
			ranges--
			walk(n.ElseList, rooted)
		case *parse.WithNode:
			walk(n.Pipe, rooted)
			walk(n.List, false)
			walk(n.ElseList, rooted)
		case *parse.TemplateNode:
			walk(n.Pipe, rooted)
		}
	}
	if t.Tree != nil {
		walk(t.Tree.Root, true)
	}
	return bad
}

// overData reports whether a range's pipeline is a plain path into the
// data ({{range .customer.segments}}, {{range $i, $s := $.customer.segments}}).
func overData(p *parse.PipeNode) bool {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.FieldNode:
		return true
	case *parse.VariableNode:
		return len(a.Ident) > 1
	}
	return false
}

// trialRender runs a template, when its rule is saved, for a customer with
// an empty profile and for one with every field set, so that a template
// that would fail at send time ({{index .customer.segments 3}}) is refused
// then, not discovered on a customer's phone.
func trialRender(t *template.Template, tag language.Tag) string {
	lat, lng := 52.52, 13.40
	store := &Store{ID: "s", Name: "Store", Lat: &lat, Lng: &lng, RadiusM: 100, Tags: []string{"t"}}
	samples := []struct {
		who string
		c   *Customer
	}{
		{"an empty profile", &Customer{ID: "c"}},
		{"a full profile", &Customer{ID: "c", FirstName: "Anna", LastName: "B", Locale: "de", Timezone: "Europe/Berlin",
			Segments: []string{"s"}, Attributes: map[string]any{"x": "y"}, Consent: Consent{true, true}}},
	}
	c := &Compiled{Rule: &Rule{ID: "r", Name: "Rule"}}
	for _, s := range samples {
		data := c.templateData(OfferData{Customer: s.c, Store: store, DistanceM: 80, CouponCode: "K7QM2XPA9F3D", ExpiresAt: time.Now()})
		if _, err := execute(t, templateHelpers(tag, time.UTC), data); err != nil {
			return fmt.Sprintf("the template fails for a customer with %s: %s", s.who, templateError(err))
		}
	}
	return ""
}

// Message is an offer's text for one customer.
type Message struct {
	Title string
	Body  string
	Lang  string
}

// OfferData is what an offer's templates are rendered with.
type OfferData struct {
	Customer   *Customer
	Store      *Store
	DistanceM  int
	CouponCode string
	ExpiresAt  time.Time
	Visit      *VisitEnv
}

// Render writes the offer's title and body in the customer's language:
// the exact locale, else its base language (de-AT → de), else the rule's
// first language. A template that fails to run (which validation makes
// rare) falls back to the first language, then to the bare template
// text, so rendering always yields a message.
func (c *Compiled) Render(d OfferData) Message {
	data := c.templateData(d)
	loc := d.Customer.Location()
	i := pickLanguage(c.title, d.Customer.Locale)
	run := func(texts []compiledText, j int) (string, error) {
		return execute(texts[j].tmpl, templateHelpers(texts[j].tag, loc), data)
	}
	title, err1 := run(c.title, i)
	body, err2 := run(c.body, matchLang(c.body, c.title[i].tag))
	if (err1 != nil || err2 != nil) && i != 0 {
		i = 0
		title, err1 = run(c.title, 0)
		body, err2 = run(c.body, matchLang(c.body, c.title[0].tag))
	}
	if err1 != nil {
		title = c.Rule.Offer.Title[0].Template
	}
	if err2 != nil {
		body = c.Rule.Offer.Body[0].Template
	}
	return Message{Title: title, Body: body, Lang: c.title[i].tag.String()}
}

// ValidFor is how long a coupon of this rule stays valid.
func (c *Compiled) ValidFor() time.Duration { return c.validFor }

func (c *Compiled) templateData(d OfferData) map[string]any {
	cu := d.Customer
	attrs := cu.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	s := d.Store
	var lat, lng float64
	if s.Lat != nil {
		lat, lng = *s.Lat, *s.Lng
	}
	return map[string]any{
		"customer": map[string]any{
			"id": cu.ID, "first_name": cu.FirstName, "last_name": cu.LastName, "locale": cu.Locale,
			"timezone": cu.Timezone, "segments": cu.Segments, "attributes": attrs,
			"consent": map[string]any{"location": cu.Consent.Location, "push": cu.Consent.Push},
		},
		"store": map[string]any{
			"id": s.ID, "name": s.Name, "tags": s.Tags, "timezone": s.Timezone,
			"radius_m": s.RadiusM, "lat": lat, "lng": lng,
		},
		"distance_m": d.DistanceM,
		"coupon":     map[string]any{"code": d.CouponCode, "expires_at": d.ExpiresAt.UTC().Format(time.RFC3339)},
		"rule":       map[string]any{"id": c.Rule.ID, "name": c.Rule.Name},
		"visit":      visitData(d.Visit),
	}
}

func visitData(v *VisitEnv) map[string]any {
	if v == nil {
		v = &VisitEnv{DaysSinceStore: -1, DaysSinceAny: -1, DaysSinceRedeemed: -1}
	}
	return map[string]any{
		"store_visits": v.StoreVisits, "visits": v.Visits, "first_at_store": v.FirstAtStore,
		"days_since_store": v.DaysSinceStore, "days_since_any": v.DaysSinceAny, "offers_received": v.OffersReceived,
		"redeemed": v.Redeemed, "days_since_redeemed": v.DaysSinceRedeemed,
	}
}

// execute runs a template with helpers bound to the text's language and
// the customer's time zone.
// MaxTextBytes bounds a rendered title or body: FCM takes at most 4 KB
// for a whole message.
const MaxTextBytes = 4096

// errTooLong stops a template whose text outgrows MaxTextBytes.
var errTooLong = fmt.Errorf("the text is longer than %d bytes", MaxTextBytes)

// cappedWriter keeps what a template writes, up to max bytes.
type cappedWriter struct {
	strings.Builder
	max int
}

func (w *cappedWriter) Write(p []byte) (int, error) {
	if w.Len()+len(p) > w.max {
		return 0, errTooLong
	}
	return w.Builder.Write(p)
}

func execute(t *template.Template, helpers template.FuncMap, data any) (string, error) {
	t, err := t.Clone()
	if err != nil {
		return "", err
	}
	b := cappedWriter{max: MaxTextBytes}
	if err := t.Funcs(helpers).Execute(&b, data); err != nil {
		return "", err
	}
	// A customer attribute the profile lacks renders as nothing, not as
	// text/template's "<no value>".
	return strings.ReplaceAll(b.String(), "<no value>", ""), nil
}

func pickLanguage(texts []compiledText, locale string) int {
	if locale == "" {
		return 0
	}
	want, err := language.Parse(locale)
	if err != nil {
		return 0
	}
	for i, t := range texts {
		if t.tag == want {
			return i
		}
	}
	base, _ := want.Base()
	for i, t := range texts {
		if b, _ := t.tag.Base(); b == base {
			return i
		}
	}
	return 0
}

func matchLang(texts []compiledText, tag language.Tag) int {
	for i, t := range texts {
		if t.tag == tag {
			return i
		}
	}
	return 0
}
