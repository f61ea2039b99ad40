package api

import _ "embed"

// OpenAPI is the contract as OpenAPI 3, served at GET /v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
