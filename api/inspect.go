package api

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// The endpoints below serve the marketer's console (package api/console):
// what only the server knows (the H3 cells of its index) and what only it
// can do (render a rule's templates). Both change nothing.

// storeCell is one H3 cell a store's fence is indexed under.
type storeCell struct {
	Cell       string       `json:"cell"`
	Resolution int          `json:"resolution"`
	Boundary   [][2]float64 `json:"boundary"`
}

// storeCells lists the H3 cells the snapshot in force files a store under,
// with their outlines, so a map can draw what the index sees.
func (s *Server) storeCells(c *fiber.Ctx) error {
	snap := s.Live.Current()
	if snap == nil {
		return toError(engine.ErrNoSnapshot)
	}
	id := c.Params("id")
	pos, ok := snap.StoreByID(id)
	if !ok {
		ctx, cancel := s.ctx()
		defer cancel()
		if _, err := s.Live.Catalog().GetStore(ctx, id); err != nil {
			return err
		}
		return newError(http.StatusNotFound, "", "store %q is not in the index yet; try again in a moment", id)
	}
	cells := snap.Index.Cells(pos)
	out := make([]storeCell, len(cells))
	for i, cell := range cells {
		out[i] = storeCell{Cell: cell.String(), Resolution: cell.Resolution(), Boundary: geo.CellBoundary(cell)}
	}
	return c.JSON(fiber.Map{"store_id": id, "catalog_version": snap.Version, "cells": out})
}

type previewRequest struct {
	CustomerID string      `json:"customer_id"`
	StoreID    string      `json:"store_id"`
	DistanceM  *int        `json:"distance_m"`
	Rule       *rules.Rule `json:"rule"`
}

// previewMessage is the push in one of the offer's languages.
type previewMessage struct {
	// Variant is the variant's id, for an offer with variants.
	Variant string `json:"variant,omitempty"`
	Lang    string `json:"lang"`
	Title   string `json:"title"`
	Body    string `json:"body"`
}

// previewSampleCode stands in for the coupon code, which only an issued
// offer has.
const previewSampleCode = "PREVIEW0CODE"

// previewRule renders a rule's push, saved or as given in the body, for one
// customer at one store, in each of the offer's languages. It issues no
// coupon and writes nothing.
func (s *Server) previewRule(c *fiber.Ctx) error {
	id, err := pathID(c, "id", "rule_id")
	if err != nil {
		return err
	}
	var req previewRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := rules.ValidID("customer_id", req.CustomerID); err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	r := req.Rule
	if r == nil {
		if r, err = s.Live.Catalog().GetRule(ctx, id); err != nil {
			return err
		}
	} else if err := sameID(r.ID, id); err != nil {
		return err
	}
	r.ID = id
	compiled, err := rules.Compile(r)
	if req.Rule != nil { // an unsaved rule is checked as its save would be
		attrs, aerr := s.Live.Catalog().AttributeFaults(ctx, r)
		if aerr != nil {
			return aerr
		}
		err = withFaults(err, attrs)
	}
	if err != nil {
		return prefixFaults(err, "rule.")
	}
	cust, err := s.Customers.Get(ctx, req.CustomerID)
	if errors.Is(err, rules.ErrNotFound) {
		return newError(http.StatusNotFound, "customer_id", "no customer has the id %q", req.CustomerID)
	} else if err != nil {
		return err
	}
	store, err := s.previewStore(r, req.StoreID)
	if err != nil {
		return err
	}
	dist := 40
	if req.DistanceM != nil {
		dist = max(0, *req.DistanceM)
	}
	// The customer's variant: the one they keep, else the one by weight (a
	// bandit's pick depends on what it has learnt by the time of the offer).
	v := compiled.Assign(cust.ID)
	if compiled.Variants() > 0 {
		kept, err := s.Customers.KeptVariant(ctx, cust.ID, id)
		if err != nil {
			return err
		}
		if i := compiled.VariantIndex(kept); i >= 0 {
			v = i
		}
	}
	data := rules.OfferData{Variant: v, Customer: cust, Store: store, DistanceM: dist, CouponCode: previewSampleCode,
		ExpiresAt: time.Now().Add(compiled.ValidFor(v))}
	theirs := compiled.Render(data)
	var msgs []previewMessage
	for i := range max(compiled.Variants(), 1) {
		texts := r.Offer.Title
		if compiled.Variants() > 0 {
			texts = r.Offer.Variants[i].Title
		}
		for _, t := range texts {
			as := *cust
			as.Locale = t.Lang
			d := data
			d.Customer, d.Variant, d.ExpiresAt = &as, i, time.Now().Add(compiled.ValidFor(i))
			m := compiled.Render(d)
			msgs = append(msgs, previewMessage{Variant: compiled.VariantID(i), Lang: t.Lang, Title: m.Title, Body: m.Body})
		}
	}
	ans := fiber.Map{"rule_id": id, "customer_id": cust.ID, "store_id": store.ID, "distance_m": dist,
		"customer_language": theirs.Lang, "coupon_code": previewSampleCode, "messages": msgs}
	if compiled.Variants() > 0 {
		ans["customer_variant"] = compiled.VariantID(v)
	}
	return c.JSON(ans)
}

// previewStore is the store named, else the first the rule's trigger
// selects, else any store.
func (s *Server) previewStore(r *rules.Rule, id string) (*rules.Store, error) {
	snap := s.Live.Current()
	if snap == nil {
		return nil, toError(engine.ErrNoSnapshot)
	}
	if id != "" {
		pos, ok := snap.StoreByID(id)
		if !ok {
			return nil, newError(http.StatusNotFound, "store_id", "no store has the id %q", id)
		}
		return snap.Stores[pos].Store, nil
	}
	sel := r.Trigger.Stores
	for _, st := range snap.Stores {
		if sel == nil || slices.Contains(sel.IDs, st.ID) || slices.ContainsFunc(st.Tags, func(t string) bool { return slices.Contains(sel.Tags, t) }) {
			return st.Store, nil
		}
	}
	if len(snap.Stores) > 0 {
		return snap.Stores[0].Store, nil
	}
	lat, lng := 52.52, 13.40
	return &rules.Store{ID: "store", Name: "Store", Lat: &lat, Lng: &lng, RadiusM: rules.DefaultRadiusM, Tags: []string{}}, nil
}

// withFaults adds faults after those of a validation error (or makes one
// of them, when err is nil).
func withFaults(err error, fs []rules.Fault) error {
	if len(fs) == 0 {
		return err
	}
	var ve *rules.ValidationError
	switch {
	case err == nil:
		return &rules.ValidationError{Faults: fs}
	case errors.As(err, &ve):
		return &rules.ValidationError{Faults: append(slices.Clone(ve.Faults), fs...)}
	}
	return err
}

// prefixFaults puts a validation error's field paths under a prefix: the
// rule's faults as they lie in the preview request.
func prefixFaults(err error, prefix string) error {
	var ve *rules.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	out := &rules.ValidationError{Faults: make([]rules.Fault, len(ve.Faults))}
	for i, f := range ve.Faults {
		if f.Field != "" {
			f.Field = prefix + f.Field
		}
		out.Faults[i] = f
	}
	return out
}
