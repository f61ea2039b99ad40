package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/nearcast/nearcast/engine"
)

// fraudReport is GET /v1/fraud?from=&to=&limit=: the customers whose
// fixes were suspicious in the UTC days from..to (the last 7 by default,
// at most engine.MaxFraudDays), riskiest first, with the signals and the
// devices behind it and the coupons issued and redeemed under suspicion.
func (s *Server) fraudReport(c *fiber.Ctx) error {
	from, to, err := dayRange(c)
	if err != nil {
		return err
	}
	if from.After(to) || to.Sub(from) >= time.Duration(engine.MaxFraudDays)*24*time.Hour {
		return newError(http.StatusBadRequest, "from", "from must be on or before to, and the range at most %d days (as long as suspicious fixes are kept)", engine.MaxFraudDays)
	}
	limit := engine.MaxFraudCustomers
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > engine.MaxFraudCustomers {
			return newError(http.StatusBadRequest, "limit", "limit must be a whole number from 1 to %d", engine.MaxFraudCustomers)
		}
		limit = n
	}
	ctx, cancel := s.ctx()
	defer cancel()
	rep, err := engine.Fraud(ctx, s.Redis, from, to, limit)
	if err != nil {
		return err
	}
	return c.JSON(rep)
}
