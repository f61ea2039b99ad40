package rules

import "time"

// Offer kinds.
const (
	KindCoupon   = "coupon"
	KindFeedback = "feedback"
)

// Question scales: NPS ("how likely are you to recommend…", 0 to 10) and
// CSAT ("how satisfied were you…", 1 to 5).
const (
	ScaleNPS  = "nps"
	ScaleCSAT = "csat"
)

// Question is what a feedback offer asks: a score on its scale and,
// when Comment is set, an optional comment of at most MaxCommentBytes.
type Question struct {
	Scale   string `json:"scale"`
	Comment bool   `json:"comment,omitempty"`
}

// Feedback bounds.
const (
	// FeedbackAnswerWindow is how long a question may be answered: its
	// validity, at most and by default.
	FeedbackAnswerWindow = 7 * 24 * time.Hour
	// MaxCommentBytes bounds a comment.
	MaxCommentBytes = 500
)

// ScoreRange is the scores a scale allows.
func ScoreRange(scale string) (lo, hi int) {
	if scale == ScaleCSAT {
		return 1, 5
	}
	return 0, 10
}

// normalizeKind fills in and checks the offer's kind and, for a
// feedback offer, its question, which has no variants, no store to
// redeem at, and a validity of at most FeedbackAnswerWindow (the
// default).
func (o *Offer) normalizeKind(fs *faults) {
	switch o.Kind {
	case "", KindCoupon:
		o.Kind = "" // a coupon: the kind left out, as offers were written before kinds
	case KindFeedback:
	default:
		fs.add("offer.kind", "offer.kind is \"coupon\" (the default) or \"feedback\" (a question after a visit)")
		return
	}
	if o.Kind == "" {
		if o.Question != nil {
			fs.add("offer.question", "offer.question belongs to an offer of kind \"feedback\"")
		}
		return
	}
	switch {
	case o.Question == nil:
		fs.add("offer.question", "a feedback offer asks a question: {\"scale\": \"nps\"} (0 to 10) or {\"scale\": \"csat\"} (1 to 5)")
	case o.Question.Scale != ScaleNPS && o.Question.Scale != ScaleCSAT:
		fs.add("offer.question.scale", "offer.question.scale is \"nps\" (0 to 10) or \"csat\" (1 to 5)")
	}
	if len(o.Variants) > 0 {
		fs.add("offer.variants", "a feedback question has no variants")
	}
	if o.RedeemAtIssuingStore {
		fs.add("offer.redeem_at_issuing_store", "a feedback question is answered, not redeemed")
	}
	window := int(FeedbackAnswerWindow / time.Second)
	if o.ValidForS == 0 {
		o.ValidForS = window
	}
	if o.ValidForS > window {
		fs.add("offer.valid_for_s", "a question may be answered for at most %d seconds (7 days)", window)
	}
}

// IsFeedback tells whether the rule asks a question rather than offers
// a coupon.
func (c *Compiled) IsFeedback() bool { return c.Rule.Offer.Kind == KindFeedback }
