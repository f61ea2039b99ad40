package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/expr-lang/expr/vm"
	"golang.org/x/text/language"
)

// Triggers a rule can fire on.
const (
	OnEnter = "enter"
	OnExit  = "exit"
	OnDwell = "dwell"
)

// Rule is an offer as a marketer writes it.
type Rule struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Tags group rules by what they offer ("coffee", "pastry"): a
	// customer's redemptions by tag break ties between equal priorities.
	Tags     []string `json:"tags,omitempty"`
	Enabled  *bool    `json:"enabled"`
	Priority int      `json:"priority"`
	Trigger  Trigger  `json:"trigger"`
	Audience string   `json:"audience,omitempty"`
	When     *When    `json:"when,omitempty"`
	Caps     Caps     `json:"caps"`
	// HoldoutPct is the share of matching customers, chosen by a hash of
	// rule and customer id (so the same customers every time), who get
	// nothing, to measure what the offer changes.
	HoldoutPct float64 `json:"holdout_pct,omitempty"`
	Offer      Offer   `json:"offer"`
	// Version counts the saves of this rule id, from 1; set by the catalog.
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Trigger says on which presence event, and at which stores, a rule fires.
type Trigger struct {
	On     string         `json:"on"`
	DwellS int            `json:"dwell_s,omitempty"`
	Stores *StoreSelector `json:"stores,omitempty"`
}

// StoreSelector picks stores by id and by tag; a store matches when it is
// named or carries one of the tags.
type StoreSelector struct {
	IDs  []string `json:"ids,omitempty"`
	Tags []string `json:"tags,omitempty"`
}

// When says at which times a rule may fire. Days and local times are the
// store's; quiet hours are the customer's.
type When struct {
	From  *time.Time `json:"from,omitempty"`
	Until *time.Time `json:"until,omitempty"`
	// Days are mon..sun; absent means every day.
	Days []string `json:"days,omitempty"`
	// LocalTime lists windows such as "07:00-11:00"; absent means all day.
	LocalTime []string `json:"local_time,omitempty"`
	// StoreOpen (default true) fires only while the store is open and not
	// in its last ClosingBufferMin minutes (default 15).
	StoreOpen        *bool `json:"store_open,omitempty"`
	ClosingBufferMin *int  `json:"closing_buffer_min,omitempty"`
	// QuietHours ("22:00-07:00") may narrow the setting's quiet hours for
	// this rule, never widen them.
	QuietHours string `json:"quiet_hours,omitempty"`
}

// Default closing buffer, in minutes.
const DefaultClosingBufferMin = 15

// schedule is a rule's When compiled.
type ruleSchedule struct {
	from, until   time.Time
	days          [7]bool
	anyDay        bool
	windows       [][2]int
	storeOpen     bool
	closingBuffer time.Duration
	quiet         [2]int
	hasQuiet      bool
}

// Caps limit how often a rule fires; 0 means no cap. Days and weeks are
// the customer's (per customer) or the store's (per store).
type Caps struct {
	PerCustomerPerDay  int `json:"per_customer_per_day,omitempty"`
	PerCustomerPerWeek int `json:"per_customer_per_week,omitempty"`
	PerCustomerTotal   int `json:"per_customer_total,omitempty"`
	PerStorePerDay     int `json:"per_store_per_day,omitempty"`
	// Total is the rule's budget: coupons it may issue in all.
	Total int `json:"total,omitempty"`
}

// Offer is what the customer receives.
type Offer struct {
	Title Texts `json:"title"`
	Body  Texts `json:"body"`
	// DefaultLocale is the language a customer whose own is not among the
	// texts gets: one of Title's. A rule saved without it gets the first
	// language it was written in (as before the field existed), filled in
	// on save so that it shows; a client that does not keep the order of
	// JSON keys (most generated ones) must give it.
	DefaultLocale string `json:"default_locale,omitempty"`
	ValidForS     int    `json:"valid_for_s"`
	// MinTrust is the least trust a fix needs for this offer: "any",
	// "unverified" (the default, filled in on save: no fix the engine
	// found suspicious) or "trusted" (a device that passed an integrity
	// check), for the valuable ones.
	MinTrust string `json:"min_trust,omitempty"`
	// RedeemAtIssuingStore makes the coupon good only at the store where
	// the customer received it.
	RedeemAtIssuingStore bool `json:"redeem_at_issuing_store,omitempty"`
	// Variants, 2 to 8, make the offer an experiment (variants.go): each
	// has its own texts (then Title and Body stay empty) and may have its
	// own validity; a customer keeps the variant first given for the rule.
	Variants []Variant `json:"variants,omitempty"`
	// Selection is how variants are given: "weighted" (by weight, the
	// default) or "bandit" (Thompson sampling on the redemption rate).
	Selection string `json:"selection,omitempty"`
	// Bandit tunes the "bandit" selection; filled in with its defaults.
	Bandit *Bandit `json:"bandit,omitempty"`
	// Kind is "coupon" (the default, left out) or "feedback": a question
	// after a visit instead of a coupon (feedback.go); its texts are the
	// question's.
	Kind string `json:"kind,omitempty"`
	// Question is a feedback offer's: its scale and whether a comment may
	// go with the score.
	Question *Question `json:"question,omitempty"`
}

// Dwell bounds, in seconds.
const (
	MinDwellS = 30
	MaxDwellS = 24 * 3600
)

// Offer validity bounds, in seconds.
const (
	DefaultValidForS = 3600
	MinValidForS     = 60
	MaxValidForS     = 30 * 24 * 3600
)

// Text is a template in one language.
type Text struct {
	Lang     string
	Template string
}

// Texts are templates by language, in the order the marketer wrote them
// (Offer.DefaultLocale says which is the fallback for a customer whose
// language is missing).
type Texts []Text

// UnmarshalJSON reads a JSON object keeping the order of its keys.
func (t *Texts) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return &json.UnmarshalTypeError{Value: "non-object", Type: textsType}
	}
	var out Texts
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		var v string
		if err := dec.Decode(&v); err != nil {
			return err
		}
		out = append(out, Text{Lang: k.(string), Template: v})
	}
	*t = out
	return nil
}

// MarshalJSON writes a JSON object in the marketer's order.
func (t Texts) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, x := range t {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(x.Lang)
		v, _ := json.Marshal(x.Template)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

var textsType = reflect.TypeOf(Texts{})

// IsEnabled reports whether the rule is in force; rules are enabled unless
// the document says otherwise.
func (r *Rule) IsEnabled() bool { return r.Enabled == nil || *r.Enabled }

// Compiled is a rule ready for the hot path: its expression and templates
// compiled once, when it is saved or loaded.
type Compiled struct {
	Rule     *Rule
	audience *vm.Program
	// arms are the offer's versions: its own texts, or one per variant;
	// weights theirs, in order.
	arms    []arm
	weights []int
	when    ruleSchedule
}

// arm is one version of an offer, compiled.
type arm struct {
	id       string // the variant's id; "" for an offer without variants
	title    []compiledText
	body     []compiledText
	fallback int // the title of Offer.DefaultLocale
	validFor time.Duration
	weight   int
}

func compileWhen(fs *faults, w *When) ruleSchedule {
	sc := ruleSchedule{storeOpen: true, closingBuffer: DefaultClosingBufferMin * time.Minute, anyDay: true}
	if w == nil {
		return sc
	}
	if w.From != nil {
		sc.from = *w.From
	}
	if w.Until != nil {
		sc.until = *w.Until
	}
	if w.From != nil && w.Until != nil && !w.Until.After(*w.From) {
		fs.add("when.until", "when.until must be after when.from")
	}
	for i, d := range w.Days {
		wd, ok := weekdays[d]
		if !ok {
			fs.add(fmt.Sprintf("when.days[%d]", i), "unknown day %q: use mon, tue, wed, thu, fri, sat or sun", d)
			continue
		}
		sc.days[wd], sc.anyDay = true, false
	}
	for i, span := range w.LocalTime {
		from, to, err := parseSpan(span)
		if err != nil {
			fs.add(fmt.Sprintf("when.local_time[%d]", i), "%v", err)
			continue
		}
		sc.windows = append(sc.windows, [2]int{from, to})
	}
	if w.StoreOpen != nil {
		sc.storeOpen = *w.StoreOpen
	}
	if w.ClosingBufferMin != nil {
		if *w.ClosingBufferMin < 0 || *w.ClosingBufferMin > 240 {
			fs.add("when.closing_buffer_min", "when.closing_buffer_min must be between 0 and 240 minutes")
		}
		sc.closingBuffer = time.Duration(*w.ClosingBufferMin) * time.Minute
	}
	if w.QuietHours != "" {
		from, to, err := parseSpan(w.QuietHours)
		if err != nil {
			fs.add("when.quiet_hours", "%v", err)
		}
		sc.quiet, sc.hasQuiet = [2]int{from, to}, err == nil
	}
	return sc
}

// inSpan reports whether minute m of the day lies in a span, which may run
// past midnight.
func inSpan(span [2]int, m int) bool {
	if span[0] < span[1] {
		return m >= span[0] && m < span[1]
	}
	return m >= span[0] || m < span[1]
}

// within reports whether span a lies inside span b (both may wrap).
func within(a, b [2]int) bool {
	length := func(s [2]int) int { return ((s[1]-s[0])%1440 + 1440) % 1440 }
	off := ((a[0]-b[0])%1440 + 1440) % 1440
	return off+length(a) <= length(b)
}

// Schedule reasons.
const (
	WhenOK          = ""
	WhenSchedule    = "schedule"
	WhenStoreClosed = "store_closed"
	WhenQuiet       = "quiet_hours"
)

// Allowed says whether the rule may fire at t for this store and customer,
// or the first reason it may not. quiet is the setting's quiet hours
// (minutes of the day, from and until; until == from means none).
func (c *Compiled) Allowed(t time.Time, store *StoreEntry, cust *Customer, quiet [2]int) string {
	w := &c.when
	if !w.from.IsZero() && t.Before(w.from) || !w.until.IsZero() && !t.Before(w.until) {
		return WhenSchedule
	}
	lt := t.In(store.Location())
	if !w.anyDay && !w.days[lt.Weekday()] {
		return WhenSchedule
	}
	if len(w.windows) > 0 {
		m, ok := lt.Hour()*60+lt.Minute(), false
		for _, span := range w.windows {
			ok = ok || inSpan(span, m)
		}
		if !ok {
			return WhenSchedule
		}
	}
	if w.storeOpen && (!store.OpenAt(t) || !store.OpenAt(t.Add(w.closingBuffer))) {
		return WhenStoreClosed
	}
	if quiet[0] != quiet[1] {
		if w.hasQuiet && within(w.quiet, quiet) {
			quiet = w.quiet // narrower: the rule's own
		}
		ct := t.In(cust.Location())
		if inSpan(quiet, ct.Hour()*60+ct.Minute()) {
			return WhenQuiet
		}
	}
	return WhenOK
}

type compiledText struct {
	tag  language.Tag
	tmpl *template.Template
}

// AudienceEnv is what an audience expression sees.
type AudienceEnv struct {
	Customer *Customer      `expr:"customer"`
	Store    *Store         `expr:"store"`
	Context  map[string]any `expr:"context"`
	Visit    *VisitEnv      `expr:"visit"`
	// budget is what the evaluation running on this env has left.
	budget budget
}

// VisitEnv is the customer's visit history as the engine keeps it, seen
// from the store of the event: "first visit to this store" is
// visit.first_at_store, "welcome back after 30 days" is
// visit.days_since_store >= 30.
type VisitEnv struct {
	// StoreVisits counts visits to this store, the current one included.
	StoreVisits int `expr:"store_visits"`
	// Visits counts visits to any store, the current one included.
	Visits       int  `expr:"visits"`
	FirstAtStore bool `expr:"first_at_store"`
	// DaysSinceStore is the whole days since the previous visit to this
	// store began; -1 when there was none. DaysSinceAny likewise, any store.
	DaysSinceStore int `expr:"days_since_store"`
	DaysSinceAny   int `expr:"days_since_any"`
	// OffersReceived counts the offers the customer was sent.
	OffersReceived int `expr:"offers_received"`
	// Redeemed counts the customer's redeemed coupons;
	// DaysSinceRedeemed the whole days since the last (-1: never).
	Redeemed          int `expr:"redeemed"`
	DaysSinceRedeemed int `expr:"days_since_redeemed"`
	// LastFeedback is the customer's last answer to a question about this
	// store, on its question's scale (-1: none); DaysSinceFeedback the
	// whole days since their last answer about any store (-1: never).
	LastFeedback      int `expr:"last_feedback"`
	DaysSinceFeedback int `expr:"days_since_feedback"`
	// DurationS is how long the visit has lasted, in seconds: an exit's
	// whole visit, a dwell's threshold, 0 on enter.
	DurationS int `expr:"duration_s"`
}

// exprTypeNames turns the Go type names in expr's errors into the names
// marketers write.
var exprTypeNames = strings.NewReplacer("type rules.Customer", "customer", "type rules.Store", "store", "type rules.Consent", "customer.consent", "type rules.VisitEnv", "visit", "*rules.", "", "rules.", "")

// Compile validates the rule and compiles it. It fills defaults, and
// returns every fault at once as a *ValidationError.
func Compile(r *Rule) (*Compiled, error) { return compile(r, true) }

// compile is Compile; trial says whether to try the templates on sample
// profiles, which a rule already saved (and tried) is spared on load.
// Faults come in the order of the document's fields, each part checked
// by its own function.
func compile(r *Rule, trial bool) (*Compiled, error) {
	var fs faults
	r.normalizeHead(&fs)
	r.Trigger.check(&fs)
	r.Caps.check(&fs)
	when := compileWhen(&fs, r.When)
	checkRuleTags(&fs, r.Tags)
	if r.HoldoutPct < 0 || r.HoldoutPct > 100 || math.IsNaN(r.HoldoutPct) {
		fs.add("holdout_pct", "holdout_pct is a percentage from 0 to 100")
	}
	r.Offer.normalizeKind(&fs)
	r.Offer.normalizeValidity(&fs)
	r.Offer.normalizeTrust(&fs)

	c := &Compiled{Rule: r, when: when}
	c.audience = compileAudienceField(&fs, r.Audience)
	c.arms = compileArms(&fs, &r.Offer, trial)
	for _, a := range c.arms {
		c.weights = append(c.weights, a.weight)
	}
	if err := fs.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// normalizeHead checks a rule's id and name, and enables a rule whose
// document does not say.
func (r *Rule) normalizeHead(fs *faults) {
	if err := ValidID("id", r.ID); err != nil {
		*fs = append(*fs, err.(*ValidationError).Faults...)
	}
	if strings.TrimSpace(r.Name) == "" {
		fs.add("name", "name is required")
	} else if len(r.Name) > 200 {
		fs.add("name", "name must be at most 200 characters")
	}
	if r.Enabled == nil {
		t := true
		r.Enabled = &t
	}
}

// check checks the event a rule fires on, with dwell_s for a dwell rule
// and only for one, and then the store selector.
func (tr *Trigger) check(fs *faults) {
	switch tr.On {
	case OnEnter, OnExit:
		if tr.DwellS != 0 {
			fs.add("trigger.dwell_s", "dwell_s belongs to a rule with trigger.on \"dwell\"")
		}
	case OnDwell:
		if tr.DwellS < MinDwellS || tr.DwellS > MaxDwellS {
			fs.add("trigger.dwell_s", "a dwell rule needs dwell_s, the seconds a customer must stay, between %d and %d", MinDwellS, MaxDwellS)
		}
	case "":
		fs.add("trigger.on", "trigger.on is required: \"enter\", \"dwell\" or \"exit\"")
	default:
		fs.add("trigger.on", "trigger.on must be \"enter\", \"dwell\" or \"exit\", not %q", tr.On)
	}
	if tr.Stores != nil {
		tr.Stores.check(fs)
	}
}

// check checks a store selector's form: that it names something (an
// absent selector, not an empty one, means every store), valid ids and
// no empty tag. Whether the stores exist is the snapshot's to say.
func (sel *StoreSelector) check(fs *faults) {
	if len(sel.IDs) == 0 && len(sel.Tags) == 0 {
		fs.add("trigger.stores", "trigger.stores names no ids and no tags; leave it out to mean every store")
	}
	for i, id := range sel.IDs {
		if err := ValidID(fmt.Sprintf("trigger.stores.ids[%d]", i), id); err != nil {
			*fs = append(*fs, err.(*ValidationError).Faults...)
		}
	}
	for i, tag := range sel.Tags {
		if tag == "" {
			fs.add(fmt.Sprintf("trigger.stores.tags[%d]", i), "a tag must not be empty")
		}
	}
}

// check refuses a negative cap; 0 means no cap.
func (c Caps) check(fs *faults) {
	for _, x := range []struct {
		name string
		v    int
	}{{"per_customer_per_day", c.PerCustomerPerDay}, {"per_customer_per_week", c.PerCustomerPerWeek},
		{"per_customer_total", c.PerCustomerTotal}, {"per_store_per_day", c.PerStorePerDay}, {"total", c.Total}} {
		if x.v < 0 {
			fs.add("caps."+x.name, "caps.%s must be 0 (no cap) or more", x.name)
		}
	}
}

// checkRuleTags checks a rule's tags, which the engine hands, joined
// with commas, to the script that issues an offer.
func checkRuleTags(fs *faults, tags []string) {
	for i, t := range tags {
		if t == "" || len(t) > 64 || strings.Contains(t, ",") {
			fs.add(fmt.Sprintf("tags[%d]", i), "a tag is 1 to 64 characters, without commas")
		}
	}
}

// Trust levels an offer may ask of a fix (Offer.MinTrust), from the
// least: a fix's level is one of the last three.
const (
	TrustAny        = "any"
	TrustSuspicious = "suspicious"
	TrustUnverified = "unverified"
	TrustTrusted    = "trusted"
)

var trustRank = map[string]int{TrustAny: 0, TrustSuspicious: 0, TrustUnverified: 1, TrustTrusted: 2}

// normalizeTrust fills in and checks MinTrust.
func (o *Offer) normalizeTrust(fs *faults) {
	if o.MinTrust == "" {
		o.MinTrust = TrustUnverified
	}
	if o.MinTrust == TrustSuspicious || trustRank[o.MinTrust] == 0 && o.MinTrust != TrustAny {
		fs.add("offer.min_trust", "offer.min_trust is any, unverified (no fix found suspicious: the default) or trusted (a device that passed an integrity check)")
	}
}

// Trusts tells whether a fix of the given trust level may get this
// rule's offer.
func (c *Compiled) Trusts(level string) bool {
	return trustRank[level] >= trustRank[c.Rule.Offer.MinTrust]
}

// normalizeValidity gives an offer DefaultValidForS when its document
// gives no validity, and checks the validity's bounds.
func (o *Offer) normalizeValidity(fs *faults) {
	if o.ValidForS == 0 {
		o.ValidForS = DefaultValidForS
	}
	if o.ValidForS < MinValidForS || o.ValidForS > MaxValidForS {
		fs.add("offer.valid_for_s", "offer.valid_for_s must be between %d and %d seconds", MinValidForS, MaxValidForS)
	}
}

// compileAudienceField compiles a rule's audience expression, if it has
// one; what the expression may not do are precondition faults, since the
// document itself is well formed.
func compileAudienceField(fs *faults, src string) *vm.Program {
	if strings.TrimSpace(src) == "" {
		return nil
	}
	prog, bad := compileAudience(src)
	for _, msg := range bad {
		fs.addPrecondition("audience", "%s", msg)
	}
	return prog
}

// compileOfferTexts compiles a title and body (an offer's, or a
// variant's, under prefix), which must be written in the same languages,
// so that a customer gets both in one.
func compileOfferTexts(fs *faults, prefix string, title, body Texts, trial bool) (ct, cb []compiledText) {
	ct = compileTexts(fs, prefix+".title", title, trial)
	cb = compileTexts(fs, prefix+".body", body, trial)
	if len(title) > 0 && len(body) > 0 && !slices.Equal(textLangs(title), textLangs(body)) {
		fs.add(prefix+".body", "%s.title and %s.body must be written in the same languages", prefix, prefix)
	}
	return ct, cb
}

// defaultLocale checks DefaultLocale against a title's languages (the
// first when it is empty, and then filled in) and answers its position.
func (o *Offer) defaultLocale(fs *faults, field string, title Texts) int {
	if len(title) == 0 {
		return 0
	}
	if o.DefaultLocale == "" {
		o.DefaultLocale = title[0].Lang
	}
	for i, t := range title {
		if t.Lang == o.DefaultLocale {
			return i
		}
	}
	fs.add("offer.default_locale", "default_locale %q is not one of the languages of %s (%s)", o.DefaultLocale, field, strings.Join(textLangs(title), ", "))
	return 0
}

// textLangs lists the languages of texts, sorted, to compare two sets.
func textLangs(ts Texts) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Lang)
	}
	slices.Sort(out)
	return out
}

func compileTexts(fs *faults, field string, texts Texts, trial bool) []compiledText {
	if len(texts) == 0 {
		fs.add(field, "%s needs a text in at least one language, e.g. {\"en\": \"...\"}", field)
		return nil
	}
	out := make([]compiledText, 0, len(texts))
	seen := map[string]bool{}
	for _, t := range texts {
		path := field + "." + t.Lang
		tag, err := language.Parse(t.Lang)
		if err != nil {
			fs.add(path, "%q is not a language tag such as de or en-GB", t.Lang)
			continue
		}
		if seen[t.Lang] {
			fs.add(path, "language %q is given twice", t.Lang)
			continue
		}
		seen[t.Lang] = true
		if strings.TrimSpace(t.Template) == "" {
			fs.add(path, "the text must not be empty")
			continue
		}
		if len(t.Template) > MaxTemplateBytes {
			fs.addPrecondition(path, "a text's template is at most %d bytes", MaxTemplateBytes)
			continue
		}
		key := path + "\x00" + t.Template
		if !trial {
			if tmpl := sharedTemplates.get(key); tmpl != nil {
				out = append(out, compiledText{tag: tag, tmpl: tmpl})
				continue
			}
		}
		tmpl, err := template.New(path).Option("missingkey=zero").Funcs(templateHelpers(tag, time.UTC)).Parse(t.Template)
		if err != nil {
			fs.add(path, "%s", templateError(err))
			continue
		}
		bad := checkTemplate(tmpl, t.Template)
		for _, msg := range bad {
			fs.addPrecondition(path, "%s", msg)
		}
		if trial && len(bad) == 0 { // a template refused is not run, not even on trial
			if msg := trialRender(tmpl, tag); msg != "" {
				fs.addPrecondition(path, "%s", msg)
			}
		}
		if !trial && len(bad) == 0 {
			sharedTemplates.put(key, tmpl)
		}
		out = append(out, compiledText{tag: tag, tmpl: tmpl})
	}
	return out
}

// sharedTemplates keeps the templates the catalog's rules compiled to,
// by field, language and text, so that rules with the same text (most
// of a catalog: a campaign's texts across its rules and stores) share
// one. A parsed template with its helpers is some 150 objects that the
// garbage collector reads at every collection, and a collection's stall
// is the open loop's p99. A template is never changed once parsed
// (execute renders a clone), so sharing it is safe. Rules compiled to be
// checked (trial) neither read nor fill it. Bounded: it starts afresh
// past maxSharedTemplates texts, as the catalog changes.
var sharedTemplates templateCache

const maxSharedTemplates = 4096

type templateCache struct {
	mu sync.Mutex
	m  map[string]*template.Template
}

func (c *templateCache) get(key string) *template.Template {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *templateCache) put(key string, t *template.Template) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxSharedTemplates {
		c.m = map[string]*template.Template{}
	}
	c.m[key] = t
}

// templateError drops text/template's "template: name:" prefix, which
// repeats the field path.
func templateError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "template: ") {
		rest := msg[i+2:]
		if j := strings.Index(rest, ": "); j >= 0 {
			return "template " + rest[j+2:]
		}
	}
	return msg
}

// vms reuses expression machines: a fresh one per evaluation is most of
// an audience check's allocations.
var vms = sync.Pool{New: func() any { return &vm.VM{} }}

// InHoldout reports whether a customer is in the rule's holdout group: a
// stable hash of rule and customer id, so that membership never changes
// while the rule's holdout_pct stays.
func (c *Compiled) InHoldout(customerID string) bool {
	if c.Rule.HoldoutPct <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(c.Rule.ID))
	h.Write([]byte{0})
	h.Write([]byte(customerID))
	return float64(h.Sum64()%10000) < c.Rule.HoldoutPct*100
}
