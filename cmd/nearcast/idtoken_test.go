package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// authEmulator is a double of the Firebase Auth emulator's account
// look-up, which firebase-admin-go calls to check that a token's user
// exists and is not disabled; disabled lists users it says are.
func authEmulator(t *testing.T, disabled ...string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/accounts:lookup") {
			http.NotFound(w, r)
			return
		}
		var q struct {
			LocalID []string `json:"localId"`
		}
		raw, _ := io.ReadAll(r.Body)
		json.Unmarshal(raw, &q)
		var users []map[string]any
		for _, id := range q.LocalID {
			users = append(users, map[string]any{"localId": id, "disabled": strings.Contains(strings.Join(disabled, ","), id)})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"kind": "identitytoolkit#GetAccountInfoResponse", "users": users})
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// emulatorToken is an ID token as the Auth emulator issues them: unsigned.
func emulatorToken(project, uid string, expires time.Time) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	now := time.Now().Unix()
	return enc(map[string]any{"alg": "none", "typ": "JWT"}) + "." + enc(map[string]any{
		"aud": project, "iss": "https://securetoken.google.com/" + project, "sub": uid, "user_id": uid,
		"iat": now - 10, "auth_time": now - 10, "exp": expires.Unix(),
		"firebase": map[string]any{"sign_in_provider": "anonymous", "identities": map[string]any{}},
	}) + "."
}

// NEARCAST_VERIFY_ID_TOKENS=1: a ping must carry its user's Firebase ID
// token, checked through firebase-admin-go, and the token's uid must be
// the ping's customer_id.
func TestPingsCarryTheirUsersIDToken(t *testing.T) {
	t.Setenv("FIREBASE_AUTH_EMULATOR_HOST", authEmulator(t, "c-off"))
	base, _ := startServer(t, map[string]string{"NEARCAST_VERIFY_ID_TOKENS": "1", "NEARCAST_FCM_PROJECT": "nearcast-test"})
	hour := time.Now().Add(time.Hour)
	for _, tt := range []struct {
		name, token string
		status      int
		code        string
	}{
		{"no token", "", 401, "unauthenticated"},
		{"not a token", "abc.def.ghi", 401, "unauthenticated"},
		{"another project's", emulatorToken("other-project", "c-42", hour), 401, "unauthenticated"},
		{"expired", emulatorToken("nearcast-test", "c-42", time.Now().Add(-time.Hour)), 401, "unauthenticated"},
		{"a disabled user's", emulatorToken("nearcast-test", "c-off", hour), 401, "unauthenticated"},
		{"another user's", emulatorToken("nearcast-test", "c-99", hour), 403, "permission_denied"},
		{"the customer's own", emulatorToken("nearcast-test", "c-42", hour), 200, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+"/v1/pings", strings.NewReader(`{"customer_id":"c-42","device_id":"d-1","lat":52.6,"lng":13.4}`))
			req.Header.Set("Authorization", "Bearer demo-app")
			if tt.token != "" {
				req.Header.Set("X-Firebase-ID-Token", tt.token)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status || tt.code != "" && !strings.Contains(string(raw), fmt.Sprintf(`"code":%q`, tt.code)) {
				t.Fatalf("%d %s, want %d %s", res.StatusCode, raw, tt.status, tt.code)
			}
		})
	}
}
