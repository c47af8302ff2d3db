package models

import (
	"strings"

	"github.com/ollama/ollama/fs/ggml"
)

// WeightBytes is the size of a model's tensor data, grouped by where
// llama.cpp places it.
type WeightBytes struct {
	// Input is the token embedding (token_embd.*), which llama.cpp keeps
	// in host memory even when every layer is offloaded.
	Input int64
	// Layers is every repeating layer (blk.N.*) together.
	Layers int64
	// Output is everything else: the output norm and projection and any
	// non-layer tensor (rope factors ...); on the GPU when every layer is.
	Output int64
}

// Total is the size of every tensor.
func (w WeightBytes) Total() int64 { return w.Input + w.Layers + w.Output }

// weightBytes sums the tensors' data sizes by group.
func weightBytes(ts []*ggml.Tensor) WeightBytes {
	var w WeightBytes
	for _, t := range ts {
		n := int64(t.Size())
		switch {
		case strings.HasPrefix(t.Name, "token_embd."):
			w.Input += n
		case strings.HasPrefix(t.Name, "blk."):
			w.Layers += n
		default:
			w.Output += n
		}
	}
	return w
}

// Memory is what a model takes once loaded with a given context, split
// between GPU and host memory, and by purpose.
type Memory struct {
	// GPU and Host are the totals by device; GPU is 0 without offload.
	GPU, Host int64
	// Weights is the tensor data (WeightBytes.Total()).
	Weights int64
	// KV is the KV cache: slots × ctx × KVBytesPerToken.
	KV int64
	// Output is llama.cpp's output buffer: logits and embeddings of one
	// token per slot, in f32 (host memory).
	Output int64
	// Compute is the estimated compute buffer (graph scratch) of one
	// step of stepTokens tokens.
	Compute int64
}

// Total is GPU plus host memory.
func (m Memory) Total() int64 { return m.GPU + m.Host }

// Estimate is the memory the model takes when loaded with slots
// sequences of ctx tokens, steps of stepTokens tokens, and gpuLayers of
// its repeating layers offloaded to a GPU (0: none, negative or above
// BlockCount: all, and then the output layer too, as llama.cpp does). It
// is known before loading, from the file's metadata and tensor infos.
//
// Weights and KV are exact for llama.cpp's f16 cache (each layer's KV
// lives with its layer); a partial offload splits the layers' weights in
// proportion. The output buffer is llama.cpp's (logits and embeddings of
// slots outputs, f32). The compute buffer of a step of B = stepTokens
// tokens is Ollama's estimate for Llama graphs, the larger of the
// attention scores without flash attention, 4·B·(1+4E+C·(1+H)), and the
// batch's logits, 4·B·(E+V), plus the feed-forward activations,
// 4·B·(E+2F): an upper bound of llama.cpp's reported CPU compute buffer
// on generated models, from exact (large vocabularies, short contexts) to
// 3× (flash attention with long contexts, where the scores are never
// materialized; runtime/llamacpp's TestMemoryEstimateBoundsLlamaCpp). It
// counts neither the backends' own allocations (CUDA context, cuBLAS
// workspace) nor fragmentation: budgets should keep a margin.
func (i Info) Estimate(slots, ctx, stepTokens, gpuLayers int) Memory {
	s, c, b := int64(max(slots, 0)), int64(max(ctx, 0)), int64(max(stepTokens, 0))
	e, h, v, f := int64(i.EmbeddingLength), int64(i.HeadCount), int64(i.VocabSize), int64(i.FeedForwardLength)
	m := Memory{
		Weights: i.Weights.Total(),
		KV:      s * c * i.KVBytesPerToken(),
		Output:  s * (v + e) * 4,
		Compute: max(4*b*(1+4*e+c*(1+h)), 4*b*(e+v)) + 4*b*(e+2*f),
	}
	layers := int64(i.BlockCount)
	offloaded := int64(gpuLayers)
	if offloaded < 0 || offloaded > layers {
		offloaded = layers + 1 // every layer and the output layer
	}
	m.Host = m.Weights + m.KV + m.Output + m.Compute
	if offloaded == 0 || layers == 0 {
		return m
	}
	onGPU := min(offloaded, layers)
	gpuLayerWeights := i.Weights.Layers * onGPU / layers
	gpuKV := m.KV * onGPU / layers
	m.GPU = gpuLayerWeights + gpuKV + m.Compute
	if offloaded > layers {
		m.GPU += i.Weights.Output
	}
	m.Host = m.Weights + m.KV + m.Output + m.Compute - m.GPU
	return m
}
