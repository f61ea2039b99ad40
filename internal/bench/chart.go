package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// The report's picture: two charts in one SVG, drawn here rather than
// with a plotting library because two line charts are all it takes.

var phaseColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}

const (
	chartW  = 960
	panelH  = 300
	marginL = 70
	marginR = 210
	marginT = 40
	marginB = 45
)

// WriteSVG draws the latency histogram and the throughput over time.
func (r *Report) WriteSVG(w io.Writer) error {
	var b strings.Builder
	h := 2*panelH + 70
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, h, chartW, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := fmt.Sprintf("Nearcast load bench: %d stores, %d rules, %d customers, %d CPUs", r.City.Stores, r.City.Rules, r.City.Customers, r.Machine.CPUs)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", marginL, html.EscapeString(title))
	r.latencyPanel(&b, 30)
	r.throughputPanel(&b, 30+panelH+30)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

type frame struct {
	x0, y0, w, h float64
}

func (f frame) axes(b *strings.Builder, title, xLabel, yLabel string) {
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" font-size="13" font-weight="bold">%s</text>`+"\n", f.x0, f.y0-10, html.EscapeString(title))
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", f.x0, f.y0, f.w, f.h)
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">%s</text>`+"\n", f.x0+f.w/2, f.y0+f.h+35, html.EscapeString(xLabel))
	fmt.Fprintf(b, `<text transform="translate(%.0f,%.0f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", f.x0-52, f.y0+f.h/2, html.EscapeString(yLabel))
}

func (f frame) yTicks(b *strings.Builder, top float64, format string) {
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		y := f.y0 + f.h - f.h*float64(i)/4
		fmt.Fprintf(b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eee"/>`+"\n", f.x0, y, f.x0+f.w, y)
		fmt.Fprintf(b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", f.x0-6, y+4, fmt.Sprintf(format, v))
	}
}

func legend(b *strings.Builder, f frame, i int, label string) {
	y := f.y0 + 16 + float64(i)*34
	fmt.Fprintf(b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="3"/>`+"\n", f.x0+f.w+12, y, f.x0+f.w+32, y, phaseColors[i%len(phaseColors)])
	for j, line := range strings.SplitN(label, "\n", 2) {
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f">%s</text>`+"\n", f.x0+f.w+38, y+4+float64(j)*14, html.EscapeString(line))
	}
}

// latencyPanel: the share of pings by latency, on a log scale, per phase.
func (r *Report) latencyPanel(b *strings.Builder, top float64) {
	f := frame{marginL, top + marginT, chartW - marginL - marginR, panelH - marginT - marginB}
	f.axes(b, "Latency: share of pings answered within each band", "latency (ms, log scale)", "share of pings (%)")
	lo, hi := math.Log10(0.01), math.Log10(1000.0)
	x := func(ms float64) float64 {
		l := math.Log10(math.Max(ms, 0.01))
		return f.x0 + f.w*(math.Min(l, hi)-lo)/(hi-lo)
	}
	for _, t := range []float64{0.01, 0.1, 1, 10, 100, 1000} {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#eee"/>`+"\n", x(t), f.y0, x(t), f.y0+f.h)
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%g</text>`+"\n", x(t), f.y0+f.h+16, t)
	}
	peak := 1.0
	for _, p := range r.Phases {
		for _, bk := range p.Histogram {
			if p.Requests > 0 {
				peak = math.Max(peak, 100*float64(bk.Count)/float64(p.Requests))
			}
		}
	}
	peak = math.Ceil(peak/20) * 20
	f.yTicks(b, peak, "%.0f")
	y := func(pct float64) float64 { return f.y0 + f.h - f.h*pct/peak }
	for i, p := range r.Phases {
		if p.Requests == 0 {
			continue
		}
		color := phaseColors[i%len(phaseColors)]
		var pts []string
		prev := 0.0
		for _, bk := range p.Histogram {
			pct := 100 * float64(bk.Count) / float64(p.Requests)
			lower := bk.UpToMs / 1.7782794100389228
			pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x(lower), y(prev), x(lower), y(pct)))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(bk.UpToMs), y(pct)))
			prev = pct
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-dasharray="4 3"/>`+"\n", x(p.Latency.P99), f.y0, x(p.Latency.P99), f.y0+f.h, color)
		legend(b, f, i, fmt.Sprintf("%s\np50 %.2f, p99 %.2f ms", p.Name, p.Latency.P50, p.Latency.P99))
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" fill="#666">dashed: p99</text>`+"\n", f.x0+f.w+12, f.y0+f.h)
}

// throughputPanel: pings answered per second over each phase.
func (r *Report) throughputPanel(b *strings.Builder, top float64) {
	f := frame{marginL, top + marginT, chartW - marginL - marginR, panelH - marginT - marginB}
	f.axes(b, "Throughput over time", "seconds into the phase", "pings answered per second")
	longest, peak := 1, 1.0
	for _, p := range r.Phases {
		longest = max(longest, len(p.PerSecond))
		for _, n := range p.PerSecond {
			peak = math.Max(peak, float64(n))
		}
	}
	step := math.Pow(10, math.Floor(math.Log10(peak)))
	peak = math.Ceil(peak/step) * step
	f.yTicks(b, peak, "%.0f")
	x := func(s float64) float64 { return f.x0 + f.w*s/float64(longest) }
	for s := 0; s <= longest; s += max(1, longest/10) {
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`+"\n", x(float64(s)), f.y0+f.h+16, s)
	}
	y := func(v float64) float64 { return f.y0 + f.h - f.h*v/peak }
	for i, p := range r.Phases {
		var pts []string
		for s, n := range p.PerSecond {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x(float64(s)), y(float64(n)), x(float64(s+1)), y(float64(n))))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", phaseColors[i%len(phaseColors)], strings.Join(pts, " "))
		legend(b, f, i, fmt.Sprintf("%s\n%.0f per s", p.Name, p.Throughput))
	}
}
