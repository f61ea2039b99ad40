package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/nearcast/nearcast/engine"
)

// The answer sent without encoding is the one encoding gives, header and
// body, and only for a result where nothing happened.
func TestNothingHappenedIsTheEncodedAnswer(t *testing.T) {
	empty := &engine.Result{Events: []engine.Event{}, Offers: []engine.IssuedOffer{}}
	want, _ := json.Marshal(empty)
	if !bytes.Equal(want, nothingHappened) {
		t.Fatalf("encoded %s, sent %s", want, nothingHappened)
	}
	app := fiber.New()
	results := map[string]*engine.Result{
		"empty":     empty,
		"events":    {Events: []engine.Event{{Type: "enter", StoreID: "s-1", DistanceM: 12}}, Offers: []engine.IssuedOffer{}},
		"explained": {Events: []engine.Event{}, Offers: []engine.IssuedOffer{}, Explain: []engine.Explanation{}},
	}
	for name, res := range results {
		app.Get("/"+name, func(c *fiber.Ctx) error { return sendResult(c, res) })
	}
	for name, res := range results {
		r, err := app.Test(httptest.NewRequest("GET", "/"+name, nil))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		want, _ := json.Marshal(res)
		if !bytes.Equal(body, want) || r.Header.Get("Content-Type") != fiber.MIMEApplicationJSON {
			t.Errorf("%s: %s %q, want %s %q", name, body, r.Header.Get("Content-Type"), want, fiber.MIMEApplicationJSON)
		}
	}
}

// The cost of a ping's answer: encoded (an entry), or sent as it is
// (nothing happened).
func BenchmarkEncodeResult(b *testing.B) {
	entered := &engine.Result{Events: []engine.Event{{Type: "enter", StoreID: "s-alex", DistanceM: 42}},
		Offers: []engine.IssuedOffer{{CouponCode: "K7QM2XPA9F3D", RuleID: "flat-white", StoreID: "s-alex", ExpiresAt: time.Unix(1800000000, 0).UTC(),
			Title: "Hallo Anna!", Body: "Ein Flat White für dich, 42 m entfernt"}}}
	for name, res := range map[string]*engine.Result{"nothing_happened": {Events: []engine.Event{}, Offers: []engine.IssuedOffer{}}, "enter_with_offer": entered} {
		b.Run(name, func(b *testing.B) {
			app := fiber.New()
			app.Get("/", func(c *fiber.Ctx) error { return sendResult(c, res) })
			h := app.Handler()
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod("GET")
			ctx.Request.SetRequestURI("/")
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset()
				h(&ctx)
			}
		})
	}
}
