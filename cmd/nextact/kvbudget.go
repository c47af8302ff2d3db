package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nextact/nextact/models/registry"
)

// byteSize is a flag of a size in bytes: a plain number or one with a unit
// (KiB, MiB, GiB, TiB or KB, MB, GB, TB; case-insensitive).
type byteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first, so "kib" is not read as "b".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

func (b *byteSize) String() string {
	if b == nil || *b == 0 {
		return "0"
	}
	return registry.FormatBytes(int64(*b))
}

func (b *byteSize) Set(v string) error {
	s := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return fmt.Errorf("not a size in bytes: %q (examples: 3GiB, 512MiB, 1500000000)", v)
	}
	*b = byteSize(f * float64(mult))
	return nil
}

// checkKVBudget refuses a configuration whose KV cache (every slot holds
// ctx tokens of its own KV in this engine, allocated at load) would exceed
// budget bytes; budget 0 sets no bound. bytesPerToken 0 (metadata that does
// not say) cannot be checked and passes.
func checkKVBudget(slots, ctx int, bytesPerToken int64, budget byteSize) error {
	if budget <= 0 || bytesPerToken <= 0 {
		return nil
	}
	need := int64(slots) * int64(ctx) * bytesPerToken
	if need <= int64(budget) {
		return nil
	}
	maxCtx := int64(budget) / (int64(slots) * bytesPerToken)
	maxSlots := int64(budget) / (int64(ctx) * bytesPerToken)
	return fmt.Errorf("KV cache of --slots %d x --ctx %d at %s per token is %s, over --kv-budget %s: "+
		"lower --ctx to at most %d or --slots to at most %d, or raise --kv-budget",
		slots, ctx, registry.FormatBytes(bytesPerToken), registry.FormatBytes(need), registry.FormatBytes(int64(budget)), maxCtx, maxSlots)
}
