package webhook_test

import (
	"io"
	"net/http"

	"github.com/nearcast/nearcast/engine/webhook"
)

// A receiver checks each request's signature before it trusts the body,
// and uses webhook-id to skip an event it has seen (delivery is at least
// once).
func ExampleVerify() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the subscription's secret
	seen := map[string]bool{}                          // a real receiver keeps these in its database
	http.HandleFunc("/hooks/nearcast", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := webhook.Verify(secret, r.Header, body); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if id := r.Header.Get("webhook-id"); !seen[id] {
			seen[id] = true
			// handle body: {"id":…,"type":"coupon.redeemed","customer_id":…,"at":…}
		}
		w.WriteHeader(http.StatusNoContent) // any 2xx; anything else is tried again
	})
}
