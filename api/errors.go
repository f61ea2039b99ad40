package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

// Error is the contract's one error shape:
// {"error": {"code", "message", "field", "details"}}.
type Error struct {
	Status  int           `json:"-"`
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Field   string        `json:"field,omitempty"`
	Details []rules.Fault `json:"details,omitempty"`
}

func (e *Error) Error() string { return e.Message }

var codeForStatus = map[int]string{
	http.StatusBadRequest:                  "invalid_argument",
	http.StatusUnauthorized:                "unauthenticated",
	http.StatusForbidden:                   "permission_denied",
	http.StatusNotFound:                    "not_found",
	http.StatusMethodNotAllowed:            "not_found",
	http.StatusRequestTimeout:              "request_timeout",
	http.StatusConflict:                    "conflict",
	http.StatusGone:                        "expired",
	http.StatusRequestEntityTooLarge:       "too_large",
	http.StatusUnsupportedMediaType:        "unsupported_media_type",
	http.StatusUnprocessableEntity:         "failed_precondition",
	http.StatusTooManyRequests:             "rate_limited",
	http.StatusRequestHeaderFieldsTooLarge: "headers_too_large",
	http.StatusServiceUnavailable:          "unavailable",
}

func newError(status int, field, format string, args ...any) *Error {
	code, ok := codeForStatus[status]
	if !ok {
		code = "internal"
	}
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...), Field: field}
}

// toError maps any error to the contract's shape, in one place.
func toError(err error) *Error {
	var ae *Error
	var ve *rules.ValidationError
	var fe *fiber.Error
	var ws *engine.WrongStoreError
	var rl *engine.RateLimitError
	var sc *engine.SuspiciousCouponError
	var se *engine.ScoreError
	switch {
	case errors.As(err, &se):
		return newError(http.StatusBadRequest, "score", "%s", se.Error())
	case errors.Is(err, engine.ErrAnswered):
		return newError(http.StatusConflict, "", "%s", err.Error())
	case errors.Is(err, engine.ErrLate):
		return newError(http.StatusGone, "", "%s", err.Error())
	case errors.Is(err, engine.ErrNotACoupon):
		return newError(http.StatusUnprocessableEntity, "code", "%s: answer it at POST /v1/feedback/{id}", err.Error())
	case errors.As(err, &ws):
		return newError(http.StatusUnprocessableEntity, "store_id", "%s", ws.Error())
	case errors.As(err, &sc):
		// 422 as for the wrong store: the coupon is as it was, and asking
		// again will not change the answer (409 tells a till it was
		// redeemed already).
		return newError(http.StatusUnprocessableEntity, "code", "%s", sc.Error())
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ve):
		status := http.StatusBadRequest
		if ve.Precondition() {
			status = http.StatusUnprocessableEntity
		}
		e := newError(status, ve.Faults[0].Field, "%s", ve.Faults[0].Message)
		if len(ve.Faults) > 1 {
			e.Message = fmt.Sprintf("%d problems, the first: %s", len(ve.Faults), ve.Faults[0].Message)
			e.Details = ve.Faults
		}
		return e
	case errors.Is(err, rules.ErrNotFound):
		return newError(http.StatusNotFound, "", "not found")
	case errors.Is(err, rules.ErrConflict):
		return newError(http.StatusConflict, "", "the document changed while it was being saved; try again")
	case errors.Is(err, engine.ErrRedeemed):
		return newError(http.StatusConflict, "", "this coupon was redeemed already")
	case errors.Is(err, engine.ErrRevoked):
		return newError(http.StatusUnauthorized, HeaderCustomerToken, "the customer token was revoked; ask your backend for a new one (POST /v1/customers/{id}/tokens)")
	case errors.Is(err, engine.ErrExpired):
		return newError(http.StatusGone, "", "this coupon has expired")
	case errors.As(err, &rl):
		return newError(http.StatusTooManyRequests, "", "%s", rl.Error())
	case errors.Is(err, engine.ErrUnavailable), errors.Is(err, engine.ErrNoSnapshot):
		return newError(http.StatusServiceUnavailable, "", "a dependency is unavailable; retry later")
	case errors.As(err, &fe):
		switch fe.Code {
		case http.StatusNotFound:
			return newError(fe.Code, "", "no such endpoint")
		case http.StatusMethodNotAllowed:
			return newError(fe.Code, "", "method not allowed on this endpoint")
		case http.StatusRequestEntityTooLarge:
			return newError(fe.Code, "", "request body too large")
		case http.StatusRequestTimeout:
			return newError(fe.Code, "", "the request did not arrive in time: send it whole within the server's read timeout")
		case http.StatusRequestHeaderFieldsTooLarge:
			return newError(fe.Code, "", "the request's headers are too large")
		}
		return newError(fe.Code, "", "%s", fe.Message)
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
}

func (s *Server) handleError(c *fiber.Ctx, err error) error {
	e := toError(err)
	var rl *engine.RateLimitError
	if errors.As(err, &rl) {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(rl.RetryAfter.Seconds()))))
	}
	if e.Status >= 500 {
		s.log.Error("request failed", "request_id", c.GetRespHeader(fiber.HeaderXRequestID), "method", c.Method(), "path", c.Route().Path, "status", e.Status, "err", err)
	}
	return c.Status(e.Status).JSON(fiber.Map{"error": e})
}
