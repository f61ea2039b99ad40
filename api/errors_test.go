package api

import (
	"fmt"
	"testing"
	"time"

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

// A ping's Redis budget ends RequestTimeout after the ping began, a
// millisecond later at most, and not before; the pings of one
// millisecond share it, those of the next have their own.
func TestPingBudget(t *testing.T) {
	s := &Server{Deps: Deps{RequestTimeout: 600 * time.Millisecond}}
	for {
		before := time.Now()
		a, b := s.pingCtx(), s.pingCtx()
		after := time.Now()
		d, ok := a.Deadline()
		if !ok || d.Before(before.Add(600*time.Millisecond)) || d.After(after.Add(601*time.Millisecond)) {
			t.Fatalf("deadline %v for a ping between %v and %v", d, before, after)
		}
		if after.Sub(budgetEpoch).Milliseconds() != before.Sub(budgetEpoch).Milliseconds() {
			continue // the two straddled a millisecond: try again
		}
		if a != b {
			t.Fatal("two pings of one millisecond have budgets of their own")
		}
		time.Sleep(2 * time.Millisecond)
		if s.pingCtx() == a {
			t.Fatal("a ping of a later millisecond has the budget of an earlier one")
		}
		select {
		case <-a.Done():
			t.Fatal("a budget ended long before its deadline")
		case <-time.After(100 * time.Millisecond):
		}
		select {
		case <-a.Done():
		case <-time.After(3 * time.Second):
			t.Fatal("a budget outlived its deadline")
		}
		return
	}
}
