package api

import (
	"context"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

// pingBatchRequest is one device's fixes, gathered while offline or
// asleep (POST /v1/pings/batch).
type pingBatchRequest struct {
	CustomerID string         `json:"customer_id"`
	DeviceID   string         `json:"device_id"`
	Context    map[string]any `json:"context"`
	MonitorID  string         `json:"monitor_id"`
	Fixes      []batchFix     `json:"fixes"`
}

type batchFix struct {
	Lat       *float64 `json:"lat"`
	Lng       *float64 `json:"lng"`
	AccuracyM *float64 `json:"accuracy_m"`
	TS        string   `json:"ts"`
	SpeedMps  *float64 `json:"speed_mps"`
	Mocked    bool     `json:"mocked"`
}

// toPings checks every fix as a ping's fields are checked, naming each
// fault by its fix ("fixes[3].lat"), and reports all at once.
func (r *pingBatchRequest) toPings() ([]engine.Ping, error) {
	var fs []rules.Fault
	switch {
	case len(r.Fixes) == 0:
		fs = append(fs, rules.Fault{Field: "fixes", Message: "give at least one fix"})
	case len(r.Fixes) > engine.MaxBatchFixes:
		fs = append(fs, rules.Fault{Field: "fixes", Message: fmt.Sprintf("a batch holds at most %d fixes", engine.MaxBatchFixes)})
	}
	// The shared fields once, then each fix's own.
	shared := pingRequest{CustomerID: r.CustomerID, DeviceID: r.DeviceID, MonitorID: r.MonitorID, Lat: new(float64), Lng: new(float64)}
	if _, err := shared.toPing(); err != nil {
		fs = append(fs, err.(*rules.ValidationError).Faults...)
	}
	pings := make([]engine.Ping, len(r.Fixes))
	for i, f := range r.Fixes {
		one := pingRequest{CustomerID: r.CustomerID, DeviceID: r.DeviceID, Lat: f.Lat, Lng: f.Lng, AccuracyM: f.AccuracyM, TS: f.TS, SpeedMps: f.SpeedMps, Mocked: f.Mocked, Context: r.Context, MonitorID: r.MonitorID}
		p, err := one.toPing()
		if ve, ok := err.(*rules.ValidationError); ok {
			for _, x := range ve.Faults {
				if x.Field == "customer_id" || x.Field == "device_id" || x.Field == "monitor_id" {
					continue // named once above
				}
				x.Field = fmt.Sprintf("fixes[%d].%s", i, x.Field)
				fs = append(fs, x)
			}
		}
		if f.TS == "" {
			fs = append(fs, rules.Fault{Field: fmt.Sprintf("fixes[%d].ts", i), Message: "each fix of a batch needs its ts"})
		}
		pings[i] = p
	}
	if len(fs) > 0 {
		return nil, &rules.ValidationError{Faults: fs}
	}
	return pings, nil
}

// postPingBatch applies a batch of one device's fixes in time order, as
// pings (engine.EvaluateBatch). Its Redis budget is four times a
// request's: up to a hundred fixes, each a ping's round trips.
func (s *Server) postPingBatch(c *fiber.Ctx) error {
	start := time.Now()
	defer func() { s.pingTime.Observe(time.Since(start).Seconds()) }()
	var req pingBatchRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	cl := callerOf(c)
	if req.CustomerID == "" {
		req.CustomerID = cl.customerID // the credential's customer, when it names one
	}
	pings, err := req.toPings()
	if err != nil {
		return err
	}
	if _, err := actFor(c, req.CustomerID, "customer_id"); err != nil {
		return err
	}
	// The device's integrity token, checked once for the batch.
	integrity, err := s.integritySignal(c, req.CustomerID, req.DeviceID, nil)
	if err != nil {
		return err
	}
	for i := range pings {
		pings[i].TokenGen = cl.tokenGen
		pings[i].Signals = append(pings[i].Signals, integrity...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.RequestTimeout)
	defer cancel()
	res, err := s.Engine.EvaluateBatch(ctx, pings, engine.Options{})
	if err != nil {
		return err
	}
	return c.JSON(res)
}
