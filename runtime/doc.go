// Package runtime groups nextact's engine implementations. The engines live
// in subpackages (runtime/llamacpp, the only cgo in nextact); each
// implements interfaces declared by its consumers (batching.Engine,
// batching.Vocab, the server's Tokenizer).
package runtime
