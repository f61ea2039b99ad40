package playtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/api/playintegrity/v1"

	"github.com/nearcast/nearcast/internal/playtest"
)

// Through Google's own client: a token the double issued decodes to its
// payload; one it did not is Google's 400 INVALID_ARGUMENT; a fault it
// is told of is answered in Google's error shape.
func TestThroughGooglesClient(t *testing.T) {
	s := playtest.New(t)
	svc, err := playintegrity.NewService(context.Background(), option.WithEndpoint(s.URL()), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1_790_000_000_123)
	decode := func(token string) (*playintegrity.DecodeIntegrityTokenResponse, error) {
		return svc.V1.DecodeIntegrityToken("com.example.app", &playintegrity.DecodeIntegrityTokenRequest{IntegrityToken: token}).Do()
	}
	res, err := decode(s.Issue(playtest.Genuine("com.example.app", at)))
	if err != nil {
		t.Fatal(err)
	}
	p := res.TokenPayloadExternal
	if p.RequestDetails.TimestampMillis != at.UnixMilli() || p.RequestDetails.RequestPackageName != "com.example.app" ||
		p.DeviceIntegrity.DeviceRecognitionVerdict[1] != "MEETS_DEVICE_INTEGRITY" || p.AppIntegrity.AppRecognitionVerdict != "PLAY_RECOGNIZED" {
		t.Errorf("payload: %+v %+v", p.RequestDetails, p.DeviceIntegrity)
	}
	for _, c := range []struct {
		fail   string
		status int
		code   string
	}{{"", 400, "INVALID_ARGUMENT"}, {"UNAVAILABLE", 503, "UNAVAILABLE"}, {"PERMISSION_DENIED", 403, "PERMISSION_DENIED"}} {
		token := "unknown"
		if c.fail != "" {
			s.Fail(c.fail, 1)
			token = s.Issue(playtest.Genuine("com.example.app", at))
		}
		_, err := decode(token)
		var ge *googleapi.Error
		if !errors.As(err, &ge) || ge.Code != c.status || !strings.Contains(string(ge.Body), `"status":"`+c.code+`"`) {
			t.Errorf("fail %q: %v, want %d %s", c.fail, err, c.status, c.code)
		}
	}
	if s.Malformed() != 0 || len(s.Requests()) != 4 {
		t.Errorf("%d malformed of %d requests, want 0 of 4", s.Malformed(), len(s.Requests()))
	}
}

// Requests not of the API's form are refused in its error shape, and
// counted.
func TestRefusesMalformedRequests(t *testing.T) {
	s := playtest.New(t)
	for _, c := range []struct {
		name, method, path, contentType, body string
		status                                int
	}{
		{"GET", "GET", "v1/com.example.app:decodeIntegrityToken", "application/json", "", 404},
		{"another method", "POST", "v1/com.example.app:decodePcIntegrityToken", "application/json", `{"integrityToken":"x"}`, 404},
		{"not a package", "POST", "v1/example:decodeIntegrityToken", "application/json", `{"integrityToken":"x"}`, 400},
		{"form body", "POST", "v1/com.example.app:decodeIntegrityToken", "application/x-www-form-urlencoded", "integrityToken=x", 400},
		{"unknown field", "POST", "v1/com.example.app:decodeIntegrityToken", "application/json", `{"integrityToken":"x","nonce":"y"}`, 400},
		{"no token", "POST", "v1/com.example.app:decodeIntegrityToken", "application/json", `{}`, 400},
	} {
		req, _ := http.NewRequest(c.method, s.URL()+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.contentType)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct {
				Code    int
				Message string
				Status  string
			}
		}
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if err != nil || res.StatusCode != c.status || body.Error.Code != c.status || body.Error.Status == "" || body.Error.Message == "" {
			t.Errorf("%s: %d %+v (%v), want %d in Google's error shape", c.name, res.StatusCode, body, err, c.status)
		}
	}
	if n := s.Malformed(); n != 6 {
		t.Errorf("%d counted malformed, want 6", n)
	}
}
