package engine

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// FunnelDay is what became of a rule's offers on one UTC day.
type FunnelDay struct {
	Date string `json:"date"`
	// Evaluated counts the times the rule was looked at (an event at one
	// of its stores); Matched those that passed audience, schedule and
	// consent; Skipped the reasons it did not fire.
	Evaluated int            `json:"evaluated"`
	Matched   int            `json:"matched"`
	Skipped   map[string]int `json:"skipped"`
	Holdout   int            `json:"holdout"`
	Issued    int            `json:"issued"`
	Sent      int            `json:"sent"`
	Failed    map[string]int `json:"failed"`
	Expired   int            `json:"expired"`
	Opened    int            `json:"opened"`
	Redeemed  int            `json:"redeemed"`
	// Returned counts customers offered the rule that day (treated) or
	// held out who came back to the store within 7 days.
	ReturnedTreated int `json:"returned_treated"`
	ReturnedHoldout int `json:"returned_holdout"`
}

// HoldoutComparison is the uplift question: of the customers who got the
// offer, and of those held out, what share came back within 7 days?
type HoldoutComparison struct {
	Treated         int     `json:"treated"`
	TreatedReturned int     `json:"treated_returned"`
	TreatedShare    float64 `json:"treated_share"`
	Holdout         int     `json:"holdout"`
	HoldoutReturned int     `json:"holdout_returned"`
	HoldoutShare    float64 `json:"holdout_share"`
}

// FunnelReport is a rule's funnel over a range of days.
type FunnelReport struct {
	RuleID            string            `json:"rule_id"`
	Days              []FunnelDay       `json:"days"`
	HoldoutComparison HoldoutComparison `json:"holdout_comparison"`
	// Experiment compares the variants of a rule whose offer has some.
	Experiment *ExperimentReport `json:"experiment,omitempty"`
}

// MaxFunnelDays bounds a report.
const MaxFunnelDays = 400

// Funnel reads a rule's counters for the UTC days from..to, inclusive.
func Funnel(ctx context.Context, rdb redis.UniversalClient, rule string, from, to time.Time) (*FunnelReport, error) {
	days, fields, err := funnelDays(ctx, rdb, rule, from, to)
	if err != nil {
		return nil, err
	}
	rep := &FunnelReport{RuleID: rule, Days: make([]FunnelDay, 0, len(days))}
	for i, d := range days {
		fd := FunnelDay{Date: d.Format("2006-01-02"), Skipped: map[string]int{}, Failed: map[string]int{}}
		for k, v := range fields[i] {
			n, _ := strconv.Atoi(v)
			switch {
			case strings.HasPrefix(k, "skip:"):
				fd.Skipped[k[5:]] = n
			case strings.HasPrefix(k, "failed:"):
				fd.Failed[k[7:]] = n
			}
			switch k {
			case "holdout":
				fd.Holdout = n
			case "issued":
				fd.Issued = n
			case "sent":
				fd.Sent = n
			case "expired":
				fd.Expired = n
			case "opened":
				fd.Opened = n
			case "redeemed":
				fd.Redeemed = n
			case "returned_treated":
				fd.ReturnedTreated = n
			case "returned_holdout":
				fd.ReturnedHoldout = n
			}
		}
		// Every rule looked at has one result, so the results add up to
		// what was evaluated, and those that reached the atomic step to
		// what matched.
		fd.Evaluated, fd.Matched = fd.Issued+fd.Holdout, fd.Issued+fd.Holdout
		for reason, n := range fd.Skipped {
			fd.Evaluated += n
			if reached(reason) {
				fd.Matched += n
			}
		}
		hc := &rep.HoldoutComparison
		hc.Treated += fd.Issued
		hc.TreatedReturned += fd.ReturnedTreated
		hc.Holdout += fd.Holdout
		hc.HoldoutReturned += fd.ReturnedHoldout
		rep.Days = append(rep.Days, fd)
	}
	hc := &rep.HoldoutComparison
	if hc.Treated > 0 {
		hc.TreatedShare = float64(hc.TreatedReturned) / float64(hc.Treated)
	}
	if hc.Holdout > 0 {
		hc.HoldoutShare = float64(hc.HoldoutReturned) / float64(hc.Holdout)
	}
	return rep, nil
}

// funnelTTL keeps a day's counters for a year and a bit.
const funnelTTL = 400 * 24 * time.Hour

// reached says whether a rule with this result got as far as the atomic
// step: its audience, schedule and consent all held.
func reached(result string) bool {
	switch result {
	case ResultSent, ReasonHoldout, ReasonCap, ReasonLimit, ReasonStoreCap, ReasonBudget, ReasonRecent, ReasonLower, ReasonRenderError, ReasonFeedbackLimit:
		return true
	}
	return false
}

// funnelCmds are the commands that count, in each explained rule's
// funnel for the UTC day, what became of it: one counter per result, from
// which the reader derives how many were evaluated and matched. A key
// gets its TTL the first time this process counts in it that day.
func (e *Engine) funnelCmds(ctx context.Context, day string, explain []Explanation) []redis.Cmder {
	cmds := make([]redis.Cmder, 0, len(explain))
	for _, x := range explain {
		k := funnelKey(x.RuleID, day)
		field := funnelField(x.Result)
		cmds = append(cmds, redis.NewIntCmd(ctx, "hincrby", k, field, 1))
		if x.Result == ResultSent || x.Result == ReasonHoldout {
			// Per store, and per variant: the experiments' results.
			for _, f := range variantFields(field, x.Variant, x.StoreID) {
				cmds = append(cmds, redis.NewIntCmd(ctx, "hincrby", k, f, 1))
			}
		}
		if e.funnelTTLs.first(day, k) {
			cmds = append(cmds, redis.NewBoolCmd(ctx, "expire", k, int64(funnelTTL/time.Second)))
		}
	}
	return cmds
}

// returnCmds count returns after offers in the rules' funnels.
func (e *Engine) returnCmds(ctx context.Context, returns []funnelCount) []redis.Cmder {
	var cmds []redis.Cmder
	today := e.now().UTC().Format("20060102")
	for _, r := range returns {
		k := funnelKey(r.rule, r.day)
		cmds = append(cmds, redis.NewIntCmd(ctx, "hincrby", k, r.field, 1))
		if e.funnelTTLs.first(today, k) {
			cmds = append(cmds, redis.NewBoolCmd(ctx, "expire", k, int64(funnelTTL/time.Second)))
		}
	}
	return cmds
}

// onceADay remembers the keys given their TTL today.
type onceADay struct {
	mu   sync.Mutex
	day  string
	done map[string]bool
}

// forget has first report key as new again (its TTL was not set).
func (o *onceADay) forget(day, key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.day == day {
		delete(o.done, key)
	}
}

// first reports whether key is new today, and remembers it.
func (o *onceADay) first(day, key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.day != day {
		o.day, o.done = day, map[string]bool{}
	}
	if o.done[key] {
		return false
	}
	o.done[key] = true
	return true
}

// count adds what became of each explained rule to its funnel, and the
// returns the presence step counted, in the replica's tally; a dry run
// counts nothing.
func (e *Engine) count(now time.Time, explain []Explanation, opt Options, returns []funnelCount) {
	if opt.DryRun || len(explain)+len(returns) == 0 {
		return
	}
	t := &e.tally
	t.mu.Lock()
	day := t.dayOf(now)
	for _, x := range explain {
		field := t.fieldOf(x.Result)
		t.counts[funnelCount{x.RuleID, field, day}]++
		if x.Result == ResultSent || x.Result == ReasonHoldout {
			for _, f := range variantFields(field, x.Variant, x.StoreID) {
				t.counts[funnelCount{x.RuleID, f, day}]++
			}
		}
	}
	for _, r := range returns {
		t.counts[r]++
	}
	// The write is armed and recorded as work behind the answers at once,
	// under mu: a ping whose counts join it is answered only after, and
	// Settled, called after that answer, waits for it.
	var done func()
	arm := t.flush == nil
	if arm {
		t.flush, done = make(chan struct{}), e.behind.start()
	}
	flush := t.flush
	t.mu.Unlock()
	if arm {
		if t.armed != nil {
			t.armed() // tests only
		}
		e.runAfter(done, flush, funnelTallyEvery, "funnel counters not updated", e.writeTally)
	}
}

// funnelTallyEvery is how long a replica adds up the funnel counts of the
// pings it answers before it writes them: one HINCRBY for each rule,
// result and day in that time, rather than one for every rule each ping
// looked at (a ping that passes a store too fast to enter is told so by
// every rule of the store). A crash loses the counts not written yet
// (these, and a write on the wire); a write that fails is logged and its
// counts dropped, as a ping's own were; a stop writes them, and so does a
// reader of the funnel on this replica (Settled).
// The returns after offers that the presence step counts go the same way.
const funnelTallyEvery = 100 * time.Millisecond

// funnelWriteTimeout bounds a write of the tally.
const funnelWriteTimeout = time.Second

// funnelTally is the funnel counts not written yet.
type funnelTally struct {
	mu     sync.Mutex
	counts map[funnelCount]int64
	// flush, while a write is armed, is closed to have it written at
	// once; flushing says it was.
	flush    chan struct{}
	flushing bool
	// spare is the map the last write emptied, for the next counts.
	spare map[funnelCount]int64
	// armed, when set (tests only), runs after a write is armed, before
	// its goroutine starts.
	armed func()
	// The day counted in, and the fields of the results, so that a count
	// allocates nothing once its key is known.
	dayN   int64
	day    string
	fields map[string]string
}

// dayOf is now's UTC day as a funnel names it (yyyymmdd), under mu.
func (t *funnelTally) dayOf(now time.Time) string {
	if n := now.Unix() / 86400; n != t.dayN || t.day == "" {
		t.dayN, t.day = n, now.UTC().Format("20060102")
	}
	if t.counts == nil {
		t.counts, t.spare = t.spare, nil
		if t.counts == nil {
			t.counts = map[funnelCount]int64{}
		}
	}
	return t.day
}

// funnelField is the funnel's field for a rule's result.
func funnelField(result string) string {
	switch result {
	case ResultSent:
		return "issued"
	case ReasonHoldout:
		return "holdout"
	}
	return "skip:" + result
}

// fieldOf is funnelField, each built once, under mu.
func (t *funnelTally) fieldOf(result string) string {
	f, ok := t.fields[result]
	if !ok {
		if t.fields == nil {
			t.fields = map[string]string{}
		}
		f = funnelField(result)
		t.fields[result] = f
	}
	return f
}

// flushNow has an armed write of the tally go at once.
func (t *funnelTally) flushNow() {
	t.mu.Lock()
	if t.flush != nil && !t.flushing {
		close(t.flush)
		t.flushing = true
	}
	t.mu.Unlock()
}

// writeTally writes the counts tallied so far, in one round trip; counts
// that come meanwhile arm the next write.
func (e *Engine) writeTally(ctx context.Context) error {
	t := &e.tally
	t.mu.Lock()
	// today is the day of the last count (not the engine's clock, which
	// a simulation moves on a goroutine of its own).
	counts, today := t.counts, t.day
	t.counts, t.flush, t.flushing = nil, nil, false
	t.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	cmds := make([]redis.Cmder, 0, len(counts)+len(counts)/4)
	for c, n := range counts {
		k := funnelKey(c.rule, c.day)
		cmds = append(cmds, redis.NewIntCmd(ctx, "hincrby", k, c.field, n))
		if e.funnelTTLs.first(today, k) {
			cmds = append(cmds, redis.NewBoolCmd(ctx, "expire", k, int64(funnelTTL/time.Second)))
		}
	}
	// A pipeline of its own, on a connection from the pool, not the
	// pings' lane: a tally of a thousand counters would hold up the pings
	// behind it for the milliseconds it takes to send and read. Bounded
	// by funnelWriteTimeout, so that a stalled Redis keeps a few of these
	// on the wire at most, not one every 100 ms for 5 s.
	ctx, cancel := context.WithTimeout(ctx, funnelWriteTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	for _, c := range cmds {
		_ = pipe.Process(ctx, c)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for _, c := range cmds {
		if c.Name() == "expire" && c.Err() != nil {
			e.funnelTTLs.forget(today, c.Args()[1].(string)) // the next write tries again
		}
	}
	if len(counts) <= 4096 { // a burst's map is let go, not kept grown
		clear(counts)
		t.mu.Lock()
		t.spare = counts
		t.mu.Unlock()
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return err
		}
	}
	return nil
}

// countOne adds one to a funnel counter of a rule, today, and to its
// per-variant and per-store counters (variantFields).
func countOne(ctx context.Context, rdb redis.UniversalClient, now time.Time, rule, field, variant, store string) error {
	if rule == "" {
		return nil
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		countIn(ctx, p, now, rule, field, variant, store)
		return nil
	})
	return err
}

// countIn queues, in a pipeline of the caller's, one more of a funnel
// counter of a rule, today (UTC), with its per-variant and per-store
// counters, and the day's TTL.
func countIn(ctx context.Context, p redis.Pipeliner, now time.Time, rule, field, variant, store string) {
	k := funnelKey(rule, now.UTC().Format("20060102"))
	p.HIncrBy(ctx, k, field, 1)
	for _, f := range variantFields(field, variant, store) {
		p.HIncrBy(ctx, k, f, 1)
	}
	p.Expire(ctx, k, funnelTTL)
}

// funnelCount is one count in a rule's funnel of a day.
type funnelCount struct{ rule, field, day string }
