package engine

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// The customer's voice (issue 22). A rule of kind "feedback" asks a
// question instead of offering a coupon, typically on exit after a visit
// of some minutes. It is issued as an offer is, under the same caps,
// quiet hours and consents, plus the customer's consent to be asked
// (consent.feedback) and limits of its own (FeedbackStoreGap,
// FeedbackPerMonth), all in the customer's step. Its id is a coupon code,
// its record the question's; the push carries it. The customer answers
// once (Ledger.Answer) within the question's validity (7 days at most),
// and the answer goes where audiences see it (visit.last_feedback,
// customer.last_nps) and into each store's and rule's scores.

// feedbackDayKey holds a store's questions and answers of a UTC day:
// "<scale>|asked", "<scale>|n" (answers) and "<scale>|<score>" (answers
// of each score). It names no customer; TTL 400 days.
func feedbackDayKey(store, day string) string { return "nc:{store:" + store + "}:feedback:" + day }

// feedbackTTL keeps a day's scores for a year and a bit.
const feedbackTTL = 400 * 24 * time.Hour

// feedbackAnswerScript records an answer. KEYS: the question's record,
// the customer's visits, their journal of events out. ARGV: now ms, the
// score, the comment ("" none), the event types journaled, the id.
// Answers {"ok", rule, store, scale}, {"missing"}, {"answered"},
// {"late"}, {"bad_score", lowest, highest} or {"no_comment"} (a comment to
// a question that takes none).
var feedbackAnswerScript = script("feedback_answer", "journal")

// ScoreError is a score out of its question's scale.
type ScoreError struct{ Lo, Hi int }

func (e *ScoreError) Error() string {
	return fmt.Sprintf("score must be a whole number from %d to %d", e.Lo, e.Hi)
}

// Answer records a customer's answer to a question they were asked. A
// question of another customer is not found, exactly like one that does
// not exist.
func (l *Ledger) Answer(ctx context.Context, id, customerID string, score int, comment string) error {
	id = NormalizeCode(id)
	if !l.coupons.Valid(id) || rules.ValidID("customer_id", customerID) != nil {
		return rules.ErrNotFound
	}
	if len(comment) > rules.MaxCommentBytes {
		return rules.Invalid("comment", "a comment is at most %d bytes", rules.MaxCommentBytes)
	}
	now := l.now()
	keys := customerKeys(customerID, partCoupon+id, partVisits, partEvents)
	out, err := feedbackAnswerScript.Run(ctx, l.rdb, keys, now.UnixMilli(), score, comment, l.events.Wanted(), id).StringSlice()
	if err != nil {
		return rules.RedisErr("answer", err)
	}
	switch out[0] {
	case "missing":
		return rules.ErrNotFound
	case "answered":
		return ErrAnswered
	case "late":
		return ErrLate
	case "no_comment":
		return rules.Invalid("comment", "this question takes a score only, no comment")
	case "bad_score":
		lo, _ := strconv.Atoi(out[1])
		hi, _ := strconv.Atoi(out[2])
		return &ScoreError{lo, hi}
	}
	rule, store, scale := out[1], out[2], out[3]
	if l.events.wants("feedback.answered") {
		l.events.Kick(customerID)
	}
	// The scores: the store's day and the rule's funnel (no customer in
	// either). A failure leaves the answer recorded and the score short.
	day := now.UTC().Format("20060102")
	_, err = l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		k := feedbackDayKey(store, day)
		p.HIncrBy(ctx, k, scale+"|n", 1)
		p.HIncrBy(ctx, k, scale+"|"+strconv.Itoa(score), 1)
		p.Expire(ctx, k, feedbackTTL)
		countIn(ctx, p, now, rule, "answered", "", "")
		countIn(ctx, p, now, rule, "score|"+scale+"|"+strconv.Itoa(score), "", "")
		return nil
	})
	if err != nil {
		l.log.Warn("an answer recorded, its scores not updated", "rule_id", rule, "store_id", store, "err", err)
	}
	return nil
}

// askedCmds count a question asked in its store's scores.
func askedCmds(ctx context.Context, store, scale string, now time.Time) []redis.Cmder {
	k := feedbackDayKey(store, now.UTC().Format("20060102"))
	return []redis.Cmder{redis.NewIntCmd(ctx, "hincrby", k, scale+"|asked", 1),
		redis.NewBoolCmd(ctx, "expire", k, int64(feedbackTTL/time.Second))}
}

// MinFeedbackAnswers is the least answers a score needs before it is
// shown as one ("not enough answers" below).
const MinFeedbackAnswers = 30

// NPSScore is a Net Promoter Score: the share of promoters (9 and 10)
// minus that of detractors (0 to 6), from -100 to 100, with a 95%
// interval from the normal approximation of the mean of +1, 0 and −1
// (variance p + d − (p − d)²).
type NPSScore struct {
	Answers      int     `json:"answers"`
	Promoters    int     `json:"promoters"`
	Passives     int     `json:"passives"`
	Detractors   int     `json:"detractors"`
	Score        float64 `json:"score"`
	Low          float64 `json:"low"`
	High         float64 `json:"high"`
	Distribution []int   `json:"distribution"` // answers of 0 to 10
	EnoughData   bool    `json:"enough_data"`
}

// CSATScore is the mean of answers from 1 to 5 with a 95% interval
// (mean ± 1.96 standard errors, the sample's standard deviation).
type CSATScore struct {
	Answers      int     `json:"answers"`
	Mean         float64 `json:"mean"`
	Low          float64 `json:"low"`
	High         float64 `json:"high"`
	Distribution []int   `json:"distribution"` // answers of 1 to 5
	EnoughData   bool    `json:"enough_data"`
}

// NPSOf scores answers counted by score (dist[s], s from 0 to 10).
func NPSOf(dist []int) *NPSScore {
	s := &NPSScore{Distribution: dist}
	for score, n := range dist {
		s.Answers += n
		switch {
		case score >= 9:
			s.Promoters += n
		case score >= 7:
			s.Passives += n
		default:
			s.Detractors += n
		}
	}
	s.EnoughData = s.Answers >= MinFeedbackAnswers
	if s.Answers == 0 {
		s.Low, s.High = -100, 100
		return s
	}
	n := float64(s.Answers)
	p, d := float64(s.Promoters)/n, float64(s.Detractors)/n
	se := math.Sqrt(math.Max(p+d-(p-d)*(p-d), 0) / n)
	s.Score = 100 * (p - d)
	s.Low, s.High = math.Max(-100, 100*(p-d-z95*se)), math.Min(100, 100*(p-d+z95*se))
	return s
}

// CSATOf scores answers counted by score (dist[s-1], s from 1 to 5).
func CSATOf(dist []int) *CSATScore {
	s := &CSATScore{Distribution: dist}
	sum := 0.0
	for i, n := range dist {
		s.Answers += n
		sum += float64((i + 1) * n)
	}
	s.EnoughData = s.Answers >= MinFeedbackAnswers
	if s.Answers == 0 {
		s.Low, s.High = 1, 5
		return s
	}
	n := float64(s.Answers)
	s.Mean = sum / n
	ss := 0.0
	for i, k := range dist {
		ss += float64(k) * (float64(i+1) - s.Mean) * (float64(i+1) - s.Mean)
	}
	se := 0.0
	if s.Answers > 1 {
		se = math.Sqrt(ss/(n-1)) / math.Sqrt(n)
	}
	s.Low, s.High = math.Max(1, s.Mean-z95*se), math.Min(5, s.Mean+z95*se)
	return s
}

// FeedbackWeek is one ISO week's scores.
type FeedbackWeek struct {
	Week string     `json:"week"` // "2026-W48"
	NPS  *NPSScore  `json:"nps,omitempty"`
	CSAT *CSATScore `json:"csat,omitempty"`
}

// FeedbackReport is a store's (or a rule's) scores over a range of UTC
// days, with each week's for the trend.
type FeedbackReport struct {
	StoreID      string         `json:"store_id,omitempty"`
	RuleID       string         `json:"rule_id,omitempty"`
	From         string         `json:"from"`
	To           string         `json:"to"`
	Asked        int            `json:"asked"`
	Answered     int            `json:"answered"`
	ResponseRate Rate           `json:"response_rate"`
	NPS          *NPSScore      `json:"nps,omitempty"`
	CSAT         *CSATScore     `json:"csat,omitempty"`
	Weeks        []FeedbackWeek `json:"weeks"`
	MinAnswers   int            `json:"min_answers"`
}

// feedbackTally adds up counts of scores.
type feedbackTally struct {
	asked    int
	nps      []int
	csat     []int
	answered int
}

func newFeedbackTally() *feedbackTally {
	return &feedbackTally{nps: make([]int, 11), csat: make([]int, 5)}
}

// add counts a field: "<scale>|asked", "<scale>|<score>" (the store's
// day) or "score|<scale>|<score>" and "issued" (a rule's funnel).
func (t *feedbackTally) add(field string, n int) {
	f := strings.TrimPrefix(field, "score|")
	scale, rest, ok := strings.Cut(f, "|")
	if !ok {
		return
	}
	if rest == "asked" {
		t.asked += n
		return
	}
	score, err := strconv.Atoi(rest)
	if err != nil {
		return
	}
	switch {
	case scale == rules.ScaleNPS && score >= 0 && score <= 10:
		t.nps[score] += n
		t.answered += n
	case scale == rules.ScaleCSAT && score >= 1 && score <= 5:
		t.csat[score-1] += n
		t.answered += n
	}
}

func (t *feedbackTally) scores() (*NPSScore, *CSATScore) {
	var nps *NPSScore
	var csat *CSATScore
	if sum(t.nps) > 0 {
		nps = NPSOf(t.nps)
	}
	if sum(t.csat) > 0 {
		csat = CSATOf(t.csat)
	}
	return nps, csat
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// StoreFeedback is a store's scores over the UTC days from..to.
func StoreFeedback(ctx context.Context, rdb redis.UniversalClient, store string, from, to time.Time) (*FeedbackReport, error) {
	return feedbackReport(ctx, rdb, from, to, func(d string) string { return feedbackDayKey(store, d) }, &FeedbackReport{StoreID: store})
}

// RuleFeedback is a feedback rule's scores over the UTC days from..to,
// from its funnel (questions asked are its offers issued).
func RuleFeedback(ctx context.Context, rdb redis.UniversalClient, rule string, from, to time.Time) (*FeedbackReport, error) {
	return feedbackReport(ctx, rdb, from, to, func(d string) string { return funnelKey(rule, d) }, &FeedbackReport{RuleID: rule})
}

func feedbackReport(ctx context.Context, rdb redis.UniversalClient, from, to time.Time, key func(day string) string, rep *FeedbackReport) (*FeedbackReport, error) {
	days, fields, err := readDays(ctx, rdb, from, to, key)
	if err != nil {
		return nil, err
	}
	all := newFeedbackTally()
	var week *feedbackTally
	weekName := ""
	flush := func() {
		if week != nil && week.answered > 0 {
			nps, csat := week.scores()
			rep.Weeks = append(rep.Weeks, FeedbackWeek{Week: weekName, NPS: nps, CSAT: csat})
		}
	}
	for i, d := range days {
		y, w := d.ISOWeek()
		if name := fmt.Sprintf("%04d-W%02d", y, w); name != weekName {
			flush()
			week, weekName = newFeedbackTally(), name
		}
		for k, v := range fields[i] {
			n, _ := strconv.Atoi(v)
			if rep.RuleID != "" && k == "issued" {
				all.asked += n
				continue
			}
			all.add(k, n)
			week.add(k, n)
		}
	}
	flush()
	rep.From, rep.To = from.UTC().Format("2006-01-02"), to.UTC().Format("2006-01-02")
	rep.Asked, rep.Answered = all.asked, all.answered
	rep.ResponseRate = Wilson(min(all.answered, all.asked), all.asked)
	rep.NPS, rep.CSAT = all.scores()
	rep.MinAnswers = MinFeedbackAnswers
	if rep.Weeks == nil {
		rep.Weeks = []FeedbackWeek{}
	}
	return rep, nil
}
