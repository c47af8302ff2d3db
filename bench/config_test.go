package bench_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/bench"
)

func TestParseArrival(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    bench.Arrival
		wantErr string
	}{
		{in: "burst", want: bench.Arrival{Kind: "burst"}},
		{in: "poisson:2.5", want: bench.Arrival{Kind: "poisson", Rate: 2.5}},
		{in: "ramp:30", want: bench.Arrival{Kind: "ramp", Ramp: 30 * time.Second}},
		{in: "ramp:1m", want: bench.Arrival{Kind: "ramp", Ramp: time.Minute}},
		{in: "poisson:0", wantErr: "RATE > 0"},
		{in: "poisson:x", wantErr: "RATE > 0"},
		{in: "ramp:-1", wantErr: "SECONDS > 0"},
		{in: "burst:3", wantErr: "no argument"},
		{in: "storm", wantErr: "unknown arrival"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := bench.ParseArrival(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseArrival(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseArrival(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if back, err := bench.ParseArrival(got.String()); err != nil || back != got {
				t.Errorf("String() %q does not parse back: %+v, %v", got.String(), back, err)
			}
		})
	}
}

func TestArrivalOffsets(t *testing.T) {
	t.Parallel()
	rng := func() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
	if got := (bench.Arrival{Kind: "burst"}).Offsets(3, rng()); !slices.Equal(got, []time.Duration{0, 0, 0}) {
		t.Errorf("burst offsets = %v", got)
	}
	ramp := bench.Arrival{Kind: "ramp", Ramp: 4 * time.Second}.Offsets(4, rng())
	if want := []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second}; !slices.Equal(ramp, want) {
		t.Errorf("ramp offsets = %v, want %v", ramp, want)
	}
	p := bench.Arrival{Kind: "poisson", Rate: 10}
	a, b := p.Offsets(2000, rng()), p.Offsets(2000, rng())
	if !slices.Equal(a, b) {
		t.Fatal("poisson offsets differ for the same seed")
	}
	if a[0] != 0 || !slices.IsSorted(a) {
		t.Fatal("poisson offsets do not start at 0 and increase")
	}
	// 1999 gaps of mean 100 ms: the mean is within 10% (a deterministic
	// draw; a broken rate is off by far more).
	mean := a[len(a)-1].Seconds() / float64(len(a)-1)
	if math.Abs(mean-0.1) > 0.01 {
		t.Errorf("mean poisson gap = %gs, want about 0.1s", mean)
	}
}

func validConfig() bench.Config {
	return bench.Config{
		Target:   bench.Target{URL: "http://127.0.0.1:1", Mode: bench.ModeActions},
		Sessions: 2, Steps: 2, PageTokens: 200, MaxTokens: 32, Arrival: bench.Arrival{Kind: "burst"},
		Duration: time.Minute, Rounds: 1,
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(c *bench.Config)
		wantErr string
	}{
		{"valid", func(*bench.Config) {}, ""},
		{"no url", func(c *bench.Config) { c.Target.URL = "" }, "url is required"},
		{"not http", func(c *bench.Config) { c.Target.URL = "ftp://x" }, "want http(s)"},
		{"bad mode", func(c *bench.Config) { c.Target.Mode = "grpc" }, "unknown mode"},
		{"no sessions", func(c *bench.Config) { c.Sessions = 0 }, "sessions"},
		{"no steps", func(c *bench.Config) { c.Steps = 0 }, "steps"},
		{"tiny pages", func(c *bench.Config) { c.PageTokens = 1 }, "page-tokens"},
		{"no duration", func(c *bench.Config) { c.Duration = 0 }, "duration"},
		{"bad format", func(c *bench.Config) { c.Format = "raw" }, "format"},
		{"finetuned openai", func(c *bench.Config) { c.Target.Mode, c.Format = bench.ModeOpenAI, "finetuned" }, "openai"},
		{"bad compare", func(c *bench.Config) { c.Compare = bench.Target{URL: "x", Mode: bench.ModeActions} }, "compare"},
		{"bad rounds", func(c *bench.Config) {
			c.Compare = bench.Target{URL: "http://127.0.0.1:2", Mode: bench.ModeActions}
			c.Rounds = 0
		}, "rounds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
