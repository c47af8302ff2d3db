package bench

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// chart is a small inline-SVG plot: scatter points or lines on linear
// axes. It needs no script and references nothing outside itself.
type chart struct {
	title, xLabel, yLabel string
	series                []series
}

type series struct {
	name, color string
	points      [][2]float64
	line        bool
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH                = 560, 320
	padL, padR, padTop, padBottom = 64, 16, 32, 44
	maxPointsPerSeries            = 4000
)

// seriesColors are the colors of runs a and b, then the rest.
var seriesColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

// svg renders the chart; a chart without points says so.
func (c chart) svg() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, chartW, chartH, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14" font-weight="bold">%s</text>`, padL, html.EscapeString(c.title))
	x0, x1, y0, y1, ok := c.bounds()
	if !ok {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" fill="#777">no data</text></svg>`, chartW/2-24, chartH/2)
		return b.String()
	}
	xt, yt := niceTicks(x0, x1), niceTicks(y0, y1)
	x0, x1 = min(x0, xt[0]), max(x1, xt[len(xt)-1])
	y0, y1 = min(y0, yt[0]), max(y1, yt[len(yt)-1])
	px := func(x float64) float64 { return padL + (x-x0)/(x1-x0)*(chartW-padL-padR) }
	py := func(y float64) float64 { return chartH - padBottom - (y-y0)/(y1-y0)*(chartH-padTop-padBottom) }
	c.axes(&b, xt, yt, px, py)
	for _, s := range c.series {
		pts := thin(s.points, maxPointsPerSeries)
		if s.line {
			b.WriteString(`<polyline fill="none" stroke-width="1.5" stroke="` + s.color + `" points="`)
			for _, p := range pts {
				b.WriteString(num(px(p[0])) + "," + num(py(p[1])) + " ")
			}
			b.WriteString(`"/>`)
			continue
		}
		b.WriteString(`<g fill="` + s.color + `" fill-opacity="0.55">`)
		for _, p := range pts {
			b.WriteString(`<circle r="2" cx="` + num(px(p[0])) + `" cy="` + num(py(p[1])) + `"/>`)
		}
		b.WriteString(`</g>`)
	}
	c.legend(&b)
	b.WriteString(`</svg>`)
	return b.String()
}

func (c chart) axes(b *strings.Builder, xt, yt []float64, px, py func(float64) float64) {
	b.WriteString(`<g stroke="#ddd" stroke-width="1">`)
	for _, y := range yt {
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%s" y2="%s"/>`, padL, chartW-padR, num(py(y)), num(py(y)))
	}
	b.WriteString(`</g><g font-size="11" fill="#444">`)
	for _, y := range yt {
		fmt.Fprintf(b, `<text x="%d" y="%s" text-anchor="end">%s</text>`, padL-6, num(py(y)+4), tick(y))
	}
	for _, x := range xt {
		fmt.Fprintf(b, `<text x="%s" y="%d" text-anchor="middle">%s</text>`, num(px(x)), chartH-padBottom+16, tick(x))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, (chartW+padL)/2, chartH-8, html.EscapeString(c.xLabel))
	fmt.Fprintf(b, `<text transform="translate(14 %d) rotate(-90)" text-anchor="middle">%s</text>`, (chartH+padTop-padBottom)/2, html.EscapeString(c.yLabel))
	b.WriteString(`</g>`)
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`, padL, padTop, chartW-padL-padR, chartH-padTop-padBottom)
}

func (c chart) legend(b *strings.Builder) {
	x := chartW - padR - 8
	for i := len(c.series) - 1; i >= 0; i-- {
		s := c.series[i]
		name := html.EscapeString(s.name)
		fmt.Fprintf(b, `<text x="%d" y="20" font-size="12" text-anchor="end" fill="%s">■ %s</text>`, x, s.color, name)
		x -= 16 + 7*len(s.name)
	}
}

// bounds are the data's extent; ok is false without points.
func (c chart) bounds() (x0, x1, y0, y1 float64, ok bool) {
	x0, y0 = math.Inf(1), 0
	x1, y1 = math.Inf(-1), math.Inf(-1)
	for _, s := range c.series {
		for _, p := range s.points {
			x0, x1 = min(x0, p[0]), max(x1, p[0])
			y0, y1 = min(y0, p[1]), max(y1, p[1])
			ok = true
		}
	}
	if !ok {
		return 0, 0, 0, 0, false
	}
	if x1 <= x0 {
		x1 = x0 + 1
	}
	if y1 <= y0 {
		y1 = y0 + 1
	}
	return x0, x1, y0, y1, true
}

// thin keeps at most n points, evenly.
func thin(pts [][2]float64, n int) [][2]float64 {
	if len(pts) <= n {
		return pts
	}
	out := make([][2]float64, 0, n)
	for i := range n {
		out = append(out, pts[i*len(pts)/n])
	}
	return out
}

// niceTicks returns 3 to 8 round tick values covering [lo, hi].
func niceTicks(lo, hi float64) []float64 {
	span := hi - lo
	if span <= 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		return []float64{lo}
	}
	raw := span / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Floor(lo/step) * step; v <= hi+step*1e-9 || len(out) < 2; v += step {
		out = append(out, v)
		if len(out) > 12 {
			break
		}
	}
	if out[len(out)-1] < hi {
		out = append(out, out[len(out)-1]+step)
	}
	return out
}

func num(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

func tick(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatInt(int64(x), 10)
	}
	return strconv.FormatFloat(x, 'g', 4, 64)
}
