package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/nearcast/nearcast/cmd/nearcast/bench"
)

const benchUsage = `usage: nearcast bench [flags]

Loads a city into Redis (a redis-server of its own unless --redis-url is
given), starts nearcast on it (unless --server is given), drives pings over
HTTP and as bare GEOSEARCH queries, and writes report.txt, report.json and
report.svg to --out.

`

// runBench is `nearcast bench`.
func runBench(ctx context.Context, args []string, out io.Writer) error {
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprint(out, benchUsage); fs.PrintDefaults() }
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
	cpuProfile := fs.String("cpuprofile", "", "write the bench's own CPU profile to this file (the server's: NEARCAST_PPROF_ADDR)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg.Log = out
	cfg.Start = benchServer(out)
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

// benchServer runs this binary's `serve` as a process of its own, as in
// production, so that the bench's own work does not share its heap.
func benchServer(log io.Writer) bench.StartFunc {
	return func(ctx context.Context, env map[string]string) (*bench.Server, error) {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		url, cmd, err := spawn(self, env, log, 60*time.Second)
		if err != nil {
			return nil, err
		}
		return &bench.Server{URL: url, PID: cmd.Process.Pid, Stop: func() error { return stopProcess(cmd, 20*time.Second) }}, nil
	}
}
