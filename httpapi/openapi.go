package httpapi

import (
	_ "embed"
	"slices"
)

// openAPISpec is the hand-written OpenAPI 3.1 description of this API. A test sends a request
// for every documented operation to the real handler and checks the answer against it, and
// checks that every route the handler serves is documented.
//
//go:embed openapi.json
var openAPISpec []byte

// OpenAPI returns a copy of the OpenAPI 3.1 description served at GET /v1/openapi.json.
func OpenAPI() []byte { return slices.Clone(openAPISpec) }
