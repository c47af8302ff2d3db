package models_test

import (
	"testing"

	"github.com/nextact/nextact/models"
)

func TestEstimatePlacement(t *testing.T) {
	t.Parallel()
	info := models.Info{
		VocabSize: 1000, EmbeddingLength: 64, FeedForwardLength: 128, BlockCount: 4, HeadCount: 4, HeadCountKV: 2,
		KeyLength: 16, ValueLength: 16,
		Weights: models.WeightBytes{Input: 100_000, Layers: 400_000, Output: 100_040},
	}
	const slots, ctx, step = 2, 128, 32
	kv := int64(slots * ctx * 4 * 2 * (16 + 16) * 2)
	output := int64(slots * (1000 + 64) * 4)
	compute := max(int64(4*step*(1+4*64+128*(1+4))), int64(4*step*(64+1000))) + int64(4*step*(64+2*128))
	weights := int64(600_040)
	tests := []struct {
		name      string
		gpuLayers int
		gpu       int64
	}{
		{"cpu only", 0, 0},
		{"all layers", -1, 400_000 + kv + compute + 100_040},
		{"more than all", 99, 400_000 + kv + compute + 100_040},
		{"every repeating layer, not the output", 4, 400_000 + kv + compute},
		{"half the layers", 2, 200_000 + kv/2 + compute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := info.Estimate(slots, ctx, step, tt.gpuLayers)
			if m.Weights != weights || m.KV != kv || m.Output != output || m.Compute != compute {
				t.Fatalf("parts = %+v, want weights %d kv %d output %d compute %d", m, weights, kv, output, compute)
			}
			if m.GPU != tt.gpu {
				t.Errorf("GPU = %d, want %d", m.GPU, tt.gpu)
			}
			if m.Total() != weights+kv+output+compute {
				t.Errorf("GPU %d + host %d = %d, want every part once: %d", m.GPU, m.Host, m.Total(), weights+kv+output+compute)
			}
		})
	}
}

// The attention term wins over the logits term at long contexts.
func TestEstimateComputeTerms(t *testing.T) {
	t.Parallel()
	info := models.Info{VocabSize: 128256, EmbeddingLength: 2048, FeedForwardLength: 8192, HeadCount: 32}
	ffn := int64(4 * 512 * (2048 + 2*8192))
	short := info.Estimate(1, 1024, 512, 0).Compute
	if want := int64(4*512*(2048+128256)) + ffn; short != want {
		t.Errorf("compute at ctx 1024 = %d, want the logits term %d", short, want)
	}
	long := info.Estimate(1, 32768, 512, 0).Compute
	if want := int64(4*512*(1+4*2048+32768*33)) + ffn; long != want {
		t.Errorf("compute at ctx 32768 = %d, want the attention term %d", long, want)
	}
}
