// Package console is the marketer's web console: plain ES modules, CSS
// and SVG, embedded in the binary and served at /console. It holds no data
// and no keys of its own: its pages call the v1 API with the admin key the
// marketer signs in with. It owns the pages, not the endpoints they call.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

//go:embed static
var static embed.FS

// Prefix is where the console is served.
const Prefix = "/console"

// ContentSecurityPolicy lets the pages load only from the server itself:
// no inline script, no external origin, so the console works offline and
// an injected script has nowhere to come from or send to.
const ContentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Files are the console's static files, rooted at the console's folder.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the folder is embedded at build time
	}
	return sub
}

// Mount serves the console at /console on r. Errors (an unknown file, a
// method other than GET) take r's error handler, so they keep the API's
// error shape.
func Mount(r fiber.Router) {
	files := Files()
	r.Use(Prefix, func(c *fiber.Ctx) error {
		c.Set("Content-Security-Policy", ContentSecurityPolicy)
		c.Set("X-Content-Type-Options", "nosniff")
		c.Set(fiber.HeaderCacheControl, "no-cache")
		if c.Method() != http.MethodGet && c.Method() != http.MethodHead {
			return fiber.ErrMethodNotAllowed
		}
		name := strings.TrimPrefix(strings.TrimPrefix(c.Path(), Prefix), "/")
		if name == "" {
			name = "index.html"
		}
		name = path.Clean(name)
		ct, ok := contentTypes[path.Ext(name)]
		if !ok || !fs.ValidPath(name) {
			return fiber.ErrNotFound
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return fiber.ErrNotFound
		}
		c.Set(fiber.HeaderContentType, ct)
		return c.Send(b)
	})
}
