package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/internal/bench"
	"github.com/nearcast/nearcast/internal/redistest"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

// buildServer builds the nearcast binary the bench starts.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nearcast")
	build := exec.Command("go", "build", "-o", bin, "../nearcast")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The load bench in a tiny city, end to end: it loads the city into
// redis-server, runs the nearcast binary on it, drives pings over HTTP and
// as bare GEOSEARCH queries, and reports what a person and a program can
// read. Every path of the tiny city leads into a store, so that offers
// and pushes are sure to happen.
func TestBenchTinyCity(t *testing.T) {
	srv.Client(t) // flushed
	cfg := bench.DefaultConfig()
	cfg.Stores, cfg.Rules, cfg.Customers, cfg.Active, cfg.Concurrency, cfg.ErrandPct = 300, 40, 3000, 16, 4, 100
	cfg.Duration, cfg.WarmUp = 1500*time.Millisecond, 500*time.Millisecond
	cfg.Phones, cfg.PhoneHours = 4, 0.1
	cfg.RedisURL = "redis://" + srv.Addr
	cfg.Out = t.TempDir()
	cfg.Start = startServer(buildServer(t), io.Discard)
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}

	if got := rep.City; got.Stores != 300 || got.Rules != 40 || got.Customers != 3000 || got.PolygonStores == 0 {
		t.Errorf("city: %+v", got)
	}
	var names []string
	offers := int64(0)
	for _, p := range rep.Phases {
		names = append(names, p.Name)
		l := p.Latency
		if p.Requests == 0 || p.ErrorCount != 0 || p.Throughput <= 0 || !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
			t.Errorf("phase %s: %d pings, %d errors %v, %.0f per s, latency %+v", p.Name, p.Requests, p.ErrorCount, p.Errors, p.Throughput, l)
		}
		n := int64(0)
		for _, b := range p.Histogram {
			n += b.Count
		}
		if n != p.Requests || len(p.PerSecond) == 0 {
			t.Errorf("phase %s: histogram holds %d of %d pings; %d seconds over time", p.Name, n, p.Requests, len(p.PerSecond))
		}
		offers += p.Offers
	}
	if strings.Join(names, ",") != "geosearch,http-floor,nearcast-peak,nearcast-80%" {
		t.Errorf("phases: %v", names)
	}
	if peak := rep.Phases[2]; peak.Events["enter"] == 0 || peak.CPUPerPingUs["redis"] <= 0 {
		t.Errorf("peak: events %v, cpu %v", peak.Events, peak.CPUPerPingUs)
	}
	// Where Redis's time went: every ping runs the observe step, a script.
	if cmds := rep.Phases[2].RedisCommands; len(cmds) == 0 || !slices.ContainsFunc(cmds, func(c bench.CommandCost) bool { return c.Command == "evalsha" && c.Calls >= 1 }) {
		t.Errorf("peak: Redis per ping %+v, want evalsha at least once a ping", cmds)
	}
	if at80 := rep.Phases[3]; at80.RateTarget <= 0 || at80.RateTarget > rep.Phases[2].Throughput {
		t.Errorf("80%% phase at %.0f per s, peak %.0f", at80.RateTarget, rep.Phases[2].Throughput)
	} else if l, pl := at80.Lag, at80.PacerLate; l == nil || pl == nil || l.P99 < l.P50 || l.Max > at80.Latency.Max || pl.Max > l.Max {
		// How late its pings went out, which its latency includes, and
		// of it how late the pacer handed them out.
		t.Errorf("80%% phase: lag %+v, the pacer's %+v, latency %+v", l, pl, at80.Latency)
	}
	if rep.Phases[2].Lag != nil || rep.Phases[2].PacerLate != nil {
		t.Errorf("the peak, a closed loop, has no lag: %+v", rep.Phases[2].Lag)
	}
	if offers == 0 || rep.DuplicateOffers != 0 {
		t.Errorf("%d offers, %d duplicates", offers, rep.DuplicateOffers)
	}
	if rep.WarmUp == nil || rep.WarmUp.Requests == 0 {
		t.Errorf("no warm-up: %+v", rep.WarmUp)
	} else {
		offers += rep.WarmUp.Offers
	}
	if p := rep.Pushes; !p.Measured || p.Sent != int(offers) || p.Duplicates != 0 || p.Pending != 0 || p.Unknown != 0 {
		t.Errorf("pushes %+v for %d offers", p, offers)
	}
	if m := rep.Memory; m.RedisBytesPerCustomer <= 0 || m.IndexBytesPerCircle <= 0 {
		t.Errorf("memory %+v", m)
	}
	if len(rep.Aims) < 5 {
		t.Errorf("aims: %+v", rep.Aims)
	}
	// The phones phase: the same walks, polled and monitored, in the
	// city's centre and in its outskirts, each judged on its own.
	if ph := rep.Phones; ph == nil || ph.Phones != 4 || len(ph.Areas) != 2 {
		t.Errorf("phones: %+v", ph)
	} else {
		for _, a := range ph.Areas {
			if len(a.Modes) != 2 || a.Mode(bench.ModePolling).Pings != 4*24 || a.Mode(bench.ModeMonitored).Pings == 0 || a.StoresPerKm2 <= 0 {
				t.Errorf("phones in %s: %+v", a.Name, a)
			}
			if !slices.ContainsFunc(rep.Aims, func(aim bench.Aim) bool { return aim.Name == "monitored pings per customer-hour ("+a.Name+")" }) {
				t.Errorf("no aim of the phones phase in %s: %+v", a.Name, rep.Aims)
			}
		}
		if ph.Area(bench.AreaCentre) == nil || ph.Area(bench.AreaOutskirts) == nil || ph.Area(bench.AreaOutskirts).StoresPerKm2 >= ph.Area(bench.AreaCentre).StoresPerKm2 {
			t.Errorf("phones' areas: %+v", ph.Areas)
		}
	}

	// The files: JSON a program reads back, an SVG that is well-formed
	// XML, and the text.
	raw, err := os.ReadFile(filepath.Join(cfg.Out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Report
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Phases) != 4 || back.Phases[2].Requests != rep.Phases[2].Requests ||
		back.Phones == nil || len(back.Phones.Areas) != 2 || len(back.Phones.Areas[1].Modes) != 2 {
		t.Errorf("report.json: %v, %d phases", err, len(back.Phases))
	}
	svg, err := os.Open(filepath.Join(cfg.Out, "report.svg"))
	if err != nil {
		t.Fatal(err)
	}
	defer svg.Close()
	dec := xml.NewDecoder(svg)
	root, polylines := "", 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("report.svg is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "polyline" {
				polylines++
			}
		}
	}
	if root != "svg" || polylines != 8 { // latency and throughput, four phases each
		t.Errorf("report.svg: root %q, %d lines", root, polylines)
	}
	txt, err := os.ReadFile(filepath.Join(cfg.Out, "report.txt"))
	if err != nil || !strings.Contains(string(txt), "nearcast-peak") || !strings.Contains(string(txt), "aims:") || !strings.Contains(string(txt), "nearcast-80%: pings as from many phones") || !strings.Contains(string(txt), "phones: 4 phones (ios) in each of 2 areas") {
		t.Errorf("report.txt: %v\n%s", err, txt)
	}
}

// The bench's flags, and --nearcast, the server binary to start; a
// missing server binary is told before anything is loaded.
func TestFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"stores", "rules", "customers", "active", "errand-pct", "concurrency", "duration", "warm-up", "rate",
		"baseline", "redis-url", "flush", "server", "app-key", "token-secret", "out", "seed", "cpuprofile", "nearcast", "phones", "phone-hours"} {
		if !strings.Contains(out.String(), "\n  -"+f+" ") && !strings.Contains(out.String(), "\n  -"+f+"\n") {
			t.Errorf("-h lists no --%s:\n%s", f, out.String())
		}
	}
	err := run(context.Background(), []string{"--nearcast", filepath.Join(t.TempDir(), "nothing-here"), "--out", ""}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "nothing-here") {
		t.Errorf("a missing server binary: %v", err)
	}
}
