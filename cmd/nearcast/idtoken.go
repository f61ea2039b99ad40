package main

import (
	"context"
	"fmt"

	firebase "firebase.google.com/go/v4"
	"google.golang.org/api/option"
)

// idTokenVerifier checks app users' Firebase ID tokens through
// firebase-admin-go's auth client, answering a token's uid. It reads
// Google's public keys (cached), or, with FIREBASE_AUTH_EMULATOR_HOST
// set, asks the Auth emulator.
func idTokenVerifier(ctx context.Context, project, credentials string) (func(context.Context, string) (string, error), error) {
	var opts []option.ClientOption
	if credentials != "" {
		opts = append(opts, option.WithCredentialsFile(credentials))
	} else {
		opts = append(opts, option.WithoutAuthentication())
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: project}, opts...)
	if err != nil {
		return nil, fmt.Errorf("firebase app: %w", err)
	}
	client, err := app.Auth(ctx)
	if err != nil {
		return nil, fmt.Errorf("firebase auth: %w", err)
	}
	return func(ctx context.Context, token string) (string, error) {
		t, err := client.VerifyIDToken(ctx, token)
		if err != nil {
			return "", err
		}
		return t.UID, nil
	}, nil
}
