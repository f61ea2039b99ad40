package engine

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Metrics are what the engine tells Prometheus: decisions by result,
// presence events by type, pushes by fate, Redis's latency and errors,
// the outbox's length and the age of its oldest push, and the snapshot in
// force. A nil *Metrics counts nothing. No label holds a customer, a
// device or a place.
type Metrics struct {
	decisions *prometheus.CounterVec
	events    *prometheus.CounterVec
	fixes     *prometheus.CounterVec
	signals   *prometheus.CounterVec
	pushes    *prometheus.CounterVec
	redisTime *prometheus.HistogramVec
	redisErrs *prometheus.CounterVec
	waitShort prometheus.Counter
}

// NewMetrics registers the engine's metrics with reg, times every command
// rdb sends, and reads the outbox and the snapshot when scraped.
func NewMetrics(reg prometheus.Registerer, rdb redis.UniversalClient, snaps Snapshots) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nearcast_decisions_total",
			Help: "Rules looked at for a ping, by what became of them: sent, or the reason they did not fire.",
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nearcast_events_total",
			Help: "Presence events by type: enter, dwell, exit.",
		}, []string{"type"}),
		fixes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nearcast_fixes_total",
			Help: "Fixes that moved presence, by trust: trusted, unverified, suspicious.",
		}, []string{"trust"}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nearcast_fix_signals_total",
			Help: "Signals found on fixes (docs/security.md, Location trust), by signal.",
		}, []string{"signal"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nearcast_pushes_total",
			Help: "Pushes by fate: sent; dropped (expired, no_consent, no_device, unregistered, or FCM's permanent error code); retry (a passing failure).",
		}, []string{"result"}),
		redisTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nearcast_redis_duration_seconds",
			Help:    "Time of Redis round trips, by kind: one command, or a pipeline.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"kind"}),
		redisErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nearcast_redis_errors_total",
			Help: "Redis round trips that failed, by kind.",
		}, []string{"kind"}),
	}
	m.waitShort = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nearcast_redis_wait_short_total",
		Help: "Offers whose step fewer replicas than NEARCAST_REDIS_WAIT_REPLICAS had in time: answered 503, announced later if they survive.",
	})
	reg.MustRegister(m.decisions, m.events, m.fixes, m.signals, m.pushes, m.redisTime, m.redisErrs, m.waitShort, &outboxCollector{rdb: rdb})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nearcast_snapshot_version",
		Help: "Catalog version of the snapshot in force (0: none loaded).",
	}, func() float64 {
		if s := snaps.Current(); s != nil {
			return float64(s.Version)
		}
		return 0
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nearcast_snapshot_age_seconds",
		Help: "Time since the snapshot in force was built (-1: none loaded).",
	}, func() float64 {
		if s := snaps.Current(); s != nil {
			return time.Since(s.BuiltAt).Seconds()
		}
		return -1
	}))
	rdb.AddHook(redisHook{m})
	return m
}

func (m *Metrics) decided(explain []Explanation) {
	if m == nil {
		return
	}
	for _, x := range explain {
		m.decisions.WithLabelValues(x.Result).Inc()
	}
}

func (m *Metrics) happened(events []Event) {
	if m == nil {
		return
	}
	for _, e := range events {
		m.events.WithLabelValues(e.Type).Inc()
	}
}

func (m *Metrics) trusted(level string, signals []string) {
	if m == nil {
		return
	}
	m.fixes.WithLabelValues(level).Inc()
	for _, s := range signals {
		if strings.HasPrefix(s, "integrity_") && s != SignalIntegrityOK {
			s = "integrity_failed" // the reasons are few, but named by the caller
		}
		m.signals.WithLabelValues(s).Inc()
	}
}

func (m *Metrics) pushed(result string) {
	if m != nil {
		m.pushes.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) waitedShort() {
	if m != nil {
		m.waitShort.Inc()
	}
}

// redisHook times every round trip to Redis.
type redisHook struct{ m *Metrics }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.observe("command", start, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.observe("pipeline", start, err)
		return err
	}
}

func (h redisHook) observe(kind string, start time.Time, err error) {
	h.m.redisTime.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	// A missing key or a script Redis does not know yet are answers, not
	// failures of Redis; a failed command inside a pipeline fails alone.
	if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "NOSCRIPT") && isRedisDown(err) {
		h.m.redisErrs.WithLabelValues(kind).Inc()
	}
}

// isRedisDown tells a failure to reach Redis from an error Redis answered
// (a wrong type, a script error), which is the caller's to handle.
func isRedisDown(err error) bool {
	var re redis.Error
	return !errors.As(err, &re)
}

// outboxCollector reads the outbox when Prometheus scrapes: its length,
// the age of its oldest push, and the pushes waiting for a retry.
type outboxCollector struct{ rdb redis.UniversalClient }

var (
	outboxLenDesc     = prometheus.NewDesc("nearcast_outbox_length", "Pushes in the outbox, not yet sent.", nil, nil)
	outboxAgeDesc     = prometheus.NewDesc("nearcast_outbox_oldest_age_seconds", "Age of the oldest push in the outbox (0: empty).", nil, nil)
	outboxDelayedDesc = prometheus.NewDesc("nearcast_outbox_delayed", "Pushes waiting for a retry.", nil, nil)
	outboxDeadDesc    = prometheus.NewDesc("nearcast_outbox_dead", "Pushes in the dead-letter stream.", nil, nil)
)

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- outboxLenDesc
	ch <- outboxAgeDesc
	ch <- outboxDelayedDesc
	ch <- outboxDeadDesc
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var length, delayed, dead *redis.IntCmd
	var oldest *redis.XMessageSliceCmd
	if _, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		length = p.XLen(ctx, keyOutbox)
		oldest = p.XRangeN(ctx, keyOutbox, "-", "+", 1)
		delayed = p.ZCard(ctx, keyDelayed)
		dead = p.XLen(ctx, keyDead)
		return nil
	}); err != nil {
		return // Redis is down: nothing to tell, and the error counter says so
	}
	age := 0.0
	if msgs := oldest.Val(); len(msgs) > 0 {
		// A stream entry's id begins with its time in milliseconds.
		if ms, err := strconv.ParseInt(strings.SplitN(msgs[0].ID, "-", 2)[0], 10, 64); err == nil {
			age = max(0, time.Since(time.UnixMilli(ms)).Seconds())
		}
	}
	ch <- prometheus.MustNewConstMetric(outboxLenDesc, prometheus.GaugeValue, float64(length.Val()))
	ch <- prometheus.MustNewConstMetric(outboxAgeDesc, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(outboxDelayedDesc, prometheus.GaugeValue, float64(delayed.Val()))
	ch <- prometheus.MustNewConstMetric(outboxDeadDesc, prometheus.GaugeValue, float64(dead.Val()))
}
