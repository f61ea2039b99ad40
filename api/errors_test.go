package api

import (
	"fmt"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

func TestToError(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{rules.ErrNotFound, 404, "not_found"},
		{rules.ErrConflict, 409, "conflict"},
		{engine.ErrRedeemed, 409, "conflict"},
		{fmt.Errorf("redeem: %w", engine.ErrExpired), 410, "expired"},
		{fmt.Errorf("%w: redis down", engine.ErrUnavailable), 503, "unavailable"},
		{rules.Invalid("lat", "lat must be between -90 and 90"), 400, "invalid_argument"},
		{&rules.ValidationError{Faults: []rules.Fault{{Field: "audience", Message: "x", Precondition: true}}}, 422, "failed_precondition"},
		{fmt.Errorf("ping: %w", engine.ErrRevoked), 401, "unauthenticated"},
		// What fasthttp reports before a route runs (Fiber's serverErrorHandler).
		{fiber.ErrRequestTimeout, 408, "request_timeout"},
		{fiber.ErrRequestHeaderFieldsTooLarge, 431, "headers_too_large"},
		{fmt.Errorf("something unforeseen"), 500, "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			e := toError(tt.err)
			if e.Status != tt.status || e.Code != tt.code {
				t.Fatalf("toError(%v) = %d %s, want %d %s", tt.err, e.Status, e.Code, tt.status, tt.code)
			}
		})
	}
}
