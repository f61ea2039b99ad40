package engine

import (
	"os"
	"strconv"
	"time"
)

// Config tunes the decision.
type Config struct {
	// VisitTimeout ends a visit with no fix inside for that long, so that
	// the next fix inside is a new visit.
	VisitTimeout time.Duration
	// LateFix is the age past which a fix (a delayed upload) still moves
	// presence but fires no offer.
	LateFix time.Duration
	// PushTTL is how long a push may wait before it is dropped unsent.
	PushTTL time.Duration
	// QuietHours are minutes of the day, from and until, in the customer's
	// time zone, when no offer is sent; equal values mean none.
	QuietHours [2]int
	// MinOfferGap is the least time between two offers to one customer:
	// one offer at a time, however many stores they walk into at once.
	MinOfferGap time.Duration
	// FeedbackStoreGap is the least time between two questions to a
	// customer about one store, and FeedbackPerMonth caps the questions
	// they are asked in a month of their own time (feedback.go).
	FeedbackStoreGap time.Duration
	FeedbackPerMonth int
	// MaxOffersPerDay caps the offers one customer gets in a day (their
	// time zone) across all rules; 0 means no limit.
	MaxOffersPerDay int
	// MaxEnterSpeedMps is the speed above which a customer does not enter
	// a store: driving past is not a visit.
	MaxEnterSpeedMps float64
	// EnterAccuracyM is the fix accuracy always good enough to enter a
	// fence; a larger fence accepts fixes as unsure as its own size.
	EnterAccuracyM float64
	// CouponRetention is how long a coupon's record is kept past its
	// expiry, for redemption look-ups and statistics.
	CouponRetention time.Duration
	// RedisLanes is how many pipelines of pings' commands may be on the
	// wire to Redis at once; more pings wait and go together.
	RedisLanes int
	// PingsPerMinute and PingsPerMinuteDevice limit a customer's pings,
	// and each of their devices', in a minute of the server's clock;
	// 0 means no limit.
	PingsPerMinute       int
	PingsPerMinuteDevice int
	// WaitReplicas is how many replicas must have an offer's step before
	// the answer gives the coupon (Redis WAIT), so that a failover cannot
	// lose it; 0 waits for none. WaitTimeout bounds the wait; a step that
	// reached fewer replicas in time is answered all the same, and counted.
	WaitReplicas int
	WaitTimeout  time.Duration
	// Metrics counts decisions and events; nil counts nothing.
	Metrics *Metrics
	// Events carries the facts decided to the event streams (events.go);
	// nil: none are.
	Events *Events
}

// DefaultCouponCallsPerMinute is how many coupon look-ups, redemptions and
// opens a credential may make in a minute (CredentialRate), unless told.
const DefaultCouponCallsPerMinute = 6000

// DefaultConfig is the configuration the server starts with; each
// NEARCAST_ setting changes one field of it, and nothing else states a
// default.
func DefaultConfig() Config {
	return Config{
		VisitTimeout:     30 * time.Minute,
		LateFix:          5 * time.Minute,
		PushTTL:          10 * time.Minute,
		MaxEnterSpeedMps: 3,
		MaxOffersPerDay:  2,
		MinOfferGap:      5 * time.Minute,
		FeedbackStoreGap: 30 * 24 * time.Hour,
		FeedbackPerMonth: 2,
		QuietHours:       [2]int{21 * 60, 8 * 60},
		EnterAccuracyM:   25,
		CouponRetention:  30 * 24 * time.Hour,
		RedisLanes:       1,
		WaitTimeout:      100 * time.Millisecond,
		// An app sends a fix every few seconds at most; more is a loop or abuse.
		PingsPerMinute:       60,
		PingsPerMinuteDevice: 30,
	}
}

// DispatchConfig tunes the outbox workers.
type DispatchConfig struct {
	// Workers is how many pushes are sent at once by this replica.
	Workers int
	// ClaimIdle is how long a push may stay unacknowledged (its worker
	// crashed, or the push service failed) before another worker takes it.
	ClaimIdle time.Duration
	// SendTimeout bounds one call to the push service.
	SendTimeout time.Duration
	// Consumer names this replica in the consumer group; unique per process.
	Consumer string
	// Block is how long a worker waits for new pushes before it looks for
	// abandoned ones (and notices a shutdown).
	Block time.Duration
	// Metrics counts the pushes' fates; nil counts nothing.
	Metrics *Metrics
	// Events carries push.sent and push.failed to the event streams; nil:
	// they are not.
	Events *Events
	// Rate bounds the pushes this replica sends a second, over all its
	// workers, so that a burst stays within the push service's quota;
	// 0 means no bound.
	Rate float64
}

// DefaultDispatchConfig is what the server starts with.
func DefaultDispatchConfig() DispatchConfig {
	host, _ := os.Hostname()
	return DispatchConfig{
		Workers:     4,
		ClaimIdle:   15 * time.Second,
		SendTimeout: 10 * time.Second,
		Consumer:    host + "-" + strconv.Itoa(os.Getpid()),
		Block:       time.Second,
	}
}
