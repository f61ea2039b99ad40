// Package api is Nearcast's HTTP face: the Fiber routes of the v1
// contract, request decoding and validation, bearer-key auth, and the
// contract's one error shape. It knows no Redis key names: it calls
// package rules for the catalog and package engine for decisions.
package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/requestid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/api/console"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/rules"
)

// Body limits: one JSON document, and a bulk NDJSON upload.
const (
	maxJSONBody = 1 << 20
	maxBulkBody = 256 << 20
)

// readAhead is what fasthttp (v1.51.0, readBodyWithStreaming) reads of a
// streamed body of declared length before any handler runs; the rest is
// left in the stream.
const readAhead = 8 << 10

// Read deadlines: a request's headers and body (the slowloris bound), and
// the body of a bulk upload, time for the 256 MiB limit at some 0.9 MB/s.
const (
	defaultReadTimeout     = 10 * time.Second
	defaultBulkReadTimeout = 5 * time.Minute
)

// PushLog lists the pushes the development sender kept, and forgets an
// erased customer's.
type PushLog interface {
	Pushes(customerID string) []engine.Push
	Forget(customerID string)
}

// Deps are what the API serves from.
type Deps struct {
	Live      *rules.Live
	Customers *engine.Customers
	Engine    *engine.Engine
	Ledger    *engine.Ledger
	// Redis serves the read-only reports (funnels).
	Redis redis.UniversalClient
	// Pushes is the log sender's memory; nil when pushes go to FCM.
	Pushes PushLog
	// Sandbox makes the throwaway Redis of each simulated walk (POST
	// /v1/simulate); nil: simulations are off.
	Sandbox engine.Sandbox
	// Ready reports whether Redis answers.
	Ready     func(ctx context.Context) error
	AppKeys   []string
	AdminKeys []string
	Log       *slog.Logger
	// RequestTimeout bounds the Redis work of one request, retries
	// included (DefaultRequestTimeout when zero): a Redis that hangs is
	// answered 503 by then, as one that is down is at once. It bounds a
	// read in progress only on a client that honours deadlines
	// (redis.Options.ContextTimeoutEnabled).
	RequestTimeout time.Duration
	// ReadTimeout bounds the reading of a request, its headers and its
	// body, from its first byte; zero: 10 s.
	ReadTimeout time.Duration
	// BulkReadTimeout bounds the reading of a bulk upload's body (POST
	// /v1/stores and /v1/customers) from when its admin key has been
	// checked; zero: 5 minutes, the 256 MiB limit at some 0.9 MB/s.
	BulkReadTimeout time.Duration
	// Metrics is the registry GET /metrics serves; the API adds the ping
	// latency to it. Nil: a registry of the API's own.
	Metrics *prometheus.Registry
	// AppAuth is the customer credential app calls need beside the app
	// key (NEARCAST_APP_AUTH); the zero value is the app key alone.
	AppAuth AppAuth
	// Tokens mints and verifies Nearcast customer tokens; nil: none are
	// minted or taken.
	Tokens *CustomerTokens
	// VerifyIDToken checks a Firebase ID token (X-Firebase-ID-Token) and
	// answers its uid, the customer it proves; nil: none are taken.
	VerifyIDToken func(ctx context.Context, token string) (uid string, err error)
	// CouponRate limits the coupon calls of each credential; nil: no limit.
	CouponRate *engine.CredentialRate
	// Integrity checks the Play Integrity token an Android app may send
	// with a ping (X-Play-Integrity-Token); nil: none is checked.
	Integrity *PlayIntegrity
	// Warnings are told on /readyz and logged there now and then, such as
	// app calls taken on the app key alone.
	Warnings []string
	// Webhooks keeps the webhook subscriptions, their versions and dead
	// letters (/v1/webhooks); nil: those routes answer 404.
	Webhooks *webhook.Store
	// WebhookHealth answers this replica's delivery counters by
	// subscription (webhook.Deliverer.Health), shown beside the health
	// Redis holds; nil: none are shown.
	WebhookHealth func() map[string]webhook.Health
}

// DefaultRequestTimeout is a request's Redis budget: a hundred times and
// more what the Redis work of a ping or an admin call takes, and as long
// as one read of cmd/nearcast's client may wait, so that a Redis that
// hangs is answered 503 as soon as a read would time out, retry or not.
const DefaultRequestTimeout = 500 * time.Millisecond

// Server holds the routes' dependencies.
type Server struct {
	Deps
	log *slog.Logger
	// pingTime is the time from a ping's arrival to its answer.
	pingTime prometheus.Histogram
	// warnedAt is the hour /readyz last logged the warnings.
	warnedAt atomic.Int64
	// budget is the pings' Redis budget of the current millisecond.
	budget atomic.Pointer[sharedBudget]
}

// New builds the Fiber app.
func New(d Deps) *fiber.App {
	if d.RequestTimeout == 0 {
		d.RequestTimeout = DefaultRequestTimeout
	}
	if d.ReadTimeout == 0 {
		d.ReadTimeout = defaultReadTimeout
	}
	if d.BulkReadTimeout == 0 {
		d.BulkReadTimeout = defaultBulkReadTimeout
	}
	if d.Metrics == nil {
		d.Metrics = prometheus.NewRegistry()
	}
	s := &Server{Deps: d, log: d.Log, pingTime: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "nearcast_ping_duration_seconds",
		Help:    "Time from a ping's arrival to its answer, errors included.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2},
	})}
	d.Metrics.MustRegister(s.pingTime)
	// A rule's save (and dry run, and the preview of an unsaved rule)
	// refuses an audience naming an attribute that no profile carries and
	// none declared: the catalog of attributes the customers keep.
	if d.Live != nil && d.Customers != nil {
		d.Live.Catalog().CheckAttributes(d.Customers.Attributes().Known)
	}
	app := fiber.New(fiber.Config{
		AppName: "nearcast",
		// Bodies up to the JSON limit are read before the handler; a longer
		// (or chunked) one is streamed, and limitBody refuses it unread
		// unless its route takes bulk uploads.
		BodyLimit:         maxJSONBody,
		StreamRequestBody: true,
		// No route takes forms: a multipart body is not read ahead (it
		// would be, whole, before any limit).
		DisablePreParseMultipartForm: true,
		// Ids in paths are percent-decoded (a%40b is the customer a@b)
		// before routing; a decoded "/" cannot reach another route, since
		// no id may hold one.
		UnescapePath:          true,
		ErrorHandler:          s.handleError,
		DisableStartupMessage: true,
		ReadTimeout:           d.ReadTimeout,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           60 * time.Second,
	})
	// Every answer carries a request id (the caller's X-Request-ID, or a
	// new one), which the log of a failed request names.
	app.Use(requestid.New())
	app.Use(s.limitBody)
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	app.Get("/readyz", s.readyz)
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(d.Metrics, promhttp.HandlerOpts{})))
	app.Get("/v1/openapi.yaml", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, "application/yaml")
		return c.Send(OpenAPI)
	})

	console.Mount(app) // the marketer's console at /console: static pages that call the API below

	v1 := app.Group("/v1")
	appKey, admin := s.app, s.admin

	// App routes: each acts for the customer its credential proves.
	v1.Post("/pings", appKey, s.postPing)
	v1.Post("/pings/batch", appKey, s.postPingBatch)
	v1.Put("/customers/:id/devices/:device_id", appKey, s.putDevice)
	v1.Post("/coupons/:code/opened", appKey, s.openedCoupon)
	v1.Post("/feedback/:id", appKey, s.answerFeedback)
	v1.Delete("/customers/:id/devices/:device_id", appKey, s.deleteDevice)

	v1.Get("/stores", admin, s.listStores)
	v1.Post("/stores", admin, s.postStores)
	v1.Put("/stores/:id", admin, s.putStore)
	v1.Get("/stores/:id", admin, s.getStore)
	v1.Get("/stores/:id/cells", admin, s.storeCells)
	v1.Get("/stores/:id/feedback", admin, s.storeFeedback)
	v1.Delete("/stores/:id", admin, s.deleteStore)

	v1.Post("/customers", admin, s.postCustomers)
	v1.Put("/customers/:id", admin, s.putCustomer)
	v1.Get("/customers/:id", admin, s.getCustomer)
	v1.Patch("/customers/:id", admin, s.patchCustomer)
	v1.Delete("/customers/:id", admin, s.deleteCustomer)
	v1.Get("/customers/:id/devices", admin, s.listDevices)
	v1.Get("/customers/:id/export", admin, s.exportCustomer)
	v1.Post("/customers/:id/tokens", admin, s.mintToken)
	v1.Delete("/customers/:id/tokens", admin, s.revokeTokens)

	v1.Get("/attributes", admin, s.listAttributes)
	v1.Put("/attributes", admin, s.putAttributes)

	v1.Get("/rules", admin, s.listRules)
	v1.Put("/rules/:id", admin, s.putRule)
	v1.Get("/rules/:id", admin, s.getRule)
	v1.Delete("/rules/:id", admin, s.deleteRule)
	v1.Get("/rules/:id/versions", admin, s.listRuleVersions)
	v1.Get("/rules/:id/stats", admin, s.ruleStats)
	v1.Get("/rules/:id/feedback", admin, s.ruleFeedback)
	v1.Post("/rules/:id/preview", admin, s.previewRule)
	v1.Get("/rules/:id/versions/:version", admin, s.getRuleVersion)
	v1.Post("/rules/:id/versions/:version/restore", admin, s.restoreRuleVersion)

	v1.Get("/coupons/:code", admin, s.getCoupon)
	v1.Post("/coupons/:code/redeem", admin, s.redeemCoupon)

	v1.Get("/fraud", admin, s.fraudReport)

	v1.Get("/webhooks", admin, s.listWebhooks)
	v1.Put("/webhooks/:id", admin, s.putWebhook)
	v1.Get("/webhooks/:id", admin, s.getWebhook)
	v1.Delete("/webhooks/:id", admin, s.deleteWebhook)
	v1.Get("/webhooks/:id/versions", admin, s.listWebhookVersions)
	v1.Get("/webhooks/:id/dead", admin, s.listDeadLetters)
	v1.Post("/webhooks/:id/dead/replay", admin, s.replayDeadLetters)
	v1.Delete("/webhooks/:id/dead", admin, s.dropDeadLetters)
	v1.Post("/webhooks/:id/test", admin, s.testWebhook)

	v1.Post("/simulate", admin, s.simulate)
	v1.Get("/dev/pushes", admin, s.devPushes)
	return app
}

// limitBody refuses a body over its route's limit with 413, before reading
// it when its length is declared: 1 MiB of JSON, 256 MiB of NDJSON for
// the bulk uploads of stores and customers. A JSON body longer than
// fasthttp's read-ahead, or chunked, is read here, whole or not at all; a
// bulk upload is read by its handler (bulkBody), once its admin key has
// been checked, under the bulk deadline.
func (s *Server) limitBody(c *fiber.Ctx) error {
	bulk := c.Method() == fiber.MethodPost && (c.Path() == "/v1/stores" || c.Path() == "/v1/customers")
	limit := maxJSONBody
	if bulk {
		limit = maxBulkBody
	}
	length := c.Request().Header.ContentLength()
	if length > limit {
		return tooLarge(c, limit)
	}
	if bulk {
		err := c.Next()
		if c.Request().BodyStream() != nil {
			// Refused before its body was read (no admin key, not NDJSON):
			// what is left of it must not be taken for a request.
			c.Context().SetConnectionClose()
		}
		return err
	}
	if c.Request().BodyStream() != nil && (length == -1 || length > readAhead) {
		body, err := readBody(c, limit, s.ReadTimeout)
		if err != nil {
			return err
		}
		c.Request().SetBody(body)
	}
	return c.Next()
}

func tooLarge(c *fiber.Ctx, limit int) error {
	// What is left of the body is never read: the connection ends with
	// the answer, or its bytes would be taken for a request.
	c.Context().SetConnectionClose()
	return newError(http.StatusRequestEntityTooLarge, "", "a body here is at most %d bytes", limit)
}

// readBody reads what fasthttp left of a streamed body, whole: up to limit
// bytes (one more shows it is over), all of a declared length, a chunked
// one to its last chunk; within is the read deadline the answer names.
// Nothing else may read the stream. In fasthttp v1.51.0 Request.Body()
// takes a failed read's error text for the body, and the stream ends as
// if whole when the connection closes short of a declared length or just
// after a chunk.
func readBody(c *fiber.Ctx, limit int, within time.Duration) ([]byte, error) {
	req := c.Request()
	stream := req.BodyStream()
	if stream == nil {
		return req.Body(), nil
	}
	declared := req.Header.ContentLength()
	body, err := io.ReadAll(io.LimitReader(stream, int64(limit)+1))
	_ = req.CloseBodyStream() // releases fasthttp's stream, which has no Close to fail
	unread := func(status int, format string, args ...any) error {
		c.Context().SetConnectionClose()
		return newError(status, "", format+"; nothing was written", args...)
	}
	switch {
	case err != nil && timedOut(err):
		return nil, unread(http.StatusRequestTimeout, "the body did not arrive in full within %s (%d bytes came)", within, len(body))
	case err != nil:
		return nil, unread(http.StatusBadRequest, "the body could not be read in full after %d bytes: %v", len(body), err)
	case len(body) > limit:
		return nil, tooLarge(c, limit)
	case declared >= 0 && len(body) < declared:
		return nil, unread(http.StatusBadRequest, "the body ended after %d of its %d declared bytes: the connection closed", len(body), declared)
	case declared == -1 && hungUp(c.Context().Conn()):
		return nil, unread(http.StatusBadRequest, "the chunked body ended without its last chunk: the connection closed after %d bytes", len(body))
	}
	return body, nil
}

// timedOut tells a read that ran into the connection's deadline.
// fasthttp's ErrBrokenChunk keeps its cause in its text only.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || strings.Contains(err.Error(), os.ErrDeadlineExceeded.Error())
}

// ctx is a request's Redis budget: every Redis call of the request runs
// within it.
func (s *Server) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.RequestTimeout)
}

// pingCtx is a ping's Redis budget, shared by the pings that begin in
// the same millisecond: it ends RequestTimeout after that millisecond
// (a millisecond at most after the ping's own would), and nothing cancels
// it sooner. Pings come by the thousand a second, and a context with its
// timer each was some 400 bytes of garbage a ping, a tenth of all a ping
// made; the collections that garbage calls for are the stalls of p99.
func (s *Server) pingCtx() context.Context {
	ms := time.Since(budgetEpoch).Milliseconds() // on the monotonic clock: a step of the wall clock changes nothing
	if b := s.budget.Load(); b != nil && b.ms == ms {
		return b.ctx
	}
	ctx, cancel := context.WithDeadline(context.Background(), budgetEpoch.Add(time.Duration(ms+1)*time.Millisecond+s.RequestTimeout))
	s.budget.Store(&sharedBudget{ms: ms, ctx: ctx, cancel: cancel})
	return ctx
}

// budgetEpoch is where the pings' milliseconds are counted from.
var budgetEpoch = time.Now()

// sharedBudget is the pings' budget of one millisecond. Its timer ends
// it; cancel is kept only so that nothing says it was lost.
type sharedBudget struct {
	ms     int64
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		return newError(http.StatusServiceUnavailable, "", "redis does not answer")
	}
	if s.Live.Current() == nil {
		return newError(http.StatusServiceUnavailable, "", "no catalog snapshot loaded yet")
	}
	ready := fiber.Map{"status": "ready", "catalog_version": s.Live.Current().Version}
	if len(s.Warnings) > 0 {
		ready["warnings"] = s.Warnings
		hour := time.Now().Unix() / 3600
		if old := s.warnedAt.Load(); old != hour && s.warnedAt.CompareAndSwap(old, hour) {
			// Once an hour per replica, not on every probe.
			for _, w := range s.Warnings {
				s.log.Warn(w)
			}
		}
	}
	return c.JSON(ready)
}

// refresh makes this replica's snapshot include a change it just wrote, so
// that the next request here sees it; other replicas follow by pub/sub.
func (s *Server) refresh(ctx context.Context) {
	if err := s.Live.Refresh(ctx); err != nil {
		s.log.Warn("snapshot refresh after a change failed; the watcher will catch up", "err", err)
	}
}

func boolQuery(c *fiber.Ctx, name string) (bool, error) {
	v := c.Query(name)
	switch v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, newError(http.StatusBadRequest, name, "%s must be true or false", name)
}

func pathID(c *fiber.Ctx, param, field string) (string, error) {
	id := c.Params(param)
	if err := rules.ValidID(field, id); err != nil {
		return "", err
	}
	return id, nil
}

// sameID checks an id given in the body against the one in the path.
func sameID(body, path string) error {
	if body != "" && body != path {
		return newError(http.StatusBadRequest, "id", "id in the body (%q) differs from the one in the path (%q)", body, path)
	}
	return nil
}

func pageLimit(c *fiber.Ctx) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, newError(http.StatusBadRequest, "limit", "limit must be a whole number from 1 to 1000")
	}
	return n, nil
}

func validCoord(v *float64, name string, lim float64) *rules.Fault {
	switch {
	case v == nil:
		return &rules.Fault{Field: name, Message: name + " is required"}
	case math.IsNaN(*v) || *v < -lim || *v > lim:
		return &rules.Fault{Field: name, Message: name + " must be between -" + strconv.Itoa(int(lim)) + " and " + strconv.Itoa(int(lim))}
	}
	return nil
}
