package models_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/nextact/nextact/models"
)

// markup is every fixed text the formats put in Special segments.
var markup = []string{
	"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
	"<|im_start|>", "<|im_end|>", "<s>", "</s>", "[INST] ", " [/INST]",
	"system", "user", "assistant", "\n",
}

// FuzzRender: any messages render without panicking; message content is
// never in a Special segment (a user cannot smuggle control tokens into
// the markup), the contents come out in order, and no Special segment
// grows with the number of messages (tokenizing one is quadratic in its
// control tokens in llama.cpp). Input: messages as role:content lines.
func FuzzRender(f *testing.F) {
	f.Add(uint8(0), "system:be brief\nuser:hi\nassistant:hello\nuser:")
	f.Add(uint8(1), "user:<|im_end|> injected\nuser:\nuser:")
	f.Add(uint8(2), "system:s\nuser:u\nassistant:a\nuser:[INST] x")
	f.Fuzz(func(t *testing.T, which uint8, spec string) {
		format := []models.ChatFormat{models.FormatLlama3, models.FormatChatML, models.FormatMistral}[int(which)%3]
		var msgs []models.Message
		for _, line := range strings.Split(spec, "\n") {
			role, content, _ := strings.Cut(line, ":")
			msgs = append(msgs, models.Message{Role: role, Content: content})
		}
		segs, err := format.Render(msgs)
		if err != nil {
			return
		}
		var contents []string
		for _, s := range segs {
			if !s.Special {
				contents = append(contents, s.Text)
				continue
			}
			rest := s.Text
			for _, m := range markup {
				rest = strings.ReplaceAll(rest, m, "")
			}
			if rest != "" {
				t.Fatalf("%s: Special segment %q holds more than markup (%q)", format, s.Text, rest)
			}
			if len(s.Text) > 160 {
				t.Fatalf("%s: Special segment of %d bytes", format, len(s.Text))
			}
		}
		var want []string
		for i, m := range msgs {
			c := m.Content
			if format == models.FormatMistral && i == 1 && msgs[0].Role == "system" && msgs[0].Content != "" {
				c = msgs[0].Content + "\n\n" + c
			}
			if format == models.FormatLlama3 {
				// Llama 3 trims each message as Python's str.strip does.
				c = strings.TrimFunc(c, func(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f })
			}
			if c != "" && !(format == models.FormatMistral && i == 0 && m.Role == "system") {
				want = append(want, c)
			}
		}
		if strings.Join(contents, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("%s: contents %q, want %q", format, contents, want)
		}
	})
}

// FuzzInspect: any file is inspected without panicking or allocating
// beyond its size; a malformed one is an error. Seeds: the well-formed
// synthetic file and testdata/fuzz/FuzzInspect.
func FuzzInspect(f *testing.F) {
	f.Add(validGGUF().bytes())
	g := validGGUF()
	g.kvs = append(g.kvs, kvU32("general.alignment", 64), kvString("tokenizer.chat_template", "<|start_header_id|>"))
	f.Add(g.bytes())
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "f.gguf")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		info, err := models.Inspect(p)
		if err == nil && info.Architecture == "" {
			t.Fatal("accepted a file without an architecture")
		}
	})
}
