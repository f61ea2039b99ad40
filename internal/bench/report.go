package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Report is what a bench run measured; it is written as report.json,
// report.txt and report.svg.
type Report struct {
	StartedAt time.Time `json:"started_at"`
	Machine   Machine   `json:"machine"`
	Settings  Settings  `json:"settings"`
	City      CityStats `json:"city"`
	Load      LoadStats `json:"load"`
	Memory    Memory    `json:"memory"`
	// WarmUp is the uncounted stretch before Nearcast's phases.
	WarmUp *Phase   `json:"warm_up,omitempty"`
	Phases []*Phase `json:"phases"`
	Pushes Pushes   `json:"pushes"`
	// DuplicateOffers over all phases and the warm-up: must be zero.
	DuplicateOffers int64 `json:"duplicate_offers"`
	// Phones compares polling with monitoring on the same walks (phones.go).
	Phones *PhoneReport `json:"phones,omitempty"`
	// Floor is what the two reference phases leave a decision on this
	// machine, when both ran.
	Floor *Floor `json:"floor,omitempty"`
	Aims  []Aim  `json:"aims"`
}

// Floor estimates the fastest a decision could be on the machine of the
// run: one HTTP round trip to the server and one Redis query, with no
// other work. Two estimates, neither a bound:
//   - by rate, 1 / (1/geosearch + 1/http-floor): if each reference phase
//     kept the machine busy, one of its operations took 1/rate of the
//     machine's time, and a decision that were both would take the sum
//     (each phase's Busy says how busy it kept it: its closed loop may
//     leave CPU idle, and then this estimate is low);
//   - by CPU, the machine's CPUs over the CPU both together cost
//     (CPUThroughput): what they would do with every CPU busy.
type Floor struct {
	// Throughput is 1 / (1/geosearch + 1/http-floor), per second, and
	// VsGeosearch its ratio to bare GEOSEARCH's rate.
	Throughput  float64 `json:"throughput_per_s"`
	VsGeosearch float64 `json:"vs_geosearch"`
	// CPUUs is the CPU, all processes, of a GEOSEARCH and of an HTTP round
	// trip together; DecisionCPUUs that of a full decision at the peak
	// (none without a peak phase).
	CPUUs         float64 `json:"cpu_us"`
	DecisionCPUUs float64 `json:"decision_cpu_us,omitempty"`
	// CPUThroughput is the CPUs over CPUUs, per second, and
	// CPUVsGeosearch its ratio to bare GEOSEARCH's rate.
	CPUThroughput  float64 `json:"cpu_throughput_per_s,omitempty"`
	CPUVsGeosearch float64 `json:"cpu_vs_geosearch,omitempty"`
	// GeosearchBusy and HTTPBusy are the share of the machine's CPUs each
	// reference phase kept busy: its rate times its CPU per operation.
	GeosearchBusy float64 `json:"geosearch_busy,omitempty"`
	HTTPBusy      float64 `json:"http_busy,omitempty"`
}

// floor works out the Floor from the phases, nil without both references.
func (r *Report) floor() *Floor {
	base, http, peak := r.phase(PhaseBaseline), r.phase(PhaseHTTP), r.phase(PhasePeak)
	if base == nil || http == nil || base.Throughput <= 0 || http.Throughput <= 0 {
		return nil
	}
	f := &Floor{Throughput: 1 / (1/base.Throughput + 1/http.Throughput)}
	f.VsGeosearch = f.Throughput / base.Throughput
	f.CPUUs = cpuSum(base.CPUPerPingUs) + cpuSum(http.CPUPerPingUs)
	if peak != nil {
		f.DecisionCPUUs = cpuSum(peak.CPUPerPingUs)
	}
	if cpus := float64(r.Machine.CPUs); cpus > 0 && f.CPUUs > 0 {
		f.CPUThroughput = cpus * 1e6 / f.CPUUs
		f.CPUVsGeosearch = f.CPUThroughput / base.Throughput
		f.GeosearchBusy = base.Throughput * cpuSum(base.CPUPerPingUs) / 1e6 / cpus
		f.HTTPBusy = http.Throughput * cpuSum(http.CPUPerPingUs) / 1e6 / cpus
	}
	return f
}

func cpuSum(c map[string]float64) float64 {
	n := 0.0
	for _, v := range c {
		n += v
	}
	return n
}

// Machine is where the run took place.
type Machine struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Redis     string `json:"redis_version"`
}

// Settings are the bench's own.
type Settings struct {
	Seed        uint64  `json:"seed"`
	Active      int     `json:"active_customers"`
	ErrandPct   int     `json:"errand_pct"`
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"phase_duration_s"`
	WarmUpS     float64 `json:"warm_up_s"`
	Rate        float64 `json:"rate,omitempty"`
	Baseline    string  `json:"baseline"`
	ServerURL   string  `json:"server_url"`
	MinOfferGap string  `json:"min_offer_gap"`
	// Webhook: a subscription to every event type was in force, its
	// receiver "live" or "dead" (Config.Webhook).
	Webhook string `json:"webhook,omitempty"`
}

// CityStats describes the city loaded.
type CityStats struct {
	Stores        int `json:"stores"`
	CircleStores  int `json:"circle_stores"`
	PolygonStores int `json:"polygon_stores"`
	Rules         int `json:"rules"`
	// VariantRules have variants; BanditRules of them learn.
	VariantRules int `json:"variant_rules"`
	BanditRules  int `json:"bandit_rules"`
	Customers    int `json:"customers"`
}

// LoadStats times the loading.
type LoadStats struct {
	CatalogS      float64 `json:"catalog_s"`
	CustomersS    float64 `json:"customers_s"`
	CustomersPerS float64 `json:"customers_per_s"`
}

// Memory is what the city costs.
type Memory struct {
	// RedisBytesPerCustomer is Redis's used_memory growth from loading
	// the customers (profile and device), per customer.
	RedisBytesPerCustomer float64 `json:"redis_bytes_per_customer"`
	// RedisBytesPerCustomerAfterRun adds what the run left (presence,
	// visits, caps, coupons), over all customers.
	RedisBytesPerCustomerAfterRun float64 `json:"redis_bytes_per_customer_after_run"`
	// IndexBytesPerCircle is the geo index's size per circular store.
	IndexBytesPerCircle float64 `json:"index_bytes_per_circle_store"`
	// RedisListpackValue is Redis's hash-max-listpack-value: hashes with
	// longer values take far more memory.
	RedisListpackValue int   `json:"redis_hash_max_listpack_value"`
	RedisUsedBytes     int64 `json:"redis_used_bytes"`
}

// Phase is one stretch of pings at full speed or at a fixed rate.
type Phase struct {
	Name       string  `json:"name"`
	RateTarget float64 `json:"rate_target,omitempty"`
	DurationS  float64 `json:"duration_s"`
	Requests   int64   `json:"requests"`
	Throughput float64 `json:"throughput_per_s"`
	Latency    Latency `json:"latency_ms"`
	// Lag is, at a fixed rate, how long after its time each ping went
	// out: the pacer's lateness (PacerLate) and then the wait for a free
	// connection. It is part of Latency, which counts from each ping's
	// time.
	Lag       *Latency `json:"lag_ms,omitempty"`
	PacerLate *Latency `json:"pacer_late_ms,omitempty"`
	// Errors by HTTP status or "transport".
	Errors     map[string]int64 `json:"errors"`
	ErrorCount int64            `json:"error_count"`
	Events     map[string]int64 `json:"events"`
	Offers     int64            `json:"offers"`
	// DuplicateOffers: a coupon code twice, or a customer offered twice
	// within the least gap between offers.
	DuplicateOffers int64 `json:"duplicate_offers"`
	// NearStorePct is, for the baseline, the share of pings with a store
	// within 100 m.
	NearStorePct float64 `json:"near_store_pct,omitempty"`
	// RedisCPUPerOpUs is Redis's CPU time (user and system) per ping.
	RedisCPUPerOpUs float64 `json:"redis_cpu_per_op_us"`
	// CPUPerPingUs is the CPU time per ping of each process on the
	// machine: redis, the bench (its HTTP or Redis client), the server.
	CPUPerPingUs map[string]float64 `json:"cpu_per_ping_us"`
	// RedisCommands is what Redis spent per ping in each command, the
	// costliest first (INFO commandstats). A script's time includes that
	// of the commands it calls, which are listed too.
	RedisCommands []CommandCost `json:"redis_commands_per_ping,omitempty"`
	Histogram     []Bucket      `json:"histogram"`
	PerSecond     []int64       `json:"per_second"`

	near   int64
	issued []issued
}

// CommandCost is one Redis command's calls and microseconds per ping.
type CommandCost struct {
	Command string  `json:"command"`
	Calls   float64 `json:"calls"`
	Us      float64 `json:"us"`
}

// Latency percentiles, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// Bucket counts the pings answered within UpToMs (and above the bucket before).
type Bucket struct {
	UpToMs float64 `json:"up_to_ms"`
	Count  int64   `json:"count"`
}

// Pushes is what reached the FCM double.
type Pushes struct {
	Measured bool `json:"measured"`
	Sent     int  `json:"sent"`
	// Duplicates: a coupon pushed more than once.
	Duplicates int `json:"duplicates"`
	// Pending: offers whose push had not arrived when the bench stopped waiting.
	Pending int `json:"pending"`
	// Unknown: pushes of a coupon no ping's answer named.
	Unknown int `json:"unknown"`
}

// Aim is one of the figures the product aims at.
type Aim struct {
	Name  string `json:"name"`
	Goal  string `json:"goal"`
	Value string `json:"value"`
	Met   bool   `json:"met"`
}

func (r *Report) phase(name string) *Phase {
	for _, p := range r.Phases {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// judge fills the aims from the figures.
func (r *Report) judge() {
	r.Aims = nil
	r.Floor = r.floor()
	add := func(name, goal, value string, met bool) {
		r.Aims = append(r.Aims, Aim{Name: name, Goal: goal, Value: value, Met: met})
	}
	peak, base, at80 := r.phase(PhasePeak), r.phase(PhaseBaseline), r.phase(PhaseAt80)
	if peak != nil && base != nil && base.Throughput > 0 {
		ratio := fmt.Sprintf("%.2fx (%.0f vs %.0f per s)", peak.Throughput/base.Throughput, peak.Throughput, base.Throughput)
		if f := r.Floor; f != nil {
			floor := fmt.Sprintf("the floor %.2fx by rate", f.VsGeosearch)
			if f.CPUThroughput > 0 {
				floor += fmt.Sprintf(", %.2fx by CPU", f.CPUVsGeosearch)
			}
			ratio = fmt.Sprintf("%.2fx (%.0f vs %.0f per s; %s)", peak.Throughput/base.Throughput, peak.Throughput, base.Throughput, floor)
		}
		add("decisions per second vs bare GEOSEARCH", ">= 0.50x", ratio, peak.Throughput >= 0.5*base.Throughput)
		add("decisions per second vs bare GEOSEARCH (stretch)", ">= 1.00x", ratio, peak.Throughput >= base.Throughput)
	}
	if at80 != nil {
		add("p99 at 80% of the peak rate", "< 10 ms", fmt.Sprintf("%.2f ms at %.0f per s", at80.Latency.P99, at80.Throughput), at80.Latency.P99 < 10)
	}
	if peak != nil {
		if v, ok := peak.CPUPerPingUs["server"]; ok {
			add("server CPU per decision at the peak", "<= 50 µs", fmt.Sprintf("%.0f µs", v), v <= 50)
		}
		if v, ok := peak.CPUPerPingUs["redis"]; ok {
			add("Redis CPU per decision at the peak", "<= 25 µs", fmt.Sprintf("%.0f µs", v), v <= 25)
		}
	}
	if r.Memory.RedisBytesPerCustomerAfterRun > 0 {
		add("Redis memory per customer", "< 1024 B", fmt.Sprintf("%.0f B (%.0f B before the run)", r.Memory.RedisBytesPerCustomerAfterRun, r.Memory.RedisBytesPerCustomer),
			r.Memory.RedisBytesPerCustomerAfterRun < 1024)
	}
	if r.Memory.IndexBytesPerCircle > 0 {
		add("geo index per circular store", "< 200 B", fmt.Sprintf("%.0f B", r.Memory.IndexBytesPerCircle), r.Memory.IndexBytesPerCircle < 200)
	}
	add("duplicate offers", "0", fmt.Sprint(r.DuplicateOffers+int64(r.Pushes.Duplicates)), r.DuplicateOffers == 0 && r.Pushes.Duplicates == 0)
	errs := int64(0)
	for _, p := range r.Phases {
		errs += p.ErrorCount
	}
	add("errors", "0", fmt.Sprint(errs), errs == 0)
	if ph := r.Phones; ph != nil {
		// Each area on its own: a phone pays off where it walks.
		for _, a := range ph.Areas {
			poll, mon := a.Mode(ModePolling), a.Mode(ModeMonitored)
			if poll == nil || mon == nil || poll.PingsPerCustomerHour <= 0 {
				continue
			}
			add(fmt.Sprintf("monitored pings per customer-hour (%s)", a.Name), "<= 0.10x", fmt.Sprintf("%.2fx (%.1f vs %.1f polling every %.0f s)",
				mon.PingsPerCustomerHour/poll.PingsPerCustomerHour, mon.PingsPerCustomerHour, poll.PingsPerCustomerHour, ph.PollEveryS),
				mon.PingsPerCustomerHour*10 <= poll.PingsPerCustomerHour)
			add(fmt.Sprintf("monitored p95 enter-detection delay (%s)", a.Name), "<= poll", fmt.Sprintf("%.0f s (polling %.0f s)", mon.DelayS.P95, poll.DelayS.P95),
				mon.DelayS.P95 <= poll.DelayS.P95)
			add(fmt.Sprintf("enters polling caught, monitoring missed (%s)", a.Name), "0", fmt.Sprintf("%d of %d true visits", a.CaughtByPollingMissedByMonitoring, a.Visits),
				a.CaughtByPollingMissedByMonitoring == 0)
		}
	}
}

func serverCPU(c map[string]float64) string {
	if v, ok := c["server"]; ok {
		return fmt.Sprintf("%.0f µs", v)
	}
	return "-"
}

// WriteText writes the report for a person.
func (r *Report) WriteText(w io.Writer) {
	c := r.City
	fmt.Fprintf(w, "Nearcast load bench, %s, %d CPUs, %s, Redis %s\n", r.StartedAt.Format(time.RFC3339), r.Machine.CPUs, r.Machine.GoVersion, r.Machine.Redis)
	fmt.Fprintf(w, "city: %d stores (%d circles, %d polygons), %d rules (%d with variants, %d of them bandits), %d customers; %d out and about, %d pings in flight\n",
		c.Stores, c.CircleStores, c.PolygonStores, c.Rules, c.VariantRules, c.BanditRules, c.Customers, r.Settings.Active, r.Settings.Concurrency)
	switch r.Settings.Webhook {
	case "live":
		fmt.Fprintln(w, "events out: one subscription to every event type, its receiver live (answers 200 at once)")
	case "dead":
		fmt.Fprintln(w, "events out: one subscription to every event type, its receiver dead (takes connections, never answers)")
	}
	fmt.Fprintf(w, "load: catalog %.1f s, customers %.1f s (%.0f per s)\n", r.Load.CatalogS, r.Load.CustomersS, r.Load.CustomersPerS)
	fmt.Fprintf(w, "memory: Redis %.0f B per customer after loading, %.0f B after the run (hash-max-listpack-value %d); geo index %.0f B per circular store\n\n",
		r.Memory.RedisBytesPerCustomer, r.Memory.RedisBytesPerCustomerAfterRun, r.Memory.RedisListpackValue, r.Memory.IndexBytesPerCircle)
	fmt.Fprintf(w, "%-16s %10s %9s %8s %8s %8s %8s %8s %9s %8s %7s %6s %6s\n",
		"phase", "pings", "per s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "redis µs", "events", "offers", "dups", "errors")
	for _, p := range r.Phases {
		ev := int64(0)
		for _, n := range p.Events {
			ev += n
		}
		fmt.Fprintf(w, "%-16s %10d %9.0f %8.2f %8.2f %8.2f %8.2f %8.1f %9.1f %8d %7d %6d %6d\n",
			p.Name, p.Requests, p.Throughput, p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.P999, p.Latency.Max,
			p.RedisCPUPerOpUs, ev, p.Offers, p.DuplicateOffers, p.ErrorCount)
	}
	for _, p := range r.Phases {
		if c := p.CPUPerPingUs; len(c) > 0 {
			fmt.Fprintf(w, "  %s CPU per ping: bench %.0f µs, server %s, redis %.0f µs\n", p.Name, c["bench"], serverCPU(c), c["redis"])
		}
		if l, pl := p.Lag, p.PacerLate; l != nil && pl != nil {
			fmt.Fprintf(w, "  %s: pings as from many phones at %.0f per s (Poisson); they went out p50 %.2f ms, p99 %.2f ms after their time, counted in the latency (the pacer late by p50 %.2f ms, p99 %.2f ms; the rest waiting for a free connection)\n",
				p.Name, p.RateTarget, l.P50, l.P99, pl.P50, pl.P99)
		}
		if len(p.RedisCommands) > 0 {
			parts := make([]string, len(p.RedisCommands))
			for i, c := range p.RedisCommands {
				parts[i] = fmt.Sprintf("%s %.2f× %.1f µs", c.Command, c.Calls, c.Us)
			}
			fmt.Fprintf(w, "  %s Redis per ping (calls, time; a script's time includes its commands'): %s\n", p.Name, strings.Join(parts, ", "))
		}
		if len(p.Events) > 0 {
			keys := make([]string, 0, len(p.Events))
			for k := range p.Events {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s %d", k, p.Events[k]))
			}
			fmt.Fprintf(w, "  %s events: %s\n", p.Name, strings.Join(parts, ", "))
		}
		if p.NearStorePct > 0 {
			fmt.Fprintf(w, "  %s: %.1f%% of pings within %d m of a store\n", p.Name, p.NearStorePct, baselineRadiusM)
		}
		if p.ErrorCount > 0 {
			fmt.Fprintf(w, "  %s errors: %v\n", p.Name, p.Errors)
		}
	}
	if r.Pushes.Measured {
		fmt.Fprintf(w, "\npushes through firebase-admin-go to the FCM double: %d sent, %d duplicates, %d pending, %d of unknown coupons\n",
			r.Pushes.Sent, r.Pushes.Duplicates, r.Pushes.Pending, r.Pushes.Unknown)
	}
	if peak, floor := r.phase(PhasePeak), r.phase(PhaseHTTP); peak != nil && floor != nil && floor.Throughput > 0 {
		fmt.Fprintf(w, "\nfull decisions at %.0f%% of the rate of bare HTTP round trips to the same server (%.0f per s)\n", 100*peak.Throughput/floor.Throughput, floor.Throughput)
	}
	if f := r.Floor; f != nil {
		fmt.Fprintf(w, "floor, estimated: an HTTP round trip and a GEOSEARCH, with no other work, %.0f per s by the two phases' rates (%.2fx bare GEOSEARCH)", f.Throughput, f.VsGeosearch)
		if f.CPUThroughput > 0 {
			fmt.Fprintf(w, ", %.0f per s with every CPU busy (%.2fx; the phases kept %.0f%% and %.0f%% busy)", f.CPUThroughput, f.CPUVsGeosearch, 100*f.GeosearchBusy, 100*f.HTTPBusy)
		}
		if f.CPUUs > 0 && f.DecisionCPUUs > 0 {
			fmt.Fprintf(w, "; they cost %.0f µs of CPU, a full decision %.0f", f.CPUUs, f.DecisionCPUUs)
		}
		fmt.Fprintln(w)
	}
	if r.Phones != nil {
		r.Phones.WriteText(w)
	}
	fmt.Fprintf(w, "\naims:\n")
	for _, a := range r.Aims {
		mark := "met    "
		if !a.Met {
			mark = "NOT MET"
		}
		fmt.Fprintf(w, "  %s %-52s %-9s %s\n", mark, a.Name, a.Goal, a.Value)
	}
}
