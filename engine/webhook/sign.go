package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers every request carries.
const (
	HeaderID        = "webhook-id"        // the event's id: the same on every try, the receiver's idempotency key
	HeaderTimestamp = "webhook-timestamp" // unix seconds of this try
	HeaderSignature = "webhook-signature" // "v1,<base64 HMAC-SHA256>", space-separated when there are several
)

// Tolerance is how far a request's timestamp may lie from the receiver's
// clock for Verify to accept it: a replayed request older than this is
// refused.
const Tolerance = 5 * time.Minute

// Errors of Verify.
var (
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp      = errors.New("webhook: timestamp too old or too far in the future")
	ErrSignature      = errors.New("webhook: no matching signature")
)

// Sign answers the webhook-signature header's value for a request: "v1,"
// and the base64 of the HMAC-SHA256 of "<id>.<timestamp>.<body>" keyed
// with the secret's decoded bytes.
func Sign(secret, id string, at time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + signature(key, id, strconv.FormatInt(at.Unix(), 10), body), nil
}

func signature(key []byte, id, ts string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify checks a request the way a receiver does: its timestamp within
// Tolerance of now, and one of its v1 signatures made with secret over
// the exact body received. Any Standard Webhooks library does the same.
//
//	func hook(w http.ResponseWriter, r *http.Request) {
//		body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
//		if err := webhook.Verify(secret, r.Header, body); err != nil {
//			http.Error(w, "bad signature", http.StatusUnauthorized)
//			return
//		}
//		// r.Header.Get("webhook-id") is the idempotency key: skip ids seen before.
//		w.WriteHeader(http.StatusNoContent)
//	}
func Verify(secret string, h http.Header, body []byte) error {
	return VerifyAt(secret, h, body, time.Now())
}

// VerifyAt is Verify against the clock reading now.
func VerifyAt(secret string, h http.Header, body []byte, now time.Time) error {
	key, err := secretKey(secret)
	if err != nil {
		return err
	}
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	if diff := now.Unix() - sec; math.Abs(float64(diff)) > Tolerance.Seconds() {
		return ErrTimestamp
	}
	want := []byte(signature(key, id, ts, body))
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return ErrSignature
}
