// Package runtime groups nextact's engine implementations and what runs
// beside them. The engines live in subpackages (runtime/llamacpp: llama.cpp
// through cgo); each implements interfaces declared by its consumers
// (batching.Engine, batching.Vocab, the server's Tokenizer). runtime/nvml
// samples GPU telemetry through NVML (go-nvml: cgo, the driver's library
// loaded with dlopen) and implements admission.GPUSignals.
package runtime
