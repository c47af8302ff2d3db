// Package models knows about model files and prompt formats, and nothing
// about engines.
//
// It inspects GGUF files (Inspect), renders chat messages into prompts for
// the Llama-3, ChatML and Mistral formats (ChatFormat), picks a format from a
// model's embedded chat template (DetectChatFormat), and writes the small
// seeded Llama model that nextact embeds as its default (Generate,
// EnsureDefault). It is pure Go and imports no other nextact package.
//
// Rendered prompts are lists of Segments: template markup is Special and may
// be tokenized with control-token parsing; message content never is, so a
// user cannot inject control tokens such as <|eot_id|>.
package models
