package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
)

// The customer's voice through the API (docs/feedback.md): who may
// answer a question, the faults of an answer named by field, the
// question's life (once, within 7 days, never redeemed), the scores'
// numbers against counters seeded as the engine writes them, and the
// answer in the customer's export and gone with their erasure.

// fbClock is the time of the engine and the ledger of a feedback test,
// which the test moves.
type fbClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fbClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fbClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Where the feedback tests' stores are, and a point 500 m north of
// both, outside their fences.
const (
	fbLat, fbLng   = 52.4900, 13.3900
	fb2Lat, fb2Lng = 52.4901, 13.3905
	outLat         = 52.4945
)

// ruleAskCSAT asks how satisfied a customer was on leaving s-fb2.
const ruleAskCSAT = `{"name": "Satisfied?", "priority": 3,
 "trigger": {"on": "exit", "stores": {"ids": ["s-fb2"]}},
 "offer": {"kind": "feedback", "question": {"scale": "csat"},
   "title": {"en": "Satisfied with {{.store.name}}?"}, "body": {"en": "From 1 to 5"}}}`

// feedbackFixture is a server whose engine and ledger run on clock, with
// customer tokens: stores s-fb and s-fb2, customers c-9 (Jo) and c-10
// (Kim), who agreed to be asked, and c-11 (Lu), who did not; the
// question rules how-fb (NPS, at s-fb) and csat-fb (at s-fb2).
type feedbackFixture struct {
	t      *testing.T
	c      *client
	rdb    redis.UniversalClient
	clock  *fbClock
	tokens *api.CustomerTokens
	with   func(*api.Deps) // the fixture's dependencies, for another server on them
}

func newFeedbackFixture(t *testing.T, auth api.AppAuth) *feedbackFixture {
	t.Helper()
	rdb := srv.Client(t)
	tokens, err := api.NewCustomerTokens([][]byte{[]byte("feedback-test-secret-0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An hour ago, so that the days the answers are counted in are
	// today's (UTC) for the reports' default range.
	clock := &fbClock{t: time.Now().UTC().Add(-time.Hour).Truncate(time.Second)}
	f := &feedbackFixture{t: t, rdb: rdb, clock: clock, tokens: tokens}
	f.with = func(d *api.Deps) {
		cfg := engine.DefaultConfig()
		cfg.QuietHours = [2]int{}
		signer := engine.NewCodeSigner([]byte("s"))
		d.Engine = engine.New(rdb, d.Live, signer, cfg, quiet, clock.Now)
		d.Ledger = engine.NewLedger(rdb, signer, quiet, clock.Now)
		d.Tokens, d.AppAuth = tokens, auth
	}
	f.c = newClientWith(t, rdb, f.with)
	for _, put := range []struct{ path, body string }{
		{"/v1/stores/s-fb", fmt.Sprintf(`{"name": "Feedback Café", "lat": %v, "lng": %v, "radius_m": 20, "tags": ["fb"]}`, fbLat, fbLng)},
		{"/v1/stores/s-fb2", fmt.Sprintf(`{"name": "Second Café", "lat": %v, "lng": %v, "radius_m": 20}`, fb2Lat, fb2Lng)},
		{"/v1/customers/c-9", `{"first_name": "Jo", "locale": "en", "consent": {"location": true, "push": true, "feedback": true}, "attributes": {"tier": "gold"}}`},
		{"/v1/customers/c-10", `{"first_name": "Kim", "locale": "en", "consent": {"location": true, "push": true, "feedback": true}, "attributes": {"tier": "gold"}}`},
		{"/v1/customers/c-11", `{"first_name": "Lu", "locale": "en", "consent": {"location": true, "push": true}, "attributes": {"tier": "gold"}}`},
		{"/v1/rules/how-fb", ruleAsk},
		{"/v1/rules/csat-fb", ruleAskCSAT},
	} {
		if r := f.c.admin("PUT", put.path, put.body); r.Status != 201 {
			t.Fatalf("PUT %s: %d %s", put.path, r.Status, r.Raw)
		}
	}
	return f
}

// token mints a customer token for the customer.
func (f *feedbackFixture) token(customer string) map[string]string {
	f.t.Helper()
	r := f.c.admin("POST", "/v1/customers/"+customer+"/tokens", "")
	tok, _ := r.Body["token"].(string)
	if r.Status != 201 || tok == "" {
		f.t.Fatalf("token of %s: %d %s", customer, r.Status, r.Raw)
	}
	return map[string]string{api.HeaderCustomerToken: tok}
}

// ping sends the admin's explained ping for the customer at the clock's
// time, and answers its offers and explanations.
func (f *feedbackFixture) ping(customer string, lat, lng, accuracy float64) ([]engine.IssuedOffer, []engine.Explanation) {
	f.t.Helper()
	r := f.c.admin("POST", "/v1/pings?explain=true", fmt.Sprintf(`{"customer_id": %q, "device_id": "d-%s", "lat": %v, "lng": %v, "accuracy_m": %v, "ts": %q}`,
		customer, customer, lat, lng, accuracy, f.clock.Now().Format(time.RFC3339)))
	var res struct {
		Offers  []engine.IssuedOffer
		Explain []engine.Explanation
	}
	if err := json.Unmarshal([]byte(r.Raw), &res); err != nil || r.Status != 200 {
		f.t.Fatalf("ping: %d %v %s", r.Status, err, r.Raw)
	}
	return res.Offers, res.Explain
}

// visit walks the customer into the store at lat, lng, keeps them there
// six minutes and walks them out; it answers the offers and
// explanations of leaving.
func (f *feedbackFixture) visit(customer string, lat, lng float64) ([]engine.IssuedOffer, []engine.Explanation) {
	f.t.Helper()
	f.ping(customer, outLat, lng, 9)
	f.clock.Advance(10 * time.Minute) // a walk: above 3 m/s no store is entered
	f.ping(customer, lat, lng, 5)
	f.clock.Advance(6 * time.Minute)
	offers, explain := f.ping(customer, outLat, lng, 7)
	f.clock.Advance(time.Minute)
	return offers, explain
}

// ask walks the customer through a visit and answers the question they
// were asked on leaving.
func (f *feedbackFixture) ask(customer string, lat, lng float64, rule string) string {
	f.t.Helper()
	offers, explain := f.visit(customer, lat, lng)
	if len(offers) != 1 || offers[0].Kind != "feedback" || offers[0].RuleID != rule {
		f.t.Fatalf("%s was not asked %s on leaving: %+v %+v", customer, rule, offers, explain)
	}
	return offers[0].CouponCode
}

// answer posts an answer with the headers given (a customer credential)
// and the key.
func (f *feedbackFixture) answer(id, key, body string, headers map[string]string) response {
	f.t.Helper()
	return f.c.request("POST", "/v1/feedback/"+id, key, "application/json", body, headers)
}

// The routes' keys: an answer needs the customer's own credential (the
// app key alone answers for no one, even where it may send pings), or
// the admin key naming the customer; another customer's question is
// not found, as one that does not exist; naming another customer than
// the credential's is 403. The scores are the admin key's.
func TestFeedbackAnswerAuth(t *testing.T) {
	f := newFeedbackFixture(t, api.AppAuth{Tokens: true})
	q := f.ask("c-9", fbLat, fbLng, "how-fb")
	jo, kim := f.token("c-9"), f.token("c-10")
	body := `{"score": 9, "comment": "Lovely"}`

	wantError(t, f.answer(q, "", body, jo), 401, "unauthenticated", "")
	wantError(t, f.answer(q, "wrong-key", body, jo), 401, "unauthenticated", "")
	wantError(t, f.answer(q, "app-key", body, nil), 401, "unauthenticated", "")
	wantError(t, f.answer(q, "app-key", body, map[string]string{api.HeaderCustomerToken: "not-a-token"}), 401, "unauthenticated", api.HeaderCustomerToken)
	// Where the app key alone may send pings (NEARCAST_APP_AUTH=key), it
	// still answers for no one.
	keyOnly := newClientWith(t, f.rdb, func(d *api.Deps) { f.with(d); d.AppAuth = api.AppAuth{} })
	if r := keyOnly.do("POST", "/v1/pings", "app-key", fmt.Sprintf(`{"customer_id": "c-11", "lat": %v, "lng": %v}`, outLat, fbLng)); r.Status != 200 {
		t.Fatalf("a ping on the app key alone: %d %s", r.Status, r.Raw)
	}
	wantError(t, keyOnly.request("POST", "/v1/feedback/"+q, "app-key", "application/json", body, nil), 401, "unauthenticated", api.HeaderCustomerToken)

	// Another customer's credential: the question is not theirs.
	wantError(t, f.answer(q, "app-key", body, kim), 404, "not_found", "")
	wantError(t, f.answer(q, "app-key", `{"customer_id": "c-9", "score": 9}`, kim), 403, "permission_denied", "customer_id")
	// The admin key names the customer, or answers for no one.
	wantError(t, f.answer(q, "admin-key", body, nil), 400, "invalid_argument", "customer_id")
	wantError(t, f.answer(q, "admin-key", `{"customer_id": "c 9", "score": 9}`, nil), 400, "invalid_argument", "customer_id")
	wantError(t, f.answer(q, "admin-key", `{"customer_id": "c-10", "score": 9}`, nil), 404, "not_found", "")
	// A revoked token answers for no one either.
	if r := f.c.admin("DELETE", "/v1/customers/c-9/tokens", ""); r.Status != 204 {
		t.Fatalf("revoke: %d %s", r.Status, r.Raw)
	}
	wantError(t, f.answer(q, "app-key", body, jo), 401, "unauthenticated", api.HeaderCustomerToken)

	// The customer's own credential, naming them or not.
	jo = f.token("c-9")
	r := f.answer(q, "app-key", `{"customer_id": "c-9", "score": 9, "comment": "Lovely"}`, jo)
	if r.Status != 201 || r.Body["feedback_id"] != q || r.Body["score"] != 9.0 {
		t.Fatalf("the customer's answer: %d %s", r.Status, r.Raw)
	}
	// The admin key, naming Kim, answers hers (support).
	q10 := f.ask("c-10", fbLat, fbLng, "how-fb")
	if r := f.answer(q10, "admin-key", `{"customer_id": "c-10", "score": 6}`, nil); r.Status != 201 {
		t.Fatalf("the admin's answer for Kim: %d %s", r.Status, r.Raw)
	}

	// The scores are the admin key's.
	for _, path := range []string{"/v1/stores/s-fb/feedback", "/v1/rules/how-fb/feedback"} {
		wantError(t, f.c.do("GET", path, "", ""), 401, "unauthenticated", "")
		wantError(t, f.c.request("GET", path, "app-key", "", "", jo), 403, "permission_denied", "")
		if r := f.c.admin("GET", path, ""); r.Status != 200 || r.Body["answered"] != 2.0 {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Raw)
		}
	}
}

// An answer's faults, each named by its field; a question answered once,
// within its 7 days, on its own scale; a question is no coupon and a
// coupon no question; unknown stores, rules and questions are 404, and
// a report's days are checked.
func TestFeedbackFaults(t *testing.T) {
	f := newFeedbackFixture(t, api.AppAuth{Tokens: true})
	// A coupon rule at s-fb2 too: its code is no question. Lu, who is
	// never asked, gets one.
	coupon := `{"name": "Hello", "trigger": {"on": "enter", "stores": {"ids": ["s-fb2"]}}, "offer": {"title": {"en": "Hi"}, "body": {"en": "A coupon"}}}`
	if r := f.c.admin("PUT", "/v1/rules/hello-fb", coupon); r.Status != 201 {
		t.Fatalf("rule: %d %s", r.Status, r.Raw)
	}
	f.ping("c-11", outLat, fb2Lng, 9)
	f.clock.Advance(10 * time.Minute)
	offers, _ := f.ping("c-11", fb2Lat, fb2Lng, 5)
	if len(offers) != 1 || offers[0].RuleID != "hello-fb" || offers[0].Kind != "" {
		t.Fatalf("Lu's coupon: %+v", offers)
	}
	code := offers[0].CouponCode
	f.clock.Advance(10 * time.Minute)

	q := f.ask("c-9", fbLat, fbLng, "how-fb")
	jo, kim := f.token("c-9"), f.token("c-10")
	for _, tt := range []struct{ body, field, says string }{
		{`{}`, "score", "score is required"},
		{`{"comment": "no score"}`, "score", "score is required"},
		{`{"score": "nine"}`, "score", ""},
		{`{"score": 9.5}`, "score", ""},
		{`{"score": 11}`, "score", "0 to 10"},
		{`{"score": -1}`, "score", "0 to 10"},
		{`{"score": 9, "comment": "` + strings.Repeat("é", 251) + `"}`, "comment", "500 bytes"},
		{`{"score": 9, "rating": 5}`, "rating", ""},
		{`{"score": 9, "customer_id": 42}`, "customer_id", ""},
	} {
		r := f.answer(q, "app-key", tt.body, jo)
		wantError(t, r, 400, "invalid_argument", tt.field)
		if !strings.Contains(r.Raw, tt.says) {
			t.Errorf("%s: %s, want it to say %q", tt.body, r.Raw, tt.says)
		}
	}
	wantError(t, f.c.request("POST", "/v1/feedback/"+q, "app-key", "text/plain", `{"score": 9}`, jo), 415, "unsupported_media_type", "")
	wantError(t, f.answer(q, "app-key", `{"score": 9`, jo), 400, "invalid_argument", "")

	// Questions that are not there: a code the engine did not sign, one
	// it signed and never issued, another's, and a coupon's.
	forged := q[:8] + "0000"
	if forged == q {
		forged = q[:8] + "1111"
	}
	for _, id := range []string{forged, engine.NewCodeSigner([]byte("s")).NewCode(), "nothing", code} {
		wantError(t, f.answer(id, "app-key", `{"score": 9}`, jo), 404, "not_found", "")
	}
	wantError(t, f.answer(code, "app-key", `{"score": 9}`, f.token("c-11")), 404, "not_found", "")
	// A question is not redeemed.
	wantError(t, f.c.admin("POST", "/v1/coupons/"+q+"/redeem", `{"store_id": "s-fb"}`), 422, "failed_precondition", "code")

	// A CSAT question takes 1 to 5.
	qc := f.ask("c-10", fb2Lat, fb2Lng, "csat-fb")
	for _, score := range []int{0, 6, 10} {
		r := f.answer(qc, "app-key", fmt.Sprintf(`{"score": %d}`, score), kim)
		wantError(t, r, 400, "invalid_argument", "score")
		if !strings.Contains(r.Raw, "1 to 5") {
			t.Errorf("a CSAT score of %d: %s", score, r.Raw)
		}
	}
	// This question takes no comment ("comment": false): a score alone.
	wantError(t, f.answer(qc, "app-key", `{"score": 5, "comment": "`+strings.Repeat("é", 250)+`"}`, kim), 400, "invalid_argument", "comment")
	if r := f.answer(qc, "app-key", `{"score": 5}`, kim); r.Status != 201 {
		t.Fatalf("a CSAT answer: %d %s", r.Status, r.Raw)
	}

	// Once: the second answer is 409, whatever its score.
	if r := f.answer(q, "app-key", `{"score": 9}`, jo); r.Status != 201 {
		t.Fatalf("the answer: %d %s", r.Status, r.Raw)
	}
	wantError(t, f.answer(q, "app-key", `{"score": 10}`, jo), 409, "conflict", "")
	wantError(t, f.answer(q, "app-key", `{"score": 11}`, jo), 409, "conflict", "")

	// In time: Kim's next question, 7 days and a minute on, is 410; so it
	// stays unanswered, and its coupon-like record says so.
	f.clock.Advance(40 * 24 * time.Hour) // past the store's gap of 30 days
	late := f.ask("c-10", fb2Lat, fb2Lng, "csat-fb")
	f.clock.Advance(7*24*time.Hour + time.Minute)
	kim = f.token("c-10")
	wantError(t, f.answer(late, "app-key", `{"score": 4}`, kim), 410, "expired", "")
	if r := f.c.admin("GET", "/v1/coupons/"+late, ""); r.Status != 200 || r.Body["kind"] != "feedback" || r.Body["scale"] != "csat" || r.Body["score"] != nil || r.Body["status"] != "expired" {
		t.Fatalf("the late question: %d %s", r.Status, r.Raw)
	}

	// Reports: unknown stores and rules, and their days.
	wantError(t, f.c.admin("GET", "/v1/stores/s-nowhere/feedback", ""), 404, "not_found", "")
	wantError(t, f.c.admin("GET", "/v1/rules/never/feedback", ""), 404, "not_found", "")
	// A coupon rule asks no question: its funnel is its stats.
	if r := f.c.admin("PUT", "/v1/rules/coupon-fb", `{"name": "A coupon", "trigger": {"on": "enter", "stores": {"ids": ["s-fb"]}},
 "offer": {"title": {"en": "Hi"}, "body": {"en": "10% off"}}}`); r.Status != 201 {
		t.Fatalf("a coupon rule: %d %s", r.Status, r.Raw)
	}
	wantError(t, f.c.admin("GET", "/v1/rules/coupon-fb/feedback", ""), 422, "failed_precondition", "rule_id")
	today := time.Now().UTC()
	day := func(d int) string { return today.AddDate(0, 0, d).Format("2006-01-02") }
	for _, path := range []string{"/v1/stores/s-fb/feedback", "/v1/rules/how-fb/feedback"} {
		for _, tt := range []struct{ query, field string }{
			{"?from=yesterday", "from"},
			{"?to=2026-13-01", "to"},
			{"?from=" + day(0) + "&to=" + day(-1), "from"},
			{"?from=" + day(-401) + "&to=" + day(0), "from"},
		} {
			wantError(t, f.c.admin("GET", path+tt.query, ""), 400, "invalid_argument", tt.field)
		}
		if r := f.c.admin("GET", path+"?from="+day(-400)+"&to="+day(0), ""); r.Status != 200 || r.Body["from"] != day(-400) || r.Body["to"] != day(0) {
			t.Fatalf("GET %s over 400 days: %d %s", path, r.Status, r.Raw)
		}
	}
	// The default: the 13 weeks to today.
	if r := f.c.admin("GET", "/v1/stores/s-fb/feedback", ""); r.Body["from"] != day(-90) || r.Body["to"] != day(0) {
		t.Fatalf("the default days: %s", r.Raw)
	}
}

// A customer who did not agree to be asked is not: the rule is explained
// no_consent. One asked about a store is not asked about it again within
// 30 days (feedback_limit).
func TestFeedbackConsentAndLimits(t *testing.T) {
	f := newFeedbackFixture(t, api.AppAuth{Tokens: true})
	result := func(explain []engine.Explanation, rule string) string {
		for _, x := range explain {
			if x.RuleID == rule {
				return x.Result
			}
		}
		return ""
	}
	offers, explain := f.visit("c-11", fbLat, fbLng)
	if len(offers) != 0 || result(explain, "how-fb") != engine.ReasonConsent {
		t.Fatalf("Lu, who did not agree, was asked: %+v %+v", offers, explain)
	}
	if r := f.c.admin("PATCH", "/v1/customers/c-11", `{"consent": {"location": true, "push": true, "feedback": true}}`); r.Status != 200 {
		t.Fatalf("patch: %d %s", r.Status, r.Raw)
	}
	f.clock.Advance(time.Hour)
	f.ask("c-11", fbLat, fbLng, "how-fb")
	f.clock.Advance(24 * time.Hour)
	if offers, explain := f.visit("c-11", fbLat, fbLng); len(offers) != 0 || result(explain, "how-fb") != "feedback_limit" {
		t.Fatalf("asked about s-fb again the next day: %+v %+v", offers, explain)
	}
}

// The scores against counters seeded as the engine writes them: a store's
// day "<scale>|asked", "<scale>|n", "<scale>|<score>"; a rule's funnel
// "issued", "answered", "score|<scale>|<score>". The numbers are worked
// out by hand (engine/feedback_test.go): NPS of 10, 10, 9, 8, 7, 6, 3, 0,
// 10, 9 is 20, 95% interval −34.0 to 74.0; CSAT of 5, 4, 4, 3, 5 is 4.2,
// 3.467 to 4.933.
func TestFeedbackScoresFromCounters(t *testing.T) {
	rdb := srv.Client(t)
	c := newClient(t, rdb)
	ctx := context.Background()
	if r := c.admin("PUT", "/v1/stores/s-fb", fmt.Sprintf(`{"name": "Feedback Café", "lat": %v, "lng": %v}`, fbLat, fbLng)); r.Status != 201 {
		t.Fatalf("store: %d %s", r.Status, r.Raw)
	}
	if r := c.admin("PUT", "/v1/rules/how-fb", ruleAsk); r.Status != 201 {
		t.Fatalf("rule: %d %s", r.Status, r.Raw)
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	week := func(d time.Time) string { y, w := d.ISOWeek(); return fmt.Sprintf("%04d-W%02d", y, w) }
	earlier := today.AddDate(0, 0, -8) // always another ISO week
	seed := func(key string, fields map[string]int64) {
		t.Helper()
		for f, n := range fields {
			if err := rdb.HIncrBy(ctx, key, f, n).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	storeDay := func(d time.Time) string { return "nc:{store:s-fb}:feedback:" + d.Format("20060102") }
	// This week: 0, 3, 6, 9, 9 (NPS −20) and the CSAT answers; the week
	// before: 7, 8, 10, 10, 10 (NPS 60); 100 days ago, out of the
	// default 13 weeks: five 0s.
	seed(storeDay(today), map[string]int64{"nps|asked": 30, "nps|n": 5, "nps|0": 1, "nps|3": 1, "nps|6": 1, "nps|9": 2,
		"csat|asked": 20, "csat|n": 5, "csat|3": 1, "csat|4": 2, "csat|5": 2})
	seed(storeDay(earlier), map[string]int64{"nps|asked": 30, "nps|n": 5, "nps|7": 1, "nps|8": 1, "nps|10": 3})
	seed(storeDay(today.AddDate(0, 0, -100)), map[string]int64{"nps|asked": 5, "nps|n": 5, "nps|0": 5})

	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 0.05 {
			t.Errorf("%s: %.3f, want %.3f", what, got, want)
		}
	}
	get := func(path string) engine.FeedbackReport {
		t.Helper()
		r := c.admin("GET", path, "")
		var rep engine.FeedbackReport
		if err := json.Unmarshal([]byte(r.Raw), &rep); err != nil || r.Status != 200 {
			t.Fatalf("GET %s: %d %v %s", path, r.Status, err, r.Raw)
		}
		return rep
	}
	rep := get("/v1/stores/s-fb/feedback")
	if rep.StoreID != "s-fb" || rep.Asked != 80 || rep.Answered != 15 || rep.MinAnswers != 30 || rep.NPS == nil || rep.CSAT == nil {
		t.Fatalf("the store's report: %+v", rep)
	}
	n := rep.NPS
	if n.Answers != 10 || n.Promoters != 5 || n.Passives != 2 || n.Detractors != 3 || n.EnoughData ||
		fmt.Sprint(n.Distribution) != "[1 0 0 1 0 0 1 1 1 2 3]" {
		t.Fatalf("the store's NPS: %+v", n)
	}
	near("nps", n.Score, 20)
	near("nps low", n.Low, -34.0)
	near("nps high", n.High, 74.0)
	near("csat", rep.CSAT.Mean, 4.2)
	near("csat low", rep.CSAT.Low, 3.467)
	near("csat high", rep.CSAT.High, 4.933)
	if rep.CSAT.Answers != 5 || fmt.Sprint(rep.CSAT.Distribution) != "[0 0 1 2 2]" || rep.CSAT.EnoughData {
		t.Fatalf("the store's CSAT: %+v", rep.CSAT)
	}
	// 15 answers of 80 asked, with Wilson's 95% interval: 11.7% to 28.7%.
	near("response rate", rep.ResponseRate.Value*100, 18.75)
	near("response rate low", rep.ResponseRate.Low*100, 11.71)
	near("response rate high", rep.ResponseRate.High*100, 28.68)
	// The trend: the week before, then this week, each with its own.
	if len(rep.Weeks) != 2 || rep.Weeks[0].Week != week(earlier) || rep.Weeks[1].Week != week(today) ||
		rep.Weeks[0].CSAT != nil || rep.Weeks[1].CSAT == nil || rep.Weeks[0].NPS.Answers != 5 || rep.Weeks[1].NPS.Answers != 5 {
		t.Fatalf("the weeks: %+v", rep.Weeks)
	}
	near("the week before", rep.Weeks[0].NPS.Score, 60)
	near("this week", rep.Weeks[1].NPS.Score, -20)

	// From 100 days ago: five more detractors, and another week.
	rep = get("/v1/stores/s-fb/feedback?from=" + today.AddDate(0, 0, -100).Format("2006-01-02"))
	if rep.NPS.Answers != 15 || rep.NPS.Detractors != 8 || len(rep.Weeks) != 3 {
		t.Fatalf("from 100 days ago: %+v", rep)
	}
	near("nps from 100 days ago", rep.NPS.Score, 100*(5-8)/15.0)
	// Today alone: one week, and enough answers once there are 30.
	day := "?from=" + today.Format("2006-01-02") + "&to=" + today.Format("2006-01-02")
	seed(storeDay(today), map[string]int64{"nps|asked": 25, "nps|n": 25, "nps|10": 25})
	rep = get("/v1/stores/s-fb/feedback" + day)
	if rep.NPS.Answers != 30 || !rep.NPS.EnoughData || rep.CSAT.EnoughData || len(rep.Weeks) != 1 || !rep.Weeks[0].NPS.EnoughData {
		t.Fatalf("today, with 30 NPS answers: %+v %+v", rep, rep.NPS)
	}
	near("today's nps", rep.NPS.Score, 100*(27-3)/30.0)
	// Another store's counters are not this one's.
	if r := c.admin("PUT", "/v1/stores/s-other", `{"name": "Other", "lat": 52.5, "lng": 13.4}`); r.Status != 201 {
		t.Fatal(r.Raw)
	}
	if rep := get("/v1/stores/s-other/feedback"); rep.Asked != 0 || rep.Answered != 0 || rep.NPS != nil || rep.CSAT != nil || len(rep.Weeks) != 0 ||
		rep.ResponseRate.Value != 0 || rep.ResponseRate.High != 1 {
		t.Fatalf("a store without questions: %+v", rep)
	}

	// A rule's scores, from its funnel: questions issued are asked.
	funnel := func(d time.Time) string { return "nc:{rule:how-fb}:funnel:" + d.Format("20060102") }
	seed(funnel(today), map[string]int64{"issued": 30, "answered": 3, "score|nps|0": 1, "score|nps|9": 1, "score|nps|10": 1, "sent": 28, "skip:audience": 4})
	seed(funnel(earlier), map[string]int64{"issued": 10, "answered": 2, "score|nps|7": 1, "score|nps|3": 1})
	rep = get("/v1/rules/how-fb/feedback")
	if rep.RuleID != "how-fb" || rep.StoreID != "" || rep.Asked != 40 || rep.Answered != 5 || rep.NPS == nil || rep.CSAT != nil ||
		rep.NPS.Promoters != 2 || rep.NPS.Passives != 1 || rep.NPS.Detractors != 2 || len(rep.Weeks) != 2 {
		t.Fatalf("the rule's report: %+v %+v", rep, rep.NPS)
	}
	near("the rule's nps", rep.NPS.Score, 0)
	// 5 of 40: 12.5%, Wilson 5.5% to 26.1%.
	near("the rule's response rate", rep.ResponseRate.Value*100, 12.5)
	near("the rule's response rate low", rep.ResponseRate.Low*100, 5.46)
	near("the rule's response rate high", rep.ResponseRate.High*100, 26.11)
	near("the rule's week before", rep.Weeks[0].NPS.Score, -50)
	near("the rule's week", rep.Weeks[1].NPS.Score, 100*(2-1)/3.0)
	// A deleted rule keeps its scores.
	if r := c.admin("DELETE", "/v1/rules/how-fb", ""); r.Status != 204 {
		t.Fatal(r.Raw)
	}
	if rep := get("/v1/rules/how-fb/feedback"); rep.Answered != 5 {
		t.Fatalf("a deleted rule's scores: %+v", rep)
	}
}

// The answer is the customer's: their export shows it (the question with
// its score and comment, their last scores in their visits), audiences
// see it (a detractor gets the recovery offer, not the promotion), and
// their erasure takes it, comment and all, while the store's scores,
// which name no one, stay.
func TestFeedbackExportAndErasure(t *testing.T) {
	f := newFeedbackFixture(t, api.AppAuth{Tokens: true})
	for _, put := range []struct{ path, body string }{{"/v1/rules/sorry-fb", ruleSorry}, {"/v1/rules/promo-fb", rulePromo}} {
		if r := f.c.admin("PUT", put.path, put.body); r.Status != 201 {
			t.Fatalf("PUT %s: %d %s", put.path, r.Status, r.Raw)
		}
	}
	// Jo's first visit: the promotion on entering, the question on
	// leaving six minutes later; she answers 3, a detractor.
	q := f.ask("c-9", fbLat, fbLng, "how-fb")
	const comment = "Der Kaffee war kalt, leider"
	if r := f.answer(q, "app-key", `{"score": 3, "comment": "`+comment+`"}`, f.token("c-9")); r.Status != 201 {
		t.Fatalf("the answer: %d %s", r.Status, r.Raw)
	}
	r := f.c.admin("GET", "/v1/customers/c-9/export", "")
	var ex struct {
		Coupons map[string]map[string]string
		Visits  map[string]string
	}
	if err := json.Unmarshal([]byte(r.Raw), &ex); err != nil || r.Status != 200 {
		t.Fatalf("export: %d %v %s", r.Status, err, r.Raw)
	}
	rec := ex.Coupons[q]
	if rec["kind"] != "feedback" || rec["scale"] != "nps" || rec["score"] != "3" || rec["comment"] != comment || rec["answered_at"] == "" || rec["rule_id"] != "how-fb" {
		t.Fatalf("the question in the export: %v", rec)
	}
	if ex.Visits["nps"] != "3" || ex.Visits["fb:s-fb"] != "3" || ex.Visits["fb_at"] != rec["answered_at"] {
		t.Fatalf("the answer in the visits: %v", ex.Visits)
	}
	if r := f.c.admin("GET", "/v1/coupons/"+q, ""); r.Body["score"] != 3.0 || r.Body["answered_at"] == nil || strings.Contains(r.Raw, comment) {
		t.Fatalf("the question read as a coupon: %s", r.Raw)
	}

	// A day on, a detractor entering gets the recovery offer, not the
	// promotion.
	f.clock.Advance(24 * time.Hour)
	f.ping("c-9", outLat, fbLng, 8)
	f.clock.Advance(10 * time.Minute)
	offers, explain := f.ping("c-9", fbLat, fbLng, 6)
	if len(offers) != 1 || offers[0].RuleID != "sorry-fb" {
		t.Fatalf("a detractor a day on was offered %+v: %+v", offers, explain)
	}

	// Erased: the question, its comment and the visits go; the store's
	// scores stay.
	if r := f.c.admin("DELETE", "/v1/customers/c-9", ""); r.Status != 204 {
		t.Fatalf("erase: %d %s", r.Status, r.Raw)
	}
	wantError(t, f.c.admin("GET", "/v1/customers/c-9/export", ""), 404, "not_found", "")
	wantError(t, f.c.admin("GET", "/v1/coupons/"+q, ""), 404, "not_found", "")
	keys, err := redistest.Keys(context.Background(), f.rdb, "*")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		// (The tokens' generation stays, so that her tokens stay revoked.)
		if strings.Contains(k, "{c:c-9}") && !strings.HasSuffix(k, ":tokens") {
			t.Errorf("%s outlived the erasure", k)
		}
		if m, err := f.rdb.HGetAll(context.Background(), k).Result(); err == nil {
			for field, v := range m {
				if strings.Contains(v, comment) || strings.Contains(field, comment) {
					t.Errorf("the comment outlived the erasure in %s", k)
				}
			}
		} else if v, err := f.rdb.Get(context.Background(), k).Result(); err == nil && strings.Contains(v, comment) {
			t.Errorf("the comment outlived the erasure in %s", k)
		}
	}
	if r := f.c.admin("GET", "/v1/stores/s-fb/feedback", ""); r.Body["answered"] != 1.0 || r.Body["asked"] != 1.0 {
		t.Fatalf("the store's scores after the erasure: %s", r.Raw)
	}
}
