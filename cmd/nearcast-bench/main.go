// Command nearcast-bench is Nearcast's load bench (package internal/bench).
// It starts the nearcast binary's `serve` as a process of its own, so the
// server carries none of the bench's code and test doubles.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/nearcast/nearcast/internal/bench"
	"github.com/nearcast/nearcast/internal/serverproc"
)

const usage = `usage: nearcast-bench [flags]

Loads a city into Redis (a redis-server of its own unless --redis-url is
given), starts nearcast on it (unless --server is given: the nearcast
binary beside this one, else on PATH, or --nearcast), drives pings over
HTTP and as bare GEOSEARCH queries, then compares phones polling every 15 s
with phones the OS wakes on crossings (--phones, in process, on a simulated
clock), in the city's crowded centre and in its sparse outskirts, and writes
report.txt, report.json and report.svg to --out.

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "nearcast-bench:", err)
		os.Exit(1)
	}
}

// run is nearcast-bench with its arguments.
func run(ctx context.Context, args []string, out io.Writer) error {
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("nearcast-bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprint(out, usage); fs.PrintDefaults() }
	fs.IntVar(&cfg.Stores, "stores", cfg.Stores, "stores in the city")
	fs.IntVar(&cfg.Rules, "rules", cfg.Rules, "offer rules")
	fs.IntVar(&cfg.Customers, "customers", cfg.Customers, "customers, each with a profile and a phone")
	fs.IntVar(&cfg.Active, "active", cfg.Active, "customers out and about at once")
	fs.IntVar(&cfg.ErrandPct, "errand-pct", cfg.ErrandPct, "share of paths (%) that lead into a store")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "pings in flight at once")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each phase")
	fs.DurationVar(&cfg.WarmUp, "warm-up", cfg.WarmUp, "how long nearcast is driven, uncounted, before its phases")
	fs.Float64Var(&cfg.Rate, "rate", 0, "pings per second; 0: full speed, then 80% of the peak")
	fs.StringVar(&cfg.Baseline, "baseline", cfg.Baseline, "reference phases: geosearch (the same pings as bare Redis GEOSEARCH queries), http (GET /healthz: an HTTP round trip alone), none")
	fs.StringVar(&cfg.RedisURL, "redis-url", "", "Redis to load (redis://host:port); empty: start a redis-server")
	fs.BoolVar(&cfg.Flush, "flush", false, "empty the given Redis first")
	fs.StringVar(&cfg.ServerURL, "server", "", "a running nearcast on --redis-url (http://host:port); empty: start one")
	fs.StringVar(&cfg.AppKey, "app-key", cfg.AppKey, "app key for --server")
	fs.StringVar(&cfg.TokenSecret, "token-secret", "", "for --server: its NEARCAST_TOKEN_SECRETS' first, to sign the customers' tokens (none: a server with NEARCAST_APP_AUTH=key)")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "folder for the report")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the city and the walks")
	fs.IntVar(&cfg.Phones, "phones", cfg.Phones, "phones that walk --phone-hours each in each of the city's centre (within 5 km) and outskirts (15 to 28 km), polling every 15 s and, on the same walks, monitored (the answers' monitor and next_ping); 0: no phones phase")
	fs.Float64Var(&cfg.PhoneHours, "phone-hours", cfg.PhoneHours, "each phone's walk time in hours (simulated on a clock of its own)")
	fs.BoolVar(&cfg.NoVariants, "no-variants", false, "the city's experiments as plain offers (every fifth rule has variants, every twentieth is a bandit): what variants cost")
	fs.StringVar(&cfg.Webhook, "webhook", "", "subscribe a receiver to every event type first: live (answers 200 at once: what events out cost) or dead (takes connections, never answers: what a dead receiver costs); empty: none")
	serverBin := fs.String("nearcast", "", "the nearcast binary to start without --server; empty: nearcast beside this binary, else on PATH")
	cpuProfile := fs.String("cpuprofile", "", "write the bench's own CPU profile to this file (the server's: NEARCAST_PPROF_ADDR)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg.Log = out
	if cfg.ServerURL == "" {
		bin, err := findServer(*serverBin)
		if err != nil {
			return err
		}
		cfg.Start = startServer(bin, out)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	rep.WriteText(out)
	fmt.Fprintf(out, "\nreport: %s/report.txt, report.json, report.svg\n", cfg.Out)
	return nil
}

// findServer is the nearcast binary to start: the one given, else the
// one beside this binary (bin/ after `make bench`), else the one on PATH.
func findServer(given string) (string, error) {
	if given != "" {
		p, err := exec.LookPath(given)
		if err != nil {
			return "", fmt.Errorf("--nearcast: %w", err)
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "nearcast")
		if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
			return beside, nil
		}
	}
	if p, err := exec.LookPath("nearcast"); err == nil {
		return p, nil
	}
	return "", errors.New("no nearcast binary beside nearcast-bench or on PATH: build it (make build), or give --nearcast, or --server and --redis-url for a running one")
}

// startServer runs the nearcast binary's `serve` as a process of its own,
// as in production, so that the bench's own work does not share its heap.
func startServer(bin string, log io.Writer) bench.StartFunc {
	return func(ctx context.Context, env map[string]string) (*bench.Server, error) {
		url, cmd, err := serverproc.Spawn(bin, env, log, 60*time.Second)
		if err != nil {
			return nil, err
		}
		return &bench.Server{URL: url, PID: cmd.Process.Pid, Stop: func() error { return serverproc.Stop(cmd, 20*time.Second) }}, nil
	}
}
