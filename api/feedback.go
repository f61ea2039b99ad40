package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

// The customer's voice (issue 22): answers to the questions asked after
// visits, and the scores they make.

// feedbackAnswer is POST /v1/feedback/{id}'s body.
type feedbackAnswer struct {
	// CustomerID is needed with the admin key only (a support tool
	// answering for a customer): the app's call is the customer's own.
	CustomerID string `json:"customer_id,omitempty"`
	Score      *int   `json:"score"`
	Comment    string `json:"comment,omitempty"`
}

// answerFeedback records a customer's answer: with the customer's
// credential (the app), or the admin key naming the customer. The app
// key alone cannot answer for anyone.
func (s *Server) answerFeedback(c *fiber.Ctx) error {
	cl := callerOf(c)
	if !cl.admin && cl.customerID == "" {
		return newError(http.StatusUnauthorized, HeaderCustomerToken, "an answer needs the customer's own credential (a customer token or a Firebase ID token): the app key names no one")
	}
	var req feedbackAnswer
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	customer := cl.customerID
	switch {
	case cl.admin:
		if err := rules.ValidID("customer_id", req.CustomerID); err != nil {
			return err
		}
		customer = req.CustomerID
	case req.CustomerID != "" && req.CustomerID != customer:
		return newError(http.StatusForbidden, "customer_id", "the credential is another customer's")
	}
	if req.Score == nil {
		return newError(http.StatusBadRequest, "score", "score is required: 0 to 10 for an NPS question, 1 to 5 for CSAT")
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if !cl.admin {
		if err := s.countCall(ctx, cl, customer, ""); err != nil {
			return err
		}
	}
	if err := s.Ledger.Answer(ctx, c.Params("id"), customer, *req.Score, req.Comment); err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(fiber.Map{"feedback_id": engine.NormalizeCode(c.Params("id")), "score": *req.Score})
}

// storeFeedback answers a store's scores over a UTC day range (from and
// to, dates; default the last 13 weeks), with each week's for its trend.
func (s *Server) storeFeedback(c *fiber.Ctx) error {
	from, to, err := feedbackRange(c)
	if err != nil {
		return err
	}
	id := c.Params("id")
	snap := s.Live.Current()
	if snap == nil {
		return engine.ErrNoSnapshot
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, ok := snap.StoreByID(id); !ok {
		// Not in this replica's snapshot: ask the catalog (a store saved
		// a moment ago), which also tells a Redis that is down.
		if _, err := s.Live.Catalog().GetStore(ctx, id); err != nil {
			return err
		}
	}
	s.settled(ctx)
	rep, err := engine.StoreFeedback(ctx, s.Redis, id, from, to)
	if err != nil {
		return err
	}
	return c.JSON(rep)
}

// ruleFeedback answers a rule's scores over a UTC day range, as
// storeFeedback does a store's.
func (s *Server) ruleFeedback(c *fiber.Ctx) error {
	from, to, err := feedbackRange(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.Live.Catalog().RuleVersions(ctx, c.Params("id")); err != nil {
		return err // a rule that never existed
	}
	if r := s.Live.Current().Rules[c.Params("id")]; r != nil && !r.IsFeedback() {
		return newError(http.StatusUnprocessableEntity, "rule_id", "rule %s offers a coupon and asks no question: its funnel is at GET /v1/rules/{id}/stats", c.Params("id"))
	}
	s.settled(ctx)
	rep, err := engine.RuleFeedback(ctx, s.Redis, c.Params("id"), from, to)
	if err != nil {
		return err
	}
	return c.JSON(rep)
}

// feedbackRange is a scores' day range: from and to as dates, by default
// the 13 weeks to today, at most MaxFunnelDays.
func feedbackRange(c *fiber.Ctx) (from, to time.Time, err error) {
	from, to, err = dayRange(c)
	if err != nil {
		return from, to, err
	}
	if c.Query("from") == "" {
		from = to.AddDate(0, 0, -7*13+1)
	}
	if from.After(to) || to.Sub(from) > engine.MaxFunnelDays*24*time.Hour {
		return from, to, newError(http.StatusBadRequest, "from", "from must be on or before to, at most %d days apart", engine.MaxFunnelDays)
	}
	return from, to, nil
}

// settled waits for the counts of the pings this replica answered before
// the call, which go to Redis behind their answers (engine.Settled): a
// marketer who reads the funnel or the scores right after a ping sees it
// counted. (Another replica's are up to its tally's 100 ms behind.)
func (s *Server) settled(ctx context.Context) {
	if s.Engine != nil {
		_ = s.Engine.Settled(ctx) // a deadline passed: the figures as they are
	}
}
