package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/rules"
)

// Webhooks: the subscriptions operators make for the company's other
// systems, their health, dead letters and test events (issue 20).

// webhookDoc is the body of PUT /v1/webhooks/{id}: a subscription as an
// operator writes it. What an answer adds (version, updated_at, health)
// is taken and ignored, so that a document read may be sent back.
type webhookDoc struct {
	ID        string          `json:"id"`
	URL       string          `json:"url"`
	Events    []string        `json:"events"`
	StoreIDs  []string        `json:"store_ids"`
	StoreTags []string        `json:"store_tags"`
	RuleIDs   []string        `json:"rule_ids"`
	Secret    string          `json:"secret"`
	Enabled   *bool           `json:"enabled"` // absent: true
	Version   int64           `json:"version"`
	UpdatedAt *time.Time      `json:"updated_at"`
	Health    json.RawMessage `json:"health"`
}

func (d *webhookDoc) subscription() *webhook.Subscription {
	enabled := d.Enabled == nil || *d.Enabled
	return &webhook.Subscription{ID: d.ID, URL: d.URL, Events: d.Events, StoreIDs: d.StoreIDs, StoreTags: d.StoreTags,
		RuleIDs: d.RuleIDs, Secret: d.Secret, Enabled: enabled}
}

// webhookView is a subscription as answered: its secret only where the
// answer is about that one subscription (PUT, GET of it), its health
// where asked.
type webhookView struct {
	*webhook.Subscription
	Health *webhookHealth `json:"health,omitempty"`
}

// webhookHealth is a subscription's delivery: from Redis, the same on
// every replica (webhook.SubHealth), and this replica's counters since
// it started (webhook.Deliverer.Health).
type webhookHealth struct {
	Lag         int64          `json:"lag"`
	LagAtLeast  bool           `json:"lag_at_least,omitempty"`
	Pending     int64          `json:"pending"`
	OldestAgeS  float64        `json:"oldest_age_s"`
	OldestAt    *time.Time     `json:"oldest_at,omitempty"`
	DeadLetters int64          `json:"dead_letters"`
	Replica     *replicaHealth `json:"replica,omitempty"`
}

type replicaHealth struct {
	Delivered  int64  `json:"delivered"`
	Retried    int64  `json:"retried"`
	Dead       int64  `json:"dead"`
	Skipped    int64  `json:"skipped"`
	LastError  string `json:"last_error,omitempty"`
	LastStatus int    `json:"last_status,omitempty"`
}

// hooks is the webhook store, or 404 on a server without one.
func (s *Server) hooks() (*webhook.Store, error) {
	if s.Webhooks == nil {
		return nil, newError(http.StatusNotFound, "", "webhooks are off on this server")
	}
	return s.Webhooks, nil
}

// hookID reads and checks the subscription id of the path: an id names a
// Redis key (the dead letters'), so a malformed one is refused, not
// looked up.
func hookID(c *fiber.Ctx) (string, error) { return pathID(c, "id", "webhook_id") }

// hookCall is the preamble of every route on one subscription: the store,
// the id, and the request's Redis budget.
func (s *Server) hookCall(c *fiber.Ctx) (*webhook.Store, string, context.Context, context.CancelFunc, error) {
	st, err := s.hooks()
	if err != nil {
		return nil, "", nil, nil, err
	}
	id, err := hookID(c)
	if err != nil {
		return nil, "", nil, nil, err
	}
	ctx, cancel := s.ctx()
	return st, id, ctx, cancel, nil
}

// healthOf answers the health of subscriptions by id.
func (s *Server) healthOf(ctx context.Context, st *webhook.Store, ids ...string) (map[string]*webhookHealth, error) {
	redisSide, err := st.HealthOf(ctx, ids...)
	if err != nil {
		return nil, err
	}
	var replica map[string]webhook.Health
	if s.WebhookHealth != nil {
		replica = s.WebhookHealth()
	}
	now := time.Now()
	out := make(map[string]*webhookHealth, len(ids))
	for _, id := range ids {
		r := redisSide[id]
		h := &webhookHealth{Lag: r.Lag, LagAtLeast: r.LagAtLeast, Pending: r.Pending, DeadLetters: r.DeadLetters,
			OldestAgeS: r.OldestAge(now).Seconds()}
		if !r.Oldest.IsZero() {
			at := r.Oldest
			h.OldestAt = &at
		}
		if s.WebhookHealth != nil {
			p := replica[id]
			h.Replica = &replicaHealth{Delivered: p.Delivered, Retried: p.Retried, Dead: p.Dead, Skipped: p.Skipped,
				LastError: p.LastError, LastStatus: p.LastStatus}
		}
		out[id] = h
	}
	return out, nil
}

// listWebhooks is GET /v1/webhooks: every subscription, by id, with its
// health, without secrets.
func (s *Server) listWebhooks(c *fiber.Ctx) error {
	st, err := s.hooks()
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	subs, err := st.List(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, len(subs))
	for i, sub := range subs {
		ids[i] = sub.ID
	}
	health, err := s.healthOf(ctx, st, ids...)
	if err != nil {
		return err
	}
	out := make([]webhookView, len(subs))
	for i, sub := range subs {
		sub.Secret = ""
		out[i] = webhookView{Subscription: sub, Health: health[sub.ID]}
	}
	return c.JSON(fiber.Map{"webhooks": out})
}

// putWebhook is PUT /v1/webhooks/{id}: a subscription created (201) or
// replaced (200) as its next version, If-Match as for rules. Its secret
// is made when a new one has none, kept when a replacement gives none,
// and shown in the answer.
func (s *Server) putWebhook(c *fiber.Ctx) error {
	st, err := s.hooks()
	if err != nil {
		return err
	}
	id, err := hookID(c)
	if err != nil {
		return err
	}
	var doc webhookDoc
	unknown, err := decodeDoc(c, &doc)
	if err != nil {
		return err
	}
	if err := sameID(doc.ID, id); err != nil {
		return err
	}
	doc.ID = id
	sub := doc.subscription()
	if len(unknown) > 0 {
		return allFaults(unknown, st.Check(sub))
	}
	ifVersion, err := hookIfMatch(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	isNew, err := st.Put(ctx, sub, ifVersion)
	if err != nil {
		if errors.Is(err, webhook.ErrConflict) && ifVersion > 0 {
			return newError(http.StatusConflict, "", "the subscription changed since version %d; read it again and reapply your edit", ifVersion)
		}
		return err
	}
	setETag(c, sub.Version)
	c.Set(fiber.HeaderCacheControl, "no-store") // the secret
	return created(c, isNew, webhookView{Subscription: sub})
}

// hookIfMatch reads If-Match: a subscription's ETag ("3"); 0 when absent.
func hookIfMatch(c *fiber.Ctx) (int64, error) {
	h := strings.TrimSpace(c.Get(fiber.HeaderIfMatch))
	if h == "" || h == "*" {
		return 0, nil
	}
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil || v < 1 {
		return 0, newError(http.StatusBadRequest, "If-Match", "If-Match takes the ETag of a subscription, such as \"3\"")
	}
	return v, nil
}

// getWebhook is GET /v1/webhooks/{id}: the subscription, its secret and
// its health.
func (s *Server) getWebhook(c *fiber.Ctx) error {
	st, id, ctx, cancel, err := s.hookCall(c)
	if err != nil {
		return err
	}
	defer cancel()
	sub, err := st.Get(ctx, id)
	if err != nil {
		return err
	}
	health, err := s.healthOf(ctx, st, id)
	if err != nil {
		return err
	}
	setETag(c, sub.Version)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(webhookView{Subscription: sub, Health: health[id]})
}

// deleteWebhook is DELETE /v1/webhooks/{id}: the subscription, its place
// in the streams and its dead letters go; its versions stay.
func (s *Server) deleteWebhook(c *fiber.Ctx) error {
	st, id, ctx, cancel, err := s.hookCall(c)
	if err != nil {
		return err
	}
	defer cancel()
	if err := st.Delete(ctx, id); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

// listWebhookVersions is GET /v1/webhooks/{id}/versions: the versions
// kept, oldest first, without secrets.
func (s *Server) listWebhookVersions(c *fiber.Ctx) error {
	st, id, ctx, cancel, err := s.hookCall(c)
	if err != nil {
		return err
	}
	defer cancel()
	vs, err := st.Versions(ctx, id)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"versions": vs})
}

// maxDeadOffset bounds the offset of a page of dead letters: there are
// at most webhook.Config.DeadMax of them.
const maxDeadOffset = 1_000_000

// listDeadLetters is GET /v1/webhooks/{id}/dead?offset=&limit=: a page of
// the subscription's dead letters, newest first, and how many there are.
func (s *Server) listDeadLetters(c *fiber.Ctx) error {
	offset := 0
	if v := c.Query("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxDeadOffset {
			return newError(http.StatusBadRequest, "offset", "offset must be a whole number from 0 to %d", maxDeadOffset)
		}
		offset = n
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	st, id, ctx, cancel, err := s.hookCall(c)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := st.Get(ctx, id); err != nil {
		return err
	}
	dead, total, err := st.DeadLetters(ctx, id, offset, limit)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"dead_letters": dead, "total": total})
}

// maxEventIDs bounds the event ids one replay or drop names.
const maxEventIDs = 1000

// deadWork bounds a replay or a drop, which takes a round trip or two
// per dead letter (up to webhook.Config.DeadMax of them).
const deadWork = 30 * time.Second

// replayRequest is the body of POST /v1/webhooks/{id}/dead/replay.
type replayRequest struct {
	EventIDs []string `json:"event_ids"`
}

// replayDeadLetters is POST /v1/webhooks/{id}/dead/replay: the dead
// letters named (none: all) sent again, oldest first, to this
// subscription only.
func (s *Server) replayDeadLetters(c *fiber.Ctx) error {
	var req replayRequest
	if len(bytes.TrimSpace(c.Body())) > 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	return s.deadLetterWork(c, "event_ids", req.EventIDs, "replayed", (*webhook.Store).ReplayDead)
}

// deadLetterWork checks the event ids, finds the subscription, and runs
// work on its dead letters with a deadline of its own (deadWork),
// answering {key: how many}.
func (s *Server) deadLetterWork(c *fiber.Ctx, field string, ids []string, key string,
	work func(*webhook.Store, context.Context, string, ...string) (int, error)) error {
	if err := checkEventIDs(field, ids); err != nil {
		return err
	}
	st, id, ctx, cancel, err := s.hookCall(c)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := st.Get(ctx, id); err != nil {
		return err
	}
	wctx, wcancel := context.WithTimeout(context.Background(), deadWork)
	defer wcancel()
	n, err := work(st, wctx, id, ids...)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{key: n})
}

// dropDeadLetters is DELETE /v1/webhooks/{id}/dead?event_id=…: the dead
// letters named (none: all) dropped.
func (s *Server) dropDeadLetters(c *fiber.Ctx) error {
	var ids []string
	for _, v := range c.Context().QueryArgs().PeekMulti("event_id") {
		ids = append(ids, string(v))
	}
	return s.deadLetterWork(c, "event_id", ids, "dropped", (*webhook.Store).DropDead)
}

// checkEventIDs checks the event ids of a replay or drop, each named by
// its place (event_ids[2]).
func checkEventIDs(field string, ids []string) error {
	if len(ids) > maxEventIDs {
		return newError(http.StatusBadRequest, field, "name at most %d events at once (none: all of them)", maxEventIDs)
	}
	var fs []rules.Fault
	for i, e := range ids {
		name := fmt.Sprintf("%s[%d]", field, i)
		if err := rules.ValidID(name, e); err != nil {
			fs = append(fs, err.(*rules.ValidationError).Faults...)
		}
	}
	if len(fs) > 0 {
		return &rules.ValidationError{Faults: fs}
	}
	return nil
}

// testWebhook is POST /v1/webhooks/{id}/test: a test event (webhook.test)
// queued for this subscription alone; 202 with its id, which the
// receiver sees in webhook-id.
func (s *Server) testWebhook(c *fiber.Ctx) error {
	if len(bytes.TrimSpace(c.Body())) > 0 {
		var none struct{}
		if err := decodeJSON(c, &none); err != nil {
			return err
		}
	}
	st, id, ctx, cancel, err := s.hookCall(c)
	if err != nil {
		return err
	}
	defer cancel()
	eventID, err := st.SendTest(ctx, id)
	if err != nil {
		return err
	}
	c.Status(http.StatusAccepted)
	return c.JSON(fiber.Map{"event_id": eventID})
}
