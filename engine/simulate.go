package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// MaxSimulatedPings bounds one simulation.
const MaxSimulatedPings = 400

// simulationTimeout bounds a simulated walk on its sandbox; a walk of
// MaxSimulatedPings takes some 0.4 s.
const simulationTimeout = 10 * time.Second

// Sandbox makes the store a simulated walk runs on: an empty Redis of the
// walk's own, in this process (cmd/nearcast gives a miniredis), which
// release closes and throws away.
type Sandbox func() (rdb redis.UniversalClient, release func(), err error)

// Step is what one ping of a simulated walk caused.
type Step struct {
	TS time.Time `json:"ts"`
	Result
	// PhoneSends says whether a phone pacing itself by the answers to the
	// pings it sent before (PhoneWake) would have sent this one at all.
	// Every step is evaluated either way, as if sent.
	PhoneSends bool `json:"phone_sends"`
	// PhoneWake is why the phone sends it (one of the Wake… values); empty
	// when it would not.
	PhoneWake string `json:"phone_wake,omitempty"`
	// Answer is what became of the step's answer to the last question the
	// customer was asked, when the step gave one.
	Answer *SimulatedAnswer `json:"answer,omitempty"`
}

// SimulatedAnswer is a simulated customer's answer to a question.
type SimulatedAnswer struct {
	FeedbackID string `json:"feedback_id,omitempty"`
	Score      int    `json:"score"`
	// Result is "answered", or why not: "no_question" (none asked yet in
	// the walk), "answered_already", "late", "bad_score".
	Result string `json:"result"`
}

// Why a phone that follows the answers' Monitor and NextPing sends a ping.
const (
	// WakeFirst: the first ping of a walk.
	WakeFirst = "first"
	// WakeUnpaced: the answer to the last ping sent had neither monitor
	// nor next ping (no consent, a fix too unsure or too old): nothing
	// holds the phone back.
	WakeUnpaced = "unpaced"
	// WakeRegion: the fix lies on the other side of a monitored region's
	// edge than the last ping sent: the OS wakes the app on the crossing.
	WakeRegion = "region"
	// WakeCircle: the fix lies outside the wake circle.
	WakeCircle = "wake"
	// WakeDistance: the fix lies next_ping.distance_m or more from the
	// last ping sent.
	WakeDistance = "distance"
	// WakeTime: next_ping.after_s or more have passed since the last ping
	// sent.
	WakeTime = "time"
)

// PhoneWake says whether, and why, a phone would send a ping at p, having
// last sent the ping sent and been answered last: the first ping (sent
// nil) is sent; else a crossing of a region of last's monitor (inside vs
// outside: the fix and sent on either side of its edge), leaving its
// wake circle, moving next_ping.distance_m from sent, or next_ping.after_s
// seconds after sent wake the phone. An answer without monitor and next
// ping (no consent) holds nothing back: every fix is sent; one with a
// next ping alone (a browser) paces by it. "" when the phone stays asleep.
func PhoneWake(sent *Ping, last *Result, p Ping) string {
	switch {
	case sent == nil:
		return WakeFirst
	case last == nil || last.Monitor == nil && last.NextPing == nil:
		return WakeUnpaced
	}
	if m := last.Monitor; m != nil {
		for _, r := range m.RegionList() {
			if inCircle(r, sent.Lat, sent.Lng) != inCircle(r, p.Lat, p.Lng) {
				return WakeRegion
			}
		}
		if m.Wake != nil && !inCircle(*m.Wake, p.Lat, p.Lng) {
			return WakeCircle
		}
	}
	if np := last.NextPing; np != nil {
		if geo.DistanceM(sent.Lat, sent.Lng, p.Lat, p.Lng) >= float64(np.DistanceM) {
			return WakeDistance
		}
		if np.AfterS != nil && p.TS.Sub(sent.TS) >= time.Duration(*np.AfterS)*time.Second {
			return WakeTime
		}
	}
	return ""
}

func inCircle(r Region, lat, lng float64) bool {
	return geo.DistanceM(r.Lat, r.Lng, lat, lng) <= float64(r.RadiusM)
}

// Simulate walks a customer through pings, one after another, as if they
// were sent at their times, and answers what each caused, explained,
// without changing anything: the customer's state (profile, devices,
// presence, caps, visits) and the budgets of the rules are copied into a
// sandbox, the empty Redis newSandbox makes, thrown away at the end,
// where the pings move presence and issue coupons for real. So a walk
// shows entering, staying and leaving, caps reached along the way, and
// any time of day.
// Coupons issued in a simulation exist nowhere else; no push is sent.
// A rule's per-store daily counts are not copied: the sandbox starts them
// at zero. Each step says whether a phone following the answers to the
// steps it sent would have sent it (PhoneWake); every step is evaluated
// all the same.
func (e *Engine) Simulate(ctx context.Context, newSandbox Sandbox, customerID string, pings []Ping) ([]Step, error) {
	if len(pings) > MaxSimulatedPings {
		return nil, fmt.Errorf("a simulation takes at most %d pings", MaxSimulatedPings)
	}
	snap := e.snaps.Current()
	if snap == nil {
		return nil, ErrNoSnapshot
	}
	if newSandbox == nil {
		return nil, errors.New("simulation sandbox: none given")
	}
	rdb, release, err := newSandbox()
	if err != nil {
		return nil, fmt.Errorf("simulation sandbox: %w", err)
	}
	defer release()
	if err := e.copyForSimulation(ctx, rdb, customerID); err != nil {
		return nil, err
	}

	// The walk runs on the sandbox, in this process: the caller's
	// deadline is a budget for the shared Redis (read above), not for
	// the sandbox, which a long walk may keep busy for longer.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), simulationTimeout)
	defer cancel()
	var clock time.Time
	cfg := e.cfg
	cfg.Metrics, cfg.WaitReplicas, cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = nil, 0, 0, 0
	now := func() time.Time { return clock }
	sim := New(rdb, e.snaps, e.coupons, cfg, e.log, now)
	ledger := NewLedger(rdb, e.coupons, e.log, now)
	question := "" // the last question the walk asked
	steps := make([]Step, 0, len(pings))
	last := e.now()
	var sent *Ping    // the last ping a phone would have sent
	var answer Result // and its answer
	for _, p := range pings {
		p.CustomerID = customerID
		if p.TS.IsZero() {
			p.TS = last
		}
		last, clock = p.TS, p.TS
		res, err := sim.Evaluate(ctx, p, Options{Explain: true})
		// The next step sees what this one wrote behind its answer.
		if serr := sim.Settled(ctx); err == nil && serr != nil {
			err = serr
		}
		if err != nil {
			var rl *RateLimitError
			if errors.As(err, &rl) {
				continue
			}
			return nil, fmt.Errorf("simulated ping at %s: %w", p.TS.Format(time.RFC3339), err)
		}
		if res.Explain == nil {
			res.Explain = []Explanation{}
		}
		step := Step{TS: p.TS.UTC(), Result: *res, PhoneWake: PhoneWake(sent, &answer, p)}
		for _, o := range res.Offers {
			if o.Kind == rules.KindFeedback {
				question = o.CouponCode
			}
		}
		if p.Answer != nil {
			step.Answer = simulateAnswer(ctx, ledger, question, customerID, *p.Answer)
		}
		if step.PhoneSends = step.PhoneWake != ""; step.PhoneSends {
			sent, answer = &p, *res
		}
		steps = append(steps, step)
	}
	return steps, nil
}

// simulateAnswer answers a walk's last question in its sandbox.
func simulateAnswer(ctx context.Context, ledger *Ledger, question, customerID string, score int) *SimulatedAnswer {
	a := &SimulatedAnswer{FeedbackID: question, Score: score, Result: "answered"}
	if question == "" {
		a.Result = "no_question"
		return a
	}
	var se *ScoreError
	switch err := ledger.Answer(ctx, question, customerID, score, ""); {
	case err == nil:
	case errors.Is(err, ErrAnswered):
		a.Result = "answered_already"
	case errors.Is(err, ErrLate):
		a.Result = "late"
	case errors.As(err, &se):
		a.Result = "bad_score"
	default:
		a.Result = err.Error()
	}
	return a
}

// copyForSimulation copies what a simulated walk reads: the customer's own
// keys and the rules' budget counters.
func (e *Engine) copyForSimulation(ctx context.Context, to redis.UniversalClient, customerID string) error {
	parts := []string{partProfile, partDevices, partDeviceSeen, partPresence, partCaps, partVisits}
	hashes := make([]*redis.MapStringStringCmd, len(parts))
	snap := e.snaps.Current()
	var budgetRules []string
	for _, r := range snap.Rules {
		if r.Rule.Caps.Total > 0 {
			budgetRules = append(budgetRules, r.Rule.ID)
		}
	}
	budgets := make([]*redis.StringCmd, len(budgetRules))
	var all []redis.Cmder
	_, _ = e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, part := range parts {
			hashes[i] = p.HGetAll(ctx, customerKey(customerID, part))
			all = append(all, hashes[i])
		}
		for i, id := range budgetRules {
			budgets[i] = p.Get(ctx, budgetKey(id))
			all = append(all, budgets[i])
		}
		return nil
	})
	if err := firstFailure(all); err != nil {
		return rules.RedisErr("read the customer for a simulation", err)
	}
	if len(hashes[0].Val()) == 0 {
		return rules.ErrNotFound
	}
	_, err := to.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, part := range parts {
			if m := hashes[i].Val(); len(m) > 0 {
				p.HSet(ctx, customerKey(customerID, part), m)
			}
		}
		for i, id := range budgetRules {
			if v := budgets[i].Val(); v != "" {
				p.Set(ctx, budgetKey(id), v, 0)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("simulation sandbox: %w", err)
	}
	return nil
}
