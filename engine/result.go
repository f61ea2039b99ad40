package engine

import (
	"time"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// Ping is one location fix of a customer's device.
type Ping struct {
	CustomerID string
	DeviceID   string
	Lat, Lng   float64
	AccuracyM  float64
	SpeedMps   *float64
	// TS is when the fix was taken; zero means now.
	TS      time.Time
	Context map[string]any
	// ContextJSON is the app's context as the flat JSON object it came
	// as, when Context is nil: decoded (as encoding/json decodes it into
	// Context) only when an audience reads it, which few pings come to.
	ContextJSON []byte
	// TokenGen is the generation of the customer token the ping came
	// with, checked against revocations in the ping's own Redis step; 0
	// when it came with none (an admin key, a Firebase ID token, or the
	// app key alone).
	TokenGen int64
	// MonitorID is the id of the monitor block the app watches now
	// (Monitor.ID), "" for none: a fix still inside that block's wake
	// circle is answered "unchanged" (monitor.go).
	MonitorID string
	// Signals are what the caller found in the request about how far to
	// trust the fix (SignalMocked, SignalZeroAccuracy, and the device
	// integrity check's verdict: SignalIntegrityOK or "integrity_<why>").
	Signals []string
	// Answer, in a simulated walk only, is the score the customer answers
	// the last question they were asked with, at the ping's time
	// (Simulate); nil: none.
	Answer *int
}

// Trust levels of a fix (docs/security.md, "Location trust").
const (
	TrustSuspicious = "suspicious"
	TrustUnverified = "unverified"
	TrustTrusted    = "trusted"
)

// Signals a caller hands the engine with a ping (the engine finds the
// rest: lua/lib/trust.lua).
const (
	SignalMocked       = "mocked"        // the app says its OS marked the fix as mock
	SignalZeroAccuracy = "zero_accuracy" // an accuracy of exactly 0
	SignalIntegrityOK  = "integrity_ok"  // the device's integrity token checked out
	signalFuture       = "future_fix"    // taken more than a minute after the server's now
	signalOld          = "old_fix"       // taken more than a day before it
)

// TrustOf is how far a fix was trusted, and why, shown to the admin key.
type TrustOf struct {
	Level   string   `json:"level"`
	Signals []string `json:"signals"`
}

// MaxFixAccuracyM: a fix less sure than this (accuracy_m, the radius of
// its 68% circle) moves no presence: it is checked and counted, and
// answered with nothing.
const MaxFixAccuracyM = geo.MaxAccuracyM

// BatchLimitFactor is how many times their limits of a minute the fixes
// of a batch may use, each counted once: a phone that was offline catches
// up in one batch of up to MaxBatchFixes (with the default limits).
const BatchLimitFactor = 4

// Options change how a ping is evaluated.
type Options struct {
	// DryRun changes nothing: no presence, no counters, no coupon, no push.
	DryRun bool
	// Explain lists why each rule looked at did or did not fire.
	Explain bool
	// ended: stores where a later fix of the same batch shows the visit
	// over (EvaluateBatch); no offer is made there.
	ended map[int32]bool
	// limitScale multiplies the call limits (0: 1): BatchLimitFactor for
	// the fixes of a batch.
	limitScale int
	// spec is the ping's speculative intent (speculate.go; nil: none).
	spec *speculation
}

// limits are the call limits of a minute, per customer and per device,
// times scale (0: 1).
func (e *Engine) limits(scale int) (customer, device int) {
	scale = max(scale, 1)
	return e.cfg.PingsPerMinute * scale, e.cfg.PingsPerMinuteDevice * scale
}

// Event is a change of presence.
type Event struct {
	Type      string `json:"type"` // enter, dwell or exit
	StoreID   string `json:"store_id"`
	DistanceM int    `json:"distance_m"`
	// VisitS is how long the visit lasted, on exit.
	VisitS *int `json:"visit_s,omitempty"`
	// DwellS is how long the customer has stayed, on dwell.
	DwellS *int `json:"dwell_s,omitempty"`
}

// IssuedOffer is a coupon issued by a ping: the offer of a rule
// (rules.Offer, the template) made for one customer at one store.
type IssuedOffer struct {
	CouponCode string    `json:"coupon_code"`
	RuleID     string    `json:"rule_id"`
	StoreID    string    `json:"store_id"`
	Title      string    `json:"title"`
	Body       string    `json:"body"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Variant is the variant's id, for a rule whose offer has variants.
	Variant string `json:"variant,omitempty"`
	// Kind is "feedback" for a question after a visit (CouponCode is then
	// the question's id, answered at POST /v1/feedback/{id}); empty for a
	// coupon.
	Kind string `json:"kind,omitempty"`
}

// Explanation says what became of one rule at one store.
type Explanation struct {
	RuleID  string `json:"rule_id"`
	StoreID string `json:"store_id"`
	// Result is "sent" or the first reason the rule did not fire.
	Result string `json:"result"`
	// Variant is the variant sent (or that would have been, in a dry run),
	// for a rule whose offer has variants.
	Variant string `json:"variant,omitempty"`
}

// Reasons a rule looked at did not fire.
const (
	ResultSent     = "sent"
	ReasonAudience = "audience"
	ReasonClosed   = rules.WhenStoreClosed
	ReasonSchedule = rules.WhenSchedule
	ReasonQuiet    = rules.WhenQuiet
	ReasonCap      = "frequency_cap"
	ReasonLimit    = "customer_limit"
	ReasonStoreCap = "store_cap"
	ReasonBudget   = "budget"
	ReasonHoldout  = "holdout"
	ReasonSpeed    = "speed"
	ReasonRecent   = "recent_offer"
	ReasonConsent  = "no_consent"
	// ReasonFeedbackLimit: a question the customer was asked about this
	// store lately, or as many as a month allows (feedback.go).
	ReasonFeedbackLimit = "feedback_limit"
	ReasonLate          = "late_fix"
	// ReasonVisitEnded: a later fix of the same batch shows the customer
	// has left the store.
	ReasonVisitEnded = "visit_ended"
	// Why a ping changed nothing at all (Result.Reason, for an explained
	// call): a fix older than the newest seen, one too unsure, a customer
	// with no profile (ReasonConsent: one without location consent).
	// ReasonUntrusted: the fix is less trusted than the rule's
	// offer.min_trust asks.
	ReasonUntrusted = "untrusted_location"
	ReasonStale     = "stale_fix"
	ReasonUnsure    = "unsure_fix"
	ReasonUnknown   = "unknown_customer"
	ReasonLower     = "lower_priority"
	// ReasonAudienceError: the audience's evaluation went over its budget
	// of steps or memory (rules.ErrAudienceBudget), or failed; the rule
	// does not fire.
	ReasonAudienceError = "audience_error"
	// ReasonRenderError: the offer's texts could not be rendered within
	// their bounds (rules.MaxTextBytes, time); no push is sent.
	ReasonRenderError = "render_error"
)

// Result is what a ping caused.
type Result struct {
	Events  []Event       `json:"events"`
	Offers  []IssuedOffer `json:"offers"`
	Explain []Explanation `json:"explain,omitempty"`
	// Reason says, to the admin key's calls only (explain, dry runs, the
	// simulator), why the ping changed nothing: ReasonConsent,
	// ReasonUnknown, ReasonStale or ReasonUnsure.
	Reason string `json:"reason,omitempty"`
	// Trust says, to the admin key's calls only, how far the fix was
	// trusted and why.
	Trust *TrustOf `json:"trust,omitempty"`
	// Monitor and NextPing pace the app (monitor.go); nil when the
	// customer has no location consent, or the fix changed nothing.
	Monitor  *Monitor  `json:"monitor,omitempty"`
	NextPing *NextPing `json:"next_ping,omitempty"`
}
