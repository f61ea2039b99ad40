package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/hooktest"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/internal/sandbox"
	"github.com/nearcast/nearcast/rules"
)

const adminKey = "console-admin"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServer serves the whole API, console included, on loopback, over
// miniredis, with one customer (c-42, Anna) and no stores or rules; and
// one webhook subscription, crm, to a test receiver, with two dead
// letters, its events delivered. It answers the base URL, the receiver
// and the Redis it runs on.
func startServer(t *testing.T) (string, *hooktest.Receiver, redis.UniversalClient) {
	t.Helper()
	rdb, _ := redistest.Mini(t)
	ctx := context.Background()
	live := rules.NewLive(rdb, quiet)
	if err := live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := engine.DefaultConfig()
	cfg.QuietHours = [2]int{} // the test runs at any hour
	customers := engine.NewCustomers(rdb)
	anna := rules.Customer{ID: "c-42", FirstName: "Anna", Locale: "de", Timezone: "Europe/Berlin",
		Consent: rules.Consent{Location: true, Push: true}, Attributes: map[string]any{"tier": "gold"}}
	if _, err := customers.Put(ctx, &anna); err != nil {
		t.Fatal(err)
	}
	if _, err := customers.PutDevice(ctx, "c-42", &rules.Device{ID: "d-1", FCMToken: "token-anna", Platform: "android"}); err != nil {
		t.Fatal(err)
	}
	hooks := webhook.NewStore(rdb)
	secret := webhook.NewSecret()
	recv := hooktest.New(t, secret)
	if _, err := hooks.Put(ctx, &webhook.Subscription{ID: "crm", URL: recv.URL(), Events: []string{"enter", "offer.issued"}, Secret: secret, Enabled: true}, 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"evt-dead-1", "evt-dead-2"} {
		d, _ := json.Marshal(webhook.DeadLetter{Event: webhook.Event{ID: id, Type: "enter", CustomerID: "c-42", StoreID: "s-cafe", At: time.Now().Add(-25 * time.Hour)},
			Entry: "1-0", Attempts: 40, LastStatus: 503, LastError: "receiver answered 503 Service Unavailable", DeadAt: time.Now().Add(-time.Hour)})
		if err := rdb.LPush(ctx, "nc:{hookdead:crm}:list", d).Err(); err != nil {
			t.Fatal(err)
		}
	}
	hookLive := webhook.NewLive(hooks, quiet)
	deliverer := webhook.NewDeliverer(rdb, hookLive, webhook.Config{Poll: 50 * time.Millisecond}, quiet)
	bg, stopBg := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { hookLive.Run(bg) })
	wg.Go(func() { deliverer.Run(bg) })
	coupons := engine.NewCodeSigner([]byte("console-test"))
	app := api.New(api.Deps{
		Live: live, Customers: customers, Engine: engine.New(rdb, live, coupons, cfg, quiet, nil),
		Ledger: engine.NewLedger(rdb, coupons, nil, nil), Redis: rdb, Sandbox: sandbox.Miniredis,
		Ready:   func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		AppKeys: []string{"console-app"}, AdminKeys: []string{adminKey}, Log: quiet,
		Webhooks: hooks, WebhookHealth: deliverer.Health,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second); <-done; stopBg(); wg.Wait() })
	return "http://" + ln.Addr().String(), recv, rdb
}

// chromium finds Debian's chromium, which `make test` installs.
func chromium(t *testing.T) string {
	if p := os.Getenv("NEARCAST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: `make test` installs it (make test-deps), or apt-get install chromium; NEARCAST_CHROMIUM may name another binary")
	return ""
}

// outDir is where the screenshots go: $NEARCAST_TEST_OUT, else testout/
// beside this file (ignored by git).
func outDir(t *testing.T) string {
	dir := os.Getenv("NEARCAST_TEST_OUT")
	if dir == "" {
		dir = "testout"
	}
	dir = filepath.Join(dir, "console")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts a headless chromium with a fresh profile, with the flags
// this machine needs (no sandbox as root, no background connections).
func browser(t *testing.T) (context.Context, *problemLog) {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 960),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 150*time.Second)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })

	// Every script error and every Content-Security-Policy violation the
	// page meets fails the test.
	problems := &problemLog{}
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems.add(fmt.Sprintf("exception: %s %s:%d", exceptionText(ev.ExceptionDetails), ev.ExceptionDetails.URL, ev.ExceptionDetails.LineNumber))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems.add("console.error: " + strings.Join(args, " "))
			}
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, problems
}

// problemLog collects what went wrong in the page, from the listener's goroutine.
type problemLog struct {
	mu   sync.Mutex
	list []string
}

func (p *problemLog) add(s string) { p.mu.Lock(); p.list = append(p.list, s); p.mu.Unlock() }

func (p *problemLog) all() []string { p.mu.Lock(); defer p.mu.Unlock(); return slices.Clone(p.list) }

// The console end to end, in a real browser: sign in, create a store on
// the map, write a rule and see the server's validation error next to the
// field as it is typed, preview the push, walk a customer into the store
// and see the offer sent.
func TestConsoleInBrowser(t *testing.T) {
	base, recv, rdb := startServer(t)
	ctx, problems := browser(t)
	dir := outDir(t)
	shot := func(name string) action {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			b, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644)
		})
	}
	step := func(name string, actions ...action) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			_ = chromedp.Do(ctx, shot("failed-"+name))
			text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("%s: %v\npage text:\n%s\nbrowser problems: %v", name, err, text, problems.all())
		}
	}
	// until waits for a JavaScript condition to hold.
	until := func(js string) action {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](js, chromedp.WithPollingTimeout(20*time.Second))(ctx, tg)
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", js, err)
			}
			return nil
		})
	}
	// set gives an input a value as if typed: the input event fires.
	set := func(sel, value string) action {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const el = document.querySelector(%q); el.value = %q; el.dispatchEvent(new Event('input', {bubbles: true})) })()`, sel, value))
	}
	// clickMap clicks the map dx, dy pixels from its centre.
	clickMap := func(dx, dy float64) action {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			r, err := chromedp.Evaluate[struct{ X, Y float64 }](`(() => { const b = document.querySelector('svg.map').getBoundingClientRect(); return {X: b.left + b.width / 2, Y: b.top + b.height / 2} })()`)(ctx, tg)
			if err != nil {
				return err
			}
			_, err = chromedp.MouseClickXY(r.X+dx, r.Y+dy)(ctx, tg)
			return err
		})
	}

	// drag presses the mouse on an element's centre and moves it dx, dy.
	drag := func(sel string, dx, dy float64) action {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			r, err := chromedp.Evaluate[struct{ X, Y float64 }](fmt.Sprintf(`(() => { const b = document.querySelector(%q).getBoundingClientRect(); return {X: b.left + b.width / 2, Y: b.top + b.height / 2} })()`, sel))(ctx, tg)
			if err != nil {
				return err
			}
			steps := []action{chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, r.X, r.Y, chromedp.ButtonLeft, chromedp.ClickCount(1))}
			for i := 1; i <= 5; i++ {
				steps = append(steps, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, r.X+dx*float64(i)/5, r.Y+dy*float64(i)/5, chromedp.ButtonLeft))
			}
			steps = append(steps, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, r.X+dx, r.Y+dy, chromedp.ButtonLeft, chromedp.ClickCount(1)))
			for _, a := range steps {
				if _, err := a(ctx, tg); err != nil {
					return err
				}
			}
			return nil
		})
	}

	step("sign in with a wrong key",
		chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(chromedp.ID("signin-key")),
		chromedp.SendKeys(chromedp.ID("signin-key"), "not-a-key"),
		chromedp.Click(chromedp.ID("signin-submit")),
		until(`document.querySelector('#signin-error')?.textContent.includes('unknown API key')`),
		shot("01-signin-refused"))
	step("sign in with an app key",
		set("#signin-key", "console-app"),
		chromedp.Click(chromedp.ID("signin-submit")),
		until(`document.querySelector('#signin-error')?.textContent.includes('needs an admin key')`))
	step("sign in",
		set("#signin-key", adminKey),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("store-add")))

	step("add a store on the map",
		until(`document.querySelector('svg.map .graticule') !== null`),
		chromedp.Click(chromedp.ID("store-add")),
		clickMap(0, 0),
		chromedp.WaitVisible(chromedp.CSS(`#store-form [name="id"]`)),
		chromedp.SendKeys(chromedp.CSS(`#store-form [name="id"]`), "s-cafe"),
		chromedp.SendKeys(chromedp.CSS(`#store-form [name="name"]`), "Café Test"),
		chromedp.SendKeys(chromedp.CSS(`#store-form [name="tags"]`), "coffee, test"),
		chromedp.Click(chromedp.ID("store-save")),
		until(`document.querySelector('#store-status')?.textContent.includes('Saved Café Test')`),
		until(`document.querySelector('#store-list')?.textContent.includes('Café Test')`),
		until(`document.querySelectorAll('svg.map path.cell').length > 0`),
		shot("02-store-created"))
	step("resize the store by its handle, and move it back and forth",
		drag(`svg.map .handle`, 40, 0),
		until(`Number(document.querySelector('#store-form [name="radius_m"]')?.value) > 120`),
		until(`document.querySelector('#store-form h3 .badge')?.textContent === 'unsaved'`),
		chromedp.Evaluate[chromedp.Void](`window.__lat0 = Number(document.querySelector('#store-form [name="lat"]').value)`),
		drag(`svg.map .store-dot`, 0, 60),
		until(`Number(document.querySelector('#store-form [name="lat"]')?.value) < window.__lat0 - 0.0001`),
		drag(`svg.map .store-dot`, 0, -60),
		until(`Math.abs(Number(document.querySelector('#store-form [name="lat"]')?.value) - window.__lat0) < 0.00001`),
		shot("02b-store-resized"),
		set(`#store-form [name="radius_m"]`, "100"))
	step("a store's fault shows next to its field",
		set(`#store-form [name="radius_m"]`, "5"),
		chromedp.Click(chromedp.ID("store-save")),
		until(`document.querySelector('#store-form [data-field="radius_m"] .fault')?.textContent.includes('between 10 and 50000')`),
		set(`#store-form [name="radius_m"]`, "100"),
		chromedp.Click(chromedp.ID("store-save")),
		until(`document.querySelector('#store-status')?.textContent.includes('Saved')`))

	step("a new store may not take an existing store's id",
		chromedp.Click(chromedp.ID("store-add")),
		clickMap(150, 100),
		until(`document.querySelector('#store-form h3')?.textContent.startsWith('New store')`),
		chromedp.SendKeys(chromedp.CSS(`#store-form [name="id"]`), "s-cafe"),
		chromedp.SendKeys(chromedp.CSS(`#store-form [name="name"]`), "Another café"),
		chromedp.Click(chromedp.ID("store-save")),
		until(`document.querySelector('#store-form [data-field="id"] .fault')?.textContent.includes('exists already')`),
		chromedp.Click(chromedp.CSS(`#store-form button[data-action="close"]`)),
		until(`document.querySelector('#store-form h3') === null`))

	step("open a new rule",
		chromedp.Click(chromedp.CSS(`nav a[data-view="rules"]`)),
		chromedp.WaitVisible(chromedp.ID("rule-new")),
		chromedp.Click(chromedp.ID("rule-new")),
		chromedp.WaitVisible(chromedp.ID("f-id")),
		chromedp.SendKeys(chromedp.ID("f-id"), "cafe-hello"),
		set(`[name="name"]`, "Hello at the café"),
		set(`[name="trigger.stores.tags"]`, "coffee, no-such-tag"),
		until(`document.querySelector('[data-field="trigger.stores.tags"] .fault')?.textContent === 'item 2: no store carries the tag "no-such-tag"'`),
		set(`[name="trigger.stores.tags"]`, "coffee"),
		until(`document.querySelector('#rule-status')?.textContent === 'Valid.'`))
	step("see a validation error next to its field while typing",
		set(`[name="$title.en"]`, ""),
		chromedp.SendKeys(chromedp.CSS(`[name="$title.en"]`), "Hi {{.customer.firstname}}"),
		until(`document.querySelector('[data-field="offer.title.en"] .fault')?.textContent.includes('has no field "firstname"')`),
		shot("03-validation-error"))
	step("an audience's fault keeps its lines, the caret under its column",
		set(`[name="audience"]`, "customer.attributes.tier == 'gold' &&"),
		until(`(() => { const f = document.querySelector('[data-field="audience"] .fault'); return !!f && f.textContent.includes('\n') && f.textContent.includes('^') && getComputedStyle(f).whiteSpace === 'pre-wrap' })()`),
		set(`[name="audience"]`, ""),
		until(`document.querySelector('[data-field="audience"] .fault')?.textContent === ''`))
	step("the audience suggests the attributes customers have; a typo is refused with a hint",
		set(`[name="audience"]`, "customer.attributes.ti"),
		until(`[...document.querySelectorAll('#audience-suggest button')].map((b) => b.dataset.name).join() === 'tier'`),
		chromedp.Click(chromedp.CSS(`#audience-suggest button[data-name="tier"]`)),
		until(`document.querySelector('[name="audience"]').value === 'customer.attributes.tier'`),
		until(`document.querySelector('#rule-raw')?.value.includes('"audience": "customer.attributes.tier"')`),
		set(`[name="audience"]`, "customer.attributes.teir == 'gold'"),
		until(`document.querySelector('[data-field="audience"] .fault')?.textContent.includes('did you mean tier?')`),
		shot("03b-audience-attribute"),
		set(`[name="audience"]`, ""),
		until(`document.querySelector('[data-field="audience"] .fault')?.textContent === ''`))
	step("fix it and preview the push",
		set(`[name="$title.en"]`, "Hi {{.customer.first_name}}, a coffee is waiting"),
		until(`document.querySelector('[data-field="offer.title.en"] .fault')?.textContent === ''`),
		until(`document.querySelector('#rule-status')?.textContent === 'Valid.'`),
		until(`document.querySelector('#rule-raw')?.value.includes('a coffee is waiting')`),
		until(`document.querySelector('#rule-preview')?.textContent.includes('Hi Anna, a coffee is waiting')`),
		shot("04-rule-preview"))
	step("save the rule",
		chromedp.Click(chromedp.ID("rule-save")),
		until(`location.hash === '#/rules/cafe-hello'`),
		until(`document.querySelector('#rule-version')?.textContent.startsWith('Version 1,')`),
		set(`[name="priority"]`, "7"),
		until(`document.querySelector('#rule-status')?.textContent === 'Valid.'`),
		chromedp.Click(chromedp.ID("rule-save")),
		until(`document.querySelector('#rule-version')?.textContent.startsWith('Version 2,')`),
		until(`document.querySelectorAll('#rule-history li').length === 2`),
		chromedp.Click(chromedp.CSS(`nav a[data-view="rules"]`)),
		until(`document.querySelector('#rule-table')?.textContent.includes('Hello at the café')`),
		chromedp.SendKeys(chromedp.ID("rule-search"), "coffee"),
		until(`[...document.querySelectorAll('#rule-table tbody tr')].filter(tr => !tr.hidden).length === 1`),
		shot("05-rule-list"))

	step("simulate a walk into the store",
		chromedp.Click(chromedp.CSS(`nav a[data-view="simulate"]`)),
		chromedp.WaitVisible(chromedp.ID("sim-run")),
		until(`document.querySelectorAll('svg.map path.fence').length === 1`),
		until(`document.querySelector('#sim-who')?.textContent.includes('Anna')`),
		until(`document.querySelector('#sim-no-feedback')?.textContent === 'no feedback consent: not asked questions after visits'`),
		until(`document.querySelector('#sim-device')?.value === 'd-1'`),
		clickMap(-300, 40),
		clickMap(-120, 10),
		clickMap(0, 0),
		until(`document.querySelector('#sim-path-info')?.textContent.includes('3 points')`),
		chromedp.Click(chromedp.ID("sim-run")),
		until(`!document.querySelector('#sim-run').disabled && document.querySelectorAll('#sim-results tbody tr').length > 5`),
		until(`[...document.querySelectorAll('#sim-results .explain.sent')].some(e => e.textContent.includes('Hello at the café'))`),
		until(`document.querySelector('#sim-results .offer')?.textContent.includes('Hi Anna, a coffee is waiting')`),
		until(`document.querySelector('#sim-results .event.enter')?.textContent.includes('Café Test')`),
		// The walk remembers its pings: it enters the store once and stays,
		// however many pings fall inside.
		until(`document.querySelectorAll('#sim-results .event.enter').length === 1 && document.querySelectorAll('#sim-results tr.has-offer').length === 1`),
		shot("06-simulated-walk"))
	// What the phone watches: the store's region and the wake circle of
	// the last ping it sent; the pings it would send counted, and told
	// from those it would not.
	step("see what a phone would watch and send",
		until(`document.querySelectorAll('svg.map path.monitor-region').length === 1 && document.querySelectorAll('svg.map path.monitor-wake').length === 1`),
		until(`(() => {
			const m = document.querySelector('#sim-phone')?.textContent.match(/^A phone would have sent (\d+) of (\d+) pings\.$/);
			const rows = document.querySelectorAll('#sim-results tbody tr').length;
			const sent = document.querySelectorAll('#sim-results tr.phone-sent').length;
			return m && Number(m[2]) === rows && Number(m[1]) === sent && sent >= 2 && sent < rows;
		})()`),
		until(`document.querySelector('#sim-results tr.has-event')?.classList.contains('phone-sent')`),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#sim-results tr.phone-skipped').click()`),
		until(`document.querySelector('#sim-monitor')?.textContent.includes('a phone would not send it; it follows the answer to ping')`),
		until(`document.querySelectorAll('svg.map .ping-source').length === 1 && document.querySelectorAll('svg.map .ping.skipped').length > 0`),
		shot("06b-phone-watch"))
	firstRows, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#sim-results tbody tr:first-child`)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(firstRows, "enter") {
		t.Errorf("the first ping, 300 px west of the store, entered it: %s", firstRows)
	}

	// The walk was a dry run: the funnel is still empty. The same walk
	// from the app, for real, issues the offer, and the results show it.
	if got := countIssued(t, base); got != 0 {
		t.Fatalf("the simulated walk issued %d offers; a simulation issues none", got)
	}
	walkForReal(t, base)
	step("results",
		chromedp.Click(chromedp.CSS(`nav a[data-view="results"]`)),
		until(`document.querySelectorAll('#results-charts svg.chart').length >= 3`),
		until(`document.querySelector('#results-charts text.value[data-label="issued"]')?.textContent === '1'`),
		shot("07-results"))

	// Webhooks: the subscription with its health, a test event sent with a
	// click and received signed, the dead letters replayed and dropped.
	step("webhooks: the subscriptions with their health",
		chromedp.Click(chromedp.CSS(`nav a[data-view="webhooks"]`)),
		until(`document.querySelector('#webhook-table tr[data-id="crm"]') !== null`),
		until(`document.querySelector('#webhook-table tr[data-id="crm"] .dead-count')?.textContent === '2'`),
		until(`document.querySelector('#webhook-table tr[data-id="crm"] .lag')?.textContent === '0'`))
	step("send a test event",
		chromedp.Click(chromedp.CSS(`#webhook-table button[data-action="test"][data-id="crm"]`)),
		until(`/^Test event evt_[0-9a-f]+ queued for crm/.test(document.querySelector('#webhook-status')?.textContent)`))
	if err := recv.WaitAccepted(1, 10*time.Second); err != nil {
		t.Fatalf("the test event did not arrive: %v", err)
	}
	got := recv.Accepted()[0]
	status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("webhook-status")))
	if got.VerifyErr != nil || got.Event.Type != webhook.TypeTest || !strings.Contains(status, got.ID) {
		t.Fatalf("received %+v (%v); the console said %q", got.Event, got.VerifyErr, status)
	}
	step("the delivery shows",
		chromedp.Click(chromedp.ID("webhook-refresh")),
		until(`document.querySelector('#webhook-table tr[data-id="crm"] .delivered')?.textContent === '1 delivered'`),
		shot("08-webhooks"))
	step("dead letters: replay one, drop the other",
		chromedp.Click(chromedp.CSS(`#webhook-table button[data-action="dead"][data-id="crm"]`)),
		until(`document.querySelectorAll('#dead-table tbody tr').length === 2 && document.querySelector('#dead-total')?.textContent === '(2)'`),
		until(`location.hash === '#/webhooks/crm'`),
		shot("09-dead-letters"),
		chromedp.Click(chromedp.CSS(`#dead-table tr[data-event="evt-dead-1"] button[data-action="replay"]`)),
		until(`document.querySelector('#webhook-status')?.textContent === 'Replayed 1 to crm.'`),
		until(`document.querySelectorAll('#dead-table tbody tr').length === 1`))
	if err := recv.WaitAccepted(2, 10*time.Second); err != nil || recv.Accepted()[1].ID != "evt-dead-1" {
		t.Fatalf("the replayed event did not arrive: %v", err)
	}
	step("drop the last",
		chromedp.Click(chromedp.ID("dead-drop-all")),
		until(`document.querySelector('#dead-drop-all')?.textContent === 'Click again to drop all 1'`),
		chromedp.Click(chromedp.ID("dead-drop-all")),
		until(`document.querySelector('#webhook-status')?.textContent === "Dropped 1 of crm's dead letters."`),
		until(`document.querySelector('#dead-letters')?.textContent.includes('No dead letters')`),
		until(`document.querySelector('#webhook-table tr[data-id="crm"] .dead-count')?.textContent === '0'`))

	experimentInBrowser(t, base, rdb, step, until, set, shot)
	feedbackInBrowser(t, base, rdb, step, until, set, shot)

	csp, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__csp`))
	if err != nil {
		t.Fatal(err)
	}
	if len(csp) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", csp)
	}
	if p := problems.all(); len(p) > 0 {
		t.Errorf("the page had script errors: %v", p)
	}
	t.Logf("screenshots in %s", dir)
}

// action is a step in the browser that answers nothing.
type action = chromedp.Action[chromedp.Void]

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Exception.Description
	}
	return d.Text
}

// countIssued reads today's issued count of the test's rule.
func countIssued(t *testing.T, base string) int {
	t.Helper()
	var rep struct {
		Days []struct{ Issued int } `json:"days"`
	}
	call(t, "GET", base+"/v1/rules/cafe-hello/stats", adminKey, "", &rep)
	n := 0
	for _, d := range rep.Days {
		n += d.Issued
	}
	return n
}

// walkForReal sends the app's pings: outside the store, then inside.
func walkForReal(t *testing.T, base string) {
	t.Helper()
	var store struct{ Lat, Lng float64 }
	call(t, "GET", base+"/v1/stores/s-cafe", adminKey, "", &store)
	for _, lng := range []float64{store.Lng - 0.004, store.Lng} {
		var res struct {
			Offers []struct{ Title string } `json:"offers"`
		}
		call(t, "POST", base+"/v1/pings", "console-app", fmt.Sprintf(`{"customer_id": "c-42", "device_id": "d-1", "lat": %v, "lng": %v, "accuracy_m": 10}`, store.Lat, lng), &res)
		if lng == store.Lng && (len(res.Offers) != 1 || !strings.Contains(res.Offers[0].Title, "Hi Anna")) {
			t.Fatalf("the real walk into the store got offers %+v", res.Offers)
		}
	}
}

func call(t *testing.T, method, url, key, body string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, url, res.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %v: %s", method, url, err, b)
	}
}

// experimentInBrowser writes a rule with two variants in the editor (each
// in two languages, with a fault shown at its field on the way), saves
// it, and reads its results: "not enough data yet" at first, then, from
// funnel counters written into Redis as the engine counts them, the
// verdict, each variant's rates with their 95% intervals, the allocation
// per day and the stores.
func experimentInBrowser(t *testing.T, base string, rdb redis.UniversalClient, step func(string, ...action), until func(string) action, set func(string, string) action, shot func(string) action) {
	t.Helper()
	// press clicks a button where it is, even under the form's sticky
	// footer (a mouse click there would land on the footer).
	press := func(sel string) action {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).click()`, sel))
	}
	step("make a new rule an experiment",
		chromedp.Click(chromedp.CSS(`nav a[data-view="rules"]`)),
		chromedp.WaitVisible(chromedp.ID("rule-new")),
		chromedp.Click(chromedp.ID("rule-new")),
		chromedp.WaitVisible(chromedp.ID("f-id")),
		chromedp.SendKeys(chromedp.ID("f-id"), "cafe-ab"),
		set(`[name="name"]`, "Flat white, two ways"),
		set(`[name="trigger.stores.tags"]`, "coffee"),
		set(`[name="$newlang"]`, "de"),
		press(`#lang-add`),
		until(`document.querySelector('[name="$body.de"]') !== null`),
		set(`[name="$title.de"]`, "Hallo {{.customer.first_name}}!"),
		set(`[name="$body.de"]`, "{{.store.name}} ist {{.distance_m}} m entfernt."),
		press(`#variants-start`),
		until(`document.querySelectorAll('#variants .variant').length === 2`),
		until(`document.querySelector('[name="$v.1.title.de"]')?.value === 'Hallo {{.customer.first_name}}!'`),
		until(`document.querySelector('#rule-raw').value.includes('"variants"') && !document.querySelector('[name="$title.en"]')`),
		// Two is the least: neither can be removed; a third can, again.
		until(`[...document.querySelectorAll('#variants [data-action="remove-variant"]')].every((b) => b.disabled)`),
		press(`#variant-add`),
		until(`document.querySelectorAll('#variants .variant').length === 3 && document.querySelector('[name="$v.2.id"]')?.value === 'c'`),
		press(`#variants .variant[data-index="2"] [data-action="remove-variant"]`),
		until(`document.querySelectorAll('#variants .variant').length === 2`),
		// Back to one message (the first variant's), and an experiment again.
		press(`#variants-end`),
		until(`document.querySelector('[name="$title.de"]')?.value === 'Hallo {{.customer.first_name}}!' && !document.querySelector('#variants')`),
		until(`!document.querySelector('#rule-raw').value.includes('"variants"')`),
		press(`#variants-start`),
		until(`document.querySelectorAll('#variants .variant').length === 2`))
	step("write the variants",
		set(`[name="$v.0.title.en"]`, "10% off, {{.customer.first_name}}"),
		set(`[name="$v.0.body.en"]`, "Your flat white at {{.store.name}}"),
		set(`[name="$v.0.title.de"]`, "10 % Rabatt, {{.customer.first_name}}"),
		set(`[name="$v.0.body.de"]`, "Dein Flat White bei {{.store.name}}"),
		set(`[name="$v.0.discount"]`, "10%"),
		set(`[name="$v.1.title.en"]`, "A free size-up, {{.customer.first_name}}"),
		set(`[name="$v.1.body.en"]`, "Any flat white at {{.store.name}}"),
		set(`[name="$v.1.title.de"]`, "Gratis eine Größe größer, {{.customer.first_name}}"),
		set(`[name="$v.1.body.de"]`, "Jeder Flat White bei {{.store.name}}"),
		set(`[name="$v.1.discount"]`, "size-up"),
		set(`[name="$v.1.valid_for_s"]`, "1800"),
		set(`[name="$v.1.weight"]`, "5000"),
		until(`document.querySelector('[data-field="offer.variants[1].weight"] .fault')?.textContent === 'a weight is 1 to 1000'`),
		until(`document.querySelector('[data-field="offer.variants[1].weight"]').classList.contains('bad')`),
		set(`[name="$v.1.weight"]`, "3"),
		set(`[name="$v.1.title.de"]`, ""),
		until(`document.querySelector('[data-field="offer.variants[1].title.de"] .fault')?.textContent === 'the text must not be empty'`),
		set(`[name="$v.1.title.de"]`, "Gratis eine Größe größer, {{.customer.first_name}}"),
		until(`document.querySelector('#rule-status')?.textContent === 'Valid.'`))
	step("a bandit's settings, and its fault at its field",
		set(`[name="offer.selection"]`, "bandit"),
		until(`document.querySelector('[name="offer.bandit.floor_pct"]') !== null`),
		set(`[name="offer.bandit.floor_pct"]`, "60"),
		until(`document.querySelector('[data-field="offer.bandit.floor_pct"] .fault')?.textContent.includes('at most 50 with 2 variants')`),
		set(`[name="offer.bandit.floor_pct"]`, "10"),
		set(`[name="offer.bandit.min_per_variant"]`, "50"),
		until(`document.querySelector('#rule-status')?.textContent === 'Valid.'`),
		// Anna (German) gets one variant: her phone, of four.
		until(`document.querySelectorAll('#rule-preview figure.phone').length === 4`),
		until(`document.querySelectorAll('#rule-preview figure.phone.theirs[data-lang="de"]').length === 1`),
		until(`document.querySelector('#rule-preview figure.phone[data-variant="b"][data-lang="de"]')?.textContent.includes('Gratis eine Größe größer, Anna')`),
		shot("10-variant-editor"))
	step("save the experiment",
		chromedp.Click(chromedp.ID("rule-save")),
		until(`location.hash === '#/rules/cafe-ab'`),
		until(`document.querySelector('#rule-version')?.textContent.startsWith('Version 1,')`),
		until(`document.querySelectorAll('#variants .variant').length === 2 && document.querySelector('[name="$v.1.weight"]')?.value === '3'`),
		until(`document.querySelector('[name="offer.selection"]')?.value === 'bandit' && document.querySelector('[name="offer.bandit.floor_pct"]')?.value === '10'`))
	var saved struct {
		Offer struct {
			Selection string
			Bandit    struct {
				MinPerVariant int     `json:"min_per_variant"`
				FloorPct      float64 `json:"floor_pct"`
			}
			Variants []struct {
				ID, Discount string
				Weight       int
				ValidForS    int `json:"valid_for_s"`
				Title, Body  map[string]string
			}
		}
	}
	call(t, "GET", base+"/v1/rules/cafe-ab", adminKey, "", &saved)
	o := saved.Offer
	if o.Selection != "bandit" || o.Bandit.MinPerVariant != 50 || o.Bandit.FloorPct != 10 || len(o.Variants) != 2 ||
		o.Variants[0].ID != "a" || o.Variants[0].Weight != 1 || o.Variants[0].ValidForS != 3600 || o.Variants[0].Discount != "10%" ||
		o.Variants[1].ID != "b" || o.Variants[1].Weight != 3 || o.Variants[1].ValidForS != 1800 || o.Variants[1].Discount != "size-up" ||
		o.Variants[1].Title["de"] != "Gratis eine Größe größer, {{.customer.first_name}}" || o.Variants[0].Body["en"] != "Your flat white at {{.store.name}}" {
		t.Fatalf("the experiment as saved: %+v", o)
	}

	// Its results: a few offers first, not enough to compare.
	ctx := context.Background()
	now := time.Now().UTC()
	today, yesterday := now.Format("20060102"), now.AddDate(0, 0, -1).Format("20060102")
	count := func(day string, fields map[string]int64) {
		t.Helper()
		for f, n := range fields {
			if err := rdb.HIncrBy(ctx, "nc:{rule:cafe-ab}:funnel:"+day, f, n).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	count(yesterday, map[string]int64{"issued": 90, "issued|v:a": 40, "issued|v:b": 50, "redeemed": 5, "redeemed|v:a": 2, "redeemed|v:b": 3})
	step("an experiment without enough data",
		chromedp.Click(chromedp.CSS(`a[href="#/results/cafe-ab"]`)),
		until(`document.querySelector('#experiment-verdict')?.textContent.startsWith('Not enough data yet')`),
		until(`document.querySelectorAll('#experiment-variants tr.short td.not-enough').length === 2`),
		until(`document.querySelector('#experiment-variants tr[data-variant="a"] .not-enough')?.textContent === 'Not enough data yet: 40 of the 100 offers it needs before it is compared'`),
		shot("11-experiment-not-enough"))

	// Then enough: b redeems more, and customers came back more after it
	// than after nothing (the holdout), at s-cafe.
	count(yesterday, map[string]int64{"issued|s:s-cafe": 90, "issued|v:a|s:s-cafe": 40, "issued|v:b|s:s-cafe": 50})
	count(today, map[string]int64{
		"issued": 1510, "issued|v:a": 460, "issued|v:b": 1050, "issued|s:s-cafe": 1510, "issued|v:a|s:s-cafe": 460, "issued|v:b|s:s-cafe": 1050,
		"sent": 1580, "sent|v:a": 490, "sent|v:b": 1090, "opened": 690, "opened|v:a": 200, "opened|v:b": 490,
		"redeemed": 115, "redeemed|v:a": 23, "redeemed|v:b": 92, "redeemed|s:s-cafe": 120,
		"returned_treated": 380, "returned_treated|v:a": 100, "returned_treated|v:b": 280, "returned_treated|s:s-cafe": 380,
		"holdout": 240, "holdout|s:s-cafe": 240, "returned_holdout": 36, "returned_holdout|s:s-cafe": 36,
	})
	var stats struct{ Experiment *engine.ExperimentReport }
	call(t, "GET", base+"/v1/rules/cafe-ab/stats?from="+now.AddDate(0, 0, -6).Format("2006-01-02")+"&to="+now.Format("2006-01-02"), adminKey, "", &stats)
	ex := stats.Experiment
	if ex == nil || ex.Best != "b" || len(ex.Variants) != 2 || ex.Variants[0].VersusBest == nil || len(ex.Stores) != 1 || ex.Stores[0].Uplift == nil {
		t.Fatalf("the seeded experiment: %+v", ex)
	}
	a, b := ex.Variants[0], ex.Variants[1]
	// The console writes a rate as "8.1% (6.2–10.4)", a difference in
	// points with its interval.
	rate := func(r engine.Rate) string {
		return fmt.Sprintf("%.1f%% (%.1f–%.1f)", 100*r.Value, 100*r.Low, 100*r.High)
	}
	pts := func(x float64) string { return strings.Replace(fmt.Sprintf("%.1f", 100*x), "-", "−", 1) }
	diff := func(d *engine.Rate) string {
		return fmt.Sprintf("%s points (%s to %s)", pts(d.Value), pts(d.Low), pts(d.High))
	}
	cell := func(variant, kind, want string) action {
		return until(fmt.Sprintf(`document.querySelector('#experiment-variants tr[data-variant=%q] td[%s]')?.textContent === %q`, variant, kind, want))
	}
	step("the experiment's results: verdict, rates with intervals, allocation, stores",
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.querySelector('#results-days'); s.value = '7'; s.dispatchEvent(new Event('change')) })()`),
		until(fmt.Sprintf(`document.querySelector('#experiment-verdict')?.textContent === %q`, ex.Verdict)),
		until(`document.querySelector('#experiment-verdict').textContent.startsWith('B redeems')`),
		cell("a", `data-count="issued"`, "500"),
		cell("b", `data-count="redeemed"`, "95"),
		cell("a", `data-rate="redeem"`, rate(a.RedeemRate)),
		cell("b", `data-rate="redeem"`, rate(b.RedeemRate)),
		cell("a", `data-rate="open"`, rate(a.OpenRate)),
		cell("b", `data-rate="revisit"`, rate(b.RevisitRate)),
		cell("a", `data-diff="best"`, diff(a.VersusBest)),
		cell("b", `data-diff="best"`, "best"),
		cell("b", `data-diff="holdout"`, "+"+diff(b.VersusHoldout)),
		until(`document.querySelectorAll('#experiment-variants tr.short').length === 0`),
		until(`document.querySelectorAll('svg.intervals circle').length === 2`),
		until(`document.querySelectorAll('svg.allocation rect[data-variant]').length === 4`),
		until(fmt.Sprintf(`document.querySelector('svg.allocation rect[data-variant="b"][data-date=%q] title')?.textContent === %q`,
			now.Format("2006-01-02"), fmt.Sprintf("%s b: 1050 of 1510 offers (69.5%%)", now.Format("2006-01-02")))),
		until(`document.querySelector('#experiment-stores tr[data-store="s-cafe"] td[data-variant="b"]')?.textContent === '1100'`),
		until(fmt.Sprintf(`document.querySelector('#experiment-stores tr[data-store="s-cafe"] .uplift')?.textContent === %q`, "+"+diff(ex.Stores[0].Uplift))),
		shot("12-experiment-results"))
}

// feedbackInBrowser shows the customer's voice (docs/feedback.md): stores
// coloured on the map by their customers' answers over the last 13 weeks,
// from counters written into Redis as the engine counts them (one store
// with enough answers, green; one without, grey, "not enough answers";
// one asked CSAT only, by its mean, amber), with the legend; a store's
// trend per week when it is selected; a rule made a question in the
// editor (its scale, a comment) and saved; and its answers in its
// results.
func feedbackInBrowser(t *testing.T, base string, rdb redis.UniversalClient, step func(string, ...action), until func(string) action, set func(string, string) action, shot func(string) action) {
	t.Helper()
	press := func(sel string) action {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%q).click()`, sel))
	}
	for _, s := range []struct {
		id, name string
		lat, lng float64
	}{{"s-voice-good", "Loved Café", 52.5230, 13.4090}, {"s-voice-few", "New Café", 52.5185, 13.4020}, {"s-voice-csat", "Asked Café", 52.5240, 13.4000}} {
		var out map[string]any
		put(t, base+"/v1/stores/"+s.id, fmt.Sprintf(`{"name": %q, "lat": %v, "lng": %v, "radius_m": 60, "tags": ["coffee"]}`, s.name, s.lat, s.lng), &out)
	}
	ctx := context.Background()
	today := time.Now().UTC()
	count := func(key string, fields map[string]int64) {
		t.Helper()
		for f, n := range fields {
			if err := rdb.HIncrBy(ctx, key, f, n).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	storeDay := func(store string, daysAgo int) string {
		return "nc:{store:" + store + "}:feedback:" + today.AddDate(0, 0, -daysAgo).Format("20060102")
	}
	// Loved Café, three weeks of NPS answers: 50 this week (25 promoters,
	// 10 passives, 5 detractors of 40), 0 the week before (10 and 10 of
	// 20), 40 the one before that (12, 4, 4); in all 80, NPS 35.
	count(storeDay("s-voice-good", 0), map[string]int64{"nps|asked": 90, "nps|n": 40, "nps|10": 15, "nps|9": 10, "nps|8": 6, "nps|7": 4, "nps|5": 3, "nps|2": 2})
	count(storeDay("s-voice-good", 7), map[string]int64{"nps|asked": 50, "nps|n": 20, "nps|9": 10, "nps|6": 5, "nps|3": 5})
	count(storeDay("s-voice-good", 14), map[string]int64{"nps|asked": 40, "nps|n": 20, "nps|10": 12, "nps|8": 4, "nps|2": 4})
	// New Café: 5 answers, too few for a score.
	count(storeDay("s-voice-few", 0), map[string]int64{"nps|asked": 10, "nps|n": 5, "nps|9": 3, "nps|2": 2})
	// Asked Café, CSAT only: 35 answers, mean 125/35 = 3.6.
	count(storeDay("s-voice-csat", 2), map[string]int64{"csat|asked": 50, "csat|n": 35, "csat|5": 10, "csat|4": 10, "csat|3": 8, "csat|2": 4, "csat|1": 3})
	week := func(daysAgo int) string {
		y, w := today.AddDate(0, 0, -daysAgo).ISOWeek()
		return fmt.Sprintf("%04d-W%02d", y, w)
	}
	weeks := fmt.Sprintf("%q", strings.Join([]string{week(14), week(7), week(0)}, " "))

	step("stores coloured by their customers' answers, with a legend",
		chromedp.Click(chromedp.CSS(`nav a[data-view="stores"]`)),
		until(`document.querySelectorAll('#store-list li[data-store]').length === 4`),
		until(`document.querySelectorAll('svg.map .fence.score-green').length === 1 && document.querySelectorAll('svg.map .fence.score-amber').length === 1`),
		until(`document.querySelectorAll('svg.map .fence.score-none').length === 2 && document.querySelectorAll('svg.map .fence.score-red').length === 0`),
		until(`document.querySelector('#store-list li[data-store="s-voice-good"] .score[data-band="green"]')?.textContent === 'NPS 35'`),
		until(`document.querySelector('#store-list li[data-store="s-voice-csat"] .score[data-band="amber"]')?.textContent === 'CSAT 3.6'`),
		until(`document.querySelector('#store-list li[data-store="s-voice-few"] .score[data-band="none"]')?.textContent === 'not enough answers'`),
		until(`document.querySelector('#store-list li[data-store="s-voice-few"] .score')?.title === '5 answers of the 30 a score needs, last 13 weeks'`),
		until(`document.querySelector('#store-list li[data-store="s-cafe"] .score')?.title === 'no answers in the last 13 weeks'`),
		until(`[...document.querySelectorAll('#score-legend li')].map((li) => li.dataset.band + ':' + li.textContent.trim()).join('|') === `+
			`'red:NPS below 0 · CSAT below 3|amber:NPS 0 to 30 · CSAT 3 to 4|green:NPS above 30 · CSAT 4 and above|none:not enough answers'`),
		// Each colour is the legend's.
		until(`getComputedStyle(document.querySelector('svg.map .fence.score-green')).fill === getComputedStyle(document.querySelector('#score-legend .swatch.score-green')).backgroundColor`),
		until(`getComputedStyle(document.querySelector('svg.map .fence.score-none')).fill === getComputedStyle(document.querySelector('#score-legend .swatch.score-none')).backgroundColor`),
		shot("13-stores-by-nps"))
	step("a store's trend per week, with its interval",
		chromedp.Click(chromedp.CSS(`#store-list li[data-store="s-voice-good"]`)),
		until(`document.querySelector('#store-voice .score-line.nps .score-chip.score-green')?.textContent === 'NPS 35'`),
		until(`document.querySelector('#store-voice .asked')?.textContent.startsWith('80 answered of 180 asked (44.4%')`),
		until(`[...document.querySelectorAll('#store-voice svg.trend circle.point')].map((c) => c.dataset.week).join(' ') === `+weeks),
		until(`[...document.querySelectorAll('#store-voice svg.trend circle.point')].map((c) => c.dataset.value).join(' ') === '40 0 50'`),
		until(`document.querySelectorAll('#store-voice svg.trend polygon.band').length === 1 && document.querySelectorAll('#store-voice svg.trend circle.point.few').length === 2`),
		// This week's 40 answers make a score; the weeks before had 20 each.
		until(`document.querySelector('#store-voice svg.trend circle.point:not(.few)')?.dataset.week === '`+week(0)+`'`),
		until(`document.querySelector('#store-voice svg.trend circle.point title')?.textContent.startsWith('`+week(14)+`: NPS 40 (95%: ')`),
		shot("14-store-trend"),
		chromedp.Click(chromedp.CSS(`#store-list li[data-store="s-voice-few"]`)),
		until(`document.querySelector('#store-voice .score-line.nps')?.textContent.startsWith('Not enough answers: 5 of the 30 NPS so far 20 (95%: ')`),
		until(`document.querySelectorAll('#store-voice svg.trend circle.point.few').length === 1`),
		chromedp.Click(chromedp.CSS(`#store-list li[data-store="s-voice-csat"]`)),
		until(`document.querySelector('#store-voice .score-line.csat .score-chip.score-amber')?.textContent === 'CSAT 3.6'`),
		until(`document.querySelectorAll('#store-voice svg.trend.csat circle.point').length === 1`))

	step("a rule that asks a question after the visit",
		chromedp.Click(chromedp.CSS(`nav a[data-view="rules"]`)),
		chromedp.WaitVisible(chromedp.ID("rule-new")),
		chromedp.Click(chromedp.ID("rule-new")),
		chromedp.WaitVisible(chromedp.ID("f-id")),
		chromedp.SendKeys(chromedp.ID("f-id"), "ask-voice"),
		set(`[name="name"]`, "How was it?"),
		set(`[name="trigger.on"]`, "exit"),
		set(`[name="trigger.stores.tags"]`, "coffee"),
		set(`[name="audience"]`, "visit.duration_s >= 300"),
		until(`document.querySelector('#variants-start') !== null && document.querySelector('[name="offer.redeem_at_issuing_store"]') !== null`),
		set(`[name="offer.kind"]`, "feedback"),
		until(`document.querySelector('#question [name="offer.question.scale"]')?.value === 'nps'`),
		until(`document.querySelector('#variants-start') === null && document.querySelector('[name="offer.redeem_at_issuing_store"]') === null`),
		until(`document.querySelector('[name="$title.en"]')?.value === 'How was {{.store.name}}?'`),
		set(`[name="offer.question.scale"]`, "csat"),
		until(`document.querySelector('[name="$body.en"]')?.value === 'How satisfied were you with your visit, from 1 to 5?'`),
		press(`[name="offer.question.comment"]`),
		until(`(() => { const r = JSON.parse(document.querySelector('#rule-raw').value).offer; return r.kind === 'feedback' && r.question.scale === 'csat' && r.question.comment === true && r.valid_for_s === undefined })()`),
		set(`[name="offer.valid_for_s"]`, "700000"),
		until(`document.querySelector('[data-field="offer.valid_for_s"] .fault')?.textContent.includes('at most 604800 seconds')`),
		set(`[name="offer.valid_for_s"]`, ""),
		until(`document.querySelector('#rule-status')?.textContent === 'Valid.'`),
		until(`document.querySelector('#rule-preview')?.textContent.includes('How was Café Test?')`),
		shot("15-question-editor"),
		chromedp.Click(chromedp.ID("rule-save")),
		until(`location.hash === '#/rules/ask-voice'`),
		until(`document.querySelector('#rule-version')?.textContent.startsWith('Version 1,')`),
		until(`document.querySelector('[name="offer.kind"]')?.value === 'feedback' && document.querySelector('[name="offer.question.comment"]')?.checked`))
	var saved struct {
		Offer struct {
			Kind     string
			Question struct {
				Scale   string
				Comment bool
			}
			ValidForS int `json:"valid_for_s"`
		}
	}
	call(t, "GET", base+"/v1/rules/ask-voice", adminKey, "", &saved)
	if o := saved.Offer; o.Kind != "feedback" || o.Question.Scale != "csat" || !o.Question.Comment || o.ValidForS != 604800 {
		t.Fatalf("the question as saved: %+v", o)
	}
	step("a question back to a coupon, in the editor",
		set(`[name="offer.kind"]`, "coupon"),
		until(`(() => { const r = JSON.parse(document.querySelector('#rule-raw').value).offer; return r.kind === undefined && r.question === undefined })()`),
		until(`document.querySelector('#variants-start') !== null && document.querySelector('#question') === null`))

	// Its answers: 35 of 50 asked, CSAT 150/35 = 4.3.
	count("nc:{rule:ask-voice}:funnel:"+today.Format("20060102"), map[string]int64{"issued": 50, "answered": 35, "score|csat|5": 20, "score|csat|4": 10, "score|csat|2": 5})
	step("a question's answers in its results",
		chromedp.Click(chromedp.CSS(`nav a[data-view="rules"]`)),
		until(`document.querySelector('#rule-table')?.textContent.includes('question · CSAT')`),
		chromedp.Click(chromedp.CSS(`a[href="#/results/ask-voice"]`)),
		until(`document.querySelector('#feedback-results .score-line.csat .score-chip.score-green')?.textContent === 'CSAT 4.3'`),
		until(`document.querySelector('#feedback-results .asked')?.textContent.startsWith('35 answered of 50 asked (70.0%')`),
		until(`document.querySelector('#feedback-results text.value[data-label="5"]')?.textContent === '20'`),
		until(`document.querySelectorAll('#feedback-results svg.trend circle.point').length === 1`),
		shot("16-question-results"))
}

// put PUTs a document as the admin, and decodes the answer (200 or 201).
func put(t *testing.T, url, body string, out any) {
	t.Helper()
	req, err := http.NewRequest("PUT", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", url, res.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("PUT %s: %v: %s", url, err, b)
	}
}
