package rules

import (
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"golang.org/x/text/language"
)

// An offer's texts are marketers' code too, run for every offer issued,
// so they are written in a small language: fields, if, with and else,
// the helpers, the comparison and printing functions, and range over a
// list of the profile or the store, not nested. checkTemplate refuses
// everything else when a rule is saved or loaded, in every template the
// text defines; a render is bounded in output (MaxTextBytes) and time
// (renderTimeout) and sees at most MaxListLen items of any list; a text
// that fails is not sent, and its source never is.

// Template limits.
const (
	// MaxTemplateBytes bounds a text's source.
	MaxTemplateBytes = 8192
	// MaxTextBytes bounds a rendered title or body: FCM takes at most 4 KB
	// for a whole message.
	MaxTextBytes = 4096
	// renderTimeout bounds a render's time, checked as it writes.
	renderTimeout = 50 * time.Millisecond
	// maxPrintfWidth bounds a printf verb's width and precision.
	maxPrintfWidth = 64
)

// listField marks a field of the template's data that is a list a
// template may range over; freeField an attribute, which may be one.
type (
	listField struct{}
	freeField struct{}
)

// templateFields is what a template can name, from its root: a nil value
// is a leaf, a listField a list, a map a record, and anyKey a record whose
// keys are free (the customer's attributes, any of which may be a list).
var anyKey = map[string]any{"*": nil}

var templateFields = map[string]any{
	"customer": map[string]any{
		"id": nil, "first_name": nil, "last_name": nil, "locale": nil, "timezone": nil,
		"segments": listField{}, "attributes": anyKey,
		"consent": map[string]any{"location": nil, "push": nil},
	},
	"store": map[string]any{
		"id": nil, "name": nil, "tags": listField{}, "timezone": nil, "radius_m": nil, "lat": nil, "lng": nil,
	},
	"distance_m": nil,
	"coupon":     map[string]any{"code": nil, "expires_at": nil},
	"rule":       map[string]any{"id": nil, "name": nil},
	"visit": map[string]any{"store_visits": nil, "visits": nil, "first_at_store": nil,
		"days_since_store": nil, "days_since_any": nil, "offers_received": nil, "redeemed": nil, "days_since_redeemed": nil},
}

// templateFuncs are the functions a template may call: text/template's
// own but call, and the helpers (templateHelpers).
var templateFuncs = map[string]bool{
	"and": true, "or": true, "not": true, "eq": true, "ne": true, "lt": true, "le": true, "gt": true, "ge": true,
	"len": true, "index": true, "slice": true, "print": true, "printf": true, "println": true,
	"html": true, "js": true, "urlquery": true,
	"distance": true, "clock": true, "default": true,
}

// definitions finds the actions that make or call named templates, to name
// them in a fault.
var definitions = regexp.MustCompile(`\{\{-?\s*(define|block|template)\b`)

// checkTemplate names everything a parsed text uses outside the subset:
// named templates (define, block, template, and so recursion), functions
// other than templateFuncs, printf widths past maxPrintfWidth, ranges over
// anything but a list of the data or within another range, and fields
// that do not exist, such as {{.customer.firstname}}. Inside range and
// with the dot moves, so only paths from the root are checked there
// ($.customer...).
func checkTemplate(t *template.Template, src string) []string {
	c := templateCheck{seen: map[string]bool{}}
	c.namedTemplates(t, src)
	for _, x := range t.Templates() {
		if x.Tree != nil {
			c.walk(x.Tree.Root, true)
		}
	}
	return c.bad
}

// templateCheck is checkTemplate's state as it walks a text's trees: the
// faults found, in the order found and each once, and how many ranges
// enclose the node being walked, since a range within a range is refused.
type templateCheck struct {
	bad    []string
	seen   map[string]bool
	ranges int
}

// refuse records a fault, unless the same one was already named, so
// that a misspelt field used ten times is reported once.
func (c *templateCheck) refuse(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !c.seen[msg] {
		c.seen[msg] = true
		c.bad = append(c.bad, msg)
	}
}

// namedTemplates refuses named templates, which could call one another
// for ever. It names the actions the source uses to make or call them,
// or the construct in general when none is written out.
func (c *templateCheck) namedTemplates(t *template.Template, src string) {
	if !usesNamedTemplates(t) {
		return
	}
	kinds := map[string]bool{}
	for _, m := range definitions.FindAllStringSubmatch(src, -1) {
		kinds[m[1]] = true
	}
	if len(kinds) == 0 {
		c.refuse("named templates ({{define}}, {{block}}, {{template}}) are not allowed in an offer text")
	}
	for _, k := range []string{"define", "block", "template"} {
		if kinds[k] {
			c.refuse("{{%s}} is not allowed in an offer text", k)
		}
	}
}

// usesNamedTemplates reports whether a text defines a template besides
// its own, or calls one.
func usesNamedTemplates(t *template.Template) bool {
	for _, x := range t.Templates() {
		if x.Name() != t.Name() || x.Tree != nil && callsTemplate(x.Tree.Root) {
			return true
		}
	}
	return false
}

// resolveField follows a path from the root of templateFields: the node
// it names, or a fault. A path into a customer's attributes, whose keys
// are free, names freeField, or nothing when it goes deeper than an
// attribute, since there is nothing to check there and no list.
func resolveField(path []string) (any, string) {
	var node any = templateFields
	for i, p := range path {
		m, ok := node.(map[string]any)
		if !ok {
			return nil, fmt.Sprintf("{{.%s}}: %s has no fields", strings.Join(path, "."), strings.Join(path[:i], "."))
		}
		if _, free := m["*"]; free {
			if i == len(path)-1 {
				return freeField{}, ""
			}
			return nil, "" // deeper than an attribute: nothing to check, and no list
		}
		next, ok := m[p]
		if !ok {
			where := "the template"
			if i > 0 {
				where = strings.Join(path[:i], ".")
			}
			return nil, fmt.Sprintf("{{.%s}}: %s has no field %q", strings.Join(path, "."), where, p)
		}
		node = next
	}
	return node, ""
}

// field refuses a path from the root that names no field of the data.
func (c *templateCheck) field(path []string) {
	if _, msg := resolveField(path); msg != "" {
		c.refuse("%s", msg)
	}
}

// rangeListMsg is the fault for a range over anything but a list of the
// data.
const rangeListMsg = "range goes only over a list of the data, such as {{range .customer.segments}}"

// overList checks a range's pipeline: a plain path from the root to a
// list ({{range .customer.segments}}, {{range $i, $s := $.store.tags}}).
// A path that names no field is left to the field check to name.
func (c *templateCheck) overList(p *parse.PipeNode, rooted bool) {
	path, ok := c.rangePath(p, rooted)
	if !ok {
		return
	}
	switch node, fault := resolveField(path); node.(type) {
	case listField, freeField:
	default:
		if fault == "" { // a fault is named by the field check
			c.refuse("%s, not {{.%s}}", rangeListMsg, strings.Join(path, "."))
		}
	}
}

// rangePath is the path from the root a range's pipeline names, or false
// with the pipeline refused when it is not a single field or $-variable
// path, or a field inside with or range, where the dot has moved.
func (c *templateCheck) rangePath(p *parse.PipeNode, rooted bool) ([]string, bool) {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		c.refuse("%s", rangeListMsg)
		return nil, false
	}
	switch a := p.Cmds[0].Args[0].(type) {
	case *parse.FieldNode:
		if !rooted {
			c.refuse("inside with or range, range names its list from the root: {{range $.customer.segments}}")
			return nil, false
		}
		return a.Ident, true
	case *parse.VariableNode:
		if len(a.Ident) < 2 || a.Ident[0] != "$" {
			c.refuse("%s", rangeListMsg)
			return nil, false
		}
		return a.Ident[1:], true
	}
	c.refuse("%s", rangeListMsg)
	return nil, false
}

// walk checks a node and everything under it; rooted says whether the
// dot is still the root of the data, which it is not inside range and
// with.
func (c *templateCheck) walk(n parse.Node, rooted bool) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, x := range n.Nodes {
				c.walk(x, rooted)
			}
		}
	case *parse.ActionNode:
		c.walk(n.Pipe, rooted)
	case *parse.PipeNode:
		if n != nil {
			for _, x := range n.Cmds {
				c.walk(x, rooted)
			}
		}
	case *parse.CommandNode:
		c.command(n, rooted)
	case *parse.ChainNode:
		c.walk(n.Node, rooted)
	case *parse.IfNode:
		c.walk(n.Pipe, rooted)
		c.walk(n.List, rooted)
		c.walk(n.ElseList, rooted)
	case *parse.RangeNode:
		c.rangeNode(n, rooted)
	case *parse.WithNode:
		c.walk(n.Pipe, rooted)
		c.walk(n.List, false)
		c.walk(n.ElseList, rooted)
	case *parse.TemplateNode:
		c.walk(n.Pipe, rooted)
	default:
		c.operand(n, rooted)
	}
}

// command checks a command's printf format, if it calls printf, and then
// each of its arguments.
func (c *templateCheck) command(n *parse.CommandNode, rooted bool) {
	if len(n.Args) > 0 {
		if id, ok := n.Args[0].(*parse.IdentifierNode); ok && id.Ident == "printf" {
			checkPrintf(n.Args[1:], c.refuse)
		}
	}
	for _, a := range n.Args {
		c.walk(a, rooted)
	}
}

// operand checks a leaf of the tree: a function must be one of
// templateFuncs, and a field (while the dot is the root) or a path from
// $ must exist.
func (c *templateCheck) operand(n parse.Node, rooted bool) {
	switch n := n.(type) {
	case *parse.IdentifierNode:
		if !templateFuncs[n.Ident] {
			c.refuse("the function %s is not allowed in an offer text", n.Ident)
		}
	case *parse.FieldNode:
		if rooted {
			c.field(n.Ident)
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			c.field(n.Ident[1:])
		}
	}
}

// rangeNode checks a range. A range goes over a list of the data, once:
// a range over a number ({{range 1000000000}}, {{range .distance_m}}) or
// a range within a range could keep a ping waiting for ever.
func (c *templateCheck) rangeNode(n *parse.RangeNode, rooted bool) {
	if c.ranges > 0 {
		c.refuse("a range inside a range is not allowed")
	}
	c.overList(n.Pipe, rooted)
	c.walk(n.Pipe, rooted)
	c.ranges++
	c.walk(n.List, false)
	c.ranges--
	c.walk(n.ElseList, rooted)
}

// callsTemplate reports whether a tree calls a named template.
func callsTemplate(n parse.Node) bool {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				if callsTemplate(c) {
					return true
				}
			}
		}
	case *parse.IfNode:
		return callsTemplate(n.List) || callsTemplate(n.ElseList)
	case *parse.RangeNode:
		return callsTemplate(n.List) || callsTemplate(n.ElseList)
	case *parse.WithNode:
		return callsTemplate(n.List) || callsTemplate(n.ElseList)
	case *parse.TemplateNode:
		return true
	}
	return false
}

// checkPrintf refuses a printf whose format is not written out, or whose
// widths or precisions could make a text of any length from a number.
func checkPrintf(args []parse.Node, refuse func(string, ...any)) {
	if len(args) == 0 {
		return // text/template names the missing argument
	}
	f, ok := args[0].(*parse.StringNode)
	if !ok {
		refuse("printf takes a format written out, such as {{printf \"%%.1f\" .distance_m}}")
		return
	}
	format := f.Text
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		j := i + 1
		for j < len(format) && strings.IndexByte("+-# 0123456789.*[]", format[j]) >= 0 {
			j++
		}
		spec := format[i+1 : j]
		if strings.Contains(spec, "*") {
			refuse("printf widths and precisions are written out in an offer text, not taken from an argument (*)")
		}
		for _, num := range strings.FieldsFunc(spec, func(r rune) bool { return r < '0' || r > '9' }) {
			if n, err := strconv.Atoi(num); err != nil || n > maxPrintfWidth {
				refuse("printf widths and precisions are at most %d in an offer text", maxPrintfWidth)
			}
		}
		i = j // past the verb; "%%" ends here too
	}
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
			Segments: []string{"s"}, Attributes: map[string]any{"x": "y"}, Consent: Consent{Location: true, Push: true, Feedback: true}}},
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
	// Variant is the version rendered: its position in the offer's
	// variants (Compiled.Variants); 0 for an offer without.
	Variant    int
	Customer   *Customer
	Store      *Store
	DistanceM  int
	CouponCode string
	ExpiresAt  time.Time
	Visit      *VisitEnv
}

// RenderMessage writes the offer's title and body in the customer's
// language: the exact locale, else its base language (de-AT → de), else
// the rule's default_locale. A text that fails to run (past MaxTextBytes
// or renderTimeout, or an error validation could not foresee) falls back
// to the default_locale; when that fails too the answer is an error and
// no text: the offer is not sent, and a template's source never is.
func (c *Compiled) RenderMessage(d OfferData) (Message, error) {
	data := c.templateData(d)
	loc := d.Customer.Location()
	a := c.arm(d.Variant)
	run := func(i int) (Message, error) {
		m := Message{Lang: a.title[i].tag.String()}
		title, body := a.title[i], a.body[matchLang(a.body, a.title[i].tag)]
		var err error
		if m.Title, err = execute(title.tmpl, templateHelpers(title.tag, loc), data); err != nil {
			return Message{}, fmt.Errorf("render %s: %w", title.tmpl.Name(), err)
		}
		if m.Body, err = execute(body.tmpl, templateHelpers(body.tag, loc), data); err != nil {
			return Message{}, fmt.Errorf("render %s: %w", body.tmpl.Name(), err)
		}
		return m, nil
	}
	i := a.pickLanguage(d.Customer.Locale)
	m, err := run(i)
	if err != nil && i != a.fallback {
		m, err = run(a.fallback)
	}
	if err != nil {
		return Message{}, fmt.Errorf("rule %s: %w", c.Rule.ID, err)
	}
	return m, nil
}

// Render is RenderMessage for a preview, which shows a text that fails as
// empty.
func (c *Compiled) Render(d OfferData) Message {
	m, err := c.RenderMessage(d)
	if err != nil {
		a := c.arm(d.Variant)
		return Message{Lang: a.title[a.pickLanguage(d.Customer.Locale)].tag.String()}
	}
	return m
}

// ValidFor is how long a coupon of this rule's variant v (0 for an offer
// without variants) stays valid.
func (c *Compiled) ValidFor(v int) time.Duration { return c.arm(v).validFor }

// templateData is what a template sees. A list holds at most MaxListLen
// items, whatever a profile written before that bound holds, so that a
// range's time is bounded.
func (c *Compiled) templateData(d OfferData) map[string]any {
	cu := d.Customer
	attrs := cu.Attributes
	if attrs == nil {
		attrs = map[string]any{}
	}
	for _, v := range attrs {
		if l, ok := v.([]any); ok && len(l) > MaxListLen {
			attrs = capLists(attrs) // rare: only a profile from before the bound
			break
		}
	}
	s := d.Store
	var lat, lng float64
	if s.Lat != nil {
		lat, lng = *s.Lat, *s.Lng
	}
	return map[string]any{
		"customer": map[string]any{
			"id": cu.ID, "first_name": cu.FirstName, "last_name": cu.LastName, "locale": cu.Locale,
			"timezone": cu.Timezone, "segments": cu.Segments[:min(len(cu.Segments), MaxListLen)], "attributes": attrs,
			"consent": map[string]any{"location": cu.Consent.Location, "push": cu.Consent.Push},
		},
		"store": map[string]any{
			"id": s.ID, "name": s.Name, "tags": s.Tags[:min(len(s.Tags), MaxListLen)], "timezone": s.Timezone,
			"radius_m": s.RadiusM, "lat": lat, "lng": lng,
		},
		"distance_m": d.DistanceM,
		"coupon":     map[string]any{"code": d.CouponCode, "expires_at": d.ExpiresAt.UTC().Format(time.RFC3339)},
		"rule":       map[string]any{"id": c.Rule.ID, "name": c.Rule.Name},
		"visit":      visitData(d.Visit),
	}
}

// capLists copies attributes with every list cut to MaxListLen items.
func capLists(attrs map[string]any) map[string]any {
	out := maps.Clone(attrs)
	for k, v := range out {
		if l, ok := v.([]any); ok {
			out[k] = l[:min(len(l), MaxListLen)]
		}
	}
	return out
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

// errTooLong stops a template whose text outgrows MaxTextBytes, and
// errTooSlow one that runs past renderTimeout.
var (
	errTooLong = fmt.Errorf("the text is longer than %d bytes", MaxTextBytes)
	errTooSlow = fmt.Errorf("the text takes longer than %v to render", renderTimeout)
)

// boundedWriter keeps what a template writes, up to MaxTextBytes and
// until its deadline. text/template cannot be interrupted, so the bound on
// time holds at the writes; between writes a template only walks lists
// of at most MaxListLen items, never one within another. The clock is
// read every clockEvery writes (a read costs some 45 ns, an offer's text
// makes a few dozen writes).
type boundedWriter struct {
	strings.Builder
	deadline time.Time
	writes   int
}

const clockEvery = 8

func (w *boundedWriter) Write(p []byte) (int, error) {
	if w.Len()+len(p) > MaxTextBytes {
		return 0, errTooLong
	}
	if w.writes++; w.writes%clockEvery == 0 && time.Now().After(w.deadline) {
		return 0, errTooSlow
	}
	return w.Builder.Write(p)
}

// execute runs a template with helpers bound to the text's language and
// the customer's time zone, within the bounds of a render.
func execute(t *template.Template, helpers template.FuncMap, data any) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("the template panicked: %v", r)
		}
	}()
	t, err = t.Clone()
	if err != nil {
		return "", err
	}
	b := boundedWriter{deadline: time.Now().Add(renderTimeout)}
	if err := t.Funcs(helpers).Execute(&b, data); err != nil {
		return "", err
	}
	// A customer attribute the profile lacks renders as nothing, not as
	// text/template's "<no value>".
	return strings.ReplaceAll(b.String(), "<no value>", ""), nil
}

// pickLanguage is the title in the customer's locale, else in its base
// language, else the default_locale's.
func (a *arm) pickLanguage(locale string) int {
	if locale == "" {
		return a.fallback
	}
	want, err := language.Parse(locale)
	if err != nil {
		return a.fallback
	}
	for i, t := range a.title {
		if t.tag == want {
			return i
		}
	}
	base, _ := want.Base()
	for i, t := range a.title {
		if b, _ := t.tag.Base(); b == base {
			return i
		}
	}
	return a.fallback
}

func matchLang(texts []compiledText, tag language.Tag) int {
	for i, t := range texts {
		if t.tag == tag {
			return i
		}
	}
	return 0
}
